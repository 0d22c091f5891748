"""Qt item models over the store and the model library.

While an answer streams, only the last row of :class:`MessageListModel`
changes, and only that row emits ``dataChanged``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractListModel, QByteArray, QModelIndex, QObject, QPersistentModelIndex, Qt

from app.errors import StoreError
from app.store.chats import ChatStore, Conversation, Message

Index = QModelIndex | QPersistentModelIndex


class ConvRole(IntEnum):
    Id = Qt.ItemDataRole.UserRole + 1
    Updated = Qt.ItemDataRole.UserRole + 2
    Model = Qt.ItemDataRole.UserRole + 3
    Snippet = Qt.ItemDataRole.UserRole + 4  # while searching: the matching message text ("" if the title matched)


class ConversationListModel(QAbstractListModel):
    """Conversations, most recently used first, filtered by a search string."""

    def __init__(self, store: ChatStore, parent: QObject | None = None,
                 model_name: Callable[[str], str] | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.model_name = model_name or (lambda model: Path(model).name)  # the window's: the display name
        self.search = ""
        self._rows: list[Conversation] = []
        self._snippets: dict[int, str] = {}
        self.refresh()

    def refresh(self) -> None:
        self.beginResetModel()
        self._rows = self.store.conversations(self.search)
        self._snippets = self.store.search_snippets(self.search)
        self.endResetModel()

    def set_search(self, text: str) -> None:
        self.search = text
        self.refresh()

    def conversation_at(self, row: int) -> Conversation | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def row_of(self, conv_id: int) -> int:
        return next((i for i, c in enumerate(self._rows) if c.id == conv_id), -1)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        conv = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return conv.title
        if role == Qt.ItemDataRole.ToolTipRole:
            model = self.model_name(conv.model) if conv.model else "no model chosen"
            return f"{conv.title}\n{model}\nlast used {_ago(conv.updated_at)}"
        if role == ConvRole.Id:
            return conv.id
        if role == ConvRole.Updated:
            return conv.updated_at
        if role == ConvRole.Model:
            return conv.model
        if role == ConvRole.Snippet:
            return self._snippets.get(conv.id, "")
        return None

    def roleNames(self) -> dict[int, QByteArray]:
        return {k: QByteArray(v) for k, v in {
            Qt.ItemDataRole.DisplayRole: b"title",
            ConvRole.Id: b"id",
            ConvRole.Updated: b"updated",
            ConvRole.Model: b"model",
        }.items()}


class MsgRole(IntEnum):
    Id = Qt.ItemDataRole.UserRole + 1
    Role = Qt.ItemDataRole.UserRole + 2
    Status = Qt.ItemDataRole.UserRole + 3
    Error = Qt.ItemDataRole.UserRole + 4
    Stats = Qt.ItemDataRole.UserRole + 5
    Sources = Qt.ItemDataRole.UserRole + 6
    Reasoning = Qt.ItemDataRole.UserRole + 7  # the model's thinking, apart from the answer
    ToolCalls = Qt.ItemDataRole.UserRole + 8  # the tools an answer called, with their results
    Versions = Qt.ItemDataRole.UserRole + 9  # the ids of this message's versions (edits, regenerations)
    Images = Qt.ItemDataRole.UserRole + 10  # the pictures a user message showed the model (StoredImage list)


PAGE = 40  # message ids read from the store at a time: a chat of any length opens after one page
READ = 16  # messages read at a time: about what a chat opens with


class Branch:
    """The messages of a chat's branch by row, read from the store a page at a time when first asked for.

    Opening a chat reads only the ids of its last PAGE messages, and with them the branch's length (a message's
    depth is its row); earlier ids, and the messages themselves READ at a time, are read when a row is shown,
    so a chat of 1,000 messages opens as fast as one of 10.
    """

    def __init__(self, store: ChatStore | None = None, conv_id: int | None = None) -> None:
        self.store = store
        self.conv_id = conv_id
        self._start = 0  # the row of _ids[0]: the ids of the rows above are not read yet
        self._ids: list[int] = []
        self._loaded: dict[int, Message] = {}
        self._versions: dict[int, tuple[int, ...]] = {}
        if store is not None and conv_id is not None:
            tail = store.branch_tail(conv_id, PAGE)
            self._start = tail[0][0] if tail else 0
            self._ids = [msg_id for _, msg_id in tail]

    def __len__(self) -> int:
        return self._start + len(self._ids)

    def id_at(self, row: int) -> int:
        """The id of the message at ``row``; the ids above the known ones are read down to it and a page more."""
        if not 0 <= row < len(self):
            raise IndexError(row)
        if row < self._start:
            assert self.store is not None
            above = self.store.branch_before(self._ids[0], self._start - row + PAGE)
            if not above or above[-1][0] != self._start - 1 or above[0][0] > row:
                raise IndexError(f"row {row}: the branch above row {self._start} could not be read")
            self._ids[:0] = [msg_id for _, msg_id in above]
            self._start = above[0][0]
        return self._ids[row - self._start]

    def __getitem__(self, row: int) -> Message:
        msg_id = self.id_at(row)
        msg = self._loaded.get(msg_id)
        if msg is None:
            assert self.store is not None
            # the rows around this one: views read a screen upwards from the newest, then grow upwards
            first = max(0, row - READ + 1)
            self.id_at(first)
            around = self._ids[first - self._start:row - self._start + READ]
            missing = [i for i in around if i not in self._loaded]
            fresh = self.store.messages_by_id(missing)
            self._loaded.update(fresh)
            self._versions.update(self.store.versions_of(list(fresh.values())))
            msg = self._loaded[msg_id]
        return msg

    def versions(self, row: int) -> tuple[int, ...]:
        """The ids of this row's message and its other versions (edits, regenerations), oldest first."""
        msg = self[row]
        return self._versions.get(msg.id, (msg.id,))

    def __setitem__(self, row: int, msg: Message) -> None:
        self._loaded[self.id_at(row)] = msg

    def row_of(self, message_id: int) -> int:
        """The row of that message (-1: not on this branch); the newest rows are looked through first."""
        for i in range(len(self._ids) - 1, -1, -1):
            if self._ids[i] == message_id:
                return self._start + i
        if self._start == 0 or self.store is None:
            return -1
        try:  # above the rows read so far? A message's depth is its row on any branch through it.
            msg = self.store.message(message_id)
        except StoreError:
            return -1
        if msg.conversation_id != self.conv_id or msg.depth >= self._start:
            return -1
        return msg.depth if self.id_at(msg.depth) == message_id else -1


class MessageListModel(QAbstractListModel):
    """The messages of one conversation; the streaming answer is the last row."""

    def __init__(self, store: ChatStore, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.conv_id: int | None = None
        self._rows = Branch()

    def load(self, conv_id: int | None, live: dict[int, tuple[str, str]] | None = None) -> None:
        """Show ``conv_id``; ``live`` gives fresher (answer, thinking) of answers still streaming."""
        self.beginResetModel()
        self.conv_id = conv_id
        self._rows = Branch(self.store, conv_id)
        for msg_id, (content, reasoning) in (live or {}).items():
            row = self._rows.row_of(msg_id)
            if row >= 0:
                msg = self._rows[row]
                msg.content, msg.reasoning = content, reasoning
        self.endResetModel()

    def reload(self, live: dict[int, tuple[str, str]] | None = None) -> None:
        self.load(self.conv_id, live)

    def message_at(self, row: int) -> Message | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def row_of(self, message_id: int) -> int:
        return self._rows.row_of(message_id)

    def append_text(self, message_id: int, text: str) -> None:
        self._append(message_id, "content", text, Qt.ItemDataRole.DisplayRole)

    def append_thinking(self, message_id: int, text: str) -> None:
        self._append(message_id, "reasoning", text, MsgRole.Reasoning)

    def _append(self, message_id: int, field: str, text: str, role: int) -> None:
        """Streamed text onto the answer's ``field``; only that row, only that role changes."""
        row = self.row_of(message_id)
        if row < 0:
            return
        msg = self._rows[row]
        setattr(msg, field, getattr(msg, field) + text)
        idx = self.index(row)
        self.dataChanged.emit(idx, idx, [role])

    def refresh_message(self, message_id: int) -> None:
        """Re-read one message (e.g. its document sources arrived while it streams)."""
        row = self.row_of(message_id)
        if row < 0:
            return
        fresh = self.store.message(message_id)
        # the streamed text is ahead of SQLite
        fresh.content, fresh.reasoning = self._rows[row].content, self._rows[row].reasoning
        self._rows[row] = fresh
        idx = self.index(row)
        self.dataChanged.emit(idx, idx, [MsgRole.Sources])

    def refresh_tool_calls(self, message_id: int) -> None:
        """Re-read an answer's tool calls (one was approved, ran or failed)."""
        row = self.row_of(message_id)
        if row < 0:
            return
        self._rows[row].tool_calls = self.store.message(message_id).tool_calls
        idx = self.index(row)
        self.dataChanged.emit(idx, idx, [MsgRole.ToolCalls])

    def finish(self, message_id: int) -> None:
        """Take the final state of a finished answer from the store."""
        row = self.row_of(message_id)
        if row < 0:
            return
        self._rows[row] = self.store.message(message_id)
        idx = self.index(row)
        self.dataChanged.emit(idx, idx)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        if role == MsgRole.Id:
            return self._rows.id_at(index.row())  # (the message itself not read)
        msg = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return msg.content
        if role == MsgRole.Role:
            return msg.role
        if role == MsgRole.Status:
            return msg.status
        if role == MsgRole.Error:
            return msg.error
        if role == MsgRole.Stats:
            return msg.stats
        if role == MsgRole.Sources:
            return msg.sources
        if role == MsgRole.Reasoning:
            return msg.reasoning
        if role == MsgRole.ToolCalls:
            return msg.tool_calls
        if role == MsgRole.Versions:
            return self._rows.versions(index.row())
        if role == MsgRole.Images:
            return msg.images
        return None

    def roleNames(self) -> dict[int, QByteArray]:
        return {k: QByteArray(v) for k, v in {
            Qt.ItemDataRole.DisplayRole: b"content",
            MsgRole.Id: b"id",
            MsgRole.Role: b"role",
            MsgRole.Status: b"status",
            MsgRole.Error: b"error",
            MsgRole.Stats: b"stats",
            MsgRole.Sources: b"sources",
            MsgRole.Reasoning: b"reasoning",
            MsgRole.ToolCalls: b"toolCalls",
            MsgRole.Versions: b"versions",
            MsgRole.Images: b"images",
        }.items()}


def _ago(ts: float) -> str:
    delta = max(0, time.time() - ts)
    if delta < 60:
        return "just now"
    if delta < 3600:
        return f"{int(delta // 60)} min ago"
    if delta < 86400:
        return f"{int(delta // 3600)} h ago"
    return time.strftime("%Y-%m-%d", time.localtime(ts))
