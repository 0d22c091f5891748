"""A real MCP server for the tests, written with the official SDK (stdio).

Tools: ``add``, ``read_note`` (confined to the folder in $NOTES_DIR), ``sleep`` (a hanging
call), ``crash`` (the process exits mid-call), ``big`` (an oversized result), ``fail`` (an
error result).  Run with ``--garbage`` it writes non-protocol text to stdout instead;
with ``--http PORT`` it serves streamable HTTP on 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

if "--garbage" in sys.argv:
    sys.stdout.write("this is not JSON-RPC\n" * 50)
    sys.stdout.flush()
    time.sleep(60)
    raise SystemExit(0)

from mcp.server import MCPServer

server = MCPServer("Test tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def read_note(name: str) -> str:
    """Read one note from the notes folder."""
    folder = Path(os.environ["NOTES_DIR"]).resolve()
    path = (folder / name).resolve()
    if folder not in path.parents:
        raise ValueError("only notes in the notes folder can be read")
    return path.read_text(encoding="utf-8")


@server.tool()
def sleep(seconds: float) -> str:
    """Wait, then answer."""
    time.sleep(seconds)
    return "awake"


@server.tool()
def crash() -> str:
    """Exit the server process in the middle of the call."""
    os._exit(3)


@server.tool()
def big() -> str:
    """An oversized result."""
    return "x" * 500_000


@server.tool()
def fail() -> str:
    """A tool that fails."""
    raise RuntimeError("the disk is on fire")


if __name__ == "__main__":
    if "--http" in sys.argv:  # streamable HTTP on 127.0.0.1:PORT/mcp
        server.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[sys.argv.index("--http") + 1]))
    else:
        server.run()
