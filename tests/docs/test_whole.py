"""Whole-document answers (app/docs/whole.py) on the real engine with SmolLM2 and a small context.

The corpus is a few short logs written here; the context (512 tokens) is far smaller than
the corpus, so every answer needs several map calls.  SmolLM2-135M knows little: the tests
check what the machinery guarantees (every passage read once, in order; counts computed
from merged items; Stop honest; kept results invalidated), not the model's judgement.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.docs.index import Collection
from app.docs.service import Documents
from app.docs.whole import (
    Progress,
    WholeReader,
    WholeSettings,
    grounded,
    items_grammar,
    merge_items,
    pack,
    parse_items,
    propose_mode,
    question_kind,
)
from app.engine.client import Engine
from app.engine.types import ChatMessage, LoadSettings, SamplingParams

N_CTX = 512
SETTINGS = WholeSettings(map_tokens=48, reduce_tokens=48, combine_tokens=48)
SUPPLIERS = ["Calloway Ropes", "Dunmere Marine", "Ashgrove Paints", "Vintry Hoists", "Zell Anchors"]


def write_log(path: Path, harbour: str, first: int, n: int) -> None:
    records = []
    for i in range(n):
        number = first + i
        weather = "thick fog" if number % 3 == 0 else "clear skies"
        records.append(f"## Incident {number}\n\nIncident {number} at {harbour} harbour: a crane stalled while "
                       f"lifting a container. Weather: {weather}. Parts were supplied by "
                       f"{SUPPLIERS[number % len(SUPPLIERS)]}. The duty officer filed the report and the berth "
                       "reopened after three hours; no one was hurt.")
    path.write_text(f"# {harbour} harbour\n\n" + "\n\n".join(records) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def engine(instruct_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PADDOCK_HOME", str(tmp_path_factory.mktemp("whole-engine-home")))
        eng = Engine()
        eng.start()
    eng.load(str(instruct_model), LoadSettings(n_ctx=N_CTX))
    yield eng
    eng.close()


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[tuple[Documents, Collection, Path]]:
    folder = tmp_path / "logs"
    folder.mkdir()
    write_log(folder / "harwick.md", "Harwick", 100, 4)
    write_log(folder / "tarnby.md", "Tarnby", 200, 4)
    docs = Documents(tmp_path / "documents.sqlite3", embed_model=None)
    collection = docs.collection_for("logs", create=True)
    docs.add(collection, [folder])
    docs.indexer.run_pending()
    yield docs, collection, folder
    docs.close()


class Recording:
    """The real engine, with each prompt it was sent written down (a spy, not a fake)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.prompts: list[str] = []
        self.results: list[Any] = []

    @property
    def loaded(self) -> Any:
        return self.engine.loaded

    def stream(self, messages: Any, params: Any = None, raw_prompt: str | None = None, *,
               room: int | None = None) -> Any:
        self.prompts.append(messages[-1].content)
        return self.engine.stream(messages, params, raw_prompt, room=room)

    def count_tokens(self, messages: Any) -> tuple[int, int]:
        return self.engine.count_tokens(messages)

    def cancel(self) -> None:
        self.engine.cancel()


# -- no model needed --------------------------------------------------------------------------


def test_the_mode_proposed_follows_the_question() -> None:
    assert question_kind("How many incidents involved fog?") == "count"
    assert question_kind("List every supplier named in these contracts") == "list"
    assert question_kind("Which suppliers appear in all the logs?") == "list"
    assert question_kind("Summarise this report") == "summary"
    assert question_kind("Compare the two policies") == "compare"
    assert question_kind("When did the orchard open?") == "general"
    for whole in ("Summarise this report", "how many incidents involved fog?", "compare the two policies",
                  "What does each contract say about termination?", "list every supplier"):
        assert propose_mode(whole) == "whole", whole
    assert propose_mode("When did the orchard open?") == "passages"


def test_items_are_merged_and_counted_by_code() -> None:
    found = [("Calloway Ropes", 1), ("calloway ropes.", 4), ("The Zell Anchors", 2), ("Zell Anchors", 2),
             ("Dunmere Marine", 5)]
    items = merge_items(found)
    assert [(i.text, i.passages) for i in items] == [
        ("Calloway Ropes", [1, 4]), ("The Zell Anchors", [2]), ("Dunmere Marine", [5])]
    assert grounded("Zell anchors", "Parts were supplied by Zell Anchors.")
    assert not grounded("Harbour Ropes", "Parts were supplied by Zell Anchors.")
    cut = '{"items": [{"text": "Zell Anchors", "passage": 3}, {"text": "Dunm'
    assert parse_items(cut) == [("Zell Anchors", 3)]  # an answer cut by the token limit keeps what was complete
    assert pack([5, 5, 5, 20, 1], 10) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert '"7" | "8"' in items_grammar([7, 8])


# -- on the real engine -----------------------------------------------------------------------


def _passage_numbers(prompt: str) -> list[int]:
    body = prompt.split("<sources>", 1)[1]
    return [int(n) for n in re.findall(r"^\[(\d+)\] ", body, re.M)]


def test_every_passage_is_read_exactly_once_and_the_count_comes_from_merged_items(
    engine: Engine, logs: tuple[Documents, Collection, Path]
) -> None:
    docs, collection, _folder = logs
    spy = Recording(engine)
    reader = WholeReader(spy, docs.index, SETTINGS)
    corpus = "\n".join(c.text for d in docs.index.documents([collection.id]) for c in docs.index.chunks(d.id))
    assert engine.count_tokens([ChatMessage("user", corpus)])[0] > N_CTX  # larger than the context
    seen: list[Progress] = []
    answer = reader.answer([collection], "How many incidents involved fog?", on_progress=seen.append)
    total = sum(len(docs.index.chunks(d.id)) for d in docs.index.documents([collection.id]))
    read = [n for prompt in spy.prompts for n in _passage_numbers(prompt)]
    assert read == list(range(1, total + 1))  # each once, in document order
    assert answer.complete
    assert answer.passages_read == answer.passages_total == total
    assert answer.map_calls == len(spy.prompts) > 1
    assert [p.passages_read for p in seen] == sorted(p.passages_read for p in seen)
    assert seen[-1].passages_read == total
    assert seen[-1].eta_s == 0
    # the map prompt's fixed part was evaluated once and reused from the KV cache by every later call
    assert answer.fixed_prefix_tokens > 40
    assert answer.prompt_reused >= (answer.map_calls - 1) * answer.fixed_prefix_tokens
    # the count is the number of merged items, each found in the passage it cites
    assert answer.count == len(answer.items)
    assert re.search(rf"\*\*{answer.count}\*\*", answer.text)
    assert "read all 2 documents" in answer.text
    keys = [i["text"].casefold() for i in answer.items]
    assert len(keys) == len(set(keys))
    numbered = dict(enumerate(
        (c for d in docs.index.documents([collection.id]) for c in docs.index.chunks(d.id)), start=1))
    for item in answer.items:
        assert item["sources"]
        assert all(grounded(item["text"], numbered[s["passage"]].text) for s in item["sources"])


def test_stop_leaves_an_honest_partial_answer(engine: Engine, logs: tuple[Documents, Collection, Path]) -> None:
    docs, collection, _folder = logs
    reader = WholeReader(engine, docs.index, SETTINGS)

    def stop_after_first(p: Progress) -> None:
        if p.phase == "map" and p.groups_done == 1:
            reader.stop()

    partial = reader.answer([collection], "How many incidents involved fog?", on_progress=stop_after_first)
    assert not partial.complete
    assert 0 < partial.passages_read < partial.passages_total
    assert f"stopped after reading {partial.passages_read} of {partial.passages_total} passages" in partial.text
    assert "At least" in partial.text
    assert "not known" in partial.text
    summary = reader.answer([collection], "Summarise these logs.", on_progress=stop_after_first)
    assert not summary.complete
    assert summary.text.startswith("Stopped")
    assert "not an answer about the whole" in summary.text
    # the engine is not left cancelled: the next request runs to its end
    after = engine.generate([ChatMessage("user", "Say yes.")], SamplingParams(temperature=0, max_tokens=4))
    assert after.stats.finish_reason != "cancelled"


def test_a_summary_covers_every_document(engine: Engine, logs: tuple[Documents, Collection, Path]) -> None:
    docs, collection, _folder = logs
    summary = WholeReader(engine, docs.index, SETTINGS).answer([collection], "Summarise these logs.")
    assert summary.complete
    assert summary.kind == "summary"
    assert summary.reduce_calls >= 1
    # each document has its part, under the model's overview, whatever the model wrote
    assert "**By document**" in summary.text
    for name in ("harwick.md", "tarnby.md"):
        assert f"**{name}**:" in summary.text
    assert summary.text.endswith("(read all 2 documents, 8 passages)_")


def test_a_document_added_afterwards_invalidates_the_kept_map_results(
    engine: Engine, logs: tuple[Documents, Collection, Path]
) -> None:
    docs, collection, folder = logs
    question = "List every supplier named in these logs."
    first = WholeReader(engine, docs.index, SETTINGS).answer([collection], question)
    assert first.complete
    assert first.passages_from_cache == 0
    assert first.map_calls > 0
    again = WholeReader(engine, docs.index, SETTINGS).answer([collection], question)
    assert again.map_calls == 0
    assert again.passages_from_cache == again.passages_total
    assert again.text == first.text
    write_log(folder / "quillon.md", "Quillon", 300, 2)
    docs.add(collection, [folder])
    docs.indexer.run_pending()
    added = WholeReader(engine, docs.index, SETTINGS).answer([collection], question)
    new = len(docs.index.chunks(next(d for d in docs.index.documents([collection.id]) if d.name == "quillon.md").id))
    assert added.passages_total == first.passages_total + new
    assert added.passages_from_cache == first.passages_total  # the unchanged documents are not read again
    assert added.complete
    assert added.map_calls >= 1
    # a changed document is read again: its kept results belong to the old version
    write_log(folder / "harwick.md", "Harwick", 150, 2)
    docs.add(collection, [folder])
    docs.indexer.run_pending()
    changed = WholeReader(engine, docs.index, SETTINGS).answer([collection], question)
    harwick = next(d for d in docs.index.documents([collection.id]) if d.name == "harwick.md")
    assert changed.passages_from_cache == changed.passages_total - len(docs.index.chunks(harwick.id))


def test_docs_ask_whole_json(tmp_path: Path, instruct_model: Path, paddock_home: Path) -> None:
    import os

    folder = tmp_path / "logs"
    folder.mkdir()
    write_log(folder / "harwick.md", "Harwick", 100, 2)
    write_log(folder / "tarnby.md", "Tarnby", 200, 2)
    env = {**os.environ, "PADDOCK_HOME": str(paddock_home)}
    run = [sys.executable, "-m", "app.cli", "docs"]
    subprocess.run([*run, "add", "--collection", "logs", "--embed-model", "none", str(folder)], check=True,
                   capture_output=True, timeout=300, env=env)
    out = subprocess.run([*run, "ask", "--collection", "logs", "--model", str(instruct_model), "--ctx", str(N_CTX),
                          "--json", "How many incidents involved fog?"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["mode"] == "whole"  # Paddock's own choice for a count
    assert result["passages_read"] == result["passages_total"] > 1
    assert result["count"] == len(result["items"])
    assert all(item["sources"] and "passage" in item["sources"][0] for item in result["items"])
    chat = subprocess.run([sys.executable, "-m", "app.cli", "chat", "--model", str(instruct_model), "--collection",
                           "logs", "--ctx", str(N_CTX), "--whole", "--json", "How many incidents involved fog?"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert chat.returncode == 0, chat.stderr
    turn = json.loads(chat.stdout)
    assert turn["mode"] == "whole"
    assert turn["passages_read"] == turn["passages_total"] == result["passages_total"]
    # the same reading, kept by the first process: nothing is read again
    assert turn["passages_from_cache"] == turn["passages_total"]
    assert turn["map_calls"] == 0
    assert turn["count"] == result["count"]
    from app import paths
    from app.store.chats import ChatStore

    store = ChatStore(paths.database_path())
    try:
        question, answer = store.messages(turn["chat"])
        assert question.content == "How many incidents involved fog?"
        assert answer.status == "complete"
        assert answer.content == turn["text"]
        assert answer.stats["whole"]["passages_read"] == turn["passages_total"]
    finally:
        store.close()
    refused = subprocess.run([sys.executable, "-m", "app.cli", "chat", "--model", str(instruct_model), "--whole",
                              "hello"], capture_output=True, text=True, timeout=300, env=env)
    assert refused.returncode != 0
    assert "--collection" in refused.stderr
