"""Maintenance of the chapter notebooks: the shared setup cell and storage rules.

The first code cell of every chapter is generated from the repository URL in
``_config.yml`` so that it is identical everywhere; ``python -m lossbook
sync-notebooks`` rewrites it (and strips outputs), and the tests fail when a
notebook drifts. This module is for the book's maintainers; chapters never import it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["INSTALL_ENV", "repository_url", "setup_cell_source", "sync_notebook",
           "notebook_problems"]

SETUP_TAG = "setup"
#: On Colab the setup cell installs ``lossbook @ git+<repository>``; this environment
#: variable, when set, names another pip requirement instead (CI points it at the wheel
#: it has just built, see .ci/colab_check.py).
INSTALL_ENV = "LOSSBOOK_INSTALL"


def repository_url(config_path: Path) -> str:
    """Read ``repository.url`` from a jupyter-book ``_config.yml``."""
    text = Path(config_path).read_text()
    block = re.search(r"^repository:\s*\n((?:[ \t]+.*\n?)+)", text, re.M)
    if block is None:
        raise ValueError(f"{config_path} has no 'repository:' block with a url.")
    url = re.search(r"^\s+url:\s*['\"]?([^'\"\s#]+)", block.group(1), re.M)
    if url is None:
        raise ValueError(f"{config_path}: 'repository:' block has no 'url:' entry.")
    return url.group(1).rstrip("/")


def setup_cell_source(repo_url: str) -> str:
    """The source of the setup cell shared by every chapter."""
    return (
        "# Setup (the same in every chapter). On Colab, install lossbook from the\n"
        "# repository (or from LOSSBOOK_INSTALL, e.g. a wheel); everywhere, seed the\n"
        "# random generators and pick the device.\n"
        "import os\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    install_from = os.environ.get("{INSTALL_ENV}",\n'
        f'                                  "lossbook @ git+{repo_url}")\n'
        '    %pip install -q "{install_from}"\n'
        "\n"
        "import lossbook\n"
        "\n"
        "device = lossbook.setup(seed=0)"
    )


def _first_code_cell(nb: dict) -> dict | None:
    return next((c for c in nb["cells"] if c["cell_type"] == "code"), None)


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def sync_notebook(path: Path, repo_url: str) -> bool:
    """Make ``path``'s first code cell the setup cell and strip outputs. True if changed."""
    path = Path(path)
    raw = path.read_text()
    nb = json.loads(raw)
    want = setup_cell_source(repo_url)
    first = _first_code_cell(nb)
    setup_cell = {
        "cell_type": "code",
        "execution_count": None,
        "id": "setup",
        "metadata": {"tags": [SETUP_TAG]},
        "outputs": [],
        "source": want.splitlines(keepends=True),
    }
    if first is None:
        nb["cells"].insert(0, setup_cell)
    elif _source(first) != want or SETUP_TAG not in first.get("metadata", {}).get("tags", []):
        first.clear()
        first.update(setup_cell)
    nb.get("metadata", {}).pop("jupytext", None)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != raw:
        path.write_text(new)
        return True
    return False


def notebook_problems(path: Path, repo_url: str) -> list[str]:
    """Storage-rule violations of one notebook (empty list when it is clean)."""
    nb = json.loads(Path(path).read_text())
    problems = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {i} has stored outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {i} has an execution count")
    first = _first_code_cell(nb)
    if first is None or _source(first) != setup_cell_source(repo_url):
        problems.append("the first code cell is not the shared setup cell")
    return problems
