"""A real MCP server for the tests, written with the official SDK (stdio).

Tools: ``add``, ``read_note`` (confined to the folder in $NOTES_DIR), ``sleep`` (a hanging
call), ``hang`` (with ``--hang`` only: never answers; writes to a file when it starts and
when it is cancelled), ``crash`` (the process exits mid-call), ``big`` (an oversized result), ``fail`` (an error
result).  With $CALL_LOG set, every call that runs appends the tool's name to that file
first, so a test can tell which calls ran.  Run with ``--garbage`` it writes non-protocol
text to stdout instead; with ``--http PORT`` it serves streamable HTTP on 127.0.0.1.
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

import anyio
from mcp.server import MCPServer

server = MCPServer("Test tools")


def ran(name: str) -> None:
    """Record that the tool ``name`` ran (in $CALL_LOG, when set)."""
    log = os.environ.get("CALL_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{name}\n")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    ran("add")
    return a + b


@server.tool()
def read_note(name: str) -> str:
    """Read one note from the notes folder."""
    ran("read_note")
    folder = Path(os.environ["NOTES_DIR"]).resolve()
    path = (folder / name).resolve()
    if folder not in path.parents:
        raise ValueError("only notes in the notes folder can be read")
    return path.read_text(encoding="utf-8")


@server.tool()
def sleep(seconds: float) -> str:
    """Wait, then answer."""
    ran("sleep")
    time.sleep(seconds)
    return "awake"


async def hang(marker: str) -> str:
    """Never answer; write "started <pid>" to the file ``marker``, and "cancelled" when cancelled."""
    ran("hang")
    path = Path(marker)
    path.write_text(f"started {os.getpid()}\n", encoding="utf-8")
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        with path.open("a", encoding="utf-8") as fh:
            fh.write("cancelled\n")
        raise
    return "unreachable"


if "--hang" in sys.argv:  # only where asked: every tool offered makes the prompt and a forced call's grammar longer
    server.tool()(hang)


@server.tool()
def crash() -> str:
    """Exit the server process in the middle of the call."""
    ran("crash")
    os._exit(3)


@server.tool()
def big() -> str:
    """An oversized result."""
    ran("big")
    return "x" * 500_000


@server.tool()
def fail() -> str:
    """A tool that fails."""
    ran("fail")
    raise RuntimeError("the disk is on fire")


if __name__ == "__main__":
    if "--http" in sys.argv:  # streamable HTTP on 127.0.0.1:PORT/mcp
        server.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[sys.argv.index("--http") + 1]))
    else:
        server.run()
