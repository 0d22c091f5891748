"""The shape of the code, checked: no import circles, a core without Qt widgets, pages that do not know the window."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
BENCHMARKS = ROOT / "benchmarks"
PACKAGES = (APP, BENCHMARKS)
CORE = ("app.engine", "app.models", "app.docs", "app.store", "app.errors", "app.paths")
PAGES = ("chat", "models", "documents", "tools", "settings")
UI_TOP_LEVEL_MAX = 6  # __init__, main, window, status, autopilot, platform_check: the rest lives in a page's package


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(packages: tuple[Path, ...] = (APP,)) -> dict[str, Path]:
    return {module_name(p): p for package in packages for p in package.rglob("*.py")}


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every known module this file imports, anywhere in it (functions and TYPE_CHECKING blocks too).

    Imports inside functions count: a circle through a function-level import
    still ties both modules together (``benchmarks/__main__`` and
    ``benchmarks/kv_reuse`` once imported each other that way).
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for imported in names:
            name = imported
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and "." in name:  # a module of a package, not the bare package name
                found.add(name)
    return found


def graph(packages: tuple[Path, ...] = (APP,)) -> dict[str, set[str]]:
    known = modules(packages)
    return {name: imports(path, known) - {name} for name, path in known.items()}


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
        for w in edges.get(v, ()):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_graph_sees_imports_inside_functions() -> None:
    edges = graph(PACKAGES)
    assert "app.ui.main" in edges["app.cli"]  # imported inside a function, to start the window on demand
    assert "benchmarks.peer" in edges["benchmarks.kv_reuse"]


def test_no_import_circles_in_app_and_benchmarks() -> None:
    assert cycles(graph(PACKAGES)) == []


def test_ui_is_grouped_by_page() -> None:
    """A handful of modules at the top of ``app/ui`` (start-up, the window, its status bar, the
    autopilot); everything a page owns lives in that page's package."""
    top = sorted(p.name for p in (APP / "ui").glob("*.py"))
    assert len(top) <= UI_TOP_LEVEL_MAX, top
    for page in PAGES:
        assert (APP / "ui" / page / "__init__.py").is_file(), page


def test_the_core_never_imports_qt_widgets() -> None:
    for name, path in modules().items():
        if name.startswith(CORE):
            text = path.read_text(encoding="utf-8")
            assert "QtWidgets" not in text, f"{name} imports Qt widgets"
            assert "QtGui" not in text, f"{name} imports Qt GUI classes"


def test_no_page_references_the_window() -> None:
    """Pages report to the message bridge and navigate by signals; only the app's start-up code and
    the autopilot that drives the whole window know :class:`MainWindow`."""
    users = {name for name, deps in graph().items() if "app.ui.window" in deps}
    assert users <= {"app.ui.main", "app.ui.autopilot", "app.selftest"}, users


def test_window_only_assembles() -> None:
    assert len((APP / "ui" / "window.py").read_text(encoding="utf-8").splitlines()) < 400
