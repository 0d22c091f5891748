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


# -- tests that cannot fail ---------------------------------------------------------------------

TESTS = Path(__file__).resolve().parent
BROAD = {"Exception", "BaseException", "AssertionError"}
CLOCKS = {"monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "time", "time_ns", "process_time", "now"}


def _names(node: ast.expr | None) -> set[str]:
    """The class names an ``except`` clause or ``suppress(...)`` names (``None``: a bare except)."""
    if node is None:
        return {"BaseException"}
    if isinstance(node, ast.Tuple):
        return set().union(*(_names(e) for e in node.elts))
    if isinstance(node, ast.Attribute):
        return {node.attr}
    if isinstance(node, ast.Name):
        return {node.id}
    return set()


def _reraises(handler: ast.ExceptHandler) -> bool:
    return bool(handler.body) and isinstance(handler.body[-1], ast.Raise) and handler.body[-1].exc is None


def _asserts(body: list[ast.stmt]) -> list[ast.Assert]:
    return [n for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.Assert)]


def _is_clock(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    fn = node.func
    name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
    return name in CLOCKS


def swallowed_asserts(tree: ast.AST) -> list[int]:
    """Lines of ``assert`` statements whose failure a handler would swallow: in the body of a ``try``
    whose ``except`` is bare or catches Exception, BaseException or AssertionError (and does not
    re-raise), or inside ``with suppress(...)`` of one of those."""
    found: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Try | ast.TryStar):
            if any(_names(h.type) & BROAD and not _reraises(h) for h in node.handlers):
                found += [a.lineno for a in _asserts(node.body)]
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                ctx = item.context_expr
                if (isinstance(ctx, ast.Call) and "suppress" in _names(ctx.func)
                        and set().union(*(_names(a) for a in ctx.args)) & BROAD):
                    found += [a.lineno for a in _asserts(node.body)]
    return sorted(found)


def timed_asserts(tree: ast.AST) -> list[int]:
    """Lines of ``assert`` statements that read the clock: a clock call in the assertion, or a name
    bound (in the same function) to an expression that reads it, such as ``elapsed = time.monotonic() - t0``."""
    found: list[int] = []
    scopes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module)]
    for scope in scopes:
        timed: set[str] = set()
        statements = [n for n in ast.walk(scope) if isinstance(n, ast.Assign | ast.AnnAssign | ast.AugAssign)]
        for _ in range(3):  # names bound from names bound from the clock
            for stmt in statements:
                value = stmt.value
                if value is not None and any(_is_clock(n) or (isinstance(n, ast.Name) and n.id in timed)
                                             for n in ast.walk(value)):
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                    timed |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        for node in ast.walk(scope):
            if isinstance(node, ast.Assert) and any(
                    _is_clock(n) or (isinstance(n, ast.Name) and n.id in timed) for n in ast.walk(node.test)):
                found.append(node.lineno)
    return sorted(set(found))


def test_the_checker_finds_asserts_that_cannot_fail() -> None:
    swallowed = ast.parse(
        "try:\n    assert a\nexcept Exception:\n    pass\n"  # 2
        "try:\n    f()\nexcept:\n    pass\nelse:\n    assert b\n"  # else: fine
        "try:\n    assert c\nexcept (ValueError, AssertionError):\n    pass\n"  # 12
        "try:\n    assert d\nexcept ValueError:\n    pass\n"  # a narrow handler: fine
        "try:\n    assert e\nexcept BaseException:\n    cleanup()\n    raise\n"  # re-raised: fine
        "with contextlib.suppress(Exception):\n    assert f\n"  # 25
        "try:\n    assert g\nexcept:\n    pass\n"  # 27
    )
    assert swallowed_asserts(swallowed) == [2, 12, 25, 27]
    timed = ast.parse(
        "def t():\n"
        "    started = time.monotonic()\n"
        "    assert time.monotonic() - started < 5\n"  # 3
        "    elapsed = time.perf_counter() - started\n"
        "    assert elapsed < 1\n"  # 5
        "    assert stats.total_s > 0\n"  # a figure the code measured: fine
        "    deadline = started + 30\n"
        "    while time.monotonic() < deadline:\n"  # a bounded wait, not an assertion: fine
        "        pass\n"
        "    assert monotonic() < deadline\n"  # 10
    )
    assert timed_asserts(timed) == [3, 5, 10]


def test_no_test_swallows_its_own_assertions_or_times_itself() -> None:
    """A failed ``assert`` inside ``try: … except Exception:`` is caught and the test passes; an
    assertion on the wall clock fails on a loaded machine and proves nothing on a fast one (speed
    goals are measured in ``benchmarks/``)."""
    problems = []
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(TESTS.parent)
        problems += [f"{rel}:{line}: assert inside a try that catches it" for line in swallowed_asserts(tree)]
        problems += [f"{rel}:{line}: timed assertion" for line in timed_asserts(tree)]
    assert problems == []
