"""The layers go one way: autograd <- minibert <- adapters <- minibert_adapters.

Every module's imports are read with `ast` (also those inside functions), so a late import cannot hide an
arrow that runs the wrong way. The model package must not know the method on top of it: no module of
`autograd` or `minibert` names adapters at all, and no module outside `adapters` decides anything by
adapter parameter names.
"""

import ast
from pathlib import Path

import pytest
from conftest import ROOT

LAYERS = ["autograd", "minibert", "adapters", "minibert_adapters"]  # each may import only those before it


def modules_of(package):
    return sorted((ROOT / package).rglob("*.py"))


def imported_packages(path: Path) -> set:
    """The top-level packages a module imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", LAYERS)
def test_imports_run_one_way(package):
    above = set(LAYERS[LAYERS.index(package) + 1:])
    wrong = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & above) for path in modules_of(package)}
    assert not {k: v for k, v in wrong.items() if v}, f"{package} imports a layer above it"


def test_the_import_reader_sees_late_and_dotted_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import adapters.io\n    from minibert_adapters import check\n")
    assert imported_packages(module) == {"adapters", "minibert_adapters"}


@pytest.mark.parametrize("package", ["autograd", "minibert"])
def test_the_engine_and_the_model_never_name_adapters(package):
    named = [str(p.relative_to(ROOT)) for p in modules_of(package)
             if "adapter" in p.read_text(encoding="utf-8").lower()]
    assert not named


@pytest.mark.parametrize("package", ["autograd", "minibert", "minibert_adapters"])
def test_no_rule_outside_adapters_reads_adapter_parameter_names(package):
    named = [str(p.relative_to(ROOT)) for p in modules_of(package) if ".adapters." in p.read_text(encoding="utf-8")]
    assert not named, "decide by adapters.policy (module type and role), not by parameter-name strings"
