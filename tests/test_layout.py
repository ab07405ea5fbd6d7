"""The import rules of DESIGN section 2, checked on the package's source with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "lossbook"


def _imported_modules(path: Path) -> set[str]:
    """Top-level lossbook subpackages/modules that ``path`` imports (relative or absolute)."""
    rel = path.relative_to(PKG.parent).with_suffix("").parts  # ('lossbook', 'losses', 'x')
    package = list(rel[:-1])  # the package the module lives in, e.g. lossbook.losses
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
                if not node.module:  # from . import x, y
                    for alias in node.names:
                        found.add(".".join([*target, alias.name][1:2]))
                    continue
            else:
                target = (node.module or "").split(".")
            if target and target[0] == "lossbook" and len(target) > 1:
                found.add(target[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "lossbook" and len(parts) > 1:
                    found.add(parts[1])
    return found


def _files(sub: str) -> list[Path]:
    root = PKG / sub
    return sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]


@pytest.mark.parametrize("path", _files("losses"), ids=lambda p: p.name)
def test_losses_stay_low(path):
    banned = {"data", "train", "viz", "widgets", "experiments", "models"}
    if path.name == "perceptual.py":
        banned -= {"models"}
    assert not (_imported_modules(path) & banned), f"{path.name} imports {banned}"


@pytest.mark.parametrize("path", _files("models"), ids=lambda p: p.name)
def test_models_do_not_import_losses(path):
    assert "losses" not in _imported_modules(path)


def test_only_notebooks_import_widgets():
    offenders = [p.name for p in PKG.rglob("*.py")
                 if p.name != "widgets.py" and "widgets" in _imported_modules(p)]
    assert not offenders, f"package modules import widgets: {offenders}"


def test_the_checker_sees_relative_imports():
    """Guard against a checker that cannot fail: metrics imports losses, widgets imports viz."""
    assert "losses" in _imported_modules(PKG / "metrics.py")
    assert "viz" in _imported_modules(PKG / "widgets.py")
    # Names are top-level rooms: combined.py's `from .structural import` counts as losses.
    assert _imported_modules(PKG / "losses" / "combined.py") >= {"losses", "_validate"}


@pytest.mark.parametrize("path", [p for p in _files("experiments")
                                  if p.name not in ("__init__.py", "core.py")],
                         ids=lambda p: p.name)
def test_experiment_modules_do_not_import_each_other(path):
    """DESIGN §2: an experiment module imports the shared ``core``, never a sibling."""
    siblings = {p.stem for p in _files("experiments")} - {"core", "__init__"}
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = {(node.module or "").split(".")[0]} | {a.name for a in node.names}
            assert not (names & siblings), f"{path.name} imports {names & siblings}"
        if isinstance(node, ast.ImportFrom) and node.module and "experiments." in node.module:
            assert node.module.split(".")[-1] == "core", f"{path.name} imports {node.module}"


def test_experiments_are_a_package_with_a_core():
    assert (PKG / "experiments" / "core.py").is_file()
    assert len(_files("experiments")) >= 4  # __init__, core and at least two experiments
