"""The placement in the window: the MoE experts setting round-trips through the Settings dialog, and the
model picker shows the plan line of a model before it is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from app.engine.gguf_file import read_gguf
from app.engine.types import LoadSettings
from app.models.library import Library
from app.store.chats import ChatStore
from app.ui.chat.model_picker import ModelChoices
from app.ui.settings.dialogs import SettingsDialog

if TYPE_CHECKING:
    from app.ui.settings.servers import ServerHub


@pytest.mark.parametrize(("n_cpu_moe", "index"), [(None, 0), (-1, 1), (5, 2), (0, 3)])
def test_experts_setting_round_trips(qtbot: QtBot, n_cpu_moe: int | None, index: int) -> None:
    parent = QWidget()
    qtbot.addWidget(parent)
    dialog = SettingsDialog(parent, "", LoadSettings(n_cpu_moe=n_cpu_moe))
    assert dialog.experts.currentIndex() == index
    assert dialog.expert_layers.isEnabled() == (index == 2)
    assert dialog.load_settings(LoadSettings()).n_cpu_moe == n_cpu_moe
    dialog.experts.setCurrentIndex(2)
    dialog.expert_layers.setValue(7)
    assert dialog.load_settings(LoadSettings()).n_cpu_moe == 7
    dialog.reject()


def test_the_picker_knows_the_plan_before_load(test_model: Path, tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "chats.db")
    # the plan needs no servers (their models are listed by the picker only)
    choices = ModelChoices(store, Library(), cast("ServerHub", None))
    layers = read_gguf(test_model).block_count
    # this machine has no GPU backend: every layer on the CPU
    assert choices.plan(str(test_model)).startswith(f"all {layers} layers on the CPU, context ")
    assert choices.plan(str(tmp_path / "missing.gguf")) == ""
