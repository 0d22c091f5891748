"""The real app as a child process, as a user runs it: many streamed answers, then File > Quit.

Short in-process tests hid a crash every user on Python 3.11 met (PySide6 6.12
losing references until ``Fatal Python error: bool_dealloc`` at quit).  Here the
app runs as ``python -m app --drive N`` (app/ui/autopilot.py): the ordinary
QApplication, window, engine child and SQLite store, driven through its own
widgets across several chats with switching, Stop and Regenerate, and ended
through the Quit action.  What counts is what a user would see: the exit code,
stderr, and the answers in the database afterwards.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app import paths
from app.ui.autopilot import DrivePlan, run_driven

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

ANSWERS = 24
CHATS = 4


def test_app_streams_many_answers_and_quits_cleanly(tmp_path: Path, instruct_model: Path) -> None:
    plan = DrivePlan(model=str(instruct_model), answers=ANSWERS, chats=CHATS, max_tokens=64,
                     report=tmp_path / "report.json")
    run = run_driven(plan, timeout=900)  # PADDOCK_HOME: the test's own (conftest)
    assert not run.fatal_error, run.stderr[-3000:]
    assert run.returncode == 0, run.stderr[-3000:]
    data = run.report
    assert data["finished"], data["errors"]
    assert data["quit_via_action"]
    assert data["first_paint_s"] > 0  # the drive (and its heartbeat) began at the window's first paint
    # What startup made was frozen out of the collector's walks (run_app), and collections were timed.
    assert data["gc_pauses"]["frozen"] > 0
    assert data["gc_pauses"]["by_generation"][0]["count"] > 0
    assert data["errors"] == []
    answers = data["answers"]
    assert len(answers) == ANSWERS
    assert len(data["conversations"]) == CHATS
    statuses = [a["status"] for a in answers]
    assert "interrupted" in statuses  # Stop was pressed on some answers
    assert statuses.count("complete") >= ANSWERS // 2
    assert sum(a["completion_tokens"] for a in answers) > ANSWERS * 20  # real, long-ish answers
    # The reference counts of the singletons did not fall while the app ran (they fall by hundreds
    # per answer on the broken PySide6 / Python combination).
    for name, start in data["refcounts_start"].items():
        assert data["refcounts_end"][name] >= start - 500, (name, start, data["refcounts_end"][name])
    # Every answer is in SQLite with the status the window reported; regenerated ones replaced theirs.
    db = sqlite3.connect(paths.database_path())
    try:
        rows = dict(db.execute("SELECT id, status FROM messages WHERE role = 'assistant'").fetchall())
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    kept = [a for a in answers if a["message"] in rows]
    replaced = [a for a in answers if a["message"] not in rows]
    assert len(replaced) <= ANSWERS // 6 + 1  # only answers that Regenerate replaced are gone
    for a in kept:
        assert rows[a["message"]] == a["status"]
    assert len(rows) == len(kept)
