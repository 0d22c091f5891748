"""The real instruct model (SmolLM2-135M-Instruct) through the engine with real chat templates.

SmolLM2 is tiny and was trained on ChatML only: with another family's template
its answers are noise.  These tests assert what the engine must do whatever the
model says: every template renders, the prompt is evaluated, an answer streams
and ends; thinking goes apart from the answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.client import Engine
from app.engine.types import ChatMessage, LoadSettings, SamplingParams

THINK_TEMPLATE = (Path(__file__).parent.parent / "data" / "think-chatml.jinja").read_text()
GREEDY = SamplingParams(temperature=0.0, max_tokens=48, seed=1)


@pytest.fixture(scope="module")
def smol(instruct_model: Path) -> Iterator[Engine]:
    eng = Engine()
    eng.start()
    yield eng
    eng.close()


def test_every_corpus_template_answers_with_a_system_prompt(
    smol: Engine, instruct_model: Path, chat_templates: dict[str, str]
) -> None:
    failures = {}
    for name, template in chat_templates.items():
        loaded = smol.load(str(instruct_model), LoadSettings(n_ctx=4096, chat_template=template))
        assert loaded.template_source == "override"
        try:
            result = smol.generate(
                [ChatMessage("system", "You are brief."), ChatMessage("user", "Name a colour.")],
                SamplingParams(temperature=0.0, max_tokens=6, seed=1),
            )
        except Exception as exc:
            failures[name] = str(exc)
            continue
        assert result.stats.prompt_tokens > 5, name
        # the model may end its turn at once (the EOS token): that is an answer too
        assert result.stats.finish_reason in {"stop", "length"}, name
    assert failures == {}


def test_gemma2_template_works_with_a_system_prompt_and_says_so(
    smol: Engine, instruct_model: Path, chat_templates: dict[str, str]
) -> None:
    smol.load(str(instruct_model), LoadSettings(chat_template=chat_templates["google-gemma-2-2b-it"]))
    msgs = [ChatMessage("system", "You are brief."), ChatMessage("user", "Hi")]
    first = smol.generate(msgs, SamplingParams(max_tokens=4, seed=1))
    assert any("system prompt" in n for n in first.notices)
    again = smol.generate(msgs, SamplingParams(max_tokens=4, seed=1))
    assert not any("system prompt" in n for n in again.notices)  # told once per model load


def _fewshot(question: str) -> list[ChatMessage]:
    msgs = []
    for a, b in ((1, 1), (2, 3), (3, 3)):
        msgs += [
            ChatMessage("user", f"What is {a}+{b}?"),
            ChatMessage("assistant", f"{a}+{b} is {a + b}.", reasoning=f"The user asks {a}+{b}. That is {a + b}."),
        ]
    return [*msgs, ChatMessage("user", question)]


def test_thinking_streams_apart_from_the_answer(smol: Engine, instruct_model: Path) -> None:
    """A template that opens <think> in the generation prompt; the real model thinks, closes, answers."""
    loaded = smol.load(str(instruct_model), LoadSettings(chat_template=THINK_TEMPLATE))
    assert loaded.reasoning_format == "think"
    gen = smol.stream(_fewshot("What is 4+4?"), GREEDY)
    deltas = list(gen.deltas())
    kinds = [k for k, _ in deltas]
    assert kinds[0] == "thinking"
    assert "answer" in kinds
    assert kinds.index("answer") > max(i for i, k in enumerate(kinds) if k == "thinking")  # thinking first
    assert gen.result is not None
    assert gen.result.reasoning == gen.thinking
    assert gen.result.reasoning.strip()
    assert gen.result.text == gen.text
    assert gen.text.strip()
    for marker in ("<think>", "</think>"):
        assert marker not in gen.text
        assert marker not in gen.thinking
    assert gen.thinking not in gen.text
    assert gen.result.reasoning_s > 0


def test_thinking_template_keeps_or_drops_past_thinking_itself(smol: Engine, instruct_model: Path) -> None:
    """Past thinking reaches the prompt only where the template renders ``reasoning_content``."""
    smol.load(str(instruct_model), LoadSettings(chat_template=THINK_TEMPLATE))
    with_thinking = smol.count_tokens(_fewshot("What is 4+4?"))[0]
    smol.load(str(instruct_model))  # SmolLM2's own ChatML template has no place for thinking
    without = smol.count_tokens(_fewshot("What is 4+4?"))[0]
    stripped = smol.count_tokens([ChatMessage(m.role, m.content) for m in _fewshot("What is 4+4?")])[0]
    assert without == stripped
    assert with_thinking > without


def test_max_tokens_answer_can_be_continued(smol: Engine, instruct_model: Path) -> None:
    smol.load(str(instruct_model))
    question = [ChatMessage("user", "Write three sentences about the sea.")]
    cut = smol.generate(question, SamplingParams(temperature=0.0, max_tokens=8, seed=1))
    assert cut.stats.finish_reason == "length"
    more = smol.generate([*question, ChatMessage("assistant", cut.text)],
                         SamplingParams(temperature=0.0, max_tokens=24, seed=1), continue_final=True)
    assert more.text
    # Continuing reuses the cut answer from the KV cache: only the continuation is new
    assert more.stats.prompt_reused >= cut.stats.prompt_tokens
    whole = smol.generate(question, SamplingParams(temperature=0.0, max_tokens=8 + more.stats.completion_tokens,
                                                   seed=1))
    assert whole.text.startswith(cut.text)
