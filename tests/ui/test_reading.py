"""Whole documents in the real window (offscreen): the mode proposed per question, progress, Stop,
and the answer read again the other way; SmolLM2 with a context smaller than the documents."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from app.engine.types import LoadSettings
from tests.docs.test_whole import write_log
from tests.ui.test_documents import drop, state_texts
from tests.ui.windows import WAIT_MS, make_window


def test_whole_documents_proposed_read_with_progress_stopped_and_answered_again(
    qtbot: QtBot, instruct_model: Path, tmp_path: Path
) -> None:
    w = make_window(qtbot, instruct_model, LoadSettings(n_ctx=512), max_tokens=16)
    try:
        page = w.chat_page
        bar = page.reading
        folder = tmp_path / "logs"
        folder.mkdir()
        write_log(folder / "harwick.md", "Harwick", 100, 4)
        write_log(folder / "tarnby.md", "Tarnby", 200, 4)
        assert not bar.isVisible()  # no documents, nothing to choose
        drop(w, [folder])
        qtbot.waitUntil(lambda: sum("ready" in s for s in state_texts(w).values()) == 2, timeout=WAIT_MS)
        qtbot.waitUntil(bar.isVisible, timeout=WAIT_MS)
        assert not bar.fits  # the logs are larger than the context
        # proposed per question as it is typed
        page.composer.setPlainText("When was the berth reopened?")
        assert bar.mode() == "passages"
        page.composer.setPlainText("How many incidents involved fog?")
        assert bar.mode() == "whole"
        assert "proposed" in bar.hint.text()
        # the reading reports progress; Stop ends it with an answer that says what it covered
        progress: list[str] = []

        def on_progress(_conv: int, _msg: int, text: str) -> None:
            progress.append(text)
            page.stop_button.click()

        w.controller.readingProgress.connect(on_progress)
        with qtbot.waitSignal(w.controller.streamFinished, timeout=WAIT_MS) as done:
            page.send_button.click()
        w.controller.readingProgress.disconnect(on_progress)
        _conv, message_id, status, error, stats = done.args  # type: ignore[misc]
        assert progress
        assert progress[0].startswith("reading passage ")
        assert status == "interrupted"
        assert "Stopped" in error
        answer = w.store.message(message_id)
        whole = stats["whole"]
        assert not whole["complete"]
        assert whole["passages_read"] < whole["passages_total"]
        assert f"stopped after reading {whole['passages_read']} of {whole['passages_total']}" in answer.content
        assert bar.progress.text() == ""
        # after sending, the answer can be had the other way
        assert bar.again_button.isVisible()
        assert bar.again_button.text() == "Answer again from passages"
        with qtbot.waitSignal(w.controller.streamFinished, timeout=WAIT_MS) as again:
            bar.again_button.click()
        _conv, again_id, status, error, stats = again.args  # type: ignore[misc]
        assert status == "complete", error
        assert "whole" not in stats
        assert w.store.message(again_id).sources  # retrieved passages, as before
        assert bar.again_button.text() == "Answer again over whole documents"
        # a click overrides the proposal for the question being typed
        bar.passages_button.click()
        page.composer.setPlainText("List every supplier named in these logs.")
        assert bar.mode() == "passages"
    finally:
        w.close()
        w.store.close()
