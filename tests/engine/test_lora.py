"""LoRA adapters on the real engine: rank-4 adapters on SmolLM2's attn_q, written by the tests with the gguf
package; bad ones refused in the parent before the engine sees them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.client import Engine
from app.engine.lora import check_adapter, parse_lora_arg
from app.engine.types import ChatMessage, GenerationResult, LoadSettings, LoraAdapter, SamplingParams
from app.errors import InvalidAdapterError
from tests.lora_files import Fault, write_lora

GREEDY = SamplingParams(temperature=0.0, max_tokens=6, logprobs=3, seed=1)
QUESTION = [ChatMessage("user", "Name three colours of the rainbow.")]


@pytest.fixture(scope="module")
def adapters(instruct_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("lora")
    made = {
        "a": write_lora(folder / "tune-a.gguf", instruct_model, seed=1),
        "b": write_lora(folder / "tune-b.gguf", instruct_model, seed=2),
        "zero": write_lora(folder / "zero.gguf", instruct_model, zero=True),
    }
    for fault in ("float64_alpha", "other_arch", "wrong_shape", "missing_half", "truncated"):
        made[fault] = write_lora(folder / f"{fault}.gguf", instruct_model, fault=fault)  # type: ignore[arg-type]
    return made


@pytest.fixture(scope="module")
def lora_engine(instruct_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with pytest.MonkeyPatch.context() as env:  # kept states in a home of its own (see tests/engine/conftest.py)
        env.setenv("PADDOCK_HOME", str(tmp_path_factory.mktemp("lora-home")))
        eng = Engine()
        eng.start()
    eng.load(str(instruct_model), LoadSettings(n_ctx=1024))
    yield eng
    eng.close()


def answer(engine: Engine, *adapters: tuple[Path, float], messages: list[ChatMessage] | None = None,
           params: SamplingParams = GREEDY) -> GenerationResult:
    return engine.generate(messages or QUESTION, params, adapters=[LoraAdapter(str(p), s) for p, s in adapters])


def logprobs(result: GenerationResult) -> list[tuple[float, tuple[float, ...]]]:
    """Every answer token's log-probability and its top alternatives': the model's logits, as floats."""
    return [(e.logprob, tuple(t[1] for t in e.top)) for e in result.logprobs]


@pytest.mark.parametrize(("fault", "reason"), [
    ("float64_alpha", "FLOAT64"),
    ("other_arch", "'qwen2'"),
    ("wrong_shape", "does not fit"),
    ("missing_half", "lora_b is missing"),
    ("truncated", "truncated"),
])
def test_a_bad_adapter_is_refused_with_its_reason_before_the_engine(
    lora_engine: Engine, adapters: dict[str, Path], instruct_model: Path, fault: Fault, reason: str,
) -> None:
    with pytest.raises(InvalidAdapterError, match=reason):
        check_adapter(adapters[fault], instruct_model)
    pid, sent = lora_engine.pid, lora_engine.requests
    with pytest.raises(InvalidAdapterError, match=reason):
        answer(lora_engine, (adapters[fault], 1.0))
    assert lora_engine.requests == sent  # never sent to the child
    assert lora_engine.is_alive()
    assert lora_engine.pid == pid
    assert answer(lora_engine).text  # and the engine answers on


def test_a_model_is_not_an_adapter(instruct_model: Path) -> None:
    with pytest.raises(InvalidAdapterError, match="not a LoRA adapter"):
        check_adapter(instruct_model, instruct_model)


def test_llama_cpp_itself_aborts_on_a_float64_alpha(adapters: dict[str, Path], instruct_model: Path) -> None:
    """Why the parent checks: given to llama.cpp, the float64 alpha kills the process (GGML_ASSERT, SIGABRT)."""
    code = ("import llama_cpp, sys; llama_cpp.Llama(model_path=sys.argv[1], lora_path=sys.argv[2], n_ctx=256, "
            "verbose=False); print('LOADED' + '-OK')")
    proc = subprocess.run([sys.executable, "-c", code, str(instruct_model), str(adapters["float64_alpha"])],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GGML_NO_BACKTRACE": "1"})  # no gdb backtrace of the abort
    assert proc.returncode in (-6, 134), proc.stderr[-2000:]
    assert "LOADED-OK" not in proc.stdout


def test_the_adapter_changes_the_answer_and_scale_zero_or_a_zero_adapter_give_the_base_logits_exactly(
    lora_engine: Engine, adapters: dict[str, Path],
) -> None:
    base = answer(lora_engine)
    tuned = answer(lora_engine, (adapters["a"], 1.0))
    assert tuned.text != base.text
    assert logprobs(tuned) != logprobs(base)
    assert logprobs(answer(lora_engine, (adapters["a"], 0.0))) == logprobs(base)
    zero = answer(lora_engine, (adapters["zero"], 1.0))  # applied (it adds B·A·x = 0), changes nothing
    assert logprobs(zero) == logprobs(base)
    assert zero.stats.prompt_reused == 0  # another adapter set: evaluated anew
    half = answer(lora_engine, (adapters["a"], 0.5))
    assert logprobs(half) not in (logprobs(base), logprobs(tuned))


def test_clearing_the_adapters_gives_the_base_logits_exactly(lora_engine: Engine, adapters: dict[str, Path]) -> None:
    base = answer(lora_engine)
    answer(lora_engine, (adapters["b"], 1.0))
    cleared = answer(lora_engine)
    assert logprobs(cleared) == logprobs(base)
    assert cleared.text == base.text


def test_two_adapters_at_once(lora_engine: Engine, adapters: dict[str, Path]) -> None:
    a = answer(lora_engine, (adapters["a"], 1.0))
    b = answer(lora_engine, (adapters["b"], 1.0))
    both = answer(lora_engine, (adapters["a"], 1.0), (adapters["b"], 1.0))
    assert logprobs(both) not in (logprobs(a), logprobs(b))
    # the set is what counts, not the order it is given in
    assert logprobs(answer(lora_engine, (adapters["b"], 1.0), (adapters["a"], 1.0))) == logprobs(both)
    assert logprobs(answer(lora_engine, (adapters["a"], 1.0), (adapters["zero"], 1.0))) == logprobs(a)


def test_switching_adapters_never_reuses_the_prefix_computed_under_another(
    lora_engine: Engine, adapters: dict[str, Path],
) -> None:
    other = [ChatMessage("user", "Count from one to five.")]
    answer(lora_engine, (adapters["a"], 1.0), messages=other)
    reference = answer(lora_engine, (adapters["b"], 1.0))  # evaluated from scratch under b (the set changed)
    assert reference.stats.prompt_reused == 0
    again = answer(lora_engine, (adapters["b"], 1.0))  # same set: the prefix is reused, same logits
    assert again.stats.prompt_reused > 0
    assert logprobs(again) == logprobs(reference)
    under_a = answer(lora_engine, (adapters["a"], 1.0))
    assert logprobs(under_a) != logprobs(reference)
    switched = answer(lora_engine, (adapters["b"], 1.0))  # the cache now holds this prompt computed under a
    assert switched.stats.prompt_reused == 0
    assert logprobs(switched) == logprobs(reference)
    # a scale is part of the set
    assert answer(lora_engine, (adapters["b"], 0.5)).stats.prompt_reused == 0


def test_kept_conversation_states_are_kept_per_adapter_set(lora_engine: Engine, adapters: dict[str, Path]) -> None:
    long_a = [ChatMessage("system", "You are a helpful assistant. " * 12), ChatMessage("user", "Say hello.")]
    long_b = [ChatMessage("system", "You answer in one short sentence. " * 12), ChatMessage("user", "Say hi.")]
    params = SamplingParams(temperature=0.0, max_tokens=4, logprobs=3, seed=1)
    first = answer(lora_engine, (adapters["a"], 1.0), messages=long_a, params=params)
    answer(lora_engine, (adapters["a"], 1.0), messages=long_b, params=params)  # long_a is kept under a
    other = answer(lora_engine, (adapters["b"], 1.0), messages=long_a, params=params)
    assert other.stats.prompt_reused == 0  # a's kept state is not b's
    assert other.stats.prompt_restored == 0
    back = answer(lora_engine, (adapters["a"], 1.0), messages=long_a, params=params)
    assert back.stats.prompt_restored > 0  # a's state came back under a
    assert logprobs(back) == logprobs(first)


def test_an_adapter_that_is_gone_is_refused(lora_engine: Engine, tmp_path: Path, instruct_model: Path) -> None:
    gone = write_lora(tmp_path / "gone.gguf", instruct_model, seed=3)
    gone.unlink()
    with pytest.raises(InvalidAdapterError, match="not found"):
        answer(lora_engine, (gone, 1.0))


@pytest.mark.parametrize(("text", "expected"), [
    ("tune.gguf", ("tune.gguf", 1.0)),
    ("tune.gguf:0.5", ("tune.gguf", 0.5)),
    ("C:\\lora\\tune.gguf", ("C:\\lora\\tune.gguf", 1.0)),
    ("C:\\lora\\tune.gguf:-1", ("C:\\lora\\tune.gguf", -1.0)),
])
def test_lora_argument(text: str, expected: tuple[str, float]) -> None:
    assert parse_lora_arg(text) == expected


def test_the_engines_own_adapters_apply_when_a_request_names_none(
    lora_engine: Engine, adapters: dict[str, Path],
) -> None:
    """``paddock serve --lora``: the served model's adapters apply to every API request."""
    tuned = answer(lora_engine, (adapters["a"], 1.0))
    lora_engine.adapters = (LoraAdapter(str(adapters["a"]), 1.0),)
    try:
        assert logprobs(lora_engine.generate(QUESTION, GREEDY)) == logprobs(tuned)
        assert logprobs(lora_engine.generate(QUESTION, GREEDY, adapters=())) != logprobs(tuned)
    finally:
        lora_engine.adapters = ()
