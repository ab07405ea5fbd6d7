"""The rules every chapter notebook follows (DESIGN section 4).

The notebooks themselves are executed by nbmake (``make test`` passes ``--nbmake
notebooks``); this file checks how they are stored and listed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lossbook._notebooks import notebook_problems, repository_url, setup_cell_source

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("chapters"))
            walk(e.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


def _resolve(entry: str) -> list[Path]:
    return [p for ext in (".ipynb", ".md") if (p := ROOT / (entry + ext)).exists()]


def test_there_are_chapters():
    assert NOTEBOOKS, "no notebooks found under notebooks/"


def test_every_toc_entry_exists():
    missing = [e for e in _toc_files() if not _resolve(e)]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


def test_every_notebook_is_in_the_toc():
    listed = {e for e in _toc_files()}
    orphans = [p.name for p in NOTEBOOKS if f"notebooks/{p.stem}" not in listed]
    assert not orphans, f"notebooks missing from _toc.yml: {orphans}"


def test_notebook_names_follow_the_pattern():
    bad = [p.name for p in NOTEBOOKS if not (p.stem[:2].isdigit() and p.stem[2] == "_")]
    assert not bad, f"chapter notebooks are named NN_name.ipynb; got {bad}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_storage_rules(path):
    url = repository_url(ROOT / "_config.yml")
    problems = notebook_problems(path, url)
    assert not problems, (
        f"{path.name}: {problems}. Run `python -m lossbook sync-notebooks` to fix."
    )


def test_setup_cells_are_identical_and_name_the_repository():
    url = repository_url(ROOT / "_config.yml")
    assert url.startswith("https://github.com/")
    sources = set()
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        first = next(c for c in nb["cells"] if c["cell_type"] == "code")
        sources.add("".join(first["source"]))
    assert sources == {setup_cell_source(url)}
    assert url in setup_cell_source(url)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_structure(path):
    """Objectives, summary, exercises with collapsed solutions, references."""
    nb = json.loads(path.read_text())
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert text.lstrip().startswith("# "), "a chapter starts with its title"
    for needle in ("Learning objectives", "Summary", "Exercises", "{exercise}",
                   "{solution-start}", ":class: dropdown", "{cite"):
        assert needle in text, f"{path.name} lacks {needle!r}"
    assert text.count("{exercise}") >= 3, f"{path.name} has fewer than 3 exercises"
    assert text.count("{solution-start}") == text.count("{solution-end}")
    solution_cells = [c for c in nb["cells"]
                      if "solution" in c.get("metadata", {}).get("tags", [])]
    assert solution_cells, f"{path.name}: solution code cells carry the tag 'solution'"


def test_a_failing_notebook_fails_nbmake(tmp_path):
    """The mechanism behind `make test`: a cell that raises makes pytest fail."""
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "a", "metadata": {},
                   "outputs": [], "source": ["raise RuntimeError('boom')"]}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    (tmp_path / "bad.ipynb").write_text(json.dumps(nb))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", str(tmp_path / "bad.ipynb"), "-q",
         "-p", "no:cacheprovider"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert run.returncode == 1, run.stdout[-2000:]
    assert "boom" in run.stdout
