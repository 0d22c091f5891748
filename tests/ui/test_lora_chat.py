"""A chat's LoRA adapters in the window: chosen in the chat's settings panel from the library's adapters for
its model, each with a scale, stored with the chat, applied to its answers without reloading the model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.engine.types import LoadSettings, LoraAdapter
from app.models.library import Library
from app.ui.window import MainWindow
from tests.lora_files import write_lora
from tests.ui.windows import make_window, send_and_wait

QUESTION = "Name three colours of the rainbow."


@pytest.fixture
def tuned_window(qtbot: QtBot, instruct_model: Path, tmp_path: Path) -> Iterator[tuple[MainWindow, Path]]:
    tune = write_lora(tmp_path / "rainbow-tune.gguf", instruct_model, seed=1)
    library = Library()
    library.import_file(instruct_model, link=True)
    library.import_adapter(tune, link=True)
    library.close()
    w = make_window(qtbot, instruct_model, LoadSettings(n_ctx=1024), max_tokens=8)
    yield w, tune
    w.controller.shutdown()
    w.store.close()


def test_a_chat_answers_with_the_adapters_chosen_in_its_settings(
    qtbot: QtBot, tuned_window: tuple[MainWindow, Path], instruct_model: Path,
) -> None:
    w, tune = tuned_window
    w.new_chat(str(instruct_model))
    _c, base_id, status, error, _s = send_and_wait(qtbot, w, QUESTION)
    assert status == "complete", error
    base_text = w.store.message(base_id).content  # type: ignore[arg-type]

    w.new_chat(str(instruct_model))
    conv_id = w.current_conv
    assert conv_id is not None
    panel = w.chat_page.settings_panel.adapters
    panel._fill_menu()  # what *Add adapter* offers: the library's adapters for this chat's model
    offered = [a for a in panel.menu.actions() if a.text() == "rainbow-tune"]
    assert len(offered) == 1
    offered[0].trigger()
    assert w.store.chat_adapters(conv_id) == [LoraAdapter(str(tune), 1.0)]
    pid = w.controller.engine.pid
    _c, tuned_id, status, error, stats = send_and_wait(qtbot, w, QUESTION)
    assert status == "complete", error
    assert w.store.message(tuned_id).content != base_text  # type: ignore[arg-type]
    assert stats["prompt_reused"] == 0  # nothing computed without the adapter was reused
    assert w.controller.engine.pid == pid  # the same engine and model: no reload

    panel._rows[0][2].setValue(0.0)  # scale 0: the model as it is, stored with the chat
    assert w.store.chat_adapters(conv_id) == [LoraAdapter(str(tune), 0.0)]
    assert w.store.export_json(conv_id)["adapters"] == [{"path": str(tune), "scale": 0.0}]
    w.select_conversation(conv_id)  # shown again from the store
    assert [a.scale for a in panel.adapters()] == [0.0]
    other = w.store.create_conversation(model=str(instruct_model))
    w.store.set_chat_adapters(other.id, [LoraAdapter(str(tune), 0.5)])
    w.store.delete_conversation(other.id)  # its adapters go with it
    assert w.store.chat_adapters(other.id) == []


def test_my_models_lists_the_adapter_under_its_base(tuned_window: tuple[MainWindow, Path],
                                                     instruct_model: Path) -> None:
    w, _tune = tuned_window
    lib = w.models_page.library_tab
    lib.refresh()
    names = [lib.table.item(r, 0).text() for r in range(lib.table.rowCount())]
    assert len(names) == 2
    assert lib.models[0].path == instruct_model
    assert names[1].strip().startswith("└ LoRA adapter: rainbow-tune")
    lib.table.selectRow(1)
    with_base: list[str] = []
    w.models_page.chatRequested.connect(with_base.append)
    lib.chat()  # a chat on an adapter's row opens its base model
    assert with_base == [str(instruct_model)]
