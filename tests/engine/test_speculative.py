"""Prompt-lookup speculative decoding: the model's own output, faster when it quotes."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.client import Engine
from app.engine.speculative import PAUSE_TOKENS, PromptLookup
from app.engine.types import ChatMessage, LoadSettings, SamplingParams

PASSAGE = ("The lighthouse at Point Reyes was built in 1870. Its first-order Fresnel lens, made in France, "
           "has 1,032 pieces of glass and could be seen 24 miles out to sea. The keepers climbed 308 steps "
           "every evening to light the lamp and wind the clockwork that turned the lens.")
QUOTE = [ChatMessage("user", f"Repeat this passage exactly:\n\n{PASSAGE}")]
FREE = [ChatMessage("user", "Write a short story about a cat who learns to fly.")]


def test_draft_is_what_followed_the_same_tokens_before() -> None:
    lookup = PromptLookup([5, 6, 7, 8, 9, 10, 11, 1, 2])
    for t in (6, 7, 8):
        lookup.push(t)
    assert lookup.draft(room=3) == [9, 10, 11]  # ... 6 7 8 -> 9 10 11, as in the prompt
    assert lookup.draft(room=1) == [9]
    lookup.push(42)
    assert lookup.draft(room=4) == []  # "7 8 42" never occurred


def test_drafting_adapts_and_pauses_when_it_does_not_pay() -> None:
    lookup = PromptLookup(list(range(50)) * 2)
    lookup.push(0)
    lookup.push(1)
    lookup.push(2)
    start = lookup.draft_len
    lookup.result(start, start)
    assert lookup.draft_len == 2 * start  # a whole draft taken: longer drafts
    lookup.result(4, 0)
    lookup.result(4, 0)
    assert lookup.draft(room=8) == []  # refused twice in a row: a pause
    for t in range(3, 3 + PAUSE_TOKENS):
        lookup.push(t % 50)
    assert lookup.draft(room=8) != []


@pytest.fixture(scope="module")
def engines(instruct_model: Path) -> tuple[Engine, Engine]:
    plain, fast = Engine(), Engine()
    off = LoadSettings(n_ctx=4096, prompt_lookup=False, kept_states_ram_mb=0, kept_states_disk_mb=0)
    on = LoadSettings(n_ctx=4096, prompt_lookup=True, kept_states_ram_mb=0, kept_states_disk_mb=0)
    plain.start()
    plain.load(str(instruct_model), off)
    fast.start()
    fast.load(str(instruct_model), on)
    yield plain, fast  # type: ignore[misc]
    plain.close()
    fast.close()


@pytest.mark.parametrize("messages", [QUOTE, FREE], ids=["quoting", "free"])
def test_greedy_output_is_identical_to_plain_decoding(engines: tuple[Engine, Engine],
                                                      messages: list[ChatMessage]) -> None:
    plain, fast = engines
    params = SamplingParams(temperature=0.0, max_tokens=120, seed=1)
    a = plain.generate(messages, params)
    b = fast.generate(messages, params)
    assert b.text == a.text
    assert b.stats.completion_tokens == a.stats.completion_tokens
    assert a.stats.draft_tokens == 0
    # the comparison means something only where drafts were verified: most of a quote comes drafted; an
    # answer that quotes nothing has drafts refused and rolled back, and must still equal plain decoding
    assert b.stats.draft_tokens > 0
    if messages is QUOTE:
        assert b.stats.draft_accepted > a.stats.completion_tokens // 2  # most of the quote came drafted
    else:
        assert b.stats.draft_accepted < b.stats.draft_tokens  # a refused draft left the KV cache


def test_sampled_output_draws_what_plain_decoding_draws(engines: tuple[Engine, Engine]) -> None:
    """With a seed, each position is drawn from the model's distribution in the same order,
    and a draft token is kept only when it is the token drawn: the same answer."""
    plain, fast = engines
    drafted = 0
    for seed in (2, 3, 4):
        params = SamplingParams(temperature=0.8, max_tokens=80, seed=seed)
        a = plain.generate(QUOTE, params)
        b = fast.generate(QUOTE, params)
        assert b.text == a.text, seed
        drafted += b.stats.draft_tokens
    assert drafted > 0


def test_stop_during_a_draft_keeps_what_was_taken(engines: tuple[Engine, Engine]) -> None:
    _plain, fast = engines
    gen = fast.stream(QUOTE, SamplingParams(temperature=0.0, max_tokens=400))
    for i, _piece in enumerate(gen):
        if i == 3:
            fast.cancel()
    assert gen.result is not None
    assert gen.result.stats.finish_reason == "cancelled"
    assert gen.result.text == gen.text
    after = fast.generate(QUOTE, SamplingParams(temperature=0.0, max_tokens=10, seed=1))
    assert after.text  # the engine goes on


def test_a_draft_model_drafts_and_the_output_stays_the_model_s(instruct_model: Path, test_model: Path) -> None:
    """SmolLM2 drafting for itself (the same vocabulary): nearly every draft is taken, the greedy
    answer is the plain one. A model of another vocabulary (Gemma) is refused with a notice."""
    params = SamplingParams(temperature=0.0, max_tokens=60, seed=1)
    common = {"n_ctx": 2048, "prompt_lookup": False, "kept_states_ram_mb": 0, "kept_states_disk_mb": 0}
    with Engine() as eng:
        eng.load(str(instruct_model), LoadSettings(**common))  # type: ignore[arg-type]
        plain = eng.generate(FREE, params)
        loaded = eng.load(str(instruct_model), LoadSettings(draft_model=str(instruct_model), **common))  # type: ignore[arg-type]
        assert loaded.draft_model == str(instruct_model)
        drafted = eng.generate(FREE, params)
        assert drafted.text == plain.text
        assert drafted.stats.draft_tokens > 0
        assert drafted.stats.draft_accepted >= drafted.stats.draft_tokens * 0.6  # near ties are decided alone
        other = eng.load(str(instruct_model), LoadSettings(draft_model=str(test_model), **common))  # type: ignore[arg-type]
        assert other.draft_model == ""
        assert any("another vocabulary" in n for n in other.notices)
        assert eng.generate(FREE, params).text == plain.text
