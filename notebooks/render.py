"""Render the teaching notebooks: each jupytext percent-format source `NN_*.py` becomes `NN_*.ipynb`, executed
top to bottom in a Jupyter kernel, with its outputs and figures stored.

    python notebooks/render.py            # execute every notebook and write its .ipynb
    python notebooks/render.py 03 05      # only the notebooks whose names start with 03 or 05
    python notebooks/render.py --check    # execute every notebook, write nothing; exit 1 if any fails (CI)
    python notebooks/render.py --text 05  # only markdown changed: copy it into the .ipynb, keep the outputs

Needs the `notebooks` extra: pip install -e ".[notebooks]". Notebooks run with notebooks/ as the working
directory, as when a reader opens them in Jupyter. tests/test_notebooks.py fails when a source and its
.ipynb disagree, so edit the .py, then render.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def sources(prefixes=()) -> list[Path]:
    """The notebook sources, in reading order: notebooks/NN_*.py."""
    found = sorted(HERE.glob("[0-9][0-9]_*.py"))
    return [p for p in found if not prefixes or any(p.name.startswith(x) for x in prefixes)]


def execute(source: Path, timeout: int = 1200):
    """The notebook read from `source` by jupytext, executed; raises CellExecutionError on a failing cell."""
    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(HERE)}})
    client.execute()
    return nb


def update_text(source: Path):
    """The rendered notebook with the markdown cells of `source` and its own executed code cells; refused
    (ValueError) unless the code cells are exactly the source's, in the same order."""
    new = jupytext.read(source)
    old = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    new_code = [c.source for c in new.cells if c.cell_type == "code"]
    old_code = [c.source for c in old.cells if c.cell_type == "code"]
    if new_code != old_code:
        raise ValueError(f"{source.name}: code cells changed since the last render; execute it: "
                         f"python notebooks/render.py {source.name[:2]}")
    executed = iter(c for c in old.cells if c.cell_type == "code")
    old.cells = [next(executed) if c.cell_type == "code" else c for c in new.cells]
    return old


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefixes", nargs="*", help="only notebooks whose file names start with these")
    parser.add_argument("--check", action="store_true", help="execute only; write nothing; exit 1 on a failure")
    parser.add_argument("--text", action="store_true",
                        help="no execution: copy changed markdown into the .ipynb (refused if a code cell changed)")
    args = parser.parse_args(argv)
    paths = sources(args.prefixes)
    if not paths:
        print(f"no notebook sources match {args.prefixes}", file=sys.stderr)
        return 2
    if args.text:
        for source in paths:
            try:
                nbformat.write(update_text(source), source.with_suffix(".ipynb"))
            except ValueError as err:
                print(err, file=sys.stderr)
                return 1
            print(f"updated the markdown of {source.with_suffix('.ipynb').name}")
        return 0
    passed, failed, total = 0, 0, 0.0
    for source in paths:
        start = time.perf_counter()
        try:
            nb = execute(source)
        except CellExecutionError as err:
            failed += 1
            print(f"FAILED {source.name} after {time.perf_counter() - start:.0f} s\n{err}", flush=True)
            continue
        seconds = time.perf_counter() - start
        total += seconds
        passed += 1
        if args.check:
            print(f"ran {source.name} in {seconds:.0f} s", flush=True)
        else:
            target = source.with_suffix(".ipynb")
            nbformat.write(nb, target)
            print(f"rendered {target.name} in {seconds:.0f} s ({target.stat().st_size / 1024:.0f} KB)", flush=True)
    print(f"notebooks: {passed} passed, {failed} failed ({total:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
