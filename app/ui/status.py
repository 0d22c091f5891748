"""The status bar's figures: the model and where it runs, the last answer's speed, the context meter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QFrame, QLabel, QProgressBar, QStatusBar

from app.engine.remote import parse_ref
from app.engine.types import LoadedModel
from app.errors import StoreError
from app.store.chats import ChatStore
from app.ui.common.elided import ElidedLabel


class StatusPanel:
    """Fills a :class:`QStatusBar`; its slots are connected to the chat controller by the window."""

    def __init__(self, bar: QStatusBar, store: ChatStore, model_name: Callable[[str], str]) -> None:
        self.bar = bar
        self.store = store
        self.model_name = model_name
        self.model = ElidedLabel("No model loaded")
        self._predicted: float | None = None  # the placement planner's decode speed for the loaded model
        self._loaded: LoadedModel | None = None
        self._loading: str | None = None  # the path being loaded
        self.speed = QLabel("")
        self.speed.setObjectName("statusSpeed")
        self.api = QLabel("")
        self.api.setObjectName("statusApi")
        self.current: int | None = None  # the chat on screen: the speed shown is its last answer's, the model its
        self.ctx_meter = QProgressBar()
        self.ctx_meter.setObjectName("contextMeter")
        self.ctx_meter.setFixedWidth(160)
        self.ctx_meter.setFormat("context %p%")
        self.ctx_meter.setValue(0)
        self.ctx_meter.setToolTip("How much of the model's context this chat uses")
        bar.addWidget(self.model, 1)
        # Each figure apart, behind a thin line, shown only when it has something to say.
        self._api_line, self._speed_line = _separator(), _separator()
        for widget in (self._api_line, self.api, self._speed_line, self.speed, self.ctx_meter):
            bar.addPermanentWidget(widget)
        self.show_api("")
        self._show_speed({})

    def on_model_loading(self, path: str) -> None:
        self._loading = path
        self.ctx_meter.setRange(0, 0)  # busy indicator
        self.show_model()

    def on_model_loaded(self, loaded: LoadedModel) -> None:
        self.ctx_meter.setRange(0, 100)
        self._loaded, self._loading = loaded, None
        self._predicted = loaded.predicted_tokens_per_s
        self.show_model()

    def on_model_failed(self, _message: str) -> None:
        self.ctx_meter.setRange(0, 100)
        self._loading = None
        self.show_model()

    def show_model(self) -> None:
        """The model line names the model of the chat on screen, as its model menu does (never another):
        loading, loaded and where, a remote model, or that it loads with the next message."""
        try:
            chat_model = self.store.conversation(self.current).model if self.current is not None else None
        except StoreError:  # the chat was deleted
            self.current = chat_model = None
        loaded = self._loaded
        tip = ""
        if self.current is None:
            text = (f"Loaded: {self.model_name(loaded.path)}" if loaded else "No model loaded")
        elif not chat_model:
            text = "No model chosen for this chat: pick one in the model menu above"
        elif parse_ref(chat_model) is not None:
            text = f"{self.model_name(chat_model)} · remote model"
        elif self._loading is not None and Path(self._loading) == Path(chat_model):
            text = f"Loading {self.model_name(chat_model)}…"
        elif loaded is not None and Path(loaded.path) == Path(chat_model):
            where = "CPU" if loaded.n_gpu_layers == 0 else f"{loaded.backend.upper()} ({loaded.n_gpu_layers} layers)"
            text = (f"Loaded: {self.model_name(loaded.path)} · {where} · {loaded.n_ctx} tokens context · "
                    f"loaded in {loaded.load_s:.1f}s")
            tip = loaded.plan
        else:
            text = f"{self.model_name(chat_model)} · loads when you send a message"
            tip = f"Loaded now: {self.model_name(loaded.path)} (another chat's model)" if loaded else ""
        self.model.setText(text)
        self.model.setToolTip(tip)

    def on_stream_finished(self, conv: int, _message: int, status: str, error: str, stats: dict) -> None:
        if status == "error" and "crashed" in error:
            self._loaded = None
            self.model.setText("The engine stopped; the model will be loaded again on the next message")
        if conv != self.current:
            return  # an answer in another chat: its figures show when that chat does
        if stats.get("completion_tokens"):
            self._show_speed(stats)
        if stats.get("n_ctx"):
            self.show_context(stats)

    def _show_speed(self, stats: dict[str, Any]) -> None:
        if stats.get("completion_tokens"):
            predicted = f" (predicted {self._predicted:g})" if self._predicted else ""
            self.speed.setText(f"{stats.get('tokens_per_s', 0):.1f} tok/s{predicted}")
            self.speed.setToolTip(
                f"Last answer in this chat: {stats.get('tokens_per_s', 0):.1f} tokens per second, first token after "
                f"{stats.get('ttft_s', 0):.2f} s, {stats.get('prompt_reused', 0)} of {stats.get('prompt_tokens', 0)} "
                "prompt tokens from the cache"
            )
        else:
            self.speed.setText("")
            self.speed.setToolTip("")
        self.speed.setVisible(bool(self.speed.text()))
        self._speed_line.setVisible(bool(self.speed.text()))

    def show_conversation(self, conv_id: int | None) -> None:
        """Speed and context meter from the figures of the conversation's latest answer (none: cleared)."""
        self.current = conv_id
        stats = self.store.latest_answer_stats(conv_id) if conv_id else {}
        self._show_speed(stats)
        self.show_context(stats)
        self.show_model()

    def show_context(self, stats: dict[str, Any]) -> None:
        n_ctx = stats.get("n_ctx") or 0
        used = stats.get("prompt_tokens", 0) + stats.get("completion_tokens", 0)
        self.ctx_meter.setRange(0, 100)
        self.ctx_meter.setValue(min(100, round(100 * used / n_ctx)) if n_ctx else 0)
        self.ctx_meter.setToolTip(
            f"{used} of {n_ctx} context tokens used by this chat" if n_ctx else "No answer in this chat yet"
        )

    def show_api(self, url: str) -> None:
        self.api.setText(f"Local API on {url}" if url else "")
        self.api.setToolTip("The loaded model answers OpenAI-compatible requests here (this computer only)"
                            if url else "")
        self.api.setVisible(bool(url))
        self._api_line.setVisible(bool(url))

    def flash(self, text: str, ms: int = 6000) -> None:
        self.bar.showMessage(text, ms)


def _separator() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.VLine)
    line.setObjectName("statusSeparator")
    return line
