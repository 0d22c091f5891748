"""Fixtures of the engine tests: an engine child process with the real test model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.client import Engine
from app.engine.types import LoadSettings


@pytest.fixture(scope="session")
def engine(test_model: Path) -> Iterator[Engine]:
    """One engine with the test model loaded, shared by the tests that only generate."""
    eng = Engine()
    eng.start()
    eng.load(str(test_model), LoadSettings(n_ctx=2048))
    yield eng
    eng.close()


@pytest.fixture
def fresh_engine(test_model: Path) -> Iterator[Engine]:
    """An engine of the test's own, for tests that kill or break it."""
    eng = Engine()
    eng.start()
    yield eng
    eng.close()
