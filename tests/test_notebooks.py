"""The teaching notebooks: every jupytext source `notebooks/NN_*.py` has a rendered `NN_*.ipynb` with the same
cells, executed, with its outputs and figures.

Executing the notebooks takes minutes, so the plain test suite only checks that each source and its rendered
notebook agree; CI executes every source in a kernel as a separate step (`.ci/run`:
`python notebooks/render.py --check`, a failing cell fails CI). `MINIBERT_RUN_NOTEBOOKS=1` also runs each
source here as a plain script.

The check reads the source with jupytext itself (a test dependency), the same reader that renders it, so the
two cannot disagree about where a cell starts or how a markdown comment is unescaped.
"""

import os
import subprocess
import sys

import jupytext
import nbformat
import pytest
from helpers import ROOT

NOTEBOOKS = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
MAX_RENDERED_BYTES = 600_000  # figures at modest dpi; a rendered notebook is read in the browser


def cells(nb) -> list:
    """(cell type, source) of every cell: what a reader reads and runs, without outputs or metadata."""
    return [(c.cell_type, c.source) for c in nb.cells]


def test_there_are_notebooks_in_reading_order():
    assert [p.name[:2] for p in SOURCES] == [f"{i:02d}" for i in range(1, len(SOURCES) + 1)]
    assert len(SOURCES) >= 5


def test_every_rendered_notebook_has_its_source():
    orphans = [p.name for p in NOTEBOOKS.glob("*.ipynb") if not p.with_suffix(".py").is_file()]
    assert not orphans, f"rendered notebooks without a source: {orphans}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_rendered_notebook_matches_its_source(source):
    rendered = source.with_suffix(".ipynb")
    assert rendered.is_file(), f"{rendered.name} is missing: run python notebooks/render.py {source.name[:2]}"
    expected, actual = cells(jupytext.read(source)), cells(nbformat.read(rendered, as_version=4))
    for i, (want, got) in enumerate(zip(expected, actual)):
        assert want == got, (f"cell {i} of {rendered.name} differs from {source.name}: re-render with "
                             f"python notebooks/render.py {source.name[:2]}\n"
                             f"--- source:\n{want[1]}\n--- rendered:\n{got[1]}")
    assert len(expected) == len(actual), (f"{source.name} has {len(expected)} cells, {rendered.name} "
                                          f"{len(actual)}: re-render with python notebooks/render.py {source.name[:2]}")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_rendered_notebook_was_executed_without_errors(source):
    rendered = source.with_suffix(".ipynb")
    nb = nbformat.read(rendered, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
        f"{rendered.name} was not executed top to bottom in one run"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{rendered.name} holds an error: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    figures = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert figures >= 1, f"{rendered.name} holds no figure"
    assert rendered.stat().st_size <= MAX_RENDERED_BYTES, \
        f"{rendered.name} is {rendered.stat().st_size:,} bytes; lower the figures' dpi"


@pytest.mark.skipif(os.environ.get("MINIBERT_RUN_NOTEBOOKS") != "1",
                    reason="CI executes the notebooks in .ci/run (python notebooks/render.py --check); "
                           "set MINIBERT_RUN_NOTEBOOKS=1 to run them here as scripts")
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_notebook_runs_as_a_script(source):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, str(source)], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                            env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
