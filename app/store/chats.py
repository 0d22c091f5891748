"""Conversations and messages in SQLite.

An assistant answer is inserted with status ``streaming`` before the first
token and rewritten as it grows, so a crash of the app or the engine keeps what
was generated; at the next start, answers still marked ``streaming`` become
``interrupted``.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.engine.types import ChatMessage, GenerationStats, LoraAdapter, Role, SamplingParams
from app.errors import StoreError
from app.store.db import Database, Migration

MessageStatus = Literal["complete", "streaming", "interrupted", "error"]


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL DEFAULT 'New chat',
            model TEXT,
            system_prompt TEXT NOT NULL DEFAULT '',
            sampling TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the UI keys live text by id
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'complete'
                CHECK (status IN ('complete', 'streaming', 'interrupted', 'error')),
            error TEXT,
            model TEXT,
            stats TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX messages_by_conversation ON messages(conversation_id, id)")
    conn.execute("CREATE INDEX conversations_by_use ON conversations(updated_at DESC)")
    conn.execute(
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
    )
    # Full-text search over message content for the sidebar's search box.
    conn.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id')"
    )
    conn.execute(
        """CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END"""
    )
    conn.execute(
        """CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        END"""
    )
    conn.execute(
        """CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
            INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
        END"""
    )


def _v2(conn: sqlite3.Connection) -> None:
    # The document passages an answer was given (JSON list), so its citations open them.
    conn.execute("ALTER TABLE messages ADD COLUMN sources TEXT")


def _v3(conn: sqlite3.Connection) -> None:
    # A reasoning model's thinking, kept apart from the answer (never in ``content``, so
    # never in search, copy or citations).
    conn.execute("ALTER TABLE messages ADD COLUMN reasoning TEXT NOT NULL DEFAULT ''")


def _v4(conn: sqlite3.Connection) -> None:
    # A user message exactly as the model was given it (with its document passages), so that
    # later turns send the same history and the KV cache keeps matching it (NULL: as typed).
    conn.execute("ALTER TABLE messages ADD COLUMN sent TEXT")


def _v5(conn: sqlite3.Connection) -> None:
    # The tools an answer called (JSON list of {id, name, arguments, server, status, result, is_error}):
    # shown with the answer, and sent back to the model as its calls and their results.
    conn.execute("ALTER TABLE messages ADD COLUMN tool_calls TEXT")


def _v6(conn: sqlite3.Connection) -> None:
    # Branches: each message follows its parent (NULL: the first of a chat), so an edited message
    # or a regenerated answer is a sibling of the one it replaces, which stays. The chat shows the
    # branch ending at ``current_leaf``. Every existing chat becomes one branch, as it was.
    conn.execute("ALTER TABLE messages ADD COLUMN parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE")
    conn.execute("ALTER TABLE conversations ADD COLUMN current_leaf INTEGER")
    conn.execute(
        """UPDATE messages SET parent_id = (
               SELECT MAX(p.id) FROM messages p WHERE p.conversation_id = messages.conversation_id
               AND p.id < messages.id)"""
    )
    conn.execute(
        "UPDATE conversations SET current_leaf = (SELECT MAX(id) FROM messages m WHERE m.conversation_id = "
        "conversations.id)"
    )
    conn.execute("CREATE INDEX messages_by_parent ON messages(conversation_id, parent_id, id)")


def _v7(conn: sqlite3.Connection) -> None:
    # Pictures shown with a user message, in order: the file's own bytes (PNG, JPEG...), decoded again
    # when the conversation is sent (the same pixels, so the KV cache keeps matching). Every chat stays.
    conn.execute(
        """CREATE TABLE message_images (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            data BLOB NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX message_images_by_message ON message_images(message_id, position)")


def _v8(conn: sqlite3.Connection) -> None:
    # Each message's depth in its chat (0: the first message; a message's depth never changes, as its parent
    # does not): the length of the branch shown is its leaf's depth + 1, known without walking the branch,
    # so a chat of any length opens as fast. Every existing chat keeps its messages; their depths are
    # worked out here, parents before children (a parent is always written before the messages that follow it).
    conn.execute("ALTER TABLE messages ADD COLUMN depth INTEGER NOT NULL DEFAULT 0")
    depth: dict[int, int] = {}
    rows = conn.execute("SELECT id, parent_id FROM messages ORDER BY id").fetchall()
    parents = {int(i): p for i, p in rows}
    for msg_id in parents:
        chain = [msg_id]  # up to the first message, or to one whose depth is known (one step, but for oddities)
        seen = {msg_id}
        while (parent := parents.get(chain[-1])) is not None and parent in parents and parent not in depth \
                and parent not in seen:
            chain.append(parent)
            seen.add(parent)
        base = depth.get(parent, -1) if parent is not None else -1
        for msg in reversed(chain):
            base += 1
            depth[msg] = base
    conn.executemany("UPDATE messages SET depth = ? WHERE id = ?", [(d, i) for i, d in depth.items() if d])


MIGRATIONS: list[Migration] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8]


@dataclass(frozen=True)
class StoredImage:
    """A picture attached to a message: its file name and encoded bytes (as the user gave them)."""

    name: str
    data: bytes


@dataclass
class Conversation:
    id: int
    title: str
    model: str | None
    system_prompt: str
    sampling: SamplingParams
    created_at: float
    updated_at: float


@dataclass
class Message:
    id: int
    conversation_id: int
    role: Role
    content: str
    status: MessageStatus
    error: str | None
    model: str | None
    stats: dict[str, Any] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    reasoning: str = ""
    sent: str | None = None  # a user message as the model was given it (with passages)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    parent_id: int | None = None  # the message this one follows (None: the chat's first)
    images: list[StoredImage] = field(default_factory=list)
    depth: int = 0  # the messages before this one in its chat: its row on any branch through it

    @property
    def sent_to_model(self) -> bool:
        """Part of the history the model is given (a failed or empty answer is not)."""
        return bool(self.content or self.tool_calls) and self.status != "error"

    def as_chat(self) -> ChatMessage:
        """The message as the model sees it in the history."""
        calls = tuple({"id": str(c.get("id", "")), "name": str(c.get("name", "")), "arguments": c.get("arguments", {})}
                      for c in self.tool_calls)
        if self.images:
            from app.engine.images import place_markers
            from app.imaging import decode_image_cached  # (Qt's image readers: outside the core)

            pictures = tuple(decode_image_cached(i.data, i.name) for i in self.images)
            text = place_markers(self.sent or self.content, len(pictures))
            return ChatMessage(self.role, text, self.reasoning, tool_calls=calls, images=pictures)
        return ChatMessage(self.role, self.sent or self.content, self.reasoning, tool_calls=calls)

    def as_chat_messages(self) -> list[ChatMessage]:
        """The message, and for an answer that called tools, each call's result as a tool turn."""
        out = [self.as_chat()]
        for c in self.tool_calls:
            result = c.get("result")
            if result is None:
                result = "The call did not run." if c.get("status") != "denied" else "The user declined this call."
            out.append(ChatMessage("tool", str(result), tool_call_id=str(c.get("id", "")), name=str(c.get("name", ""))))
        return out


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"],
        title=row["title"],
        model=row["model"],
        system_prompt=row["system_prompt"],
        sampling=SamplingParams.from_dict(json.loads(row["sampling"] or "{}")),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# The branch a chat shows: from its current leaf up through the parents (depth 0 = the newest message).
_BRANCH = """WITH RECURSIVE path(id, depth) AS (
    SELECT current_leaf, 0 FROM conversations WHERE id = ? AND current_leaf IS NOT NULL
    UNION ALL
    SELECT m.parent_id, path.depth + 1 FROM messages m JOIN path ON m.id = path.id
    WHERE m.parent_id IS NOT NULL)"""

# (depth, id) of up to ? messages of a branch from the one the first SELECT gives up through its parents, oldest
# first: work in proportion to the number asked for, whatever the chat's length.
_WALK = """WITH RECURSIVE path(id, parent, depth) AS (
    {start}
    UNION ALL
    SELECT m.id, m.parent_id, m.depth FROM messages m JOIN path ON m.id = path.parent LIMIT ?)
SELECT depth, id FROM path ORDER BY depth"""
STATS_LOOKBACK = 100  # messages searched back for the latest answer's figures


def _message(row: sqlite3.Row) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        role=row["role"],
        content=row["content"],
        status=row["status"],
        error=row["error"],
        model=row["model"],
        stats=json.loads(row["stats"]) if row["stats"] else {},
        sources=json.loads(row["sources"]) if row["sources"] else [],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        reasoning=row["reasoning"] or "",
        sent=row["sent"],
        tool_calls=json.loads(row["tool_calls"]) if row["tool_calls"] else [],
        parent_id=row["parent_id"],
        depth=row["depth"],
    )


class ChatStore:
    """CRUD for conversations and messages.  Thread-safe (one lock in :class:`Database`)."""

    def __init__(self, path: Path) -> None:
        self.db = Database(path, MIGRATIONS)
        self.interrupted_on_open = self._recover_streaming()

    @property
    def recovery_notice(self) -> str | None:
        return self.db.recovery_notice

    def close(self) -> None:
        self.db.close()

    def _recover_streaming(self) -> int:
        """Answers left ``streaming`` by a crash become ``interrupted`` (text kept)."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE messages SET status = 'interrupted', "
                "error = COALESCE(error, 'Paddock stopped before this answer finished') "
                "WHERE status = 'streaming'"
            )
            return cur.rowcount

    # -- conversations ---------------------------------------------------------

    def create_conversation(
        self,
        title: str = "New chat",
        model: str | None = None,
        system_prompt: str = "",
        sampling: SamplingParams | None = None,
    ) -> Conversation:
        now = time.time()
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO conversations (title, model, system_prompt, sampling, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (title, model, system_prompt, json.dumps((sampling or SamplingParams()).to_dict()), now, now),
            )
            conv_id = int(cur.lastrowid or 0)
        return self.conversation(conv_id)

    def conversation(self, conv_id: int) -> Conversation:
        rows = self.db.query("SELECT * FROM conversations WHERE id = ?", (conv_id,))
        if not rows:
            raise StoreError(f"conversation {conv_id} does not exist")
        return _conversation(rows[0])

    def conversations(self, search: str = "") -> list[Conversation]:
        """Most recently used first; ``search`` matches titles and message text."""
        if not search.strip():
            rows = self.db.query("SELECT * FROM conversations ORDER BY updated_at DESC, id DESC")
            return [_conversation(r) for r in rows]
        like = f"%{search.strip()}%"
        fts = _fts_query(search)
        sql = (
            "SELECT * FROM conversations WHERE title LIKE ? "
            "OR id IN (SELECT conversation_id FROM messages WHERE id IN "
            "(SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)) "
            "ORDER BY updated_at DESC, id DESC"
        )
        return [_conversation(r) for r in self.db.query(sql, (like, fts))]

    def search_snippets(self, search: str, words: int = 10) -> dict[int, str]:
        """For each conversation whose messages match ``search``: a few words of its latest matching message
        around the match (what the sidebar shows under the title, so a user sees why a chat is listed)."""
        if not search.strip():
            return {}
        sql = (
            "SELECT m.conversation_id, snippet(messages_fts, 0, '', '', '…', ?) FROM messages_fts "
            "JOIN messages m ON m.id = messages_fts.rowid WHERE messages_fts MATCH ? ORDER BY m.id DESC"
        )
        found: dict[int, str] = {}
        for conv_id, text in self.db.query(sql, (words, _fts_query(search))):
            found.setdefault(conv_id, " ".join(str(text).split()))
        return found

    def update_conversation(self, conv_id: int, **changes: Any) -> Conversation:
        allowed = {"title", "model", "system_prompt", "sampling"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown conversation fields: {sorted(unknown)}")
        if "sampling" in changes and isinstance(changes["sampling"], SamplingParams):
            changes["sampling"] = json.dumps(changes["sampling"].to_dict())
        if changes:
            cols = ", ".join(f"{k} = ?" for k in changes)
            with self.db.transaction() as conn:
                conn.execute(
                    f"UPDATE conversations SET {cols}, updated_at = ? WHERE id = ?",
                    (*changes.values(), time.time(), conv_id),
                )
        return self.conversation(conv_id)

    def delete_conversation(self, conv_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM conversations WHERE id = ?", (conv_id,))
            conn.execute("DELETE FROM settings WHERE key = ?", (_adapters_key(conv_id),))

    # -- a chat's LoRA adapters (kept in the settings table, keyed by the chat) --

    def chat_adapters(self, conv_id: int) -> list[LoraAdapter]:
        """The LoRA adapters (file, scale) the chat's answers are written with."""
        raw = self.get_setting(_adapters_key(conv_id), [])
        return [LoraAdapter(str(a["path"]), float(a.get("scale", 1.0)))
                for a in raw if isinstance(a, dict) and isinstance(a.get("path"), str)] if isinstance(raw, list) else []

    def set_chat_adapters(self, conv_id: int, adapters: Sequence[LoraAdapter]) -> None:
        self.set_setting(_adapters_key(conv_id), [{"path": a.path, "scale": a.scale} for a in adapters])

    def touch(self, conv_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), conv_id))

    # -- messages --------------------------------------------------------------

    def messages(self, conv_id: int) -> list[Message]:
        """The branch the chat shows, oldest first (what the window, exports and the CLI follow)."""
        rows = self.db.query(
            f"{_BRANCH} SELECT messages.* FROM path JOIN messages ON messages.id = path.id ORDER BY path.depth DESC",
            (conv_id,),
        )
        return self._with_images([_message(r) for r in rows])

    def _with_images(self, messages: list[Message]) -> list[Message]:
        ids = [m.id for m in messages if m.role == "user"]
        if not ids:
            return messages
        found: dict[int, list[StoredImage]] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows = self.db.query(
                f"SELECT message_id, name, data FROM message_images WHERE message_id IN ({','.join('?' * len(part))}) "
                "ORDER BY message_id, position", tuple(part))
            for r in rows:
                found.setdefault(r["message_id"], []).append(StoredImage(r["name"], bytes(r["data"])))
        for m in messages:
            m.images = found.get(m.id, [])
        return messages

    def branch_tail(self, conv_id: int, n: int) -> list[tuple[int, int]]:
        """(depth, id) of the last ``n`` messages of the branch the chat shows, oldest first: what a long chat's
        view needs up front. A message's depth is its row in the chat, so the last one's depth + 1 is the
        branch's length; read in the same time for a chat of any length."""
        start = ("SELECT m.id, m.parent_id, m.depth FROM conversations c JOIN messages m ON m.id = c.current_leaf "
                 "WHERE c.id = ?")
        rows = self.db.query(_WALK.format(start=start), (conv_id, n))
        return [(int(r["depth"]), int(r["id"])) for r in rows]

    def branch_before(self, message_id: int, n: int) -> list[tuple[int, int]]:
        """(depth, id) of the ``n`` messages before this one on its branch (fewer near the chat's start), oldest
        first: the earlier part of a long chat, read as the user scrolls up to it."""
        start = ("SELECT m.id, m.parent_id, m.depth FROM messages m "
                 "WHERE m.id = (SELECT parent_id FROM messages WHERE id = ?)")
        rows = self.db.query(_WALK.format(start=start), (message_id, n))
        return [(int(r["depth"]), int(r["id"])) for r in rows]

    def messages_by_id(self, ids: list[int]) -> dict[int, Message]:
        """Whole messages for some ids (one query), e.g. the part of a long chat the user looks at."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.query(f"SELECT * FROM messages WHERE id IN ({marks})", tuple(ids))
        return {m.id: m for m in self._with_images([_message(r) for r in rows])}

    def latest_answer_stats(self, conv_id: int) -> dict[str, Any]:
        """The figures of the newest answer with figures among the last STATS_LOOKBACK messages of the branch
        shown ({} if none): the walk up the branch stops at that answer, so a long chat costs no more."""
        figures = "CASE WHEN m.role = 'assistant' AND m.stats IS NOT NULL AND m.stats != '{}' THEN m.stats END"
        rows = self.db.query(
            f"""WITH RECURSIVE path(parent, stats, n) AS (
                SELECT m.parent_id, {figures}, 1 FROM conversations c JOIN messages m ON m.id = c.current_leaf
                WHERE c.id = ?
                UNION ALL
                SELECT m.parent_id, {figures}, path.n + 1 FROM messages m JOIN path ON m.id = path.parent
                WHERE path.stats IS NULL AND path.n < ?)
            SELECT stats FROM path WHERE stats IS NOT NULL LIMIT 1""",
            (conv_id, STATS_LOOKBACK),
        )
        return dict(json.loads(rows[0]["stats"])) if rows else {}

    def last_message(self, conv_id: int) -> Message | None:
        """The newest message of the branch the chat shows (None in an empty chat)."""
        rows = self.db.query("SELECT m.* FROM conversations c JOIN messages m ON m.id = c.current_leaf WHERE c.id = ?",
                             (conv_id,))
        return self._with_images([_message(rows[0])])[0] if rows else None

    def message(self, message_id: int) -> Message:
        rows = self.db.query("SELECT * FROM messages WHERE id = ?", (message_id,))
        if not rows:
            raise StoreError(f"message {message_id} does not exist")
        return self._with_images([_message(rows[0])])[0]

    def add_message(
        self,
        conv_id: int,
        role: Role,
        content: str,
        status: MessageStatus = "complete",
        model: str | None = None,
        *,
        images: Sequence[StoredImage] = (),
    ) -> Message:
        """Add a message at the end of the branch shown; it becomes that branch's end (a user message with
        the pictures it shows the model, in order)."""
        now = time.time()
        with self.db.transaction() as conn:
            row = conn.execute("SELECT c.current_leaf, m.depth FROM conversations c LEFT JOIN messages m "
                               "ON m.id = c.current_leaf WHERE c.id = ?", (conv_id,)).fetchone()
            parent = row[0] if row is not None else None
            depth = row[1] + 1 if parent is not None and row[1] is not None else 0
            cur = conn.execute(
                "INSERT INTO messages (conversation_id, role, content, status, model, created_at, updated_at, "
                "parent_id, depth) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conv_id, role, content, status, model, now, now, parent, depth),
            )
            message_id = int(cur.lastrowid or 0)
            for position, image in enumerate(images):
                conn.execute("INSERT INTO message_images (message_id, position, name, data) VALUES (?, ?, ?, ?)",
                             (message_id, position, image.name, image.data))
            conn.execute("UPDATE conversations SET updated_at = ?, current_leaf = ? WHERE id = ?",
                         (now, message_id, conv_id))
        return self.message(message_id)

    def update_message(
        self,
        message_id: int,
        content: str | None = None,
        status: MessageStatus | None = None,
        error: str | None = None,
        stats: GenerationStats | dict[str, Any] | None = None,
        *,
        sources: list[dict[str, Any]] | None = None,
        reasoning: str | None = None,
        sent: str | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> None:
        sets: list[str] = ["updated_at = ?"]
        params: list[object] = [time.time()]
        if status == "complete":
            sets.append("error = NULL")
        if isinstance(stats, GenerationStats):
            stats = stats.to_dict()
        text_columns = {"content": content, "status": status, "error": error, "reasoning": reasoning, "sent": sent}
        json_columns = {"stats": stats, "sources": sources, "tool_calls": tool_calls}
        for column, value in text_columns.items():
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value)
        for column, data in json_columns.items():
            if data is not None:
                sets.append(f"{column} = ?")
                params.append(json.dumps(data, ensure_ascii=False))
        params.append(message_id)
        with self.db.transaction() as conn:
            conn.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?", params)

    # -- branches ----------------------------------------------------------------

    def fork_at(self, message_id: int) -> None:
        """Edit / regenerate: the branch shown now ends just before this message, which is kept; the next
        message added becomes its sibling (a new version), and "‹ 1 / 2 ›" switches between them."""
        msg = self.message(message_id)
        with self.db.transaction() as conn:
            conn.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?",
                         (msg.parent_id, msg.conversation_id))

    def versions(self, message_id: int) -> list[int]:
        """The ids of this message and its siblings (its other versions), oldest first."""
        msg = self.message(message_id)
        rows = self.db.query("SELECT id FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY id",
                             (msg.conversation_id, msg.parent_id))
        return [int(r["id"]) for r in rows]

    def versions_of(self, messages: list[Message]) -> dict[int, tuple[int, ...]]:
        """For those of ``messages`` that have other versions: their versions' ids, oldest first (one query
        for the part of a chat on screen, whatever the chat's length)."""
        if not messages:
            return {}
        parents = sorted({m.parent_id for m in messages if m.parent_id is not None})
        marks = ",".join("?" * len(parents))
        roots = any(m.parent_id is None for m in messages)
        # Each part looks its parents up in messages_by_parent (with ORDER BY id, or with an OR, SQLite would
        # rather walk the whole chat).
        conv = messages[0].conversation_id
        sql = f"SELECT id, parent_id FROM messages WHERE conversation_id = ? AND parent_id IN ({marks})"
        if roots:
            sql += " UNION ALL SELECT id, parent_id FROM messages WHERE conversation_id = ? AND parent_id IS NULL"
        rows = self.db.query(sql, (conv, *parents, *((conv,) if roots else ())))
        groups: dict[int | None, list[int]] = {}
        for r in rows:
            groups.setdefault(r["parent_id"], []).append(int(r["id"]))
        return {i: tuple(sorted(ids)) for ids in groups.values() if len(ids) > 1 for i in ids}

    def show_version(self, message_id: int) -> None:
        """Show the branch through this message: below it, the most recent answer at each step."""
        msg = self.message(message_id)
        leaf = message_id
        while True:
            rows = self.db.query("SELECT MAX(id) AS id FROM messages WHERE parent_id = ?", (leaf,))
            child = rows[0]["id"] if rows else None
            if child is None:
                break
            leaf = int(child)
        with self.db.transaction() as conn:
            conn.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?", (leaf, msg.conversation_id))

    def delete_messages_from(self, message_id: int) -> None:
        """Delete a message, its later versions' branches below it, and show the branch before it."""
        msg = self.message(message_id)
        with self.db.transaction() as conn:
            conn.execute(
                """WITH RECURSIVE below(id) AS (SELECT ? UNION ALL
                       SELECT m.id FROM messages m JOIN below ON m.parent_id = below.id)
                   DELETE FROM messages WHERE id IN (SELECT id FROM below)""", (message_id,))
            conn.execute("UPDATE conversations SET current_leaf = ? WHERE id = ? AND current_leaf NOT IN "
                         "(SELECT id FROM messages WHERE conversation_id = ?)",
                         (msg.parent_id, msg.conversation_id, msg.conversation_id))

    # -- settings --------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        rows = self.db.query("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def set_setting(self, key: str, value: Any) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    # -- export / import -------------------------------------------------------

    def export_json(self, conv_id: int, model_name: str | None = None) -> dict[str, Any]:
        """The chat as data; ``model`` is the model's path (or remote reference), ``model_name`` its display
        name (:mod:`app.models.names`) when the caller gives it."""
        conv = self.conversation(conv_id)
        return {
            "format": "paddock-conversation",
            "version": 1,
            "title": conv.title,
            "model": conv.model,
            **({"model_name": model_name} if model_name else {}),
            "system_prompt": conv.system_prompt,
            "sampling": conv.sampling.to_dict(),
            "adapters": [{"path": a.path, "scale": a.scale} for a in self.chat_adapters(conv_id)],
            "created_at": conv.created_at,
            "messages": [
                {
                    "role": m.role,
                    "content": m.content,
                    "status": m.status,
                    "model": m.model,
                    "stats": m.stats,
                    "sources": m.sources,
                    "created_at": m.created_at,
                    **({"reasoning": m.reasoning} if m.reasoning else {}),
                    **({"tool_calls": m.tool_calls} if m.tool_calls else {}),
                    **({"images": [{"name": i.name, "data": base64.b64encode(i.data).decode("ascii")}
                                   for i in m.images]} if m.images else {}),
                }
                for m in self.messages(conv_id)
            ],
        }

    def export_markdown(self, conv_id: int, model_name: str | None = None) -> str:
        """The chat as Markdown; the model is named ``model_name`` (its display name) when given."""
        conv = self.conversation(conv_id)
        lines = [f"# {conv.title}", ""]
        if conv.model:
            lines += [f"*Model: {model_name or Path(conv.model).name}*", ""]
        if conv.system_prompt:
            lines += ["**System prompt:**", "", conv.system_prompt, ""]
        for m in self.messages(conv_id):
            label = {"user": "You", "assistant": "Assistant", "system": "System"}[m.role]
            suffix = "" if m.status == "complete" else f" *({m.status})*"
            lines += [f"## {label}{suffix}", ""]
            if m.reasoning:
                # marked as thinking: a quoted block under its own label, apart from the answer
                quoted = [f"> {line}" if line else ">" for line in m.reasoning.splitlines()]
                lines += ["> **Thinking**", ">", *quoted, ""]
            lines += [m.content, ""]
            for image in m.images:  # the picture itself, inline, so the export stands on its own
                lines += [f"![{image.name}](data:{_mime(image.data)};base64,{base64.b64encode(image.data).decode()})",
                          ""]
            for c in m.tool_calls:
                args = json.dumps(c.get("arguments", {}), ensure_ascii=False)
                lines += [f"> **Tool call** `{c.get('name')}` {args} — {c.get('status', '')}", ">",
                          *[f"> {line}" for line in str(c.get("result") or "").splitlines()[:40]], ""]
            if m.sources:
                lines += ["Sources:", ""]
                lines += [f"{i}. {s.get('source', '')}, {s.get('location', '')}" for i, s in enumerate(m.sources, 1)]
                lines.append("")
        return "\n".join(lines)

    def import_json(self, data: dict[str, Any]) -> Conversation:
        """Create a conversation from :meth:`export_json` output.

        Raises:
            StoreError: the data is not a Paddock conversation export.
        """
        if not isinstance(data, dict) or data.get("format") != "paddock-conversation":
            raise StoreError("this file is not a Paddock conversation export")
        messages = data.get("messages")
        if not isinstance(messages, list):
            raise StoreError("the conversation export has no message list")
        now = time.time()
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO conversations (title, model, system_prompt, sampling, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    str(data.get("title") or "Imported chat"),
                    data.get("model"),
                    str(data.get("system_prompt") or ""),
                    json.dumps(SamplingParams.from_dict(data.get("sampling")).to_dict()),
                    float(data.get("created_at") or now),
                    now,
                ),
            )
            conv_id = int(cur.lastrowid or 0)
            parent: int | None = None  # an export is the branch that was shown: one chain
            for depth, m in enumerate(messages):
                role = m.get("role")
                status = m.get("status", "complete")
                if role not in ("system", "user", "assistant"):
                    raise StoreError(f"the conversation export has a message with role {role!r}")
                if status not in ("complete", "interrupted", "error"):
                    status = "interrupted"
                inserted = conn.execute(
                    "INSERT INTO messages (conversation_id, role, content, status, model, stats, sources, "
                    "created_at, updated_at, reasoning, tool_calls, parent_id, depth) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        conv_id, role, str(m.get("content", "")), status, m.get("model"),
                        json.dumps(m.get("stats") or {}),
                        json.dumps(m["sources"]) if isinstance(m.get("sources"), list) else None,
                        float(m.get("created_at") or now), now, str(m.get("reasoning") or ""),
                        json.dumps(m["tool_calls"]) if isinstance(m.get("tool_calls"), list) else None,
                        parent, depth,
                    ),
                )
                parent = int(inserted.lastrowid or 0)
                for position, image in enumerate(_exported_images(m.get("images"))):
                    conn.execute("INSERT INTO message_images (message_id, position, name, data) VALUES (?, ?, ?, ?)",
                                 (parent, position, image.name, image.data))
            conn.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?", (parent, conv_id))
        adapters = data.get("adapters")
        if isinstance(adapters, list) and adapters:
            self.set_setting(_adapters_key(conv_id), adapters)  # read back (and sifted) by chat_adapters
        return self.conversation(conv_id)


def _exported_images(value: Any) -> list[StoredImage]:
    """The pictures of an exported message (``[{name, data: base64}]``).

    Raises:
        StoreError: the list is malformed.
    """
    if value is None:
        return []
    try:
        return [StoredImage(str(i.get("name") or "image"), base64.b64decode(i["data"], validate=True)) for i in value]
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise StoreError("the conversation export has a damaged image") from exc


def _mime(data: bytes) -> str:
    """The MIME type of encoded image bytes, from their signature (for data: URIs in exports)."""
    for sig, mime in ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif"),
                      (b"BM", "image/bmp")):
        if data.startswith(sig):
            return mime
    return "image/webp" if data[8:12] == b"WEBP" else "application/octet-stream"


def sent_history(system_prompt: str, history: Sequence[Message]) -> list[ChatMessage]:
    """A stored conversation as the model is given it: the system prompt, then every turn as it
    was sent (a question with its passages, an answer with its tool calls and their results), so
    the prompt stays the same up to the newest question and the KV cache covers all of it.
    Failed answers and empty ones are left out."""
    messages = [ChatMessage("system", system_prompt)] if system_prompt.strip() else []
    for m in history:
        if m.sent_to_model:
            messages += m.as_chat_messages()
    return messages


def latest_sources(history: Sequence[Message]) -> list[dict[str, Any]]:
    """The passages the newest answer with documents was given (a follow-up may refer to them)."""
    return next((m.sources for m in reversed(history) if m.sources and m.sent_to_model), [])


def title_from(text: str) -> str:
    """A chat's title from its first message: one line, at most 48 characters."""
    line = " ".join(text.split())
    return line if len(line) <= 48 else line[:47].rstrip() + "…"


def _fts_query(text: str) -> str:
    """User text as an FTS5 query: each word a quoted prefix term (no FTS syntax injection)."""
    words = [w.replace('"', '""') for w in text.split() if w.strip()]
    return " ".join(f'"{w}"*' for w in words) or '""'


def _adapters_key(conv_id: int) -> str:
    return f"chat.{conv_id}.lora"
