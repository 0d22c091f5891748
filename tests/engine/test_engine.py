"""The engine child process with the real test model through real llama.cpp."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from app.engine.client import Engine
from app.engine.types import ChatMessage, LoadSettings, SamplingParams
from app.errors import (
    ContextOverflowError,
    EngineCrashedError,
    InvalidModelError,
    TemplateError,
)
from tests.gguf_files import copy_truncated, gguf_with_template

GREEDY = SamplingParams(temperature=0.0, max_tokens=24)


def test_greedy_completion_says_paris(engine: Engine) -> None:
    result = engine.generate([], GREEDY, raw_prompt="The capital of France is the city of")
    assert result.text.strip().startswith("Paris")
    assert result.stats.completion_tokens > 0
    assert result.stats.tokens_per_s > 0
    # llama.cpp's share of the answer's time is timed apart from Paddock's own work on each token
    assert 0 < result.stats.decode_s <= result.stats.total_s - result.stats.ttft_s


def test_chat_answers_paris_with_fallback_template(engine: Engine) -> None:
    assert engine.loaded is not None
    assert engine.loaded.template_source == "fallback"
    assert any("no chat template" in n for n in engine.loaded.notices)
    result = engine.generate([ChatMessage("user", "What is the capital of France?")], GREEDY)
    assert "Paris" in result.text
    assert result.stats.finish_reason == "stop"  # the stop string ended the transcript
    assert "Question:" not in result.text


def test_streaming_yields_pieces_that_add_up(engine: Engine) -> None:
    gen = engine.stream([ChatMessage("user", "Name three colours.")], SamplingParams(max_tokens=32, seed=1))
    pieces = list(gen)
    assert gen.result is not None
    assert len(pieces) > 1
    assert "".join(pieces) == gen.result.text


def test_seed_makes_sampling_repeatable(engine: Engine) -> None:
    params = SamplingParams(temperature=1.0, max_tokens=20, seed=1234)
    msgs = [ChatMessage("user", "Write a sentence about the sea.")]
    assert engine.generate(msgs, params).text == engine.generate(msgs, params).text


def test_cancel_stops_generation(engine: Engine) -> None:
    gen = engine.stream([ChatMessage("user", "Count from one to one thousand.")],
                        SamplingParams(max_tokens=1500, temperature=0.0))
    pieces = []
    for piece in gen:
        pieces.append(piece)
        if len(pieces) == 3:
            engine.cancel()
    assert gen.result is not None
    assert gen.result.stats.finish_reason == "cancelled"
    # cancelled between tokens: far fewer than the 1500 allowed
    assert gen.result.stats.completion_tokens < 50
    # the engine is usable right after
    assert "Paris" in engine.generate([ChatMessage("user", "What is the capital of France?")], GREEDY).text


def test_cancel_during_prompt_evaluation(engine: Engine) -> None:
    """A cancel that arrives while llama.cpp reads a long prompt aborts the decode: no token is
    generated, and the prompt was not read to its end (it is not all in the cache afterwards)."""
    messages = [ChatMessage("user", "The quick brown fox jumps over the lazy dog. " * 150)]
    done = threading.Event()

    def keep_cancelling() -> None:
        # The engine drops a cancel that arrives before it takes the request, so one is sent
        # every few milliseconds: the first that counts lands at the start of the prompt's
        # evaluation (some 1,500 tokens, hundreds of milliseconds even on a fast machine).
        while not done.wait(0.005):
            engine.cancel()

    canceller = threading.Thread(target=keep_cancelling)
    canceller.start()
    try:
        result = engine.generate(messages, SamplingParams(max_tokens=400))
    finally:
        done.set()
        canceller.join()
    assert result.stats.finish_reason == "cancelled"
    assert result.stats.completion_tokens == 0
    assert result.text == ""
    # Had the prompt been read to its end, all but its last token would be reused now.
    again = engine.generate(messages, SamplingParams(max_tokens=1, temperature=0.0))
    assert again.stats.finish_reason == "length"
    assert again.stats.prompt_reused < again.stats.prompt_tokens - 1
    after = engine.generate([ChatMessage("user", "What is the capital of France?")], GREEDY)
    assert "Paris" in after.text


def test_follow_up_turn_reuses_the_prefix(engine: Engine) -> None:
    history = [
        ChatMessage("system", "You answer geography questions. " * 20),
        ChatMessage("user", "What is the capital of France?"),
    ]
    first = engine.generate(history, GREEDY)
    history += [ChatMessage("assistant", first.text), ChatMessage("user", "What is the capital of Italy?")]
    second = engine.generate(history, GREEDY)
    stats = second.stats
    assert stats.prompt_tokens == stats.prompt_reused + stats.prompt_evaluated
    assert stats.prompt_reused >= first.stats.prompt_tokens - 1
    assert stats.prompt_evaluated < 0.2 * stats.prompt_tokens


def test_context_overflow_drops_oldest_turns_and_says_so(test_model: Path) -> None:
    with Engine() as eng:
        eng.load(str(test_model), LoadSettings(n_ctx=512))
        filler = "This sentence is here to fill the context window of the model. " * 12
        msgs = [ChatMessage("system", "Be brief.")]
        for i in range(6):
            msgs += [ChatMessage("user", f"{i}: {filler}"), ChatMessage("assistant", "Noted.")]
        msgs.append(ChatMessage("user", "What is the capital of France?"))
        result = eng.generate(msgs, SamplingParams(max_tokens=32, temperature=0.0))
        assert result.stats.dropped_messages > 0
        assert any("no longer fit" in n for n in result.notices)
        assert result.stats.prompt_tokens <= 512

        with pytest.raises(ContextOverflowError, match="context holds 512"):
            eng.generate([ChatMessage("user", filler * 10)], SamplingParams(max_tokens=32))
        # still alive and loaded
        assert "Paris" in eng.generate([ChatMessage("user", "What is the capital of France?")], GREEDY).text


@pytest.mark.parametrize("kind", ["zero", "text", "truncated"])
def test_bad_files_are_refused_before_llama_cpp(fresh_engine: Engine, test_model: Path, tmp_path: Path,
                                                kind: str) -> None:
    bad = tmp_path / "bad.gguf"
    if kind == "zero":
        bad.touch()
    elif kind == "text":
        bad.write_text("definitely not a model")
    else:
        copy_truncated(test_model, bad, 50_000_000)
    with pytest.raises(InvalidModelError, match="not a valid GGUF model"):
        fresh_engine.load(str(bad))
    assert fresh_engine.is_alive()
    assert fresh_engine.load(str(test_model), LoadSettings(n_ctx=1024)).architecture == "gemma3"


def test_engine_killed_mid_answer_keeps_text_and_recovers(fresh_engine: Engine, test_model: Path) -> None:
    fresh_engine.load(str(test_model), LoadSettings(n_ctx=1024))
    # a plain completion that goes on for hundreds of tokens
    gen = fresh_engine.stream([], SamplingParams(max_tokens=900, temperature=0.0), raw_prompt="1, 2, 3, 4, 5, 6,")
    received = ""
    with pytest.raises(EngineCrashedError) as info:
        for piece in gen:
            received += piece
            if len(received) > 20:
                fresh_engine.kill()
    assert info.value.partial_text == received
    assert len(received) > 20
    assert "SIGKILL" in str(info.value)
    assert not fresh_engine.is_alive()
    # the next load starts a fresh engine
    fresh_engine.load(str(test_model), LoadSettings(n_ctx=1024))
    assert "Paris" in fresh_engine.generate([ChatMessage("user", "What is the capital of France?")], GREEDY).text


def test_native_crash_is_reported(fresh_engine: Engine, test_model: Path) -> None:
    """A segfault in native code (simulated with SIGSEGV: no GGUF reliably crashes this build)."""
    fresh_engine.load(str(test_model), LoadSettings(n_ctx=1024))
    assert fresh_engine.pid is not None
    os.kill(fresh_engine.pid, signal.SIGSEGV)
    with pytest.raises(EngineCrashedError, match="SIGSEGV"):
        fresh_engine.generate([ChatMessage("user", "hello")], GREEDY)


SENTINEL_TEMPLATES = [
    "{{ lipsum.__globals__['os'].popen('touch SENTINEL').read() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch SENTINEL').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ joiner.__init__.__globals__.os.system('touch SENTINEL') }}",
]


@pytest.mark.parametrize("template", SENTINEL_TEMPLATES)
def test_sandbox_escape_in_gguf_template_runs_nothing(fresh_engine: Engine, test_model: Path,
                                                      tmp_path: Path, template: str) -> None:
    sentinel = tmp_path / "pwned"
    hostile = gguf_with_template(test_model, tmp_path / "hostile.gguf", template.replace("SENTINEL", str(sentinel)))
    loaded = fresh_engine.load(str(hostile), LoadSettings(n_ctx=1024))
    assert loaded.template_source == "gguf"
    with pytest.raises(TemplateError):
        fresh_engine.generate([ChatMessage("user", "hi")], GREEDY)
    assert not sentinel.exists()
    assert fresh_engine.is_alive()


def test_gguf_chat_template_is_used(fresh_engine: Engine, test_model: Path, tmp_path: Path) -> None:
    template = (
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
        "{{ m['content'] }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    model = gguf_with_template(test_model, tmp_path / "templated.gguf", template)
    loaded = fresh_engine.load(str(model), LoadSettings(n_ctx=1024))
    assert loaded.template_source == "gguf"
    assert not any("no chat template" in n for n in loaded.notices)
    n_tokens, n_ctx = fresh_engine.count_tokens([ChatMessage("user", "hello")])
    assert n_ctx == 1024
    # <bos> <start_of_turn> user \n hello <end_of_turn> \n <start_of_turn> model \n: special tokens count once
    assert 8 <= n_tokens <= 14
    result = fresh_engine.generate([ChatMessage("user", "hello")], SamplingParams(max_tokens=8, temperature=0))
    assert result.stats.prompt_tokens == n_tokens


@pytest.mark.skipif(os.name == "nt", reason="niceness is POSIX's; Windows gets the below-normal class")
def test_the_window_s_engine_yields_the_cpu_to_the_window() -> None:
    """The app's engine runs below the window's priority (so decoding on every core does not stall the
    event loop); the API server's and the CLI's engines run at the priority they were started with."""
    import psutil

    own = psutil.Process().nice()
    for yielding, expected in ((True, min(19, own + 5)), (False, own)):
        engine = Engine(yield_to_window=yielding)
        engine.start()
        try:
            assert engine.pid is not None
            assert psutil.Process(engine.pid).nice() == expected
        finally:
            engine.close()
