"""The layers go one way: autograd <- minibert <- adapters <- minibert_adapters.

Every module's imports are read with `ast` (also those inside functions), so a late import cannot hide an
arrow that runs the wrong way. The model package must not know the method on top of it: no module of
`autograd` or `minibert` names adapters at all, and no module outside `adapters` decides anything by
adapter parameter names.
"""

import ast
from pathlib import Path

import pytest
from helpers import ROOT

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


def project_modules() -> dict:
    """{dotted module name: path} of every module of the four packages."""
    out = {}
    for package in LAYERS:
        for path in modules_of(package):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imported_modules(path: Path, known: dict) -> set:
    """The project modules a module imports, anywhere in it (`from a.b import c` counts a.b.c if it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found.update(n for n in names if n in known)
    return found


def import_cycle(graph: dict):
    """One cycle of the directed graph {node: set of nodes}, as a list, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_module_imports_itself_through_others():
    """No import circle anywhere in the library or the application, late imports included. A package's own
    __init__ importing its modules is not a circle of its modules: a module's import of its parent package is
    left out (Python runs the parent first in any case)."""
    known = project_modules()
    graph = {name: {m for m in imported_modules(path, known) if m != name and not name.startswith(m + ".")}
             for name, path in known.items()}
    assert import_cycle(graph) is None, " -> ".join(import_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b"}, "b": set()}) is None


BOTTLENECK_WORDS = ("bottleneck", "down.weight", "up.weight", "W_up", "W_down", "2MD")
# The kind's own package; the package __init__ that registers it; the defaults of files written before kinds had
# names.
BOTTLENECK_FILES = ("adapters/bottleneck/", "adapters/__init__.py", "adapters/compat.py")


def code_strings_and_names(path: Path) -> list:
    """Every string constant (docstrings left out), identifier and attribute name of a module's code."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            out.append(node.value)
        elif isinstance(node, ast.Name):
            out.append(node.id)
        elif isinstance(node, ast.Attribute):
            out.append(node.attr)
        elif isinstance(node, ast.alias):
            out.append(node.name)
    return out


@pytest.mark.parametrize("package", ["adapters", "minibert_adapters"])
def test_no_bottleneck_name_outside_the_bottleneck_kind(package):
    """The application and the generic adapter code ask the kind: no bottleneck size, tensor name or formula in
    their code (docstrings and comments may explain with it)."""
    found = {}
    for path in modules_of(package):
        rel = str(path.relative_to(ROOT))
        if rel.startswith(BOTTLENECK_FILES):
            continue
        words = sorted({w for text in code_strings_and_names(path) for w in BOTTLENECK_WORDS if w in text})
        if words:
            found[rel] = words
    assert not found, f"bottleneck names outside adapters/bottleneck/: {found}"
