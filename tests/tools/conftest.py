"""A real MCP server (tests/tools/mcp_server.py, the official SDK) for the tool tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from app.tools.config import ToolServer

SERVER = Path(__file__).with_name("mcp_server.py")


def stdio_server(notes: Path, *extra: str, timeout_s: float = 20.0) -> ToolServer:
    return ToolServer("test", "Test tools", "stdio", command=sys.executable, args=(str(SERVER), *extra),
                      timeout_s=timeout_s)


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "shopping.txt").write_text("eggs, flour, milk\n")
    (tmp_path / "secret.txt").write_text("outside the notes folder\n")
    return folder
