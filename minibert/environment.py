"""Is Python importing this project's packages, or other packages that have the same names?

This distribution installs four top-level packages, and their names are not unique: HIPS's `autograd` is a PyPI
package too, and so is one with the name of the method package above this one (README, "Package names").
When such a package is installed in the same environment, `import autograd` may find it instead of this
project's, and the failure surfaces later as a puzzling ImportError from inside the other package. `check_packages`
turns that into one error at import time: which name, where Python found it, which distribution installed it,
and what to do.

It only compares where Python finds each package with where this project's copy lives (beside this one): finding
a module spec imports nothing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # the folder that holds this project's packages


def _locations(name: str) -> list:
    spec = importlib.util.find_spec(name)
    if spec is None:
        return []
    if spec.submodule_search_locations:  # a package (or a namespace package: a folder without __init__.py)
        return [Path(p).resolve() for p in spec.submodule_search_locations]
    return [Path(spec.origin).resolve()] if spec.origin else []


def _distributions(name: str) -> str:
    """The installed distributions that provide top-level `name`, other than this project's (slow; errors only)."""
    try:
        from importlib.metadata import packages_distributions

        provided = packages_distributions()
    except Exception:  # metadata is a courtesy here; the error must still be raised
        return ""
    ours = set(provided.get(Path(__file__).resolve().parent.name, []))
    others = sorted(set(provided.get(name, [])) - ours)
    return f" (installed by the distribution {', '.join(others)})" if others else ""


def shadowed(names) -> list:
    """[(name, where Python finds it)] for each of `names` that does not resolve to this project's copy."""
    found = []
    for name in names:
        locations = _locations(name)
        if (HERE / name).resolve() not in locations:
            found.append((name, ", ".join(str(p) for p in locations) or "nowhere"))
    return found


def source_tree_packages() -> tuple:
    """This project's packages when it runs from its source tree (a clone, `pip install -e .`): the folders beside
    this one that hold an __init__.py. Empty in site-packages, where every installed package is a neighbour."""
    if HERE.name in ("site-packages", "dist-packages"):
        return ()
    return tuple(sorted(p.name for p in HERE.iterdir() if (p / "__init__.py").is_file()))


def check_packages(names):
    """Raise ImportError naming every package of `names` that Python would import from somewhere other than this
    project, with where it was found and what to do."""
    wrong = shadowed(names)
    if not wrong:
        return
    lines = [f"`import {name}` finds {where}{_distributions(name)}, not this project's {HERE / name}"
             for name, where in wrong]
    raise ImportError(
        "another package has the name of one of this project's packages: " + "; ".join(lines) + ". Install this "
        "project in a virtual environment of its own (python -m venv .venv && .venv/bin/pip install -e .), "
        "without that package, and run from there (README, 'Package names'). A folder of that name without "
        "__init__.py on sys.path (e.g. the current directory) shadows it too: run from another directory, or "
        "with `python -m`.")
