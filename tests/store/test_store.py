"""The chat database: real SQLite files, real crashes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.engine.types import SamplingParams
from app.errors import NewerDatabaseError, StoreError
from app.store import chats
from app.store.chats import MIGRATIONS, ChatStore
from app.store.db import Database


def test_pragmas_and_schema(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "chats.sqlite3")
    conn = store.db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.db.version == len(MIGRATIONS)


def test_conversation_round_trip_and_search(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "chats.sqlite3")
    conv = store.create_conversation("Trip planning", system_prompt="Be brief.",
                                     sampling=SamplingParams(temperature=0.2, seed=7))
    store.add_message(conv.id, "user", "Where is the Louvre?")
    answer = store.add_message(conv.id, "assistant", "", status="streaming")
    store.update_message(answer.id, content="In Paris", status="complete")
    other = store.create_conversation("Recipes")
    store.add_message(other.id, "user", "How long to boil an egg?")

    again = store.conversation(conv.id)
    assert again.sampling.temperature == 0.2
    assert again.sampling.seed == 7
    assert [m.content for m in store.messages(conv.id)] == ["Where is the Louvre?", "In Paris"]
    assert [c.title for c in store.conversations("louvre")] == ["Trip planning"]
    assert [c.title for c in store.conversations("recip")] == ["Recipes"]
    assert [c.title for c in store.conversations("egg")] == ["Recipes"]
    assert store.conversations('"; DROP TABLE messages; --') == []
    # most recently used first
    assert [c.title for c in store.conversations()] == ["Recipes", "Trip planning"]
    store.delete_conversation(conv.id)
    assert store.db.query("SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (conv.id,))[0][0] == 0


def test_delete_from_for_edit_and_regenerate(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "c.sqlite3")
    conv = store.create_conversation()
    ids = [store.add_message(conv.id, r, t).id for r, t in
           [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")]]
    store.delete_messages_from(ids[2])
    assert [m.content for m in store.messages(conv.id)] == ["a", "b"]


def test_streaming_answer_left_by_a_crash_becomes_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    store = ChatStore(path)
    conv = store.create_conversation()
    msg = store.add_message(conv.id, "assistant", "partial text", status="streaming")
    store.close()
    reopened = ChatStore(path)
    assert reopened.interrupted_on_open == 1
    m = reopened.message(msg.id)
    assert m.status == "interrupted"
    assert m.content == "partial text"


def test_export_import_round_trip(tmp_path: Path) -> None:
    store = ChatStore(tmp_path / "c.sqlite3")
    conv = store.create_conversation("Export me", model="/m/x.gguf", system_prompt="sys")
    store.add_message(conv.id, "user", "hello")
    store.add_message(conv.id, "assistant", "```python\nprint(1)\n```")
    data = store.export_json(conv.id)
    copy = store.import_json(data)
    assert copy.id != conv.id
    assert copy.title == "Export me"
    assert copy.system_prompt == "sys"
    assert [(m.role, m.content) for m in store.messages(copy.id)] == [
        (m.role, m.content) for m in store.messages(conv.id)
    ]
    md = store.export_markdown(conv.id)
    assert md.startswith("# Export me")
    assert "## You" in md
    assert "print(1)" in md
    with pytest.raises(StoreError, match="not a Paddock conversation"):
        store.import_json({"hello": 1})


def test_newer_schema_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    ChatStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(NewerDatabaseError, match="newer version of Paddock"):
        ChatStore(path)
    assert path.read_bytes() == before


def test_failing_migration_rolls_back_after_backup(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    store = ChatStore(path)
    conv = store.create_conversation("keep me")
    store.add_message(conv.id, "user", "precious")
    store.close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE messages ADD COLUMN extra TEXT")
        conn.execute("THIS IS NOT SQL")

    with pytest.raises(StoreError):
        Database(path, [*MIGRATIONS, broken])
    backup = path.with_name(path.name + f".bak-v{len(MIGRATIONS)}")
    assert backup.exists()
    reopened = ChatStore(path)
    assert reopened.db.version == len(MIGRATIONS)
    cols = [r[1] for r in reopened.db.query("PRAGMA table_info(messages)")]
    assert "extra" not in cols  # the half-done migration was rolled back
    assert reopened.messages(conv.id)[0].content == "precious"


def test_corrupt_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not a database at all" * 100)
    store = ChatStore(path)
    assert store.recovery_notice is not None
    assert "moved to" in store.recovery_notice
    assert list(tmp_path.glob("c.sqlite3.corrupt-*"))
    conv = store.create_conversation("fresh")
    assert store.conversation(conv.id).title == "fresh"


WRITER = textwrap.dedent(
    """
    import sys
    from app.store.chats import ChatStore
    store = ChatStore(__import__("pathlib").Path(sys.argv[1]))
    conv = store.create_conversation("crash test")
    answer = store.add_message(conv.id, "assistant", "", status="streaming")
    text = ""
    i = 0
    while True:
        m = store.add_message(conv.id, "user", f"message {i}")
        text += f"token{i} "
        store.update_message(answer.id, content=text)
        print(m.id, flush=True)  # printed only after the commit returned
        i += 1
    """
)


def test_killed_during_writes_keeps_every_committed_message(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout is not None
    committed = []
    for line in proc.stdout:
        committed.append(int(line))
        if len(committed) >= 200:
            break
    proc.kill()
    proc.wait()
    store = ChatStore(path)
    assert store.db.integrity_check() == "ok"
    present = {r[0] for r in store.db.query("SELECT id FROM messages")}
    assert set(committed) <= present
    streamed = next(m for m in store.messages(1) if m.role == "assistant")
    assert streamed.status == "interrupted"
    assert streamed.content.count("token") >= 200


def test_history_as_sent_keeps_passages_and_tool_turns(tmp_path: Path) -> None:
    """What the window and `paddock chat --continue` both send: each turn as it was sent."""
    from app.store.chats import latest_sources, sent_history

    store = ChatStore(tmp_path / "chats.sqlite3")
    conv = store.create_conversation("Tools")
    question = store.add_message(conv.id, "user", "Add 2 and 3.")
    store.update_message(question.id, sent="<sources>...</sources>\n\nQuestion: Add 2 and 3.")
    called = store.add_message(conv.id, "assistant", "")  # an answer that only called a tool
    store.update_message(called.id, sources=[{"chunk_id": 7}], tool_calls=[
        {"id": "abc123def", "name": "add", "arguments": {"a": 2, "b": 3}, "status": "done", "result": "5"}])
    failed = store.add_message(conv.id, "assistant", "half", status="error")
    store.update_message(failed.id, sources=[{"chunk_id": 9}])
    history = store.messages(conv.id)
    sent = sent_history("Be brief.", history)
    assert [(m.role, m.content) for m in sent] == [
        ("system", "Be brief."),
        ("user", "<sources>...</sources>\n\nQuestion: Add 2 and 3."),
        ("assistant", ""),
        ("tool", "5"),
    ]
    assert sent[2].tool_calls == ({"id": "abc123def", "name": "add", "arguments": {"a": 2, "b": 3}},)
    assert sent[3].tool_call_id == "abc123def"
    assert latest_sources(history) == [{"chunk_id": 7}]  # not the failed answer's


def test_branches_keep_every_version_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    store = ChatStore(path)
    conv = store.create_conversation()
    q1 = store.add_message(conv.id, "user", "q1")
    a1 = store.add_message(conv.id, "assistant", "a1")
    q2 = store.add_message(conv.id, "user", "q2")
    store.add_message(conv.id, "assistant", "a2")
    # regenerate the last answer: the first version stays
    store.fork_at(store.messages(conv.id)[-1].id)
    a2b = store.add_message(conv.id, "assistant", "a2 again")
    assert [m.content for m in store.messages(conv.id)] == ["q1", "a1", "q2", "a2 again"]
    assert len(store.versions(a2b.id)) == 2
    # edit the second question: a new branch from there
    store.fork_at(q2.id)
    q2b = store.add_message(conv.id, "user", "q2 edited")
    store.add_message(conv.id, "assistant", "a2 for the edit")
    assert [m.content for m in store.messages(conv.id)] == ["q1", "a1", "q2 edited", "a2 for the edit"]
    assert store.versions(q2b.id) == [q2.id, q2b.id]
    shown = store.versions_of(store.messages(conv.id))  # what the window reads for the messages on screen
    assert shown == {q2.id: (q2.id, q2b.id), q2b.id: (q2.id, q2b.id)}
    # back to the first version of the question: the conversation below follows (its latest answer)
    store.show_version(q2.id)
    assert [m.content for m in store.messages(conv.id)] == ["q1", "a1", "q2", "a2 again"]
    store.close()
    reopened = ChatStore(path)
    assert [m.content for m in reopened.messages(conv.id)] == ["q1", "a1", "q2", "a2 again"]
    assert [m["content"] for m in reopened.export_json(conv.id)["messages"]] == ["q1", "a1", "q2", "a2 again"]
    assert "a2 for the edit" not in reopened.export_markdown(conv.id)
    # a message added now continues the branch shown
    reopened.add_message(conv.id, "user", "q3")
    assert [m.content for m in reopened.messages(conv.id)][-2:] == ["a2 again", "q3"]
    imported = reopened.import_json(reopened.export_json(conv.id))
    assert [m.content for m in reopened.messages(imported.id)] == ["q1", "a1", "q2", "a2 again", "q3"]
    # deleting a question removes its branch below and shows what came before it
    reopened.delete_messages_from(q2.id)
    assert [m.content for m in reopened.messages(conv.id)] == ["q1", "a1"]
    assert reopened.versions(q2b.id) == [q2b.id]
    assert q1.id in [m.id for m in reopened.messages(conv.id)]
    assert a1.parent_id == q1.id


def test_the_branch_migration_keeps_every_existing_chat(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    old = Database(path, MIGRATIONS[:5])  # a chat file of the previous version
    with old.transaction() as conn:
        for conv in (1, 2):
            conn.execute("INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?, 't', 0, 0)",
                         (conv,))
        for i, (conv, role) in enumerate([(1, "user"), (2, "user"), (1, "assistant"), (1, "user"),
                                          (2, "assistant"), (1, "assistant")]):
            conn.execute("INSERT INTO messages (conversation_id, role, content, created_at, updated_at) "
                         "VALUES (?, ?, ?, 0, 0)", (conv, role, f"m{i}"))
    old.close()
    store = ChatStore(path)
    assert store.db.version == len(MIGRATIONS)
    assert [m.content for m in store.messages(1)] == ["m0", "m2", "m3", "m5"]
    assert [m.content for m in store.messages(2)] == ["m1", "m4"]
    assert [m.parent_id for m in store.messages(2)] == [None, store.messages(2)[0].id]


def test_the_image_migration_keeps_every_chat_and_pictures_stay_with_their_message(tmp_path: Path) -> None:
    from app.store.chats import StoredImage

    path = tmp_path / "c.sqlite3"
    old = Database(path, MIGRATIONS[:6])  # a chat file of the previous version (v6)
    with old.transaction() as conn:
        conn.execute("INSERT INTO conversations (id, title, created_at, updated_at) VALUES (1, 't', 0, 0)")
        conn.execute("INSERT INTO messages (conversation_id, role, content, created_at, updated_at) "
                     "VALUES (1, 'user', 'before', 0, 0)")
        conn.execute("UPDATE conversations SET current_leaf = 1 WHERE id = 1")
    old.close()
    store = ChatStore(path)
    assert store.db.version == len(MIGRATIONS)
    assert [(m.content, m.images) for m in store.messages(1)] == [("before", [])]
    pictures = [StoredImage("a.png", b"\x89PNG first"), StoredImage("b.jpg", b"\xff\xd8 second")]
    added = store.add_message(1, "user", "look", images=pictures)
    store.close()
    store = ChatStore(path)  # reopened: the pictures are there, in order
    assert store.message(added.id).images == pictures
    assert store.messages(1)[-1].images == pictures
    store.delete_conversation(1)
    assert store.db.query("SELECT COUNT(*) AS n FROM message_images")[0]["n"] == 0  # gone with their message
    store.close()


def _branch_by_walk(store: ChatStore, conv_id: int) -> list[int]:
    """The ids of the branch shown, read whole (the reference the constant-time reads are checked against)."""
    return [m.id for m in store.messages(conv_id)]


def test_a_long_branch_is_read_from_its_end_in_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a view of a long chat reads: the last messages and the branch's length up front (row = depth),
    earlier parts on demand, whatever the branches; the figures for the status bar without reading it all."""
    store = ChatStore(tmp_path / "c.sqlite3")
    conv = store.create_conversation()
    for i in range(30):
        store.add_message(conv.id, "user", f"q{i}")
        store.add_message(conv.id, "assistant", f"a{i}")
    store.update_message(store.messages(conv.id)[5].id, stats={"completion_tokens": 9})
    store.fork_at(store.messages(conv.id)[40].id)  # an edit: a branch from row 40
    for i in range(3):
        store.add_message(conv.id, "user", f"edited q{i}")
    ids = _branch_by_walk(store, conv.id)
    assert len(ids) == 43
    tail = store.branch_tail(conv.id, 10)
    assert tail == list(zip(range(33, 43), ids[-10:], strict=True))  # (depth = row, id), oldest first
    assert store.branch_before(tail[0][1], 20) == list(zip(range(13, 33), ids[13:33], strict=True))
    assert store.branch_before(ids[5], 20) == list(enumerate(ids[:5]))  # fewer at the start
    assert store.branch_before(ids[0], 20) == []
    assert store.branch_tail(conv.id, 100) == list(enumerate(ids))
    assert [m.depth for m in store.messages(conv.id)] == list(range(43))
    assert store.branch_tail(store.create_conversation().id, 10) == []
    last = store.last_message(conv.id)
    assert last is not None
    assert last.content == "edited q2"
    # the newest answer with figures, searched back over a bounded part of the branch
    assert store.latest_answer_stats(conv.id) == {"completion_tokens": 9}  # row 5, 37 messages back
    monkeypatch.setattr(chats, "STATS_LOOKBACK", 30)
    assert store.latest_answer_stats(conv.id) == {}  # farther back than it looks
    monkeypatch.undo()
    store.update_message(ids[30], stats={"completion_tokens": 4})  # a question's figures do not count
    store.update_message(ids[31], stats={"completion_tokens": 7})
    assert store.latest_answer_stats(conv.id) == {"completion_tokens": 7}
    imported = store.import_json(store.export_json(conv.id))
    assert store.branch_tail(imported.id, 100) == list(enumerate(_branch_by_walk(store, imported.id)))
    store.close()


def test_the_depth_migration_keeps_every_chat_and_its_branches(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    old = Database(path, MIGRATIONS[:7])  # a chat file of the previous version (v7)
    with old.transaction() as conn:
        conn.execute("INSERT INTO conversations (id, title, created_at, updated_at) VALUES (1, 't', 0, 0)")
        # 1 ← 2 ← 3, and 4 another version of 2 (an edit) followed by 5; the chat shows 1, 4, 5
        for msg_id, parent in ((1, None), (2, 1), (3, 2), (4, 1), (5, 4)):
            conn.execute("INSERT INTO messages (id, conversation_id, role, content, created_at, updated_at, "
                         "parent_id) VALUES (?, 1, 'user', ?, 0, 0, ?)", (msg_id, f"m{msg_id}", parent))
        conn.execute("UPDATE conversations SET current_leaf = 5 WHERE id = 1")
    old.close()
    store = ChatStore(path)
    assert store.db.version == len(MIGRATIONS)
    assert [m.content for m in store.messages(1)] == ["m1", "m4", "m5"]
    assert [store.message(i).depth for i in (1, 2, 3, 4, 5)] == [0, 1, 2, 1, 2]
    assert store.branch_tail(1, 10) == [(0, 1), (1, 4), (2, 5)]
    store.show_version(2)
    assert store.branch_tail(1, 10) == [(0, 1), (1, 2), (2, 3)]
    assert store.add_message(1, "assistant", "next").depth == 3
    store.close()
