"""lossbook.viz.glue writes what myst-nb's glue writes, without needing myst-nb."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

myst_glue = pytest.importorskip("myst_nb.ext.glue")


def _run(cells: list[str]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return nb


def test_same_output_as_myst_nb_and_found_by_its_reader():
    nb = _run([
        "from myst_nb import glue as reference\nreference('x', 1.2345, display=False)",
        "from lossbook.viz import glue\nglue('x2', 1.2345)",
        "glue('shown', 'text', display=True)",
    ])
    ref, ours, shown = (cell.outputs[0] for cell in nb.cells)
    assert ours.data == ref.data and ours.output_type == ref.output_type
    assert ours.metadata["scrapbook"] == {"name": "x2",
                                          "mime_prefix": ref.metadata["scrapbook"]["mime_prefix"]}
    found = dict(myst_glue.extract_glue_data_cell(nb.cells[1]))
    assert set(found) == {"x2"}
    assert "text/plain" in shown.data  # display=True shows the value too


def test_outside_ipython_it_does_nothing():
    from lossbook.viz import glue

    assert glue("nothing", 3.0) is None
