"""The code's shape, enforced: layers import downwards only, no import cycle, no function over 60 lines.

Read from the source with ``ast`` (imports inside functions count too), so a regression fails here rather
than in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ddl_commodity"
MAX_FUNCTION_LINES = 60
#: The packages from the bottom up: a module may import its own package and the layers below its own, never
#: a layer above or a package beside it in the same layer (docs/development.md shows the same table).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "rpc", "summary"),
    ("runs",),
    ("ps",),
    ("config",),
    ("resources",),
    ("data", "models"),
    ("monitor",),
    ("artifacts",),
    ("experiments",),
    ("runtime",),
    ("cluster", "engines"),
    ("launch",),
    ("planner", "report"),
    ("reproduce",),
    ("cli",),
)
LAYER_OF = {package: i for i, layer in enumerate(LAYERS) for package in layer}
#: The package root re-exports the public API (``ddl_commodity.run``) and may import anything.
ROOT = ""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every ``ddl_commodity`` module ``path`` imports, at any depth of the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ddl_commodity"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("ddl_commodity"))
    return out


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: {m for m in imports(p) if m in MODULES and m != name} for name, p in MODULES.items()}


def package_of_module(name: str) -> str:
    return name.split(".")[1] if "." in name else ROOT


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module from a package at its own layer or above (other than its own package)."""
    problems = []
    for name, deps in graph.items():
        package = package_of_module(name)
        if package == ROOT:
            continue
        for dep in deps:
            target = package_of_module(dep)
            if target != package and (target == ROOT or LAYER_OF[target] >= LAYER_OF[package]):
                problems.append(f"{name} imports {dep}")
    return sorted(problems)


def find_cycles(graph: dict[str, set[str]], package_of=lambda m: m.rpartition(".")[0]) -> list[str]:
    """Every back edge of a depth-first walk, as ``a -> b -> a`` (importing one's own package is allowed)."""
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[str] = []

    def visit(node: str) -> None:
        visiting.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep == package_of(node):
                continue
            if dep in visiting:
                cycles.append(" -> ".join([*visiting[visiting.index(dep):], dep]))
            elif dep not in done:
                visit(dep)
        visiting.pop()
        done.add(node)

    for name in sorted(graph):
        if name not in done:
            visit(name)
    return cycles


def test_every_package_has_a_layer() -> None:
    packages = {package_of_module(name) for name in MODULES} - {ROOT}
    assert packages <= set(LAYER_OF), f"packages without a layer: {sorted(packages - set(LAYER_OF))}"
    assert set(LAYER_OF) <= packages, f"layers naming no package: {sorted(set(LAYER_OF) - packages)}"


def test_lower_layers_import_nothing_from_higher_ones() -> None:
    problems = layer_violations(GRAPH)
    assert not problems, "\n".join(problems)


def test_no_import_cycle() -> None:
    cycles = find_cycles(GRAPH)
    assert not cycles, "\n".join(cycles)


def test_the_checks_see_violations() -> None:
    """Neither check is vacuous: planted violations are found, and the real graph is the package's."""
    assert find_cycles({"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}}) == ["p.a -> p.b -> p.c -> p.a"]
    planted = {"ddl_commodity.ps.x": {"ddl_commodity.cli"}}
    assert layer_violations(planted) == ["ddl_commodity.ps.x imports ddl_commodity.cli"]
    assert "ddl_commodity.experiments.registry" in GRAPH["ddl_commodity.runtime.node"]


def _functions() -> list[tuple[str, int]]:
    out = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append((f"{name}.{node.name} (line {node.lineno})", node.end_lineno - node.lineno + 1))
    return out


def test_no_function_over_60_lines() -> None:
    long = [f"{where}: {n} lines" for where, n in _functions() if n > MAX_FUNCTION_LINES]
    assert not long, "\n".join(long)
