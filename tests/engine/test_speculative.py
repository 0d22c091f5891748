"""Prompt-lookup speculative decoding: the model's own output, faster when it quotes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.client import Engine
from app.engine.speculative import (
    BACKOFF_FIRST,
    FIXED_COST_ENV,
    MAX_DRAFT,
    PRIOR_FIXED,
    PRIOR_PER_TOKEN,
    PromptLookup,
    VerifyCost,
)
from app.engine.types import ChatMessage, LoadSettings, SamplingParams

PASSAGE = ("The lighthouse at Point Reyes was built in 1870. Its first-order Fresnel lens, made in France, "
           "has 1,032 pieces of glass and could be seen 24 miles out to sea. The keepers climbed 308 steps "
           "every evening to light the lamp and wind the clockwork that turned the lens.")
QUOTE = [ChatMessage("user", f"Repeat this passage exactly:\n\n{PASSAGE}")]
# Long enough that a stop sent after its first sentence arrives long before its end, drafts and all
LONG_QUOTE = [ChatMessage("user", "Repeat this passage exactly:\n\n" + PASSAGE + " The light was automated "
                          "in 1975, and the lens still turns for visitors on weekends. The keepers' house, two "
                          "storeys of white clapboard, now holds a small museum of their logbooks, uniforms and "
                          "tools, and a ranger tells the story of the wrecks that made the station necessary.")]
CODE = [ChatMessage("user", "Fix the bug in perimeter and give the whole file back:\n\n```python\n"
                            "def area(width, height):\n    return width * height\n\n"
                            "def perimeter(width, height):\n    return 2 * width + height\n\n"
                            "def describe(width, height):\n    kind = 'square' if width == height else 'rectangle'\n"
                            "    return f'a {kind} of {width} by {height}, area {area(width, height)}'\n```")]
FREE = [ChatMessage("user", "Write a short story about a cat who learns to fly.")]
COUNT = [ChatMessage("user", "Count from 1 to 100, separated by commas.")]
MAX_REFUSED = 4  # drafted tokens the model may refuse in an answer that quotes nothing ("nearly none")
TEXT = list(range(100, 200))  # a prompt's tokens, quoted by the answers of the unit tests below


def test_draft_is_what_followed_the_same_tokens_before() -> None:
    lookup = PromptLookup([5, 6, 7, 8, 9, 10, 11, 1, 2])
    for t in (6, 7, 8):
        lookup.push(t)
    assert lookup.continuation(3) == ([9, 10, 11], 3)  # ... 6 7 8 -> 9 10 11, as in the prompt
    assert lookup.continuation(1) == ([9], 3)
    lookup.push(42)
    assert lookup.continuation(4) == ([], 0)  # "7 8 42" never occurred


def test_a_draft_is_made_only_where_it_is_likely_to_pay() -> None:
    """A fresh answer does not draft after three tokens in common (mostly chance), does after a
    longer match (a quote under way), and never where a drafted token costs a whole decode step."""
    lookup = PromptLookup(TEXT)
    for t in TEXT[:3]:
        lookup.push(t)
    assert lookup.continuation(4) == (TEXT[3:7], 3)
    assert lookup.draft(room=8) == []
    for t in TEXT[3:20]:
        lookup.push(t)
    draft = lookup.draft(room=8)
    assert draft
    assert draft == TEXT[20 : 20 + len(draft)]
    dear = PromptLookup(TEXT, cost=VerifyCost(fixed=0.0, per_token=1.0))
    for t in TEXT[:40]:
        dear.push(t)
    for _ in range(5):
        dear.result(4, 4)  # even with every draft kept
    assert dear.draft(room=8) == []


def test_drafts_grow_while_they_are_kept() -> None:
    lookup = PromptLookup(TEXT)
    for t in TEXT[:20]:
        lookup.push(t)
    at = 20
    lengths = []
    for _ in range(4):
        draft = lookup.draft(room=MAX_DRAFT)
        lengths.append(len(draft))
        lookup.result(len(draft), len(draft))
        for t in TEXT[at : at + len(draft) + 1]:
            lookup.push(t)
        at += len(draft) + 1
    assert lengths[0] >= 1
    assert lengths[-1] > lengths[0]


def test_a_refused_draft_stops_drafting_at_once_and_longer_each_time() -> None:
    """Where drafts are cheap (as on a GPU) and the quote goes on, drafting resumes after a pause."""
    lookup = PromptLookup(TEXT, cost=VerifyCost(fixed=0.05, per_token=0.02))
    for t in TEXT[:20]:
        lookup.push(t)
    draft = lookup.draft(room=8)
    assert draft
    lookup.result(len(draft), 0)  # refused outright
    at = 20
    for _ in range(BACKOFF_FIRST):
        assert lookup.draft(room=8) == []
        lookup.push(TEXT[at])
        at += 1
    draft = lookup.draft(room=8)
    assert draft  # the quote goes on: drafting resumes
    lookup.result(len(draft), 0)  # and is refused again
    paused = 0
    while not lookup.draft(room=8):
        lookup.push(TEXT[at])
        at += 1
        paused += 1
    assert paused == 2 * BACKOFF_FIRST


def test_the_verification_cost_follows_the_measured_times() -> None:
    """The cost line moves from the prior to what is measured (here a GPU-like 1.1 + 0.05 k steps),
    and the plain step right after a verification (llama.cpp rebuilding its graph) is booked to it."""
    cost = VerifyCost(fixed=0.5, per_token=0.4)
    cost.alone(0.010)
    for i in range(60):
        k = 2 if i % 2 else 10
        cost.verified(k, 0.010 * (1.1 + 0.05 * k) - 0.001)
        cost.alone(0.011)  # a millisecond over a plain step: the rebuild, part of the verification
        cost.alone(0.010)
    assert cost.fixed == pytest.approx(0.1, abs=0.03)
    assert cost.per_token == pytest.approx(0.05, abs=0.01)
    assert cost.step_s == pytest.approx(0.010)


def test_a_fixed_cost_is_not_moved_by_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    """PADDOCK_DRAFT_COST fixes the cost (for the tests below: what they draft must not depend on
    how busy the machine is); a value that is not two numbers is refused, not ignored."""
    monkeypatch.setenv(FIXED_COST_ENV, "0.5,0.4")
    cost = VerifyCost.for_engine()
    cost.alone(0.010)
    for _ in range(20):
        cost.verified(8, 0.5)  # fifty plain steps for a draft: a very busy machine
        cost.alone(0.010)
    assert (cost.fixed, cost.per_token) == (0.5, 0.4)
    monkeypatch.setenv(FIXED_COST_ENV, "cheap")
    with pytest.raises(ValueError, match=FIXED_COST_ENV):
        VerifyCost.for_engine()
    monkeypatch.delenv(FIXED_COST_ENV)
    assert VerifyCost.for_engine().measured


@pytest.fixture(scope="module")
def engines(instruct_model: Path) -> Iterator[tuple[Engine, Engine]]:
    plain, fast = Engine(), Engine()
    # The drafts these tests expect are those of the prior cost, whatever the machine's load while
    # they run (the measured cost is tested above, with given timings): the engines are started with
    # the cost fixed.
    with pytest.MonkeyPatch.context() as env:
        env.setenv(FIXED_COST_ENV, f"{PRIOR_FIXED},{PRIOR_PER_TOKEN}")
        plain.start()
        fast.start()
    off = LoadSettings(n_ctx=4096, prompt_lookup=False, kept_states_ram_mb=0, kept_states_disk_mb=0)
    on = LoadSettings(n_ctx=4096, prompt_lookup=True, kept_states_ram_mb=0, kept_states_disk_mb=0)
    plain.load(str(instruct_model), off)
    fast.load(str(instruct_model), on)
    yield plain, fast
    plain.close()
    fast.close()


@pytest.mark.parametrize("messages", [QUOTE, CODE], ids=["quoting", "rewriting code"])
def test_greedy_output_with_drafts_is_plain_decoding_s(engines: tuple[Engine, Engine],
                                                       messages: list[ChatMessage]) -> None:
    """Drafts are made and verified on answers that quote the prompt, and the answer is the one
    plain decoding gives: where the model kept drafted tokens and where it refused them."""
    plain, fast = engines
    params = SamplingParams(temperature=0.0, max_tokens=120, seed=1)
    a = plain.generate(messages, params)
    b = fast.generate(messages, params)
    assert b.text == a.text
    assert b.stats.completion_tokens == a.stats.completion_tokens
    assert a.stats.draft_tokens == 0
    assert b.stats.draft_accepted > 0  # drafts were made, verified and kept
    if messages is QUOTE:
        assert b.stats.draft_accepted > a.stats.completion_tokens // 2  # most of the quote came drafted
    else:
        assert b.stats.draft_tokens > b.stats.draft_accepted  # and some refused: the rest was rolled back


@pytest.mark.parametrize("messages", [FREE, COUNT], ids=["story", "counting"])
def test_no_drafts_on_an_answer_that_quotes_nothing(engines: tuple[Engine, Engine],
                                                    messages: list[ChatMessage]) -> None:
    """Where the context does not predict the answer, the policy (nearly) does not draft: a story,
    and counting, whose short n-grams (", 1") recur all the time with another continuation."""
    plain, fast = engines
    params = SamplingParams(temperature=0.0, max_tokens=120, seed=1)
    a = plain.generate(messages, params)
    b = fast.generate(messages, params)
    assert b.text == a.text
    assert b.stats.completion_tokens >= 60
    assert b.stats.draft_tokens - b.stats.draft_accepted <= MAX_REFUSED


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
    """Stop while a quote is being drafted: the answer ends as cancelled (not as if the model had
    finished), holds what was taken, all of it the model's own, and the engine goes on."""
    plain, fast = engines
    params = SamplingParams(temperature=0.0, max_tokens=400, seed=1)
    whole = plain.generate(LONG_QUOTE, params)
    gen = fast.stream(LONG_QUOTE, params)
    cancelled = False
    for _piece in gen:
        if not cancelled and len(gen.text) >= 60:  # drafts are under way, most of the quote is to come
            fast.cancel()
            cancelled = True
    assert gen.result is not None
    assert gen.result.stats.finish_reason == "cancelled"
    assert gen.result.stats.draft_accepted > 0
    assert gen.result.text == gen.text
    assert len(gen.text) < len(whole.text) // 2
    assert whole.text.startswith(gen.text)
    short = SamplingParams(temperature=0.0, max_tokens=10, seed=1)
    assert fast.generate(QUOTE, short).text == plain.generate(QUOTE, short).text  # the engine goes on


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
