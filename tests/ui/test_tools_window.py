"""Tools in the real window: add an MCP server, turn it on for a chat, approve a call, get the answer."""

from __future__ import annotations

import sys
from pathlib import Path

from pytestqt.qtbot import QtBot

from app.engine.types import LoadSettings
from app.ui.tools.widgets import ToolsDialog
from tests.tools.conftest import SERVER
from tests.ui.windows import WAIT_MS, make_window


def test_add_server_approve_call_and_answer(qtbot: QtBot, instruct_model: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    w = make_window(qtbot, instruct_model, LoadSettings(n_ctx=4096), max_tokens=40)
    try:
        # File > Tools: the server as a user adds it (a command line, a secret)
        dialog = ToolsDialog(w, w.tools)
        dialog.name.setText("Test tools")
        dialog.command.setText(f'"{sys.executable}" "{SERVER}"')
        dialog.secrets.setPlainText(f"NOTES_DIR={notes}")
        dialog.add_button.click()
        assert dialog.error.text() == ""
        assert dialog.list.count() == 1
        dialog.accept()
        w.chat_page.show_conversation(w.current_conv)
        panel = w.chat_page.tools_panel
        assert panel is not None
        (box,) = panel.boxes.values()
        box.setChecked(True)  # starts the server in the background
        qtbot.waitUntil(lambda: box.isEnabled() and w.tools.connection(next(iter(panel.boxes))).alive,
                        timeout=WAIT_MS)
        panel.require.setChecked(True)
        assert w.store.conversation(w.current_conv).sampling.tool_choice == "required"  # type: ignore[arg-type]

        approvals: list[dict] = []
        w.controller.toolApprovalRequested.connect(lambda _c, _m, call: approvals.append(call))
        w.chat_page.composer.setPlainText("What is 2+3? Use the add tool.")
        w.chat_page.send_button.click()
        bar = w.chat_page.approval
        qtbot.waitUntil(lambda: not bar.isHidden(), timeout=WAIT_MS)
        (call,) = approvals
        assert call["name"] == "add"  # greedy: the grammar-forced call picks the tool the question names
        assert "add" in bar.details.toPlainText()  # exactly what will run is shown
        assert str(call["arguments"]["a"]) in bar.details.toPlainText()
        assert call["server"] == "Test tools"
        with qtbot.waitSignal(w.controller.streamFinished, timeout=WAIT_MS) as blocker:
            bar.allow_once.click()
        _conv, final_id, status, error, _stats = blocker.args  # type: ignore[misc]
        assert status == "complete", error
        messages = w.store.messages(w.current_conv)  # type: ignore[arg-type]
        assert [m.role for m in messages] == ["user", "assistant", "assistant"]
        (record,) = messages[1].tool_calls
        assert record["status"] == "done"
        assert record["result"] == str(record["arguments"]["a"] + record["arguments"]["b"])
        assert messages[2].id == final_id
        widget = w.chat_page.chat_view.widgets[1]
        qtbot.waitUntil(lambda: len(widget._tool_widgets) == 1, timeout=5000)
        tool_widget = widget._tool_widgets[0]
        assert "add" in tool_widget.toggle.text()
        assert tool_widget.result.isHidden()  # collapsed
        tool_widget.toggle.click()
        assert tool_widget.result.toPlainText() == record["result"]
    finally:
        w.close()
        w.store.close()


def test_denied_and_unknown_calls_keep_the_chat_going(qtbot: QtBot, instruct_model: Path, tmp_path: Path) -> None:
    from app.tools.config import ServerSecrets
    from tests.tools.conftest import stdio_server

    notes = tmp_path / "notes"
    notes.mkdir()
    calls = tmp_path / "calls.log"  # the test server appends the name of every tool that runs
    w = make_window(qtbot, instruct_model, LoadSettings(n_ctx=4096), max_tokens=30)
    try:
        server = w.tools.servers.add(stdio_server(notes), ServerSecrets(env={"NOTES_DIR": str(notes),
                                                                              "CALL_LOG": str(calls)}))
        specs = w.tools.enable(w.current_conv, server.id)  # type: ignore[arg-type]
        w.chat_page.show_conversation(w.current_conv)
        w.chat_page.tools_panel.require.setChecked(True)  # type: ignore[union-attr]
        w.controller.toolApprovalRequested.connect(lambda *_: w.chat_page.approval.deny.click())
        # (a bound, not a goal: a grammar-forced call and the answer after it take about a minute on 2 busy cores)
        with qtbot.waitSignal(w.controller.streamFinished, timeout=3 * WAIT_MS) as blocker:
            w.chat_page.composer.setPlainText("Add 2 and 3.")
            w.chat_page.send_button.click()
        assert blocker.args[2] == "complete"  # type: ignore[index]
        asked = [m for m in w.store.messages(w.current_conv) if m.tool_calls]  # type: ignore[arg-type]
        assert asked
        (denied,) = asked[0].tool_calls
        assert denied["name"] == "add"
        assert denied["status"] == "denied"
        assert denied["result"] == "The user declined this call."
        assert not calls.exists()  # it did not run on the server
        assert w.chat_page.approval.isHidden()
        assert w.chat_page.send_button.isVisible()
        # the log would have shown it: the same call, run directly, is written there
        add = next(s for s in specs if s.name == "add")
        assert w.tools.run(add, dict(denied["arguments"])).text == str(sum(denied["arguments"].values()))
        assert calls.read_text(encoding="utf-8") == "add\n"
    finally:
        w.close()
        w.store.close()


def test_a_call_to_a_tool_that_does_not_exist_is_an_error_result(qtbot: QtBot, instruct_model: Path,
                                                                  tmp_path: Path) -> None:
    """A model (in "auto", without a grammar) may name a tool that is not there: nothing runs, the
    model is told which tools exist, and nobody is asked to approve anything."""
    from app.tools.config import ServerSecrets
    from app.ui.chat.controller import ActiveStream
    from tests.tools.conftest import stdio_server

    notes = tmp_path / "notes"
    notes.mkdir()
    w = make_window(qtbot, instruct_model, LoadSettings(n_ctx=4096))
    try:
        server = w.tools.servers.add(stdio_server(notes), ServerSecrets(env={"NOTES_DIR": str(notes)}))
        conv = w.current_conv
        assert conv is not None
        specs = w.tools.enable(conv, server.id)
        answer = w.store.add_message(conv, "assistant", "")
        asked: list[dict] = []
        w.controller.toolApprovalRequested.connect(lambda _c, _m, call: asked.append(call))
        records = w.controller._run_tool_calls(conv, ActiveStream(conv, answer.id),
                                               [{"id": "abc123def", "name": "rm_rf", "arguments": {}}], specs)
        assert asked == []
        (record,) = records
        assert record["status"] == "error"
        assert "no tool called 'rm_rf'" in record["result"]
        assert "add" in record["result"]  # the model learns what it can call
        assert w.store.message(answer.id).tool_calls == records
    finally:
        w.close()
        w.store.close()
