"""The package's shape: layers import only downwards, no import cycles, small modules.

ARCHITECTURE.md states these rules; this test is what keeps them true. Imports under
`if TYPE_CHECKING:` are annotations only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "etl_assets"

# The layers, lowest first. A module may import its own layer and the ones below it.
LAYERS: dict[str, int] = {
    "core": 0, "dagster_internal": 0,
    "spec": 1,
    "sources": 2, "transform": 2, "quality": 2, "io": 2,
    "warehouses": 3,
    "report": 4,
    "ops": 5,
    "orchestration": 6,
    "definitions": 7,
    "cli": 8, "api": 8, "dev": 8,
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# Optional or heavy dependencies a function may import lazily (each such import has a comment).
LAZY_OK = ("great_expectations", "chdb", "clickhouse_connect", "matplotlib", "oracledb", "pymssql",
           "dagster_celery", "celery", "playwright", "uvicorn", "openlineage", "rich")
# The private-API adapter's scheduler entry point loads Dagster's daemon and workspace machinery
# (seconds of imports) that no other importer of that module needs.
# Lineage loads its event builder (the one module importing openlineage) only when configured.
LAZY_OK_IN = {"etl_assets.dagster_internal": ("dagster._core", "dagster._scheduler"),
              "etl_assets.ops.lineage": ("etl_assets.ops.lineage_events",)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


class _Imports(ast.NodeVisitor):
    """Every runtime import of a module: (imported module, line, inside a function?)."""

    def __init__(self, name: str, is_package: bool) -> None:
        self.name, self.is_package = name, is_package
        self.found: list[tuple[str, int, bool]] = []
        self.depth = 0

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, node.lineno, self.depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve(self.name, self.is_package, node)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            self.found.append((full if full in MODULES else base, node.lineno, self.depth > 0))


def imports_of(name: str) -> list[tuple[str, int, bool]]:
    path = MODULES[name]
    visitor = _Imports(name, path.name == "__init__.py")
    visitor.visit(ast.parse(path.read_text(), str(path)))
    return visitor.found


def _own(target: str) -> str | None:
    """The etl_assets module an import names (a name imported from a module maps to it)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name in MODULES:
        for target, _, _ in imports_of(name):
            own = _own(target) if target.startswith("etl_assets") else None
            if own and own != name:
                edges.setdefault(name, set()).add(own)
    return edges


def layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else max(LAYERS.values()) + 1


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(MODULES) | set(edges)):
        if v not in index:
            visit(v)
    return found


def test_every_subpackage_has_a_layer() -> None:
    top = {name.split(".")[1] for name in MODULES if "." in name}
    assert top <= set(LAYERS), f"sub-packages without a layer in this test: {sorted(top - set(LAYERS))}"


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_layers_import_only_downwards() -> None:
    upward = [f"{m} -> {t}" for m, targets in sorted(graph().items()) for t in sorted(targets)
              if layer(t) > layer(m)]
    assert upward == []


def test_functions_import_only_optional_heavy_dependencies() -> None:
    lazy = [f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} imports {target}"
            for m in MODULES for target, line, in_function in imports_of(m)
            if in_function and not target.startswith(LAZY_OK + LAZY_OK_IN.get(m, ()))]
    assert lazy == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_are_small(name: str) -> None:
    source = MODULES[name].read_text()
    lines = len(source.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == [], f"{name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_checker_sees_a_cycle_and_an_upward_import() -> None:
    """The rules above can fail: a made-up two-module cycle and a core → cli import are caught."""
    assert cycles({"etl_assets.core.a": {"etl_assets.core.b"}, "etl_assets.core.b": {"etl_assets.core.a"}}) == [
        ["etl_assets.core.a", "etl_assets.core.b"]
    ]
    assert layer("etl_assets.cli.main") > layer("etl_assets.core.settings")
