"""The Qt calls the app makes must not lose references to None, True or False.

PySide6-Essentials 6.12.0 on CPython 3.11 drops a reference to ``None`` on every
call of a void Qt method and one to ``True`` on every signal emission; the app
then aborts with ``Fatal Python error: none_dealloc`` / ``bool_dealloc``.
pyproject.toml keeps 3.11 on PySide6 < 6.12.  This test fails on the broken
combination (measured: drift of -N per call) and passes on the pinned one.  On
Python 3.12+ the three objects are immortal and their counts never move.
"""

from __future__ import annotations

import gc
from pathlib import Path

from PySide6.QtCore import QObject, QStringListModel, QTimer, Signal
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.store.chats import ChatStore
from app.ui.autopilot import refcounts
from app.ui.chat.itemmodels import ConversationListModel, MessageListModel

N = 4000
SLACK = 200  # objects created or freed on the way may move a count a little; the fault moves it by N


class Emitter(QObject):
    flag = Signal(bool)
    number = Signal(int)
    text = Signal(str)
    mapping = Signal(dict)
    several = Signal(int, int, str, str, dict)  # the shape of ChatController.streamFinished


def _assert_no_drop(before: dict[str, int], after: dict[str, int], what: str) -> None:
    for name, start in before.items():
        assert after[name] >= start - SLACK, (
            f"{what}: {start - after[name]} references to {name} lost (checked every 100 of {N} calls)"
        )


def _measure(fn: object, what: str) -> None:
    """Call ``fn`` N times, checking every 100 calls, so that the broken combination fails here
    with a message instead of draining the count to zero and aborting the test run."""
    assert callable(fn)
    fn()  # warm up: caches and lazily created wrappers take their references now
    gc.collect()
    before = refcounts()
    for _ in range(N // 100):
        for _ in range(100):
            fn()
        _assert_no_drop(before, refcounts(), what)
    gc.collect()
    _assert_no_drop(before, refcounts(), what)


def test_process_events_keeps_references(qapp: QApplication) -> None:
    _measure(qapp.processEvents, "QApplication.processEvents()")


def test_timers_keep_references(qtbot: QtBot) -> None:
    timer = QTimer()

    def cycle() -> None:
        timer.start(1000)
        timer.setInterval(500)
        timer.stop()

    _measure(cycle, "QTimer.start/setInterval/stop")
    QTimer.singleShot(0, lambda: None)


def test_signal_emissions_keep_references(qtbot: QtBot) -> None:
    emitter = Emitter()
    received: list[object] = []
    for signal in (emitter.flag, emitter.number, emitter.text, emitter.mapping, emitter.several):
        signal.connect(lambda *args: received.append(args[0]))

    def emit_all() -> None:
        emitter.flag.emit(True)
        emitter.flag.emit(False)
        emitter.number.emit(7)
        emitter.text.emit("token")
        emitter.mapping.emit({"completion_tokens": 3, "done": True})
        emitter.several.emit(1, 2, "complete", "", {"tokens_per_s": 1.5})

    _measure(emit_all, "signal emissions with bool/int/str/dict")
    assert len(received) == 6 * (N + 1)


def test_item_model_updates_keep_references(qtbot: QtBot, tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "chats.sqlite3")
    try:
        conv = store.create_conversation(model=None)
        store.add_message(conv.id, "user", "hello")
        answer = store.add_message(conv.id, "assistant", "", status="streaming")
        messages = MessageListModel(store)
        messages.load(conv.id, {})
        conversations = ConversationListModel(store)
        strings = QStringListModel(["a", "b"])
        changes: list[int] = []
        messages.dataChanged.connect(lambda *_: changes.append(1))

        def update() -> None:
            messages.append_text(answer.id, "x")
            strings.setData(strings.index(0), "c")

        _measure(update, "item model dataChanged")
        assert len(changes) >= N
        _measure(conversations.refresh, "model resets")
    finally:
        store.close()
