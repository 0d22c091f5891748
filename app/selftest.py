"""``paddock --selftest --model PATH``: a headless smoke test of an installed or packaged Paddock.

Proves, without a screen and without touching the user's data, that the parts
a bundle can lose are there: Qt with its platform plugin (offscreen), the main
window, llama.cpp's shared libraries (a real load and a few generated tokens
in the engine child process), the document extractors (a PDF made here, read
in the isolated extraction process) and SQLite FTS5.  Prints one JSON object;
exit code 0 when every check passed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _check(report: dict[str, Any], name: str, fn: Any) -> None:
    started = time.perf_counter()
    try:
        detail = fn()
        report["checks"][name] = {"ok": True, "s": round(time.perf_counter() - started, 3), **(detail or {})}
    except Exception as exc:
        report["checks"][name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def run(model: str | None) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="paddock-selftest-") as home:
        os.environ["PADDOCK_HOME"] = home  # never the user's chats, models or settings
        from app import __version__

        report: dict[str, Any] = {"version": __version__, "frozen": bool(getattr(sys, "frozen", False)),
                                  "checks": {}}

        def qt() -> dict[str, Any]:
            from PySide6.QtWidgets import QApplication

            from app import paths
            from app.engine.client import Engine
            from app.store.chats import ChatStore
            from app.ui.chat.controller import ChatController
            from app.ui.window import MainWindow

            app = QApplication.instance() or QApplication(["paddock"])
            store = ChatStore(paths.database_path())
            window = MainWindow(ChatController(store, Engine()))
            window.show()
            app.processEvents()
            title = window.windowTitle()
            platform = QApplication.platformName()
            window.close()
            store.close()
            return {"platform": platform, "window": title}

        def engine() -> dict[str, Any]:
            from app.engine.client import Engine
            from app.engine.types import ChatMessage, LoadSettings, SamplingParams

            if not model:
                raise RuntimeError("no --model given")
            with Engine() as eng:
                loaded = eng.load(model, LoadSettings(n_ctx=512))
                result = eng.generate([ChatMessage("user", "The capital of France is")],
                                      SamplingParams(temperature=0.0, max_tokens=8, seed=1))
            if result.stats.completion_tokens <= 0:
                raise RuntimeError("the model generated nothing")
            return {"model": loaded.name, "backend": loaded.backend, "tokens": result.stats.completion_tokens,
                    "text": result.text, "tokens_per_s": round(result.stats.tokens_per_s, 1),
                    "system_info": eng.system_info[:200]}

        def documents() -> dict[str, Any]:
            from app.docs.service import Documents

            folder = Path(home) / "docs"
            folder.mkdir()
            _minimal_pdf(folder / "check.pdf", "Paddock reads PDF files")
            (folder / "check.md").write_text("# Check\n\nMarkdown works too.\n", encoding="utf-8")
            docs = Documents(Path(home) / "documents.sqlite3", embed_model=None)
            try:
                collection = docs.collection_for("selftest", create=True)
                docs.add(collection, [folder])
                stats = docs.indexer.run_pending()
                hits = docs.retriever.search([collection], "PDF files", k=1)
            finally:
                docs.close()
            if stats.failed or not hits or "PDF" not in hits[0].text:
                raise RuntimeError(f"document indexing failed: {stats}, {hits}")
            return {"indexed": stats.documents, "top_hit": hits[0].source}

        def window() -> dict[str, Any]:
            """The real app as a child process: streamed answers in two chats, Stop, Regenerate,
            then File > Quit; its exit code must be 0 (Python 3.11 + PySide6 6.12 aborted here)."""
            from app.ui.autopilot import DrivePlan, run_driven

            if not model:
                raise RuntimeError("no --model given")
            plan = DrivePlan(model=model, answers=8, chats=2, max_tokens=64, report=Path(home) / "drive.json")
            run = run_driven(plan, home=Path(home) / "window", timeout=900)
            if run.returncode != 0 or run.fatal_error:
                raise RuntimeError(f"the app exited with code {run.returncode}: {run.stderr[-600:]}")
            drive = run.report
            if not drive.get("finished") or drive.get("errors"):
                raise RuntimeError(f"the driven window did not finish: {drive.get('errors')}")
            return {"exit_code": run.returncode, "answers": len(drive["answers"]),
                    "quit_via_action": drive["quit_via_action"], "stall_max_ms": drive["stall_max_ms"]}

        def tools() -> dict[str, Any]:
            """The MCP SDK as bundled: a server in this process, listed and called through the client."""
            import asyncio

            from mcp import Client
            from mcp.server import MCPServer

            server = MCPServer("Self-test")

            @server.tool()
            def add(a: int, b: int) -> int:
                """Add two integers."""
                return a + b

            async def call() -> tuple[list[str], str]:
                async with Client(server) as client:
                    listed = await client.list_tools()
                    result = await client.call_tool("add", {"a": 2, "b": 40})
                    return [t.name for t in listed.tools], str(getattr(result.content[0], "text", ""))

            names, text = asyncio.run(call())
            if names != ["add"] or text != "42":
                raise RuntimeError(f"the MCP client answered {names} {text!r}")
            return {"tools": names, "result": text}

        _check(report, "qt", qt)
        _check(report, "engine", engine)
        _check(report, "window", window)
        _check(report, "documents", documents)
        _check(report, "tools", tools)
        report["ok"] = all(c["ok"] for c in report["checks"].values())
        report["total_s"] = round(time.perf_counter() - started, 3)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if report["ok"] else 1


def pdf_from_objects(objects: list[bytes], prev_self: bool = False) -> bytes:
    """A PDF file from its numbered objects (1 is the catalog), with a correct cross-reference table.

    ``prev_self`` points the trailer's ``/Prev`` at this same table: a malformed file the tests use.
    """
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    prev = b" /Prev %d" % xref if prev_self else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, prev, xref)
    return bytes(out)


def _minimal_pdf(path: Path, text: str) -> None:
    """A one-page PDF with a text layer, written by hand (no PDF writer needed in a bundle)."""
    content = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    path.write_bytes(pdf_from_objects([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> "
        b"/Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]))
