"""The message bridge: pages and controllers report, one place shows.

In the spirit of qutebrowser's ``utils/message.py``: a page that hits an error
or has news for the user calls :meth:`MessageBridge.error`, ``warning`` or
``notice`` and goes on; it never opens a dialog itself and never holds a
reference to the window.  The main window connects :attr:`MessageBridge.posted`
to the one function that decides how each kind is shown (errors and warnings
as a dialog, notices in the chat's notice bar, status words in the status bar).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

Level = Literal["error", "warning", "notice", "status"]


@dataclass(frozen=True)
class Message:
    level: Level
    text: str
    title: str = "Paddock"


class MessageBridge(QObject):
    """Signals:
        posted(Message): something the user should see.
    """

    posted = Signal(object)

    def error(self, text: str, title: str = "Paddock") -> None:
        log.warning("%s: %s", title, text)
        self.posted.emit(Message("error", text, title))

    def warning(self, text: str, title: str = "Paddock") -> None:
        log.info("%s: %s", title, text)
        self.posted.emit(Message("warning", text, title))

    def notice(self, text: str) -> None:
        """Something to know about the chat (context trimmed, template fallback, a model removed)."""
        self.posted.emit(Message("notice", text))

    def status(self, text: str) -> None:
        """A passing word on progress (indexing started), shown for a few seconds."""
        self.posted.emit(Message("status", text))
