"""The token loop's native calls: batched decode, one sampler chain, token pieces.

The engine used ``Llama.generate`` from llama-cpp-python at first.  Measured
against ``llama-bench`` (``python -m benchmarks``), its per-token path costs
more than the decode itself needs: a KV-cache ``seq_rm`` and a Python batch
fill on every token, a sampler rebuilt per answer with the repetition penalty
run over the whole vocabulary (0.57 ms a token on Gemma 3's 262,144-token
vocabulary: about 6 % of a decode step), and a 32-byte piece buffer that
returns garbage for longer tokens.  This module keeps the loop to what
llama.cpp's own tools do: ``llama_decode`` on a batch, ``llama_sampler_sample``
on a chain, and a cached piece per token.

``Llama`` still owns the model, context and tokenizer; :class:`Session` keeps
its ``input_ids``/``n_tokens`` current so prefix reuse keeps working.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from time import perf_counter
from typing import Any

from app.engine.types import SamplingParams

PENALTY_LAST_N = 64  # llama.cpp's default window for the repetition penalty


class DecodeError(Exception):
    """``llama_decode`` returned ``code`` (1: no KV slot, 2: aborted, < 0: error)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"llama_decode returned {code}")
        self.code = code


class Session:
    """The one sequence of a ``Llama`` context, decoded with the low-level API."""

    def __init__(self, llm: Any, abort: Any = None) -> None:
        from llama_cpp import llama_cpp as lib

        self.lib = lib
        self.llm = llm
        self.ctx = llm._ctx.ctx
        # llama.cpp calls the abort callback (Python, through ctypes) between graph
        # nodes: about 400 times per decode step here. A one-token step ends within
        # milliseconds and the token loop checks for cancellation between steps, so
        # the callback is armed only for batches (prompts), where it is needed.
        self._abort = abort
        self._no_abort = type(abort)() if abort is not None else None  # a NULL function pointer
        self._armed = abort is not None
        self.vocab = llm._model.vocab
        self.n_batch = max(1, int(llm.n_batch))
        self._pieces: dict[int, bytes] = {}
        # Whether each token seen ends a turn, cached: right after a decode step the caches are cold
        # and every foreign call costs ten times what it does warm (measured: 12 against 0.6 us)
        self._eog: dict[int, bool] = {}
        # Special (control) tokens that render as their text: a family's markers, such as
        # gpt-oss' <|channel|>, which the output parser must see (llama-server's
        # "preserved tokens"). Every other control token renders as nothing.
        self.shown_special: frozenset[int] = frozenset()
        self._buf = ctypes.create_string_buffer(256)
        self._one = (ctypes.c_int32 * 1)()
        # One token's batch, built once (what llama_batch_get_one returns: a token pointer, the
        # rest NULL), so a decode step is one foreign call.
        self._one_batch = lib.llama_batch(n_tokens=1, token=ctypes.cast(self._one, ctypes.POINTER(ctypes.c_int32)))
        self._llama_decode = lib.llama_decode
        self._batch: Any = None  # for decode_all (speculative drafts)
        self._batch_size = 0
        # Seconds spent inside llama_decode by the token loop's steps (decode_one, decode_all): set
        # against an answer's wall time, what is left is Paddock's own per-token work.
        self.decode_s = 0.0

    @property
    def n_past(self) -> int:
        return int(self.llm.n_tokens)

    def cached(self) -> list[int]:
        tokens: list[int] = self.llm.input_ids[: self.llm.n_tokens].tolist()
        return tokens

    def keep(self, n: int) -> bool:
        """Drop everything after the first ``n`` tokens; False if this memory cannot."""
        if not self.llm._ctx.kv_cache_seq_rm(0, n, -1):
            return False
        self.llm.n_tokens = n
        return True

    def save_state(self) -> bytes:
        """The sequence's KV state (``llama_state_seq_get_data``).

        Raises:
            DecodeError: llama.cpp wrote nothing.
        """
        size = int(self.lib.llama_state_seq_get_size(self.ctx, 0))
        buf = (ctypes.c_uint8 * size)()
        n = int(self.lib.llama_state_seq_get_data(self.ctx, buf, size, 0))
        if n <= 0:
            raise DecodeError(-1)
        return ctypes.string_at(buf, n)

    def load_state(self, data: bytes, tokens: Sequence[int]) -> bool:
        """Replace the sequence with a saved state of ``tokens``; False if llama.cpp refuses it."""
        self.clear()
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if int(self.lib.llama_state_seq_set_data(self.ctx, buf, len(data), 0)) == 0:
            self.clear()
            return False
        n = len(tokens)
        self.llm.input_ids[:n] = tokens
        self.llm.n_tokens = n
        return True

    def clear(self) -> None:
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)
        self.llm.n_tokens = 0

    def decode(self, tokens: Sequence[int]) -> None:
        """Evaluate ``tokens`` after what is cached, ``n_batch`` at a time; only the
        last token's logits are kept (nothing is copied back to Python)."""
        lib = self.lib
        if not tokens:
            return
        self.arm_abort(len(tokens) > 1)
        for start in range(0, len(tokens), self.n_batch):
            part = tokens[start : start + self.n_batch]
            n = len(part)
            if n == 1:
                self._one[0] = part[0]
                arr: Any = self._one
            else:
                arr = (ctypes.c_int32 * n)(*part)
            code = int(lib.llama_decode(self.ctx, lib.llama_batch_get_one(arr, n)))
            if code != 0:
                raise DecodeError(code)
            past = self.llm.n_tokens
            self.llm.input_ids[past : past + n] = part
            self.llm.n_tokens = past + n

    def arm_abort(self, armed: bool) -> None:
        """Let Stop abort the next decodes (batches), or not (one-token steps: cheaper)."""
        if self._abort is not None and self._armed != armed:
            self._armed = armed
            self.lib._lib.llama_set_abort_callback(self.ctx, self._abort if armed else self._no_abort, None)

    def record(self, tokens: Sequence[int], n_past: int) -> None:
        """Note ``tokens`` (an image's placeholders) as evaluated by another path (mtmd), ending at ``n_past``."""
        past = self.llm.n_tokens
        self.llm.input_ids[past : past + len(tokens)] = tokens
        self.llm.n_tokens = n_past

    def decode_one(self, token: int) -> None:
        """:meth:`decode` of one token: the token loop's step, with nothing more than it needs.

        Raises:
            DecodeError: llama.cpp failed (or was aborted).
        """
        if self._armed:
            self.arm_abort(False)
        self._one[0] = token
        started = perf_counter()
        code = self._llama_decode(self.ctx, self._one_batch)
        self.decode_s += perf_counter() - started
        if code != 0:
            raise DecodeError(code)
        llm = self.llm
        past = llm.n_tokens
        llm.input_ids[past] = token
        llm.n_tokens = past + 1

    def decode_all(self, tokens: Sequence[int]) -> None:
        """Evaluate ``tokens`` as one batch keeping every position's logits (to verify a
        speculative draft: position i predicts the token after ``tokens[i]``).

        Raises:
            DecodeError: llama.cpp failed (or was aborted).
        """
        lib = self.lib
        n = len(tokens)
        if self._batch is None or self._batch_size < n:
            if self._batch is not None:
                lib.llama_batch_free(self._batch)
            self._batch_size = max(n, 32)
            self._batch = lib.llama_batch_init(self._batch_size, 0, 1)
        batch = self._batch
        past = self.llm.n_tokens
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = past + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1
        batch.n_tokens = n
        if self._abort is not None and self._armed:
            self._armed = False
            lib._lib.llama_set_abort_callback(self.ctx, self._no_abort, None)
        started = perf_counter()
        code = int(lib.llama_decode(self.ctx, batch))
        self.decode_s += perf_counter() - started
        if code != 0:
            raise DecodeError(code)
        self.llm.input_ids[past : past + n] = tokens
        self.llm.n_tokens = past + n

    def close(self) -> None:
        if self._batch is not None:
            self.lib.llama_batch_free(self._batch)
            self._batch = None

    def is_eog(self, token: int) -> bool:
        known = self._eog.get(token)
        if known is None:
            known = self._eog[token] = bool(self.lib.llama_vocab_is_eog(self.vocab, token))
        return known

    def show_special(self, tokens: Sequence[int]) -> None:
        self.shown_special = frozenset(tokens)
        self._pieces.clear()

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render as nothing unless shown), cached."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        special = token in self.shown_special
        n = int(self.lib.llama_token_to_piece(self.vocab, token, self._buf, len(self._buf), 0, special))
        if n < 0:  # a longer piece: the call says how long
            self._buf = ctypes.create_string_buffer(-n)
            n = int(self.lib.llama_token_to_piece(self.vocab, token, self._buf, len(self._buf), 0, special))
        data = self._buf.raw[: max(0, n)]
        self._pieces[token] = data
        return data


# Logits of one position evaluated in a batch differ from those evaluated alone in the last bits
# (another kernel, another summation order): a greedy choice closer than this is made alone.
TIE_MARGIN = 0.05


class Sampler:
    """A llama.cpp sampler chain for one answer (freed on close).

    The order is llama.cpp's: penalties, top-k, top-p, min-p, temperature, then a
    seeded draw (or the most likely token when the temperature is 0).  When the
    repetition penalty can only lower logits (``repeat_penalty >= 1``) and top-k
    is on, the penalty runs on a top-(k + 64) shortlist instead of the whole
    vocabulary, followed by top-k again: at most 64 tokens are penalised, and a
    penalty never raises a token, so the k survivors are exactly those of the
    full-vocabulary order, at a fraction of the cost.
    """

    def __init__(self, params: SamplingParams, n_vocab: int, seed: int, history: Sequence[int] = (), *,
                 grammar: str | None = None, vocab: Any = None) -> None:
        """Args:
            grammar: a GBNF grammar the output must follow (a required tool call); needs ``vocab``.

        Raises:
            ValueError: llama.cpp refused the grammar.
        """
        from llama_cpp import llama_cpp as lib

        self.lib = lib
        self.n_vocab = n_vocab
        # llama_get_logits_ith returning the address (a function object of this sampler's own: the
        # shared one's result type stays as llama-cpp-python set it), read as one row of floats
        self._logits_at = lib._lib["llama_get_logits_ith"]
        self._logits_at.argtypes = [ctypes.c_void_p, ctypes.c_int32]
        self._logits_at.restype = ctypes.c_void_p
        self._row = ctypes.c_float * n_vocab
        # The NumPy view of the last logits row read, by its address: a one-token step's logits are
        # always at the same place, so each step costs one foreign call, not three objects more
        self._view: tuple[int, Any] = (0, None)
        self.chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        add = self._add
        greedy = params.temperature <= 0
        top_k = 1 if greedy else params.top_k
        penalise = (params.repeat_penalty != 1.0 or params.frequency_penalty != 0.0
                    or params.presence_penalty != 0.0)
        # Plain greedy is an argmax over the logits: NumPy reads them in place in 0.03 ms,
        # where the chain first copies all of them into a candidate array (0.3 ms on a
        # 262,144-token vocabulary). Both take the first of equal maxima.
        self.argmax = greedy and not penalise and grammar is None and not params.logit_bias
        if params.logit_bias:
            biases = (lib.llama_logit_bias * len(params.logit_bias))()
            for i, (token, bias) in enumerate(params.logit_bias):
                if not 0 <= token < n_vocab:
                    lib.llama_sampler_free(self.chain)
                    raise ValueError(f"token {token} is not in the model's vocabulary (0 to {n_vocab - 1})")
                biases[i] = lib.llama_logit_bias(token, bias)
            add(lib.llama_sampler_init_logit_bias(n_vocab, len(params.logit_bias), biases))
        if grammar is not None:
            constrained = lib.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not constrained:
                lib.llama_sampler_free(self.chain)
                raise ValueError("llama.cpp could not parse the grammar")
            add(constrained)
        if penalise:
            penalties = lib.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, params.repeat_penalty,
                                                         params.frequency_penalty, params.presence_penalty)
            # a shortlist is exact only when every penalty can only lower a logit
            lowers_only = (params.repeat_penalty >= 1.0 and params.frequency_penalty >= 0.0
                           and params.presence_penalty >= 0.0)
            if top_k > 0 and lowers_only and not params.logit_bias:
                add(lib.llama_sampler_init_top_k(top_k + PENALTY_LAST_N))
            # like llama.cpp's server: the penalty window covers the prompt's tail too. Only the
            # penalty sampler sees those tokens: a grammar fed the prompt's own tokens would abort
            # the process ("Unexpected empty grammar stack after accepting piece: <|im_start|>").
            for token in history[-PENALTY_LAST_N:]:
                lib.llama_sampler_accept(penalties, token)
            add(penalties)
        if greedy:
            add(lib.llama_sampler_init_greedy())
        else:
            if top_k > 0:
                add(lib.llama_sampler_init_top_k(top_k))
            if params.top_p < 1.0:
                add(lib.llama_sampler_init_top_p(params.top_p, 1))
            if params.min_p > 0.0:
                add(lib.llama_sampler_init_min_p(params.min_p, 1))
            add(lib.llama_sampler_init_temp(params.temperature))
            add(lib.llama_sampler_init_dist(seed))

    def _add(self, sampler: Any) -> None:
        self.lib.llama_sampler_chain_add(self.chain, sampler)

    def logits(self, ctx: Any, index: int = -1) -> Any:
        """The logits of batch position ``index`` as a NumPy view of llama.cpp's buffer (no copy)."""
        address = self._logits_at(ctx, index)
        cached, view = self._view
        if address == cached:
            return view
        import numpy as np

        row: Any = self._row.from_address(address)
        view = np.frombuffer(row, dtype=np.float32)
        self._view = (address, view)
        return view

    def sample(self, ctx: Any, index: int = -1) -> int:
        """Draw the next token from the logits of batch position ``index`` (the last by
        default), and record it for the penalty."""
        if self.argmax:
            return int(self.logits(ctx, index).argmax())
        return int(self.lib.llama_sampler_sample(self.chain, ctx, index))

    def sample_clear(self, ctx: Any, index: int) -> tuple[int, bool]:
        """:meth:`sample`, and whether the choice is clear of numerical noise: for greedy decoding,
        False when the two likeliest tokens are within ``TIE_MARGIN`` of each other."""
        if not self.argmax:
            return self.sample(ctx, index), True
        import numpy as np

        logits = self.logits(ctx, index)
        best = int(logits.argmax())
        # clear when the best is the only logit within the margin of itself (a count, not a sort)
        return best, int(np.count_nonzero(logits >= logits[best] - TIE_MARGIN)) == 1

    def close(self) -> None:
        if self.chain is not None:
            self.lib.llama_sampler_free(self.chain)
            self.chain = None
