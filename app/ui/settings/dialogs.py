"""The app's dialogs: Settings and About."""

from __future__ import annotations

import dataclasses
import html
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

# MoE experts kept in RAM (LoadSettings.n_cpu_moe): the planner's choice, every layer's, the first N layers', none.
EXPERT_CHOICES = (("Automatic (the plan: as many on the GPU as fit)", None), ("All experts in RAM", -1),
                  ("Experts of the first N layers in RAM", 1), ("None: experts stay with their layers", 0))
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
        experts_row = QHBoxLayout()
        self.experts = QComboBox()
        for label, value in EXPERT_CHOICES:
            self.experts.addItem(label, value)
        self.experts.setToolTip("Mixture-of-experts models (Qwen3-30B-A3B, gpt-oss, Llama 4): experts kept in RAM "
                                "let every layer run on the GPU; only a few experts work on each token.")
        self.expert_layers = QSpinBox()
        self.expert_layers.setRange(1, 1024)
        self.expert_layers.setPrefix("N = ")
        first_n = load.n_cpu_moe is not None and load.n_cpu_moe > 0
        self.experts.setCurrentIndex(2 if first_n else max(0, self.experts.findData(load.n_cpu_moe)))
        self.expert_layers.setValue(load.n_cpu_moe if first_n and load.n_cpu_moe else 1)
        self.expert_layers.setEnabled(first_n)
        self.experts.currentIndexChanged.connect(lambda i: self.expert_layers.setEnabled(i == 2))
        experts_row.addWidget(self.experts, 1)
        experts_row.addWidget(self.expert_layers)
        form.addRow("MoE experts", experts_row)
        # Kept conversation states: what makes returning to a chat (or reopening Paddock) instant.
        tip = ("Paddock keeps what the model has already read of your chats, so that going back to a chat "
               "or reopening the app does not read the whole conversation again. Oldest first out.")
        self.states_ram = _megabytes(load.kept_states_ram_mb, 1 << 20, 256, tip)
        self.states_disk = _megabytes(load.kept_states_disk_mb, 1 << 22, 1024, tip)
        form.addRow("Chat memory cache (RAM)", self.states_ram)
        states_row = QHBoxLayout()
        states_row.addWidget(self.states_disk, 1)
        self.states_usage = QLabel()
        self.states_usage.setObjectName("hint")
        states_row.addWidget(self.states_usage)
        self.clear_states = QPushButton("Clear")
        self.clear_states.setToolTip("Forget every kept chat state (chats themselves are not touched)")
        states_row.addWidget(self.clear_states)
        form.addRow("Chat memory cache (disk)", states_row)
        self._on_clear_states = on_clear_states
        self.clear_states.clicked.connect(self._clear_states)
        self._show_usage()
        self.prompt_lookup = QCheckBox("Speed up answers that quote the chat (prompt-lookup drafts)")
        self.prompt_lookup.setToolTip(
            "When an answer repeats text from the conversation or its documents, the model checks several "
            "tokens at once, only where that is likely to pay: answers that quote nothing are not slowed. "
            "The answer is the same as without it."
        )
        self.prompt_lookup.setChecked(load.prompt_lookup)
        form.addRow("Faster quoting", self.prompt_lookup)
        draft_row = QHBoxLayout()
        self.draft_model = QLineEdit(load.draft_model or "")
        self.draft_model.setPlaceholderText("none: a small GGUF model of the same family (e.g. Llama 3.2 1B for 8B)")
        self.draft_model.setToolTip("It guesses the next words and the model checks them several at a time. "
                                    "It must share the model's vocabulary; answers stay the same.")
        draft_row.addWidget(self.draft_model, 1)
        choose = QPushButton("Choose…")
        choose.clicked.connect(self._choose_draft)
        draft_row.addWidget(choose)
        form.addRow("Helper model for speed", draft_row)
        workers_row = QHBoxLayout()
        self.workers = tuple(load.workers)  # Settings → Devices (app/ui/settings/devices.py)
        self.workers_label = QLabel()
        workers_row.addWidget(self.workers_label, 1)
        devices = QPushButton("Devices…")
        devices.setToolTip("Other computers running `paddock worker` that lend their GPU or CPU to the model")
        devices.clicked.connect(self._edit_devices)
        workers_row.addWidget(devices)
        form.addRow("Workers", workers_row)
        self._show_workers()
        note = QLabel("Model settings apply the next time a model is loaded.")
        note.setObjectName("hint")
        form.addRow(note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(520, 300)

    def _choose_draft(self) -> None:
        from app.ui.common.folders import open_file

        path = open_file(self, "Draft model", "GGUF models (*.gguf)")
        if path is not None:
            self.draft_model.setText(str(path))

    def _edit_devices(self) -> None:
        from app.ui.settings.devices import DevicesDialog

        dialog = DevicesDialog(self, self.workers)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.workers = dialog.workers()
            self._show_workers()

    def _show_workers(self) -> None:
        self.workers_label.setText(", ".join(self.workers) if self.workers else "none: this computer only")

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
            n_cpu_moe=self.expert_layers.value() if self.experts.currentIndex() == 2 else self.experts.currentData(),
            kept_states_ram_mb=self.states_ram.value(),
            kept_states_disk_mb=self.states_disk.value(),
            prompt_lookup=self.prompt_lookup.isChecked(),
            draft_model=self.draft_model.text().strip() or None,
            workers=self.workers,
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


def _license(license_id: str | None) -> str:
    """A license as its name, linked to its text when Paddock knows where that is."""
    from app.models.licenses import KNOWN_LICENSES

    if not license_id:
        return "license not stated"
    known = KNOWN_LICENSES.get(license_id.lower())
    if known is None:
        return f"license: {html.escape(license_id)}"
    return f"<a href='{html.escape(known.url, quote=True)}'>{html.escape(known.name)}</a>"


class AboutDialog(QDialog):
    """The app's licenses and those of the models in use ("Built with Llama" when one is a Llama)."""

    def __init__(self, parent: QWidget, models: list[GGUFInfo]) -> None:
        super().__init__(parent)
        self.setWindowTitle("About Paddock")
        items = [f"<li>{html.escape(info.name)} ({html.escape(info.quantization)}) — {_license(info.license)}</li>"
                 for info in models]
        llama = any("llama" in (info.license or "").lower() or "llama" in info.name.lower() for info in models)
        layout = QVBoxLayout(self)
        view = QTextBrowser()
        view.setOpenExternalLinks(True)  # the licenses' own pages, in the browser
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
