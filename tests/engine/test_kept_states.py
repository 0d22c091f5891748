"""Kept conversation states: chat switches and restarts evaluate only new tokens; bad state
files are ignored and removed; none of it may stop an answer."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import paths
from app.engine.client import Engine
from app.engine.kvstates import MAGIC, StateStore
from app.engine.types import ChatMessage, LoadSettings, SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=6, seed=1)
SETTINGS = LoadSettings(n_ctx=4096)


def history(tag: str, turns: int = 4) -> list[ChatMessage]:
    msgs = []
    for i in range(turns):
        msgs += [ChatMessage("user", f"{tag} question {i}: tell me about item {i} of the {tag} list. " * 3),
                 ChatMessage("assistant", f"Item {i} of the {tag} list is a thing worth knowing. " * 4)]
    return [*msgs, ChatMessage("user", "And the next one?")]


def state_files() -> list[Path]:
    return sorted((paths.cache_dir() / "kv-states").glob("*.kvstate"))


@pytest.fixture
def smol(instruct_model: Path) -> Iterator[Engine]:
    eng = Engine()
    eng.start()
    eng.load(str(instruct_model), SETTINGS)
    yield eng
    eng.close()


def test_switching_chats_and_back_restores_the_first(smol: Engine) -> None:
    a, b = history("apple"), history("berry")
    cold = smol.generate(a, GREEDY)
    assert cold.stats.prompt_evaluated == cold.stats.prompt_tokens  # nothing kept yet
    other = smol.generate(b, GREEDY)
    assert other.stats.prompt_restored == 0
    back = smol.generate(a, GREEDY)
    assert back.stats.prompt_restored >= cold.stats.prompt_tokens - 1
    assert back.stats.prompt_evaluated <= 1
    assert back.text == cold.text  # the same state, the same greedy answer
    again = smol.generate(b, GREEDY)
    assert again.stats.prompt_evaluated <= 1
    assert again.text == other.text


def test_reopening_restores_from_disk(instruct_model: Path) -> None:
    a = history("cedar")
    with Engine() as eng:
        eng.load(str(instruct_model), SETTINGS)
        first = eng.generate(a, GREEDY)
    assert len(state_files()) == 1  # written when the engine shut down
    with Engine() as eng:
        eng.load(str(instruct_model), SETTINGS)
        follow = eng.generate([*a, ChatMessage("assistant", first.text), ChatMessage("user", "Thanks!")], GREEDY)
    assert follow.stats.prompt_restored >= first.stats.prompt_tokens - 1
    assert follow.stats.prompt_evaluated < 20


def test_a_state_of_other_settings_is_not_used(instruct_model: Path) -> None:
    a = history("dune")
    with Engine() as eng:
        eng.load(str(instruct_model), SETTINGS)
        eng.generate(a, GREEDY)
    with Engine() as eng:
        eng.load(str(instruct_model), LoadSettings(n_ctx=2048))  # another context size: another key
        other = eng.generate(a, GREEDY)
    assert other.stats.prompt_restored == 0
    assert other.stats.prompt_evaluated == other.stats.prompt_tokens


def corruptions(data: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    header_end = data.index(b"}", len(MAGIC)) + 1
    flipped = bytearray(data)
    flipped[rng.randrange(header_end, len(data))] ^= 0x40
    cases = [
        ("empty", b""),
        ("magic only", MAGIC),
        ("truncated header", data[: len(MAGIC) + 12]),
        ("truncated data", data[: len(data) // 2]),
        ("padded", data + b"\0" * 100),
        ("flipped data byte", bytes(flipped)),
        ("garbage", bytes(rng.randrange(256) for _ in range(4096))),
        ("other key", data.replace(b'"key": "', b'"key": "x', 1)),
        ("huge header length", MAGIC + (2**62).to_bytes(8, "little") + data[len(MAGIC) + 8 :]),
        ("tokens out of range", data.replace(b'"tokens": [', b'"tokens": [99999999999, ', 1)),
    ]
    for i in range(4):  # random mutations anywhere
        fuzzed = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            fuzzed[rng.randrange(len(fuzzed))] = rng.randrange(256)
        cases.append((f"fuzz {i}", bytes(fuzzed)))
    return cases


def test_bad_state_files_are_ignored_removed_and_the_answer_comes(instruct_model: Path) -> None:
    a = history("ember")
    with Engine() as eng:
        eng.load(str(instruct_model), SETTINGS)
        good = eng.generate(a, GREEDY)
    (path,) = state_files()
    data = path.read_bytes()
    rng = random.Random(7)
    with Engine() as eng:
        for name, bad in corruptions(data, rng):
            for old in state_files():
                old.unlink()
            path.write_bytes(bad)
            eng.load(str(instruct_model), SETTINGS)  # reads the folder again
            result = eng.generate(a, GREEDY)
            assert result.text == good.text, name
            if result.stats.prompt_restored == 0:
                assert result.stats.prompt_evaluated == result.stats.prompt_tokens, name
                assert not path.exists(), f"{name}: an unusable state file was kept"
            else:  # a mutation inside unused header white space can leave it valid
                assert name.startswith("fuzz"), name
            eng.unload()


def test_disk_budget_keeps_the_newest(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "k", ram_budget=0, disk_budget=3 * 1024 * 1024)
    for i in range(5):
        store.put(list(range(i * 1000, i * 1000 + 100)), bytes([i]) * (1024 * 1024))
    files = sorted(tmp_path.glob("*.kvstate"))
    assert len(files) == 2  # two of ~1 MiB fit under 3 MiB with their headers
    assert {s.tokens[0] for s in store.states} == {3000, 4000}
    assert sum(f.stat().st_size for f in files) <= 3 * 1024 * 1024


def test_full_disk_skips_the_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    store = StateStore(tmp_path, "k", ram_budget=0, disk_budget=1 << 30)
    real_open = Path.open

    def full_disk(self: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "w" in mode:
            # The fault a full disk raises; a real full disk is exercised in tests/cli
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(self, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", full_disk)
    store.put(list(range(100)), b"x" * 1000)
    assert list(tmp_path.iterdir()) == []
    assert store.states == []
