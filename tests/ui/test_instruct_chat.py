"""The window with the real instruct model (SmolLM2, ChatML): templated turns, thinking, Continue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot

from app.engine.types import LoadSettings, SamplingParams
from app.ui.window import MainWindow
from tests.ui.windows import WAIT_MS, make_window, send_and_wait

THINK_TEMPLATE = (Path(__file__).parent.parent / "data" / "think-chatml.jinja").read_text()


@pytest.fixture
def smol_window(qtbot: QtBot, instruct_model: Path) -> Iterator[MainWindow]:
    w = make_window(qtbot, instruct_model, LoadSettings(n_ctx=4096))
    yield w
    w.controller.shutdown()
    w.store.close()


@pytest.fixture
def thinking_window(qtbot: QtBot, instruct_model: Path) -> Iterator[MainWindow]:
    w = make_window(qtbot, instruct_model, LoadSettings(n_ctx=4096, chat_template=THINK_TEMPLATE))
    yield w
    w.controller.shutdown()
    w.store.close()


def test_templated_turns_stream_and_reuse_the_cache(qtbot: QtBot, smol_window: MainWindow) -> None:
    w = smol_window
    previous = 0
    for question in ("Hello! Who are you?", "Say the word 'blue'.", "Thanks! Now say 'red'."):
        _conv, message_id, status, error, stats = send_and_wait(qtbot, w, question)
        assert status == "complete", error
        saved = w.store.message(message_id)  # type: ignore[arg-type]
        assert saved.content.strip()
        assert "<|im_end|>" not in saved.content
        assert "<|im_start|>" not in saved.content
        assert stats["prompt_tokens"] > previous
        if previous:  # the whole earlier conversation came from the KV cache
            assert stats["prompt_reused"] >= previous
        previous = stats["prompt_tokens"] + stats["completion_tokens"] - 1
    widget = w.chat_page.chat_view.widgets[-1]
    qtbot.waitUntil(lambda: bool(widget.body.toPlainText().strip()), timeout=5000)
    assert widget.thinking_toggle.isHidden()  # ChatML SmolLM2 does not think


def _seed_fewshot(w: MainWindow) -> int:
    conv_id = w.current_conv
    assert conv_id is not None
    for a, b in ((1, 1), (2, 3), (3, 3)):
        w.store.add_message(conv_id, "user", f"What is {a}+{b}?")
        answer = w.store.add_message(conv_id, "assistant", f"{a}+{b} is {a + b}.")
        w.store.update_message(answer.id, reasoning=f"The user asks {a}+{b}. That is {a + b}.")
    w.select_conversation(conv_id)
    return conv_id


def test_thinking_shows_collapsed_apart_from_the_answer(qtbot: QtBot, thinking_window: MainWindow) -> None:
    w = thinking_window
    conv_id = _seed_fewshot(w)
    seen_thinking: list[str] = []
    w.controller.streamThinking.connect(lambda _c, _m, text: seen_thinking.append(text))
    _conv, message_id, status, error, _stats = send_and_wait(qtbot, w, "What is 4+4?")
    assert status == "complete", error
    saved = w.store.message(message_id)  # type: ignore[arg-type]
    assert saved.reasoning.strip()
    assert saved.content.strip()
    assert "".join(seen_thinking) == saved.reasoning
    assert saved.reasoning not in saved.content
    assert "<think>" not in saved.content
    widget = w.chat_page.chat_view.widgets[-1]
    qtbot.waitUntil(lambda: bool(widget.body.toPlainText().strip()), timeout=5000)
    assert not widget.thinking_toggle.isHidden()
    assert widget.thinking_toggle.text().startswith("Thought for")
    assert widget.thinking_view.isHidden()  # collapsed until clicked
    widget.thinking_toggle.click()
    assert not widget.thinking_view.isHidden()
    assert widget.thinking_view.toPlainText() == saved.reasoning
    assert saved.reasoning not in widget.body.toPlainText()
    widget.copy_button.click()
    assert QGuiApplication.clipboard().text() == saved.content  # Copy takes the answer only
    exported = w.store.export_markdown(conv_id)
    assert "> **Thinking**" in exported
    assert w.store.export_json(conv_id)["messages"][-1]["reasoning"] == saved.reasoning


def test_answer_cut_at_max_tokens_says_so_and_continues(qtbot: QtBot, instruct_model: Path) -> None:
    w = make_window(qtbot, instruct_model, LoadSettings(n_ctx=4096), max_tokens=8)
    try:
        _conv, message_id, status, _error, stats = send_and_wait(qtbot, w, "Write three sentences about the sea.")
        assert status == "complete"
        assert stats["finish_reason"] == "length"
        widget = w.chat_page.chat_view.widgets[-1]
        qtbot.waitUntil(lambda: not widget.continue_button.isHidden(), timeout=5000)
        assert "limit" in widget.limit_note.text()
        first = w.store.message(message_id).content  # type: ignore[arg-type]
        with qtbot.waitSignal(w.controller.streamFinished, timeout=WAIT_MS) as blocker:
            widget.continue_button.click()
        _c, same_id, status2, error2, stats2 = blocker.args  # type: ignore[misc]
        assert status2 == "complete", error2
        assert same_id == message_id  # the same answer grows; no new message
        longer = w.store.message(message_id).content
        assert longer.startswith(first)
        assert len(longer) > len(first)
        assert stats2["prompt_reused"] >= stats["prompt_tokens"]  # only the continuation is new
        assert len(w.store.messages(w.current_conv)) == 2  # type: ignore[arg-type]
    finally:
        w.close()  # File > Quit's path: saves the chat settings, stops the engine
        w.store.close()


def test_think_switch_for_templates_that_have_one(
    qtbot: QtBot, instruct_model: Path, chat_templates: dict[str, str]
) -> None:
    w = make_window(qtbot, instruct_model, LoadSettings(n_ctx=4096, chat_template=chat_templates["Qwen-Qwen3-0.6B"]))
    try:
        panel = w.chat_page.settings_panel
        assert panel.think.isHidden()  # nothing loaded yet
        send_and_wait(qtbot, w, "Hi")
        assert not panel.think.isHidden()
        assert panel.think.isChecked()  # Qwen 3 thinks unless told not to
        panel.think.setChecked(False)
        conv = w.store.conversation(w.current_conv)  # type: ignore[arg-type]
        assert conv.sampling.enable_thinking is False
        assert conv.sampling == SamplingParams.from_dict(conv.sampling.to_dict())
    finally:
        w.close()  # File > Quit's path: saves the chat settings, stops the engine
        w.store.close()


def test_switching_chats_in_the_window_keeps_each_chats_state(qtbot: QtBot, smol_window: MainWindow) -> None:
    from app.engine.kvstates import folder_usage, states_folder
    from app.ui.settings.dialogs import SettingsDialog

    w = smol_window
    long = "Please remember this list of colours: " + ", ".join(f"colour {i}" for i in range(60)) + "."
    _c, _m, _s, _e, first = send_and_wait(qtbot, w, long)
    chat_a = w.current_conv
    w.new_chat()
    send_and_wait(qtbot, w, "Hello there, how are you today?")
    w.select_conversation(chat_a)  # type: ignore[arg-type]
    _c, _m, status, error, back = send_and_wait(qtbot, w, "Which colour came first?")
    assert status == "complete", error
    # chat A's whole history came back from its kept state, not evaluated again
    assert back["prompt_restored"] >= first["prompt_tokens"]
    assert back["prompt_evaluated"] < 40
    dialog = SettingsDialog(w, "", w.controller.load_settings, w.clear_kept_states)
    assert dialog.states_disk.value() == w.controller.load_settings.kept_states_disk_mb
    dialog.clear_states.click()
    assert dialog.states_usage.text() == "Cleared"
    assert folder_usage(states_folder()) == (0, 0)
    dialog.reject()
