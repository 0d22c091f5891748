"""GGUF files made by tests: a copy with another chat template, hostile headers, truncated copies."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path


def gguf_with_template(src: Path, dest: Path, template: str) -> Path:
    """A copy of ``src`` with ``tokenizer.chat_template`` set, written by the gguf package's own tool."""
    subprocess.run(
        [sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(src), str(dest),
         "--chat-template", template, "--force"],
        check=True, capture_output=True,
    )
    return dest


def write_gguf_header(
    path: Path, n_tensors: int, kvs: list[bytes], version: int = 3, tensors: list[bytes] | None = None
) -> Path:
    """A raw GGUF header (for crafted, hostile files)."""
    body = b"".join(kvs) + b"".join(tensors or [])
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(kvs)) + body)
    return path


def gguf_string(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def copy_truncated(src: Path, dest: Path, size: int) -> Path:
    with src.open("rb") as fin, dest.open("wb") as fout:
        fout.write(fin.read(size))
    return dest
