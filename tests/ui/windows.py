"""Helpers for driving the real window in tests: build it on a fresh store, send and wait."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from app import paths
from app.engine.client import Engine
from app.engine.types import LoadSettings, SamplingParams
from app.store.chats import ChatStore
from app.ui.chat.controller import ChatController
from app.ui.window import MainWindow

WAIT_MS = 60_000


def make_window(qtbot: QtBot, model: Path | None, load_settings: LoadSettings | None = None,
                max_tokens: int = 48) -> MainWindow:
    store = ChatStore(paths.database_path())
    if model is not None:
        store.set_setting("recent_models", [str(model)])
        store.set_setting("default_sampling", SamplingParams(temperature=0.0, max_tokens=max_tokens).to_dict())
    controller = ChatController(store, Engine(), load_settings or LoadSettings(n_ctx=2048))
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    return window


def send_and_wait(qtbot: QtBot, w: MainWindow, text: str) -> list[object]:
    with qtbot.waitSignal(w.controller.streamFinished, timeout=WAIT_MS) as blocker:
        w.chat_page.composer.setPlainText(text)
        w.chat_page.send_button.click()
    return list(blocker.args or [])


def view_settled(qtbot: QtBot, w: MainWindow) -> None:
    """Wait until the chat view has built the messages it opens with (a turn at a time)."""
    view = w.chat_page.chat_view
    qtbot.waitUntil(lambda: not view.building, timeout=10_000)
