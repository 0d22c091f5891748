"""Fixtures of the engine tests: an engine child process with the real test model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.client import Engine
from app.engine.types import LoadSettings


@pytest.fixture(scope="session")
def engine(test_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One engine with the test model loaded, shared by the tests that only generate.

    It starts before any test's own PADDOCK_HOME is set, so it gets a home of its own: the
    child keeps the environment it starts with, and would otherwise write its kept
    conversation states into the user's real cache folder, where the next run finds them."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PADDOCK_HOME", str(tmp_path_factory.mktemp("engine-home")))
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
