"""The rich-text view for what a model or a document wrote: it never loads a resource.

Shared by the conversation (:mod:`app.ui.chat.view`) and the passage viewer
(:mod:`app.ui.documents.panel`).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QTextBrowser


class SafeTextBrowser(QTextBrowser):
    """A rich-text view that never loads anything: no remote or local resources."""

    def loadResource(self, kind: int, name: QUrl | str) -> Any:
        return None
