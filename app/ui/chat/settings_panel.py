"""The per-chat settings panel: system prompt and sampling, beside the conversation."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
)

from app.engine.types import SamplingParams


class SettingsPanel(QFrame):
    """Per-chat system prompt and sampling settings."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        super().__init__()
        self.setObjectName("settingsPanel")
        self.setFixedWidth(280)
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


def _spin(lo: float, hi: float, step: float, decimals: int) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    return box
