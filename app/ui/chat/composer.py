"""The message box under the conversation, and what a drag carries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QMimeData, Qt
from PySide6.QtGui import QDragEnterEvent, QKeyEvent
from PySide6.QtWidgets import QPlainTextEdit


def local_files(mime: QMimeData) -> list[Path]:
    """The local files and folders in a drag, if it carries any."""
    if not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]


class Composer(QPlainTextEdit):
    """Message box: Enter sends, Shift+Enter starts a new line."""

    def __init__(self, send: Callable[[], None]) -> None:
        super().__init__()
        self._send = send
        self.setPlaceholderText("Message Paddock…  (Enter to send, Shift+Enter for a new line)")
        self.setObjectName("composer")
        self.setFixedHeight(84)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self._send()
            return
        super().keyPressEvent(event)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_files(event.mimeData()):
            event.ignore()  # files go to the window, which attaches them to the chat
            return
        super().dragEnterEvent(event)
