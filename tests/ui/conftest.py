"""Fixtures of the window tests: the real window on the real test model (offscreen)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.ui.window import MainWindow
from tests.ui.windows import make_window


@pytest.fixture
def window(qtbot: QtBot, test_model: Path) -> Iterator[MainWindow]:
    w = make_window(qtbot, test_model)
    yield w
    w.controller.shutdown()
    w.store.close()
