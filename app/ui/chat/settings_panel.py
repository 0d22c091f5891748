"""The per-chat settings panel: system prompt, sampling and LoRA adapters, beside the conversation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.engine.types import LoraAdapter, SamplingParams
from app.ui.common.folders import open_file

# (name, path) of the library's adapters that fit the chat's model
AdapterChoices = Callable[[], list[tuple[str, str]]]


class SettingsPanel(QFrame):
    """Per-chat system prompt and sampling settings."""

    def __init__(self, on_change: Callable[[], None], adapter_choices: AdapterChoices | None = None) -> None:
        super().__init__()
        self.setObjectName("settingsPanel")
        self.setFixedWidth(264)
        self._on_change = on_change
        self._loading = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 12, 12, 12)
        self.outer = outer  # the chat's tool switches go below the form (ChatPage adds them)
        form = QFormLayout()
        outer.addLayout(form)
        outer.addStretch(1)
        title = QLabel("<b>Chat settings</b>")
        form.addRow(title)
        self.system = QPlainTextEdit()
        self.system.setPlaceholderText("e.g. You are a concise assistant.")
        self.system.setFixedHeight(110)
        form.addRow(QLabel("System prompt"))
        form.addRow(self.system)
        self.temperature = _spin(0.0, 2.0, 0.05, 2)
        self.top_p = _spin(0.0, 1.0, 0.01, 2)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 32768)
        self.seed = QSpinBox()
        self.seed.setRange(-1, 2**31 - 1)
        self.seed.setSpecialValueText("random")
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Max tokens", self.max_tokens)
        form.addRow("Seed", self.seed)
        # Shown for models whose template has a thinking switch (Qwen 3, DeepSeek V3.1, Gemma 4...).
        self.think = QCheckBox("Think before answering")
        self.think.setToolTip(
            "The model reasons first; its thinking is shown apart, above the answer, and is slower. "
            "Off: it answers at once."
        )
        self.think.hide()
        self._think_default = False
        form.addRow(self.think)
        self.adapters = AdapterList(adapter_choices or list, self._changed)
        form.addRow(self.adapters)
        hint = QLabel("Changes apply to the next answer.")
        hint.setObjectName("hint")
        form.addRow(hint)
        self.system.textChanged.connect(self._changed)
        for w in (self.temperature, self.top_p):
            w.valueChanged.connect(self._changed)
        self.max_tokens.valueChanged.connect(self._changed)
        self.seed.valueChanged.connect(self._changed)
        self.think.toggled.connect(self._changed)
        self._thinking_choice: bool | None = None

    def set_thinking_switch(self, available: bool, default_on: bool) -> None:
        """Show the Think switch when the loaded model's template has one."""
        self._loading = True
        self._think_default = default_on
        self.think.setVisible(available)
        self.think.setChecked(default_on if self._thinking_choice is None else self._thinking_choice)
        self._loading = False

    def show_settings(self, system_prompt: str, sampling: SamplingParams) -> None:
        self._loading = True
        self._thinking_choice = sampling.enable_thinking
        self.think.setChecked(self._think_default if sampling.enable_thinking is None else sampling.enable_thinking)
        self.system.setPlainText(system_prompt)
        self.temperature.setValue(sampling.temperature)
        self.top_p.setValue(sampling.top_p)
        self.max_tokens.setValue(sampling.max_tokens)
        self.seed.setValue(-1 if sampling.seed is None else sampling.seed)
        self._loading = False

    def sampling(self, base: SamplingParams) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature.value(),
            top_p=self.top_p.value(),
            top_k=base.top_k,
            min_p=base.min_p,
            repeat_penalty=base.repeat_penalty,
            max_tokens=self.max_tokens.value(),
            seed=None if self.seed.value() < 0 else self.seed.value(),
            enable_thinking=self._thinking(base),
            tool_choice=base.tool_choice,
        )

    def _thinking(self, base: SamplingParams) -> bool | None:
        if self.think.isHidden():
            return base.enable_thinking  # this model has no switch: keep the chat's choice
        if base.enable_thinking is None and self.think.isChecked() == self._think_default:
            return None  # still the template's own default
        return self.think.isChecked()

    def _changed(self) -> None:
        if not self._loading:
            self._on_change()


class AdapterList(QWidget):
    """The chat's LoRA adapters, each with its scale (0 turns one off); *Add adapter* offers the library's
    adapters for the chat's model, or any adapter file.  A change applies to the next answer without
    reloading the model; an adapter that does not fit is refused with the reason when the answer starts."""

    def __init__(self, choices: AdapterChoices, on_change: Callable[[], None]) -> None:
        super().__init__()
        self._choices = choices
        self._on_change = on_change
        self._rows: list[tuple[str, QWidget, QDoubleSpinBox]] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 6, 0, 0)
        layout.addWidget(QLabel("LoRA adapters"))
        self._box = QVBoxLayout()
        layout.addLayout(self._box)
        self.add_button = QToolButton()
        self.add_button.setText("Add adapter…")
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.menu = QMenu(self.add_button)
        self.menu.aboutToShow.connect(self._fill_menu)
        self.add_button.setMenu(self.menu)
        layout.addWidget(self.add_button)

    def adapters(self) -> list[LoraAdapter]:
        return [LoraAdapter(path, spin.value()) for path, _, spin in self._rows]

    def set_adapters(self, adapters: list[LoraAdapter]) -> None:
        for _, row, _ in self._rows:
            row.deleteLater()
        self._rows = []
        for adapter in adapters:
            self._add_row(adapter.path, adapter.scale)

    def add(self, path: str, scale: float = 1.0) -> None:
        if any(p == path for p, _, _ in self._rows):
            return
        self._add_row(path, scale)
        self._on_change()

    def remove(self, path: str) -> None:
        for entry in list(self._rows):
            if entry[0] == path:
                self._rows.remove(entry)
                entry[1].deleteLater()
        self._on_change()

    def _add_row(self, path: str, scale: float) -> None:
        row = QWidget()
        line = QHBoxLayout(row)
        line.setContentsMargins(0, 0, 0, 0)
        name = QLabel(Path(path).stem)
        name.setToolTip(path)
        spin = _spin(-4.0, 4.0, 0.1, 2)
        spin.setValue(scale)
        spin.setToolTip("Scale: 1 applies the adapter as trained, 0 turns it off")
        spin.valueChanged.connect(self._on_change)
        remove = QToolButton()
        remove.setText("✕")
        remove.setToolTip("Remove this adapter from the chat")
        remove.clicked.connect(lambda: self.remove(path))
        line.addWidget(name, 1)
        line.addWidget(spin)
        line.addWidget(remove)
        self._box.addWidget(row)
        self._rows.append((path, row, spin))

    def _fill_menu(self) -> None:
        self.menu.clear()
        for name, path in self._choices():
            action = self.menu.addAction(name)
            action.setToolTip(path)
            action.triggered.connect(lambda _=False, p=path: self.add(p))
        if not self.menu.isEmpty():
            self.menu.addSeparator()
        self.menu.addAction("Adapter file…").triggered.connect(self._choose_file)

    def _choose_file(self) -> None:
        path = open_file(self, "Add a LoRA adapter", "GGUF adapters (*.gguf)")
        if path is not None:
            self.add(str(path))


def _spin(lo: float, hi: float, step: float, decimals: int) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    return box
