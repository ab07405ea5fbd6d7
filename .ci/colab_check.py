"""Run every chapter the way a Colab student does: the wheel, its runtime deps, a kernel.

The book build and `make test` run in the development environment, which has the
`book`, `test` and `dev` extras; a student on Colab gets only the package's runtime
dependencies. This check

1. builds the wheel (``pip wheel --no-deps .``) and reads its runtime requirements
   (``Requires-Dist`` without an ``extra`` marker);
2. creates a fresh virtual environment (no system site-packages) with the CPU torch
   (``pip install torch==2.13.0`` first, as on this machine), those requirements and
   ``ipykernel`` -- and checks that no tool of the extras (jupyter-book, pytest, ...)
   came with them;
3. registers a kernel for it whose environment imports a stand-in ``google.colab`` at
   start-up (so the setup cell takes its Colab branch), sets ``LOSSBOOK_INSTALL`` to the
   wheel (so its ``%pip install`` installs the wheel, not the repository) and
   ``PIP_NO_INDEX=1`` (so that install cannot reach the network);
4. executes every notebook listed in _toc.yml at ``LOSSBOOK_BUDGET=smoke`` with
   nbclient, uninstalling lossbook before each (every chapter is a fresh Colab session
   and installs it itself), and checks that the kernel imported the installed wheel.

A chapter that imports something only the extras provide fails here.

Usage: python .ci/colab_check.py [--workdir DIR] [--keep] [NOTEBOOK ...]
Runs from the development environment (it needs nbclient and pyyaml; the kernel does not).
Steps 1-3 alone need only the standard library: ``--prepare`` does them into DIR (CI
runs it with the system python3 in the background while ``make test`` runs), and
``--reuse`` then executes the chapters with what DIR holds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNEL = "lossbook-colab"
TORCH = os.environ.get("LOSSBOOK_CI_TORCH", "torch==2.13.0")
# Tools of the extras: none may be importable where the chapters run.
EXTRAS_ONLY = ("jupyter-book", "myst-nb", "sphinx", "sphinx-exercise", "pytest", "nbmake",
               "playwright", "hypothesis", "ruff", "sphinx-mathjax-offline")
STAND_IN = '''"""Stand-in for Colab's google.colab (CI only): the setup cell tests its presence."""
'''


def stamp(msg: str, t0: float = time.perf_counter()) -> None:
    print(f"--- [{time.perf_counter() - t0:6.1f}s] {msg}", flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """Every notebook _toc.yml lists (parts or a flat chapter list), in book order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                yield e["file"]
            yield from walk(e.get("chapters"))
            yield from walk(e.get("sections"))

    files = list(walk(toc.get("chapters")))
    for part in toc.get("parts", []):
        files += list(walk(part.get("chapters")))
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").exists()]


def runtime_requirements(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist entries that no extra guards."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    reqs = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Requires-Dist:")]
    return [r for r in reqs if "extra ==" not in r.replace('"', "").replace("'", "")]


def build_wheel(dist: Path) -> Path:
    dist.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)])
    return next(dist.glob("lossbook-*.whl"))


def make_env(work: Path, wheel: Path) -> Path:
    """A fresh venv with torch, the runtime requirements and ipykernel (not lossbook)."""
    venv = work / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    run([base, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    # --no-compile: byte-compiling all of torch takes minutes on 2 busy cores; the kernel
    # compiles what it imports anyway
    pip = [py, "-m", "pip", "install", "-q", "--no-compile"]
    run([*pip, TORCH])
    run([*pip, *runtime_requirements(wheel), "ipykernel"])
    listed = json.loads(run([py, "-m", "pip", "list", "--format=json"], capture_output=True,
                            text=True).stdout)
    names = {p["name"].lower().replace("_", "-") for p in listed}
    leaked = sorted(names.intersection(EXTRAS_ONLY))
    if leaked:
        raise SystemExit(f"the runtime environment contains tools of the extras: {leaked}")
    if "lossbook" in names:
        raise SystemExit("lossbook is preinstalled; the setup cell must install it")
    print(f"    {len(names)} packages, none of {', '.join(EXTRAS_ONLY)}")
    return venv


def make_kernel(work: Path, venv: Path, wheel: Path) -> Path:
    """A kernelspec for ``venv`` whose kernel starts as on Colab; returns its JUPYTER_PATH."""
    stub = work / "colab-stand-in"
    (stub / "google" / "colab").mkdir(parents=True)  # no google/__init__.py: a namespace
    (stub / "google" / "colab" / "__init__.py").write_text(STAND_IN)  # (protobuf shares it)
    startup = work / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab  # noqa: F401\n")
    prefix = work / "jupyter"
    run([str(venv / "bin" / "python"), "-m", "ipykernel", "install", "--prefix", str(prefix),
         "--name", KERNEL, "--display-name", "lossbook (Colab-like)"],
        stdout=subprocess.DEVNULL)
    spec_file = prefix / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json"
    spec = json.loads(spec_file.read_text())
    spec["env"] = {
        "PYTHONPATH": str(stub),
        "IPYTHONDIR": str(work / "ipython"),
        "LOSSBOOK_INSTALL": str(wheel),
        "LOSSBOOK_BUDGET": "smoke",
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    spec_file.write_text(json.dumps(spec, indent=1))
    return prefix / "share" / "jupyter"


def installed_from(venv: Path) -> str:
    """Where the venv's lossbook came from (pip's direct_url.json), '' if not installed."""
    code = ("import json, importlib.metadata as m\n"
            "try:\n d = m.distribution('lossbook')\nexcept m.PackageNotFoundError:\n print('')\n"
            "else:\n print(json.loads(d.read_text('direct_url.json') or '{}').get('url', ''))")
    out = run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    return out.stdout.strip()


def execute(nb_path: Path, venv: Path, wheel: Path, work: Path) -> tuple[bool, float, str]:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-q", "-y", "lossbook"],
        capture_output=True)
    nb = nbformat.read(nb_path, as_version=4)
    probe = nbformat.v4.new_code_cell(
        "import sys, lossbook\n"
        "print('COLAB-CHECK', 'google.colab' in sys.modules, lossbook.__file__)")
    nb.cells.append(probe)
    # Like a fresh Colab runtime: the chapter runs in an empty folder of its own, so it
    # sees no runs/ (checkpoints, results) left by the other builds of this CI run.
    cwd = work / "cwd" / nb_path.stem
    shutil.rmtree(cwd, ignore_errors=True)
    cwd.mkdir(parents=True)
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=600, allow_errors=False,
                            resources={"metadata": {"path": str(cwd)}})
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as err:
        return False, time.perf_counter() - t0, str(err)[-3000:]
    seconds = time.perf_counter() - t0
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    match = re.search(r"COLAB-CHECK (\w+) (\S+)", text)
    if not match or match.group(1) != "True":
        return False, seconds, f"the kernel did not see google.colab: {text!r}"
    if not match.group(2).startswith(str(venv)):
        return False, seconds, f"lossbook imported from {match.group(2)}, not the venv"
    source = installed_from(venv)
    if source != wheel.as_uri():
        return False, seconds, f"the setup cell installed lossbook from {source!r}, not the wheel"
    return True, seconds, ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: all in _toc.yml")
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--prepare", action="store_true",
                        help="only build the wheel, the venv and the kernel into --workdir")
    parser.add_argument("--reuse", action="store_true",
                        help="use what --prepare left in --workdir (prepare if absent)")
    args = parser.parse_args()
    if (args.prepare or args.reuse) and not args.workdir:
        parser.error("--prepare and --reuse need --workdir")
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="colab-check-"))).resolve()
    ready = work / "READY"
    reuse = args.reuse and ready.is_file()
    if not reuse and work.exists() and any(work.iterdir()):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        if reuse:
            wheel, venv = next((work / "dist").glob("lossbook-*.whl")), work / "venv"
            os.environ["JUPYTER_PATH"] = str(work / "jupyter" / "share" / "jupyter")
            stamp(f"reusing the prepared {wheel.name} and venv in {work}")
        else:
            stamp("building the wheel")
            wheel = build_wheel(work / "dist")
            print(f"    {wheel.name}: requires {', '.join(runtime_requirements(wheel))}")
            stamp(f"fresh venv: {TORCH}, the runtime requirements, ipykernel")
            venv = make_env(work, wheel)
            os.environ["JUPYTER_PATH"] = str(make_kernel(work, venv, wheel))
            ready.write_text(wheel.name)
        if args.prepare:
            stamp(f"prepared in {work}")
            return 0
        notebooks = [p.resolve() for p in args.notebooks] or toc_notebooks()
        stamp(f"executing {len(notebooks)} chapters at smoke, each installing the wheel")
        failures, total = [], 0.0
        for nb in notebooks:
            ok, seconds, why = execute(nb, venv, wheel, work)
            total += seconds
            name = nb.relative_to(ROOT) if nb.is_relative_to(ROOT) else nb
            print(f"[{'ok' if ok else 'FAIL'}] {name} ({seconds:.1f}s)",
                  flush=True)
            if not ok:
                failures.append(nb.name)
                print("    " + why.replace("\n", "\n    "))
        stamp(f"{len(notebooks) - len(failures)} passed, {len(failures)} failed "
              f"({total:.0f}s in the chapters)")
        return 1 if failures else 0
    finally:
        if not (args.keep or args.prepare):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
