"""Coursework from the chapter notebooks: the exercise rules, student versions, nbgrader.

Every chapter ends with exercises in the sphinx-exercise convention (DESIGN §4)::

    ```{exercise} Title            <- markdown: the task, visible to everyone
    :label: ex-01-psnr
    ...
    ```
    ```{solution-start} ex-01-psnr  <- markdown: opens the collapsed solution
    :class: dropdown
    ```
    <code cells tagged "solution">  <- the solution's code
    explanation ...                 <- markdown before the end marker: also solution
    ```{solution-end}
    ```

This module reads that structure and turns a chapter into

* a **student version** (:func:`student_notebook`): every solution code cell becomes a stub
  (``# YOUR CODE HERE`` and a ``raise NotImplementedError``, tagged ``raises-exception`` so
  the notebook still runs top to bottom), with the lines that call a
  ``lossbook.exercises.check_*`` function kept after the stub; the solution text is
  removed;
* an **nbgrader source notebook** (:func:`nbgrader_notebook`): solution code between
  ``### BEGIN SOLUTION`` / ``### END SOLUTION`` in nbgrader solution cells, and after every
  checked exercise a read-only, autograded test cell with the check call and its points.
  ``nbgrader generate_assignment`` then makes the release and ``nbgrader autograde`` the
  marks (`nbgrader <https://nbgrader.readthedocs.io>`_, the Jupyter project's grader).

:func:`exercise_problems` lists violations of the convention (a solution code cell without
its tag, text of a solution left outside its collapsed block, unbalanced markers); the
tests run it on every chapter. This module is for instructors and maintainers; chapters
never import it. Command line: ``python -m lossbook coursework student OUT/`` and
``python -m lossbook coursework nbgrader COURSE/``.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Exercise",
    "exercises_of",
    "exercise_problems",
    "student_notebook",
    "nbgrader_notebook",
    "write_student_versions",
    "write_nbgrader_course",
    "CHECK_POINTS",
]

SOLUTION_TAG = "solution"
STUB_TAG = "raises-exception"
CHECK_POINTS = 1
"""Points of each autograded check in the nbgrader export."""

_START = re.compile(r"```\{solution-start\}\s*(?P<label>[^\s`]*)[^\n]*\n(?:[^\n]*\n)*?```[ \t]*")
_END = re.compile(r"```\{solution-end\}[^\n]*\n?```[ \t]*")
_EXERCISE_LABEL = re.compile(r"```\{exercise\}[^\n]*\n(?::[^\n]*\n)*?:label:\s*(?P<label>\S+)")
_CHECK_LINE = re.compile(
    r"^\s*(?:print\()?\s*(?:(?:lossbook\.)?exercises\.)?(?P<name>check_\w+)\(")


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


@dataclass
class Exercise:
    """One exercise of a chapter: its label, its solution code cells and its checks."""

    label: str
    solution_cells: list[int] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    """The ``exercises.check_*(...)`` (or ``check_*(...)``) calls of the solution (the
    autograded part)."""


def _markers(text: str) -> list[tuple[int, int, str, str]]:
    """``(start, end, kind, label)`` of the solution markers in a markdown text, in order."""
    found = [(m.start(), m.end(), "start", m.group("label")) for m in _START.finditer(text)]
    found += [(m.start(), m.end(), "end", "") for m in _END.finditer(text)]
    return sorted(found)


def _split_check_lines(code: str) -> tuple[str, list[str]]:
    """Separate the statements calling ``exercises.check_*`` from the rest of a cell.

    A check statement may span several lines (it ends where its parentheses balance).
    """
    rest, checks, lines, i = [], [], code.splitlines(), 0
    while i < len(lines):
        if _CHECK_LINE.match(lines[i]):
            stmt, depth = [], 0
            while i < len(lines):
                stmt.append(lines[i])
                depth += lines[i].count("(") - lines[i].count(")")
                i += 1
                if depth <= 0:
                    break
            checks.append("\n".join(stmt))
        else:
            rest.append(lines[i])
            i += 1
    return "\n".join(rest).strip("\n"), checks


def _walk(nb: dict):
    """Yield ``(index, cell, label)`` where ``label`` is the open solution (or None) at the
    START of the cell, plus the markdown segments; used by every function below."""
    label = None
    for i, cell in enumerate(nb["cells"]):
        yield i, cell, label
        if cell["cell_type"] == "markdown":
            for _, _, kind, lab in _markers(_source(cell)):
                label = lab if kind == "start" else None


def exercises_of(nb: dict) -> dict[str, Exercise]:
    """The exercises of a notebook (``nbformat`` dict), by label, in order."""
    out: dict[str, Exercise] = {}
    for _, cell, _ in _walk(nb):
        if cell["cell_type"] == "markdown":
            for m in _EXERCISE_LABEL.finditer(_source(cell)):
                out.setdefault(m.group("label"), Exercise(m.group("label")))
    for i, cell, label in _walk(nb):
        if cell["cell_type"] == "code" and label is not None:
            ex = out.setdefault(label, Exercise(label))
            ex.solution_cells.append(i)
            ex.checks += _split_check_lines(_source(cell))[1]
    return out


def exercise_problems(nb: dict) -> list[str]:
    """Violations of the exercise convention in a notebook (empty when it is clean).

    * solution markers balance and do not nest, and each opens a labelled exercise;
    * every code cell inside a solution carries the tag ``solution`` and every cell with
      that tag is inside one;
    * nothing but whitespace, a heading or the next ``{exercise}`` follows a
      ``{solution-end}`` marker in its cell (an explanation placed there would be
      visible outside the collapsed solution: put it before the marker).
    """
    problems = []
    labels = set()
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            labels |= {m.group("label") for m in _EXERCISE_LABEL.finditer(_source(cell))}
    label = None
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            tagged = SOLUTION_TAG in _tags(cell)
            if label is not None and not tagged:
                problems.append(f"cell {i}: code inside solution {label!r} lacks the tag "
                                f"'{SOLUTION_TAG}'")
            if label is None and tagged:
                problems.append(f"cell {i}: tagged '{SOLUTION_TAG}' but outside any solution")
            continue
        if cell["cell_type"] != "markdown":
            continue
        text = _source(cell)
        for _start, end, kind, lab in _markers(text):
            if kind == "start":
                if label is not None:
                    problems.append(f"cell {i}: solution {lab!r} opens inside {label!r}")
                if lab not in labels:
                    problems.append(f"cell {i}: solution {lab!r} has no exercise with that label")
                label = lab
            else:
                if label is None:
                    problems.append(f"cell {i}: solution-end without a solution-start")
                label = None
                after = text[end:].strip()
                if after and not (after.startswith("#") or after.startswith("```{exercise}")):
                    problems.append(
                        f"cell {i}: text after {{solution-end}} is visible outside the "
                        f"collapsed solution ({after[:40]!r}...); move it before the marker"
                    )
    if label is not None:
        problems.append(f"solution {label!r} is never closed with {{solution-end}}")
    return problems


def _strip_solution_text(text: str, open_label: str | None) -> tuple[str, str | None]:
    """Remove the parts of a markdown text that lie inside solutions."""
    kept, pos, label = [], 0, open_label
    for start, end, kind, lab in _markers(text):
        if label is None:
            kept.append(text[pos:start])
        label = lab if kind == "start" else None
        pos = end
    if label is None:
        kept.append(text[pos:])
    return "".join(kept).strip("\n"), label


def _code_cell(source: str, tags: list[str], cell_id: str, extra_meta: dict | None = None) -> dict:
    meta = {"tags": tags} if tags else {}
    meta.update(extra_meta or {})
    return {"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": meta,
            "outputs": [], "source": source.splitlines(keepends=True)}


def student_notebook(nb: dict) -> dict:
    """The student version of a chapter: solutions removed, stubs in their place.

    Each solution code cell becomes::

        # Exercise <label>: YOUR CODE HERE
        raise NotImplementedError("Exercise <label>: write your solution, then delete this line.")
        exercises.check_...(...)          # kept where the solution called a check

    tagged ``raises-exception`` so that the notebook still runs top to bottom; markdown
    inside solutions is removed. Raises ``ValueError`` if the notebook breaks the
    convention (:func:`exercise_problems`).
    """
    problems = exercise_problems(nb)
    if problems:
        raise ValueError("the notebook breaks the exercise convention: " + "; ".join(problems))
    out = copy.deepcopy(nb)
    cells = []
    for i, cell, label in _walk(nb):
        if cell["cell_type"] == "markdown":
            text, _ = _strip_solution_text(_source(cell), label)
            if text.strip():
                new = copy.deepcopy(cell)
                new["source"] = text.splitlines(keepends=True)
                cells.append(new)
        elif cell["cell_type"] == "code" and label is not None:
            _, checks = _split_check_lines(_source(cell))
            body = [f"# Exercise {label}: YOUR CODE HERE",
                    f'raise NotImplementedError("Exercise {label}: write your solution, '
                    'then delete this line.")'] + checks
            cells.append(_code_cell("\n".join(body), [STUB_TAG], f"stub-{i}"))
        else:
            cells.append(copy.deepcopy(cell))
    out["cells"] = cells
    return out


def nbgrader_notebook(nb: dict, chapter: str) -> dict:
    """An nbgrader *source* notebook of a chapter.

    Solution code cells become nbgrader solution cells (their code between
    ``### BEGIN SOLUTION`` and ``### END SOLUTION``, so ``generate_assignment`` replaces it
    with ``# YOUR CODE HERE``); the ``exercises.check_*`` calls of a solution move into a
    read-only autograded test cell right after it, worth :data:`CHECK_POINTS` each.
    Solution text is removed (the book keeps the worked explanations). Every other cell
    is marked read-only so students cannot edit the chapter's code under the tests.
    """
    student_text = student_notebook(nb)  # validates the convention
    del student_text
    cells = []
    for i, cell, label in _walk(nb):
        if cell["cell_type"] == "markdown":
            text, _ = _strip_solution_text(_source(cell), label)
            if text.strip():
                new = copy.deepcopy(cell)
                new["source"] = text.splitlines(keepends=True)
                cells.append(new)
            continue
        if cell["cell_type"] != "code":
            cells.append(copy.deepcopy(cell))
            continue
        if label is None:
            new = copy.deepcopy(cell)
            new.setdefault("metadata", {})["nbgrader"] = {
                "grade": False, "solution": False, "locked": True, "task": False,
                "grade_id": f"{chapter}-cell-{i}", "schema_version": 3}
            cells.append(new)
            continue
        body, checks = _split_check_lines(_source(cell))
        code = "### BEGIN SOLUTION\n" + body + "\n### END SOLUTION"
        cells.append(_code_cell(code, [], f"solution-{i}", {"nbgrader": {
            "grade": False, "solution": True, "locked": False, "task": False,
            "grade_id": f"{chapter}-{label}-solution-{i}", "schema_version": 3}}))
        for k, check in enumerate(checks):
            name = _CHECK_LINE.match(check).group("name")
            test = (f"from lossbook import exercises\nfrom lossbook.exercises import {name}"
                    f"\n\n{check}")
            cells.append(_code_cell(test, [], f"test-{i}-{k}", {"nbgrader": {
                "grade": True, "solution": False, "locked": True, "task": False,
                "points": CHECK_POINTS, "grade_id": f"{chapter}-{label}-check-{k}",
                "schema_version": 3}}))
    out = copy.deepcopy(nb)
    out["cells"] = cells
    return out


def _chapters(root: Path) -> list[Path]:
    paths = sorted((Path(root) / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(
            f"no chapter notebooks under {Path(root) / 'notebooks'}; run this from the "
            "repository root or pass --root."
        )
    return paths


def _write_nb(nb: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


_STUDENT_README = """# lossbook coursework: student notebooks

These are the chapters of the lossbook book with the exercise solutions removed. Each
exercise has a code cell that starts with `# YOUR CODE HERE` and a line
`raise NotImplementedError(...)`: write your solution there and delete that line.

Where an exercise has an automatic check, the cell ends with a call such as
`exercises.check_psnr(my_psnr)`. It tests your answer on fresh random cases every time
you run it and tells you what is likely wrong; passing it does not replace explaining
your reasoning.

Run the notebooks on Colab (Runtime > Change runtime type > GPU) or locally; the first
cell installs and sets up `lossbook`. `LOSSBOOK_BUDGET=smoke` runs everything tiny (to
check that the code runs), `cpu` and `gpu` give real results.
"""


def write_student_versions(out: str | Path, root: str | Path = ".") -> list[Path]:
    """Write the student version of every chapter under ``out`` (plus a README)."""
    out = Path(out)
    written = []
    for path in _chapters(Path(root)):
        nb = json.loads(path.read_text())
        try:
            student = student_notebook(nb)
        except ValueError as err:
            raise ValueError(f"{path.name}: {err}") from None
        _write_nb(student, out / path.name)
        written.append(out / path.name)
    (out / "README.md").write_text(_STUDENT_README)
    return written


_NBGRADER_CONFIG = '''"""nbgrader configuration of the lossbook course (written by
`python -m lossbook coursework nbgrader`)."""

c = get_config()  # noqa: F821 - provided by nbgrader

c.CourseDirectory.course_id = "lossbook"
c.CourseDirectory.root = "."
# Chapters train small networks: give each notebook time at the chosen budget
# (LOSSBOOK_BUDGET=smoke for a quick run, cpu or gpu for real results).
c.ExecutePreprocessor.timeout = 1800
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE\\nraise NotImplementedError()",
}
'''


def write_nbgrader_course(course: str | Path, root: str | Path = ".",
                          chapters: list[str] | None = None) -> list[Path]:
    """Write an nbgrader source course: ``COURSE/source/<chapter>/<chapter>.ipynb`` and
    ``COURSE/nbgrader_config.py``. ``chapters`` selects notebook stems (default: all)."""
    course = Path(course)
    written = []
    for path in _chapters(Path(root)):
        if chapters is not None and path.stem not in chapters:
            continue
        nb = json.loads(path.read_text())
        try:
            source = nbgrader_notebook(nb, path.stem)
        except ValueError as err:
            raise ValueError(f"{path.name}: {err}") from None
        target = course / "source" / path.stem / path.name
        _write_nb(source, target)
        written.append(target)
    if chapters is not None and not written:
        raise ValueError(f"no chapter matches {chapters}; chapters are notebook names such as "
                         "01_pixel_losses.")
    (course / "nbgrader_config.py").write_text(_NBGRADER_CONFIG)
    return written
