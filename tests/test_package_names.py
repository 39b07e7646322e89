"""Another package named like one of ours (AdapterHub's `adapters`, HIPS's `autograd`) earlier on the path: importing
the project fails at once with one error naming the package, where it was found, and what to do."""

import os
import subprocess
import sys

import pytest

from minibert.environment import source_tree_packages


def import_in(tmp_path, statement, fake=None):
    """Run `statement` in a fresh interpreter whose path starts with tmp_path, where a package `fake` may live."""
    if fake:
        (tmp_path / fake).mkdir()
        (tmp_path / fake / "__init__.py").write_text("WHO = 'someone else'\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", statement], cwd=tmp_path, env=env, capture_output=True, text=True)


def test_the_project_imports_when_nothing_shadows_it(tmp_path):
    run = import_in(tmp_path, "import minibert_adapters, adapters, minibert; print(adapters.add_adapter.__name__)")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "add_adapter"


@pytest.mark.parametrize("fake, statement", [("adapters", "import minibert_adapters"),
                                             ("autograd", "import minibert_adapters"),
                                             ("autograd", "import minibert"),
                                             ("autograd", "import adapters")])
def test_a_shadowing_package_is_named_in_one_error(tmp_path, fake, statement):
    run = import_in(tmp_path, statement, fake)
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: another package has the name of one of this project's packages")
    assert f"`import {fake}` finds {tmp_path / fake}" in last
    assert "virtual environment of its own" in last


def test_from_a_source_tree_minibert_checks_every_package_of_the_project(tmp_path):
    """README order: `from minibert import ...` first, then `from adapters import ...` would reach AdapterHub."""
    if not source_tree_packages():
        pytest.skip("installed into site-packages: only the packages below minibert are checked there")
    assert {"autograd", "minibert", "adapters", "minibert_adapters"} <= set(source_tree_packages())
    run = import_in(tmp_path, "from minibert import BertModel", "adapters")
    assert run.returncode != 0 and f"`import adapters` finds {tmp_path / 'adapters'}" in run.stderr
