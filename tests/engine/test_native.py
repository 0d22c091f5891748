"""The engine's token loop primitives (app.engine.native) on the real test model.

These load llama.cpp in the test process itself: the primitives are what the
engine child runs, and here they can be compared step by step with llama.cpp's
own reference paths on the same logits.
"""

from __future__ import annotations

import ctypes
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.engine.native import PENALTY_LAST_N, Sampler, Session
from app.engine.types import SamplingParams


@pytest.fixture(scope="module")
def llm(test_model: Path) -> Iterator[Any]:
    from llama_cpp import Llama

    model = Llama(model_path=str(test_model), n_ctx=1024, n_batch=256, n_threads=2, verbose=False)
    yield model
    model.close()


def reference_chain(params: SamplingParams, n_vocab: int, seed: int) -> Any:
    """llama.cpp's usual order: the penalty over the whole vocabulary first."""
    from llama_cpp import llama_cpp as lib

    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    lib.llama_sampler_chain_add(
        chain, lib.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, params.repeat_penalty, 0.0, 0.0))
    if params.temperature <= 0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
    else:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(params.top_k))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(params.top_p, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(params.min_p, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(params.temperature))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
    return chain


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=0.0),  # the NumPy argmax path
    SamplingParams(temperature=0.0, repeat_penalty=1.5),
    SamplingParams(temperature=0.9, top_k=40, top_p=0.95, min_p=0.02, repeat_penalty=1.3),
])
def test_fast_samplers_pick_what_llama_cpp_picks(llm: Any, params: SamplingParams) -> None:
    """Greedy without penalty is a NumPy argmax, and the penalty runs on a top-(k + 64)
    shortlist; every step must draw the same token as llama.cpp's usual chain (penalty
    over the whole vocabulary first), on the same logits and seed."""
    from llama_cpp import llama_cpp as lib

    session = Session(llm)
    prompt = llm.tokenize(b"Repeat after me: the cat, the cat, the cat, the cat,")
    session.clear()
    session.decode(prompt)
    fast = Sampler(params, llm.n_vocab(), seed=7, history=prompt)
    ref = reference_chain(params, llm.n_vocab(), seed=7)
    for token in prompt[-PENALTY_LAST_N:]:
        lib.llama_sampler_accept(ref, token)
    drawn = []
    try:
        for _ in range(48):
            a = fast.sample(session.ctx)
            b = int(lib.llama_sampler_sample(ref, session.ctx, -1))
            assert a == b
            drawn.append(a)
            session.decode((a,))
    finally:
        fast.close()
        lib.llama_sampler_free(ref)
    if params.repeat_penalty == 1.0:
        return
    # the penalty did act: the same draws without it go elsewhere
    session.clear()
    session.decode(prompt)
    plain = Sampler(dataclasses.replace(params, repeat_penalty=1.0), llm.n_vocab(), seed=7)
    unpenalised = []
    try:
        for _ in range(48):
            unpenalised.append(plain.sample(session.ctx))
            session.decode((unpenalised[-1],))
    finally:
        plain.close()
    assert unpenalised != drawn


def test_token_pieces_match_llama_detokenize_including_long_ones(llm: Any) -> None:
    from llama_cpp import llama_cpp as lib

    session = Session(llm)
    session._buf = ctypes.create_string_buffer(4)  # force the "piece is longer than the buffer" path
    buf = ctypes.create_string_buffer(4096)
    vocab = llm._model.vocab
    longest = 0
    for token in range(0, llm.n_vocab(), 97):  # a spread of the vocabulary, including the long whitespace runs
        n = lib.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
        assert session.piece(token) == buf.raw[:n]
        longest = max(longest, n)
    assert longest > 4
    text = "    def   f():\n\t\treturn  '✓ café'"
    tokens = llm.tokenize(text.encode(), add_bos=False)
    assert b"".join(session.piece(t) for t in tokens).decode() == text


def test_session_tracks_the_cache_for_prefix_reuse(llm: Any) -> None:
    session = Session(llm)
    session.clear()
    first = llm.tokenize(b"One two three four five six")
    session.decode(first)
    assert session.n_past == len(first)
    assert session.cached() == first
    assert session.keep(3)
    assert session.cached() == first[:3]
    session.decode(first[3:])  # re-evaluating the dropped tail continues at position 3
    assert session.cached() == first
