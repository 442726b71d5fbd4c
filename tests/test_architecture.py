"""Dependencies run one way: core <- data <- tflite <- training; every module imports on its own."""
import ast
import pathlib

import pytest
from fresh import fresh_python

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "pea_keras"
# Layer of each part of the package; a module may import only from its own layer or lower ones.
LAYERS = {"core": 0, "data": 1, "tflite": 2, "training": 3}


def _layer(module):
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        yield name, path


def _import_statements(name, path):
    """(module, names) of every import in the file, relative ones made absolute."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((a.name, ()) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            yield base, tuple(a.name for a in node.names)


def _imports(name, path):
    for base, names in _import_statements(name, path):
        yield base
        yield from (f"{base}.{n}" for n in names)


@pytest.mark.parametrize("name, path", list(_modules()), ids=[n for n, _ in _modules()])
def test_imports_run_one_way(name, path):
    upward = sorted({m for m in _imports(name, path)
                     if m.startswith("pea_keras.") and _layer(m) > _layer(name)})
    assert not upward, f"{name} ({list(LAYERS)[_layer(name)]}) imports {upward}"


def test_every_module_imports_alone_in_dependency_order():
    names = sorted((n for n, _ in _modules() if not n.endswith(("_worker", "__main__"))), key=lambda n: (_layer(n), n))
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    fresh_python(code, *names)


def _module_graph():
    """Module -> the package modules it imports anywhere in its code; `from pkg import sub`
    is an import of pkg.sub alone, as Python runs it (pkg's __init__ is already loaded)."""
    modules = dict(_modules())

    def owner(imported):  # The module (or package) an imported name lives in.
        while imported and imported not in modules:
            imported = imported.rpartition(".")[0]
        return imported

    graph = {}
    for name, path in modules.items():
        deps = set()
        for base, names in _import_statements(name, path):
            subs = {f"{base}.{n}" for n in names}
            deps |= subs & modules.keys()
            if not subs or subs - modules.keys():  # A name defined in base itself.
                deps.add(owner(base))
        graph[name] = deps - {name, ""}
    return graph


def test_no_module_imports_itself_through_others():
    graph = _module_graph()
    cycles = []

    def visit(node, path):
        for dep in sorted(graph[node]):
            if dep == path[0]:
                cycles.append(" -> ".join(path + [dep]))
            elif dep not in path and dep > path[0]:  # Each cycle once, from its smallest module.
                visit(dep, path + [dep])

    for start in sorted(graph):
        visit(start, [start])
    assert not cycles, "\n".join(cycles)
