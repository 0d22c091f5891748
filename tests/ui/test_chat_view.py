"""The conversation view and its model over long chats (real SQLite, real widgets, offscreen): what opening a
chat reads and builds per event-loop turn, what a chat read again reuses, what stays in place while scrolling."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.store.chats import ChatStore
from app.ui.chat.itemmodels import PAGE, READ, MessageListModel, MsgRole
from app.ui.chat.view import OPENED, ChatView
from app.ui.common.textbrowser import SafeTextBrowser

ANSWER = "A lighthouse keeper writes down the weather every hour: wind, swell, visibility and the colour of the sky."


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChatStore]:
    store = ChatStore(tmp_path / "chats.sqlite3")
    yield store
    store.close()


@pytest.fixture
def view(qtbot: QtBot, store: ChatStore) -> ChatView:
    view = ChatView(MessageListModel(store))
    view.resize(800, 600)
    qtbot.addWidget(view)
    view.show()
    return view


def _chat(store: ChatStore, messages: int) -> int:
    conv = store.create_conversation()
    for i in range(messages // 2):
        store.add_message(conv.id, "user", f"question {i}")
        store.add_message(conv.id, "assistant", f"answer {i}: {ANSWER}")
    return conv.id


def test_a_long_chat_opens_a_message_a_turn_and_is_shown_once_they_fill_the_view(qtbot: QtBot, view: ChatView,
                                                                                   store: ChatStore) -> None:
    conv = _chat(store, 1000)
    newest = store.messages(conv)[-1]
    steps: list[tuple[int, bool]] = []  # after each turn's step: the messages built, still opening
    view._grow.timeout.connect(lambda: steps.append((len(view.widgets), view.opening)))
    view.model.load(conv)
    # the first turn: the newest message only, read with a few around it; not painted yet
    assert [w.message_id for w in view.widgets] == [newest.id]
    assert view.model._rows._loaded.keys() <= {m.id for m in store.messages(conv)[-READ:]}
    assert view.opening
    assert not view.viewport().updatesEnabled()
    qtbot.waitUntil(lambda: not view.opening, timeout=10_000)
    assert view.viewport().updatesEnabled()  # shown when the messages built fill the view, not before
    shown = next(built for built, opening in steps if not opening)
    heights = [w.sizeHint().height() + view.column.spacing() for w in view.widgets[-shown:]]
    assert sum(heights) >= view.viewport().height() - view.column.contentsMargins().top()
    assert sum(heights[1:]) < view.viewport().height()  # the last one built was needed
    qtbot.waitUntil(lambda: not view.building, timeout=10_000)
    assert len(view.widgets) == OPENED
    assert [w.message_id for w in view.widgets] == [m.id for m in store.messages(conv)[-OPENED:]]
    built = [1] + [n for n, _ in steps]
    assert all(b - a <= 1 for a, b in pairwise(built))  # one message per turn at most
    assert view.earlier.isVisible()
    assert view.earlier.text() == f"Show 40 earlier messages ({1000 - OPENED} in all)"


def test_a_chat_read_again_shows_each_message_in_the_widget_that_showed_it(qtbot: QtBot, view: ChatView,
                                                                           store: ChatStore,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """After a send (or any reload) nothing already on screen is rendered again: only the new message is."""
    conv = _chat(store, 30)
    view.model.load(conv)
    qtbot.waitUntil(lambda: not view.building, timeout=10_000)
    before = {w.message_id: w for w in view.widgets}
    rendered: list[str] = []
    for name in ("setHtml", "setPlainText"):
        original = getattr(SafeTextBrowser, name)

        def counting(self: SafeTextBrowser, text: str, _original: Any = original) -> None:
            rendered.append(text)
            _original(self, text)

        monkeypatch.setattr(SafeTextBrowser, name, counting)
    question = store.add_message(conv, "user", "one more question")
    view.model.reload()
    qtbot.waitUntil(lambda: not view.building, timeout=10_000)
    assert view.widgets[-1].message_id == question.id
    kept = view.widgets[:-1]
    assert kept
    assert all(before[w.message_id] is w for w in kept)
    assert rendered == ["one more question"]


def test_the_message_looked_at_stays_in_place_while_earlier_ones_are_built(qtbot: QtBot, view: ChatView,
                                                                          store: ChatStore) -> None:
    view.model.load(_chat(store, 200))
    qtbot.waitUntil(lambda: not view.building, timeout=10_000)
    bar = view.verticalScrollBar()
    bar.setValue(bar.maximum() // 2)
    looked_at = next(w for w in view.widgets if w.y() + w.height() > bar.value())
    offset = looked_at.y() - bar.value()
    view.show_earlier()
    qtbot.waitUntil(lambda: not view.building, timeout=10_000)
    assert len(view.widgets) == OPENED + 40
    assert looked_at in view.widgets
    assert looked_at.y() - bar.value() == offset


def test_the_model_reads_a_long_branch_as_its_rows_are_asked_for(qtmodeltester: Any, store: ChatStore,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    conv = _chat(store, 200)
    shown = store.messages(conv)
    store.fork_at(shown[150].id)  # an edit: another version of row 150, and a branch below it
    edited = store.add_message(conv, "user", "question 75, edited")
    store.add_message(conv, "assistant", "another answer")
    branch = store.messages(conv)
    walks: list[int] = []
    original = store.branch_before
    monkeypatch.setattr(store, "branch_before", lambda msg_id, n: walks.append(n) or original(msg_id, n))
    model = MessageListModel(store)
    model.load(conv)
    assert model.rowCount() == len(branch) == 152
    assert model.index(151).data(MsgRole.Id) == branch[-1].id
    assert model.index(150).data(MsgRole.Versions) == (shown[150].id, edited.id)
    assert walks == []  # the ids of the last PAGE rows came with the branch's length
    assert model.index(151 - PAGE).data(MsgRole.Id) == branch[151 - PAGE].id
    assert len(walks) == 1
    assert [model.index(r).data(MsgRole.Id) for r in range(152)] == [m.id for m in branch]
    assert model.index(0).data() == "question 0"
    assert model.row_of(branch[3].id) == 3
    assert model.row_of(shown[151].id) == -1  # the answer to the first version: not on this branch
    model.load(conv)  # read again: the earlier rows' ids are not known yet
    assert model.row_of(branch[3].id) == 3  # found by its depth, reading the ids down to it
    qtmodeltester.check(model)
