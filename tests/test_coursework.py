"""Coursework: the exercise rules hold in every chapter, student versions run, and nbgrader
grades a chapter offline (solution notebook: full marks; one wrong answer: exactly that
exercise's points lost)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lossbook import coursework as cw
from lossbook.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ENV = {**os.environ, "LOSSBOOK_BUDGET": "smoke", "OMP_NUM_THREADS": "1"}


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _code(text: str, tags=()) -> dict:
    return {"cell_type": "code", "metadata": {"tags": list(tags)}, "outputs": [],
            "execution_count": None, "source": text}


def _toy(after_end: str = "") -> dict:
    """A notebook with one checked exercise, in the book's convention."""
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        _code("x = 1"),
        _md("```{exercise} Double it\n:label: ex-toy\nWrite `double(v)`.\n```"),
        _md("```{solution-start} ex-toy\n:class: dropdown\n```"),
        _code("def double(v):\n    return 2 * v\n\n\nprint(exercises.check_double(double))\n"
              "helper = 3", ["solution"]),
        _md("It doubles: the secret explanation.\n\n```{solution-end}\n```" + after_end),
        _code("print(x)"),
    ]}


# ------------------------------------------------------------------------ the rules


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercise_convention_holds(path):
    problems = cw.exercise_problems(_load(path))
    assert not problems, f"{path.name}: {problems}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapters_have_checked_exercises(path):
    """Issue 17: at least two checked exercises per chapter (one for chapters whose own
    issue asked for one)."""
    exercises = cw.exercises_of(_load(path))
    checked = [label for label, ex in exercises.items() if ex.checks]
    need = 2 if int(path.name[:2]) <= 7 else 1
    assert len(checked) >= need, f"{path.name}: checked exercises {checked}"


def test_the_rules_catch_violations():
    """Guard against a checker that cannot fail."""
    assert cw.exercise_problems(_toy()) == []
    leaked = cw.exercise_problems(_toy(after_end="\n\nAnd the answer is 42."))
    assert any("visible outside" in p for p in leaked)
    untagged = _toy()
    untagged["cells"][3]["metadata"]["tags"] = []
    assert any("lacks the tag" in p for p in cw.exercise_problems(untagged))
    stray = _toy()
    stray["cells"][5]["metadata"]["tags"] = ["solution"]
    assert any("outside any solution" in p for p in cw.exercise_problems(stray))
    unclosed = _toy()
    del unclosed["cells"][4]
    assert any("never closed" in p for p in cw.exercise_problems(unclosed))


# ------------------------------------------------------------------ student versions


def test_student_notebook_replaces_solutions_by_stubs():
    student = cw.student_notebook(_toy(after_end="\n\n## Next section"))
    text = json.dumps(student)
    assert "secret explanation" not in text and "return 2 * v" not in text
    assert "solution-start" not in text and "solution-end" not in text
    stub = next(c for c in student["cells"] if "YOUR CODE HERE" in c["source"][0])
    assert stub["metadata"]["tags"] == ["raises-exception"]
    source = "".join(stub["source"])
    assert "raise NotImplementedError" in source
    assert "print(exercises.check_double(double))" in source  # the check call is kept
    assert "## Next section" in text and "Write `double(v)`" in text


def test_exercises_of_finds_checks_and_cells():
    ex = cw.exercises_of(_toy())["ex-toy"]
    assert ex.solution_cells == [3]
    assert ex.checks == ["print(exercises.check_double(double))"]


def test_student_notebook_refuses_a_broken_convention():
    with pytest.raises(ValueError, match="visible outside"):
        cw.student_notebook(_toy(after_end="\n\nleaked"))


def test_cli_writes_student_versions(tmp_path, capsys):
    assert main(["coursework", "student", str(tmp_path / "out"), "--root", str(ROOT)]) == 0
    written = sorted(p.name for p in (tmp_path / "out").glob("*.ipynb"))
    assert written == [p.name for p in NOTEBOOKS]
    assert (tmp_path / "out" / "README.md").is_file()
    for p in (tmp_path / "out").glob("*.ipynb"):
        nb = _load(p)
        assert "{solution-start}" not in json.dumps(nb)
        assert not any("solution" in c.get("metadata", {}).get("tags", []) for c in nb["cells"])


@pytest.mark.slow
def test_student_versions_run_top_to_bottom(tmp_path):
    """Solutions are self-contained: with every solution stubbed out, each chapter still
    runs at the smoke budget (a later cell that used a solution's name would fail)."""
    out = tmp_path / "student"
    cw.write_student_versions(out, ROOT)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=600", "-q",
         "-p", "no:cacheprovider", *sorted(str(p) for p in out.glob("*.ipynb"))],
        capture_output=True, text=True, cwd=out, env=ENV, timeout=3000,
    )
    assert run.returncode == 0, run.stdout[-4000:]


# ------------------------------------------------------------------------- nbgrader


def test_nbgrader_source_marks_cells():
    nb = cw.nbgrader_notebook(_toy(), "toy")
    meta = [c["metadata"].get("nbgrader", {}) for c in nb["cells"] if c["cell_type"] == "code"]
    solution = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution"))
    assert "### BEGIN SOLUTION" in "".join(solution["source"])
    assert "check_double" not in "".join(solution["source"])
    tests = [m for m in meta if m.get("grade")]
    assert len(tests) == 1 and tests[0]["points"] == cw.CHECK_POINTS and tests[0]["locked"]
    assert "secret explanation" not in json.dumps(nb)
    assert len({m["grade_id"] for m in meta}) == len(meta)  # unique ids


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("nbgrader")
    # nbgrader runs `alembic` (and the kernel) from PATH: put this environment's bin first
    env = {**ENV, "PATH": f"{exe.parent}{os.pathsep}{ENV.get('PATH', '')}"}
    run = subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=course,
                         env=env, timeout=1800)
    assert run.returncode == 0, f"nbgrader {' '.join(args)}:\n{run.stdout[-3000:]}\n" \
                                f"{run.stderr[-3000:]}"
    return run


@pytest.mark.slow
def test_nbgrader_round_trip(tmp_path):
    """The real nbgrader, offline: generate the assignment, autograde two submissions of
    Chapter 1, read the grades back."""
    pytest.importorskip("nbgrader", reason="install the coursework extra: pip install "
                                           "-e .[coursework]")
    from nbgrader.api import Gradebook

    chapter = "01_pixel_losses"
    course = tmp_path / "course"
    assert main(["coursework", "nbgrader", str(course), "--root", str(ROOT),
                 "--chapter", chapter]) == 0
    source = course / "source" / chapter / f"{chapter}.ipynb"
    _nbgrader(course, "db", "assignment", "add", chapter)
    _nbgrader(course, "generate_assignment", chapter, "--force")
    release = course / "release" / chapter / f"{chapter}.ipynb"
    assert "### BEGIN SOLUTION" not in release.read_text()
    assert "YOUR CODE HERE" in release.read_text()

    nb = _load(source)
    tests = {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in nb["cells"]
             if c["metadata"].get("nbgrader", {}).get("grade")}
    psnr_test = next(k for k, v in tests.items() if "check_psnr" in v)
    wrong = json.loads(json.dumps(nb))
    for cell in wrong["cells"]:
        text = "".join(cell["source"])
        if cell["metadata"].get("nbgrader", {}).get("solution") and "def my_psnr" in text:
            # the typical mistake: the data range is ignored
            cell["source"] = text.replace("data_range**2", "1.0").replace(
                "data_range ** 2", "1.0").splitlines(keepends=True)
            assert "".join(cell["source"]) != text, "the PSNR solution changed its form"
    for student, notebook in (("good", nb), ("bad", wrong)):
        _nbgrader(course, "db", "student", "add", student)
        target = course / "submitted" / student / chapter / f"{chapter}.ipynb"
        target.parent.mkdir(parents=True)
        target.write_text(json.dumps(notebook))
    _nbgrader(course, "autograde", chapter, "--force")

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        good = gb.find_submission_notebook(chapter, chapter, "good")
        bad = gb.find_submission_notebook(chapter, chapter, "bad")
        assert good.max_score == len(tests) * cw.CHECK_POINTS
        assert good.score == good.max_score, "the solution notebook must get full marks"
        lost = {g.name for g in bad.grades if g.score < g.max_score}
        assert lost == {psnr_test}, f"marks lost on {lost}, expected only {psnr_test}"
    shutil.rmtree(course / "autograded", ignore_errors=True)


def test_the_instructor_page_lists_every_check():
    from lossbook.exercises import _MODULES

    page = (ROOT / "book" / "coursework.md").read_text()
    for module in _MODULES:
        for name in module.__all__:
            if name.startswith("check_"):
                assert f"`{name}`" in page, f"book/coursework.md does not list {name}"


def test_checks_called_by_their_bare_name_are_found():
    nb = _toy()
    nb["cells"][3]["source"] = ("from lossbook.exercises import check_double\n\n"
                                "def double(v):\n    return 2 * v\n\n"
                                "print(check_double(double))")
    assert cw.exercises_of(nb)["ex-toy"].checks == ["print(check_double(double))"]
    test_cell = next(c for c in cw.nbgrader_notebook(nb, "toy")["cells"]
                     if c["metadata"].get("nbgrader", {}).get("grade"))
    assert "from lossbook.exercises import check_double" in "".join(test_cell["source"])
