"""The status bar's figures: the model and where it runs, the last answer's speed, the context meter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar

from app.engine.types import LoadedModel
from app.store.chats import ChatStore


class StatusPanel:
    """Fills a :class:`QStatusBar`; its slots are connected to the chat controller by the window."""

    def __init__(self, bar: QStatusBar, store: ChatStore, model_name: Callable[[str], str]) -> None:
        self.bar = bar
        self.store = store
        self.model_name = model_name
        self.model = QLabel("No model loaded")
        self.speed = QLabel("")
        self.api = QLabel("")
        self.ctx_meter = QProgressBar()
        self.ctx_meter.setObjectName("contextMeter")
        self.ctx_meter.setFixedWidth(160)
        self.ctx_meter.setFormat("context %p%")
        self.ctx_meter.setValue(0)
        self.ctx_meter.setToolTip("How much of the model's context this chat uses")
        bar.addWidget(self.model, 1)
        bar.addPermanentWidget(self.api)
        bar.addPermanentWidget(self.speed)
        bar.addPermanentWidget(self.ctx_meter)

    def on_model_loading(self, path: str) -> None:
        self.model.setText(f"Loading {self.model_name(path)}…")
        self.ctx_meter.setRange(0, 0)  # busy indicator

    def on_model_loaded(self, loaded: LoadedModel) -> None:
        self.ctx_meter.setRange(0, 100)
        where = "CPU" if loaded.n_gpu_layers == 0 else f"{loaded.backend.upper()} ({loaded.n_gpu_layers} layers)"
        self.model.setText(f"{loaded.name} · {where} · {loaded.n_ctx} tokens context · loaded in {loaded.load_s:.1f}s")

    def on_model_failed(self, _message: str) -> None:
        self.ctx_meter.setRange(0, 100)

    def on_stream_finished(self, _conv: int, _message: int, status: str, error: str, stats: dict) -> None:
        if stats.get("completion_tokens"):
            self.speed.setText(
                f"{stats.get('tokens_per_s', 0):.1f} tok/s · first token {stats.get('ttft_s', 0):.2f}s · "
                f"{stats.get('prompt_reused', 0)} of {stats.get('prompt_tokens', 0)} prompt tokens from cache"
            )
        if stats.get("n_ctx"):
            self.show_context(stats)
        if status == "error" and "crashed" in error:
            self.model.setText("The engine stopped; the model will be loaded again on the next message")

    def show_conversation(self, conv_id: int | None) -> None:
        """Context meter from the figures of the conversation's latest answer."""
        if conv_id is None:
            return
        self.show_context(self.store.latest_answer_stats(conv_id))

    def show_context(self, stats: dict[str, Any]) -> None:
        n_ctx = stats.get("n_ctx") or 0
        used = stats.get("prompt_tokens", 0) + stats.get("completion_tokens", 0)
        self.ctx_meter.setRange(0, 100)
        self.ctx_meter.setValue(min(100, round(100 * used / n_ctx)) if n_ctx else 0)
        self.ctx_meter.setToolTip(
            f"{used} of {n_ctx} context tokens used by this chat" if n_ctx else "No answer in this chat yet"
        )

    def show_api(self, url: str) -> None:
        self.api.setText(f"API: {url}" if url else "")

    def flash(self, text: str, ms: int = 6000) -> None:
        self.bar.showMessage(text, ms)
