"""The package layout: no import cycles among the modules of training/ and shared/.

Every module is parsed, not imported, so imports inside functions (the lazy ones that keep
`--help` fast) count as much as the ones at the top: a cycle through a function-level import
still fails the first time that function runs before its partner has finished loading.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("training", "shared")
# training/'s sub-packages hold modules, not an API: their __init__.py is one docstring, so
# importing one module never drags in (and never cycles back through) its siblings.
PLAIN_PACKAGES = ("training/data", "training/evaluation", "training/fairness", "training/falsify")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of PACKAGES (a package is its __init__)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, name: str, is_package: bool) -> list[str]:
    """The dotted names an import statement (or importlib.import_module("literal")) asks for."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            # Relative: level 1 is the package this module is in (a package's own __init__ is
            # in itself), each further level one package up.
            package = name.split(".") if is_package else name.split(".")[:-1]
            base_parts = package[: len(package) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        # `from pkg import sub` imports the module pkg.sub when there is one, else names of pkg.
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "import_module"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return [node.args[0].value]
    return []


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of PACKAGES it imports, anywhere in its body."""
    mods = modules(root)
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            wanted = _imported(node, name, is_package)
            if isinstance(node, ast.ImportFrom):
                base, *subs = wanted
                known = [s for s in subs if s in mods]
                # Names that are not modules are attributes of the base module.
                targets = known + ([base] if len(known) < len(subs) and base in mods else [])
            else:
                # `import a.b.c`: the deepest of a.b.c, a.b, a that is one of ours.
                targets = []
                for dotted in wanted:
                    prefixes = [dotted.rsplit(".", n)[0] for n in range(dotted.count(".") + 1)]
                    targets += [p for p in prefixes if p in mods][:1]
            graph[name].update(t for t in targets if t != name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> ... -> a) per back edge a depth-first walk meets; [] when there is none."""
    cycles, state, path = [], {}, []  # state: 1 on the current path, 2 done

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_graph_sees_relative_absolute_and_function_level_imports():
    graph = import_graph()
    assert "training.data.datasets" in graph["training.data.prepare"]  # relative, top level
    assert "training.models" in graph["training.evaluation.evaluate"]  # relative, in a function
    assert "training.falsify.psp" in graph["training.falsify.loader"]
    assert "training.models" in graph["training.train"]  # a package, by its __init__
    assert "shared.model" in graph["training.evaluation.calibration"]  # absolute
    # the interface imports no implementation, only the errors every command ends with
    assert graph["training.falsify.encoder"] == {"training.errors"}


def test_every_command_module_exists():
    """`python -m training` imports its commands by name, which no parse can follow."""
    from training.__main__ import COMMANDS

    assert set(COMMANDS.values()) <= modules().keys()


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    for cycle in cycles:
        print("import cycle:", " -> ".join(cycle))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("package", PLAIN_PACKAGES)
def test_sub_package_init_is_only_a_docstring(package):
    tree = ast.parse((ROOT / package / "__init__.py").read_text())
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr), (
        f"{package}/__init__.py should hold one docstring, not imports or re-exports"
    )


def test_helpers_live_on_their_floors():
    """Evaluation and export take a run's input spec from the model zoo, not from `train`; the
    views take per-source rates from calibration, not from `export`."""
    graph = import_graph()
    assert "training.train" not in graph["training.evaluation.evaluate"] | graph["training.export"]
    views = [m for m in graph if m.startswith("training.views")]
    assert views and not [m for m in views if "training.export" in graph[m]]
