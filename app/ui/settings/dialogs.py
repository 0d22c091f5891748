"""The app's dialogs: Settings and About."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app import __version__
from app.engine.gguf_file import GGUFInfo
from app.engine.kvstates import folder_usage, states_folder
from app.engine.types import LoadSettings

GPU_CHOICES = (("Automatic (from the model and this machine)", None), ("CPU only", 0), ("All layers on the GPU", -1))


class SettingsDialog(QDialog):
    """App-wide settings: defaults for new chats and how models are loaded."""

    def __init__(self, parent: QWidget, system_prompt: str, load: LoadSettings,
                 on_clear_states: Callable[[], str] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        form = QFormLayout(self)
        self.system = QPlainTextEdit(system_prompt)
        self.system.setPlaceholderText("Used for new chats; each chat can change it.")
        self.system.setFixedHeight(90)
        form.addRow("Default system prompt", self.system)
        self.n_ctx = QSpinBox()
        self.n_ctx.setRange(0, 1_048_576)
        self.n_ctx.setSingleStep(1024)
        self.n_ctx.setSpecialValueText("automatic")
        self.n_ctx.setValue(load.n_ctx or 0)
        self.n_ctx.setToolTip("Tokens the model can see at once. Automatic: up to 8192, less if memory is short.")
        form.addRow("Context length", self.n_ctx)
        self.threads = QSpinBox()
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText("automatic (physical cores)")
        self.threads.setValue(load.n_threads or 0)
        form.addRow("CPU threads", self.threads)
        self.gpu = QComboBox()
        for label, value in GPU_CHOICES:
            self.gpu.addItem(label, value)
        self.gpu.setCurrentIndex(max(0, self.gpu.findData(load.n_gpu_layers)))
        form.addRow("GPU offload", self.gpu)
        # Kept conversation states: what makes returning to a chat (or reopening Paddock) instant.
        tip = ("Paddock keeps what the model has already read of your chats, so that going back to a chat "
               "or reopening the app does not read the whole conversation again. Oldest first out.")
        self.states_ram = _megabytes(load.kept_states_ram_mb, 1 << 20, 256, tip)
        self.states_disk = _megabytes(load.kept_states_disk_mb, 1 << 22, 1024, tip)
        form.addRow("Kept chat states in memory", self.states_ram)
        states_row = QHBoxLayout()
        states_row.addWidget(self.states_disk, 1)
        self.states_usage = QLabel()
        self.states_usage.setObjectName("hint")
        states_row.addWidget(self.states_usage)
        self.clear_states = QPushButton("Clear")
        self.clear_states.setToolTip("Forget every kept chat state (chats themselves are not touched)")
        states_row.addWidget(self.clear_states)
        form.addRow("Kept chat states on disk", states_row)
        self._on_clear_states = on_clear_states
        self.clear_states.clicked.connect(self._clear_states)
        self._show_usage()
        self.prompt_lookup = QCheckBox("Speed up answers that quote the chat (prompt-lookup drafts)")
        self.prompt_lookup.setToolTip(
            "When an answer repeats text from the conversation or its documents, the model checks several "
            "tokens at once. The answer is the same as without it."
        )
        self.prompt_lookup.setChecked(load.prompt_lookup)
        form.addRow("Speculative decoding", self.prompt_lookup)
        draft_row = QHBoxLayout()
        self.draft_model = QLineEdit(load.draft_model or "")
        self.draft_model.setPlaceholderText("none: a small GGUF model of the same family (e.g. Llama 3.2 1B for 8B)")
        self.draft_model.setToolTip("It guesses the next words and the model checks them several at a time. "
                                    "It must share the model's vocabulary; answers stay the same.")
        draft_row.addWidget(self.draft_model, 1)
        choose = QPushButton("Choose…")
        choose.clicked.connect(self._choose_draft)
        draft_row.addWidget(choose)
        form.addRow("Draft model", draft_row)
        note = QLabel("Model settings apply the next time a model is loaded.")
        note.setObjectName("hint")
        form.addRow(note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(520, 300)

    def _choose_draft(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self, "Draft model", "", "GGUF models (*.gguf)")
        if path:
            self.draft_model.setText(path)

    def _show_usage(self, note: str = "") -> None:
        size, files = folder_usage(states_folder())
        self.states_usage.setText(note or f"{size / 1e6:,.0f} MB used, {files} chat{'s' if files != 1 else ''}")

    def _clear_states(self) -> None:
        note = self._on_clear_states() if self._on_clear_states is not None else ""
        self._show_usage(note)

    def load_settings(self, base: LoadSettings) -> LoadSettings:
        return dataclasses.replace(
            base,
            n_ctx=self.n_ctx.value() or None,
            n_threads=self.threads.value() or None,
            n_gpu_layers=self.gpu.currentData(),
            kept_states_ram_mb=self.states_ram.value(),
            kept_states_disk_mb=self.states_disk.value(),
            prompt_lookup=self.prompt_lookup.isChecked(),
            draft_model=self.draft_model.text().strip() or None,
        )


def _megabytes(value: int, maximum: int, step: int, tip: str) -> QSpinBox:
    """A budget in MB, 0 shown as "none"."""
    box = QSpinBox()
    box.setRange(0, maximum)
    box.setSingleStep(step)
    box.setSuffix(" MB")
    box.setSpecialValueText("none")
    box.setValue(value)
    box.setToolTip(tip)
    return box


class AboutDialog(QDialog):
    """The app's licenses and those of the models in use ("Built with Llama" when one is a Llama)."""

    def __init__(self, parent: QWidget, models: list[GGUFInfo]) -> None:
        super().__init__(parent)
        self.setWindowTitle("About Paddock")
        items = [f"<li>{info.name} ({info.quantization}) — license: {info.license or 'not stated'}</li>"
                 for info in models]
        llama = any("llama" in (info.license or "").lower() or "llama" in info.name.lower() for info in models)
        layout = QVBoxLayout(self)
        view = QTextBrowser()
        view.setOpenExternalLinks(False)
        view.setHtml(
            f"<h2>Paddock {__version__}</h2>"
            "<p>Private chat with open-weight language models. Paddock is free software under the "
            "Apache License 2.0. It runs models with llama.cpp (MIT) through llama-cpp-python (MIT) "
            "and uses Qt for Python (LGPLv3).</p>"
            "<h3>Models</h3>"
            + (f"<ul>{''.join(items)}</ul>" if items else "<p>No models yet.</p>")
            + ("<p><b>Built with Llama</b></p>" if llama else "")
            + "<p>Each model has its own license; you are responsible for following it.</p>"
        )
        layout.addWidget(view)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(520, 420)
