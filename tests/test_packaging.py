"""pyproject.toml, environment.yml and the Makefile agree with each other and with DESIGN."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_runtime_dependencies():
    deps = {re.split(r"[<>=\[ ;]", d)[0].lower() for d in PYPROJECT["project"]["dependencies"]}
    for name in ("torch", "numpy", "matplotlib", "ipywidgets", "pytorch-msssim",
                 "scikit-image", "tqdm"):
        assert name in deps, f"{name} missing from [project].dependencies"
    assert "torchvision" not in deps, "torchvision has no working CPU wheel here"
    torch_spec = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch"))
    assert ">=" in torch_spec and "==" not in torch_spec, "keep a range so Colab keeps its torch"


def test_extras():
    extras = PYPROJECT["project"]["optional-dependencies"]
    joined = {k: " ".join(v) for k, v in extras.items()}
    assert "jupyter-book>=1.0.4,<2" in joined["book"]
    assert "sphinx-exercise" in joined["book"]
    for name in ("pytest", "nbmake", "playwright"):
        assert name in joined["test"]
    assert "ruff" in joined["dev"]


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    python = next(d for d in conda if d.startswith("python"))
    version = tuple(int(v) for v in python.split("=")[1].split(".")[:2])
    floor = tuple(int(v) for v in
                  PYPROJECT["project"]["requires-python"].lstrip(">=").split(".")[:2])
    assert version >= floor, f"environment.yml pins {python}, pyproject needs >= {floor}"
    # Everything else comes from pyproject through an editable install with the extras.
    editable = [p for p in pip if p.startswith("-e .")]
    assert editable, "environment.yml must install the package with pip -e ."
    wanted = set(re.search(r"\[(.*)\]", editable[0]).group(1).split(","))
    assert {"book", "test"} <= wanted
    assert wanted <= set(PYPROJECT["project"]["optional-dependencies"]), (
        f"environment.yml asks for extras {wanted} that pyproject does not define")
    # Any package conda installs directly must also be a declared dependency.
    declared = {re.split(r"[<>=\[ ;]", d)[0].lower()
                for d in PYPROJECT["project"]["dependencies"]}
    extra = {re.split(r"[<>= ]", d)[0].lower() for d in conda} - {"python", "pip"}
    assert extra <= declared, f"environment.yml installs {extra - declared} not in pyproject"


def test_version_agrees():
    import lossbook

    assert lossbook.__version__ == PYPROJECT["project"]["version"]


def test_makefile_targets_and_readme():
    make = (ROOT / "Makefile").read_text()
    for target in ("test:", "book:", "clean:"):
        assert target in make
    assert "--nbmake" in make and "LOSSBOOK_BUDGET=smoke" in make
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make test") < readme.index("Colab")
    assert "make book" in readme
