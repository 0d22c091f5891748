"""Prompt-lookup drafts: speculative decoding without a second model.

An answer that quotes its prompt (a passage repeated, a line of code fixed, a
list copied) writes token runs that already occur earlier in the context.  After
each token the drafter looks for the last few tokens earlier in the context
(prompt + answer so far) and proposes the tokens that followed there.  The engine
evaluates the token and the draft in one batch and keeps the draft tokens the
model itself samples at each position, so the output is the model's own
(identical under greedy decoding; under sampling each position is drawn from the
model's distribution and a draft token is kept only when it is the one drawn,
which is llama.cpp's acceptance rule for a deterministic draft).

A verification batch is not free: every drafted position computes its own
logits (on Gemma 3 270M the output layer over a 262,144-token vocabulary is most
of the model), so on a CPU each drafted token adds a good part of a decode step.
A draft is verified only when it is expected to pay: the context must hold the
last tokens (at least ``MIN_NGRAM``), and the expected number of tokens kept,
from the acceptance measured on this answer's earlier drafts, must beat what the
batch costs, as measured on this machine (:class:`VerifyCost`).  A draft refused
outright stops drafting for a while, twice as long after each further refusal
(``BACKOFF_*``), so an answer that quotes nothing pays for one or two drafts.

A draft model (a small model of the same family, the user's choice) drafts where
the context offers nothing: it reads the same tokens and writes its greedy guess
of the next few, verified the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

MAX_NGRAM = 4
MIN_NGRAM = 3
MAX_DRAFT = 16
MIN_DRAFT = 2
PAUSE_AFTER_MISSES = 2  # (draft model) drafts refused in a row
PAUSE_TOKENS = 48
# How far back a match is followed: a long match is a quote under way.
MAX_MATCH = 16
# Before this answer has verified a draft, the share of drafted tokens expected kept, by how many
# tokens the match spans (3, 4-7, 8-15, 16+). Measured on the test models' greedy answers: after a
# 3-token match the token that followed it before came again in 23 % of the cases in answers that
# quote nothing (in 94 % while quoting), after 4-9 tokens in 60-90 %, after 16 in 99 %.
PRIOR_KEPT = (0.25, 0.6, 0.8, 0.95)
PRIOR_WEIGHT = 3.0  # worth as many drafted tokens of this answer
# Older drafts count for less: each verified draft scales the earlier evidence by this.
DECAY = 0.7
# A draft is verified only if its expected tokens per unit of cost beat one decode step by this much
# (the cost is an average; the margin keeps a near-even bet from being made).
MIN_GAIN = 1.1
# After a draft refused outright: no drafts for BACKOFF_FIRST tokens, doubled per refusal in a row.
BACKOFF_FIRST = 8
BACKOFF_MAX = 256
# What a verification of k drafted tokens costs beyond a plain step, in plain steps, until measured:
# fixed + per_token * k (this project's CPU, where it is dear; see VerifyCost). The prior pulls the
# fit as PRIOR_PULL verifications would (on the slope: weighted by k * k); each new verification
# scales the weight of older ones by COST_MEMORY.
PRIOR_FIXED = 0.5
PRIOR_PER_TOKEN = 0.4
PRIOR_PULL = (0.5, 5.0)
COST_MEMORY = 0.9
# "fixed,per_token": a cost that is not measured (tests and benchmarks whose drafts must not depend
# on how busy the machine is; see VerifyCost.for_engine)
FIXED_COST_ENV = "PADDOCK_DRAFT_COST"


class VerifyCost:
    """What verifying a draft costs against a plain decode step, measured as answers run.

    One per loaded model (it outlives answers).  A batch of one token and ``k`` drafted
    tokens costs about ``1 + fixed + per_token * k`` plain steps: on this project's CPU a
    batch of 2 costs 1.9 steps and one of 17 costs 6.4 (Gemma 3 270M; 9.6 for SmolLM2-135M),
    on a GPU hardly more than one.  The two figures are a least-squares line through the
    verifications timed so far (older ones count less: the machine's load changes), pulled
    a little towards the prior, which holds it where few lengths were timed.  The
    plain step that follows a verification is slower than others (llama.cpp builds its graph
    again for the other batch shape); that excess is booked to the verification.
    """

    def __init__(self, fixed: float = PRIOR_FIXED, per_token: float = PRIOR_PER_TOKEN, *,
                 measured: bool = True) -> None:
        self.measured = measured  # False: the figures stay as given
        self.step_s = 0.0  # a plain step (decode and sampling of one token), running average
        self.fixed = fixed
        self.per_token = per_token
        self._prior = (fixed, per_token)
        self._sums = [0.0] * 5  # weighted sums of the timed verifications: 1, k, k*k, cost, k*cost
        self._pending: tuple[int, float] | None = None  # the last verification, before its next step

    @classmethod
    def for_engine(cls) -> VerifyCost:
        """The cost a newly loaded model starts from: the prior, measured from then on, or the fixed
        figures of ``PADDOCK_DRAFT_COST`` ("0.5,0.4"), which a machine's load cannot move.

        Raises:
            ValueError: the variable is set but is not two non-negative numbers.
        """
        value = os.environ.get(FIXED_COST_ENV, "").strip()
        if not value:
            return cls()
        try:
            fixed, per_token = (float(x) for x in value.split(","))
        except ValueError:
            raise ValueError(f"{FIXED_COST_ENV} must be two numbers, fixed,per_token (such as 0.5,0.4), "
                             f"not {value!r}") from None
        if fixed < 0 or per_token < 0:
            raise ValueError(f"{FIXED_COST_ENV} must not be negative: {value!r}")
        return cls(fixed, per_token, measured=False)

    def relative(self, drafted: int) -> float:
        """A verification of ``drafted`` tokens, in plain steps."""
        return 1.0 + self.fixed + self.per_token * drafted

    def alone(self, seconds: float) -> None:
        """A one-token decode step (and its sampling) took ``seconds``."""
        if self._pending is not None:
            drafted, verify_s = self._pending
            self._pending = None
            self._observe(drafted, verify_s + max(0.0, seconds - self.step_s))
        elif self.step_s <= 0:
            self.step_s = seconds
        else:
            self.step_s += 0.1 * (seconds - self.step_s)

    def verified(self, drafted: int, seconds: float) -> None:
        """A batch of one token and ``drafted`` draft tokens (and its sampling) took ``seconds``."""
        if self._pending is not None:  # a verification right after another: no plain step between
            self._observe(*self._pending)
        self._pending = (drafted, seconds)

    def _observe(self, drafted: int, seconds: float) -> None:
        if self.step_s <= 0 or drafted <= 0 or not self.measured:
            return
        k, cost = float(drafted), seconds / self.step_s - 1.0
        sums = self._sums
        for i, value in enumerate((1.0, k, k * k, cost, k * cost)):
            sums[i] = sums[i] * COST_MEMORY + value
        # least squares with the prior as a penalty on each figure: a 2 x 2 linear system
        w, sk, skk, sc, skc = sums
        (f0, m0), (a, b) = self._prior, PRIOR_PULL
        a11, a12, a22 = w + a, sk, skk + b
        r1, r2 = sc + a * f0, skc + b * m0
        det = a11 * a22 - a12 * a12
        self.fixed = max(0.0, (r1 * a22 - a12 * r2) / det)
        self.per_token = max(0.0, (a11 * r2 - a12 * r1) / det)


class PromptLookup:
    """Proposes drafts from the context where they are likely to pay, and learns from what is kept.

    Every n-gram of the context (n = MIN_NGRAM..MAX_NGRAM) is indexed by where it last
    ended, so a lookup after each token is a dictionary read, not a scan.

    Args:
        prompt: the prompt's tokens (the answer's are added with :meth:`push`).
        cost: the model's verification cost (shared by its answers); a fixed prior if None.
    """

    def __init__(self, prompt: Sequence[int], n_ctx: int = 0, cost: VerifyCost | None = None) -> None:
        self._tokens: list[int] = list(prompt)
        self._last_end: dict[tuple[int, ...], int] = {}
        for end in range(len(self._tokens) - 1):  # every n-gram but those ending at the tail
            self._index(end)
        self.cost = cost or VerifyCost()
        self._kept = 0.0  # drafted tokens kept and evaluated in this answer, older drafts decayed
        self._tried = 0.0
        self._refusals = 0  # drafts refused outright in a row
        self._paused = 0  # tokens to go before the next draft
        self.drafted = 0
        self.accepted = 0

    def _index(self, end: int) -> None:
        tokens = self._tokens
        for size in range(MIN_NGRAM, MAX_NGRAM + 1):
            if end + 1 >= size:
                self._last_end[tuple(tokens[end + 1 - size : end + 1])] = end

    def push(self, token: int) -> None:
        self._tokens.append(token)
        self._index(len(self._tokens) - 2)  # the n-grams ending just before the new tail
        if self._paused:
            self._paused -= 1

    def acceptance(self, match: int) -> float:
        """The expected share of a draft's tokens kept (each given that those before it were)
        after a match of ``match`` tokens: this answer's drafts so far, and a prior."""
        prior = PRIOR_KEPT[(match > MIN_NGRAM) + (match >= 8) + (match >= MAX_MATCH)]
        return (self._kept + PRIOR_WEIGHT * prior) / (self._tried + PRIOR_WEIGHT)

    def continuation(self, limit: int) -> tuple[list[int], int]:
        """Up to ``limit`` tokens that followed the context's last tokens where those last
        occurred, and over how many tokens the two places agree ([] and 0 without a match)."""
        tokens = self._tokens
        n = len(tokens)
        last = self._last_end
        end = last.get(tuple(tokens[n - MAX_NGRAM :])) if n > MAX_NGRAM else None
        if end is None:
            end = last.get(tuple(tokens[n - MIN_NGRAM :])) if n > MIN_NGRAM else None
            if end is None:
                return [], 0
        return tokens[end + 1 : end + 1 + limit], self._match_length(end)

    def draft(self, room: int) -> list[int]:
        """Up to ``room`` tokens likely to come next, or none where drafting would not pay."""
        if self._paused or room < 1:
            return []
        following, match = self.continuation(min(MAX_DRAFT, room))
        if not following:
            return []
        return following[: self._draft_length(match, len(following))]

    def _match_length(self, end: int) -> int:
        """How many tokens before the tail equal those before ``end`` (up to MAX_MATCH)."""
        tokens = self._tokens
        tail = len(tokens) - 1
        length = 0
        while length < MAX_MATCH and end - length >= 0 and tokens[end - length] == tokens[tail - length]:
            length += 1
        return length

    def _draft_length(self, match: int, room: int) -> int:
        """The draft length with the most tokens per unit of cost; 0 if none beats MIN_GAIN."""
        p = self.acceptance(match)
        cost = self.cost
        best, best_gain = 0, MIN_GAIN
        expected, term = 1.0, 1.0
        for k in range(1, min(MAX_DRAFT, room) + 1):
            term *= p
            expected += term
            gain = expected / cost.relative(k)
            if gain > best_gain:
                best, best_gain = k, gain
        return best

    def result(self, drafted: int, accepted: int) -> None:
        """How many of a draft's tokens the model kept."""
        self.drafted += drafted
        self.accepted += accepted
        evaluated = accepted + (accepted < drafted)  # the first refused token was evaluated too
        self._kept = self._kept * DECAY + accepted
        self._tried = self._tried * DECAY + evaluated
        if accepted == 0:
            self._paused = min(BACKOFF_MAX, BACKOFF_FIRST << self._refusals)
            self._refusals += 1
        else:
            self._refusals = 0


class DraftModel:
    """A small model's greedy guesses of the next tokens, for the target model to verify.

    Its KV cache follows the conversation: before each draft it keeps the longest prefix
    it shares with the context and reads the rest, so a refused draft costs nothing later.

    Args:
        session: the draft model's :class:`app.engine.native.Session`.
    """

    def __init__(self, session: Any, n_vocab: int) -> None:
        self.session = session
        self.n_vocab = n_vocab
        self.draft_len = 4
        self._misses = 0
        self._paused = 0

    def draft(self, context: Sequence[int], room: int) -> list[int]:
        import numpy as np

        if self._paused:
            self._paused -= 1
            return []
        n = min(self.draft_len, room)
        if n < 1 or len(context) < 1:
            return []
        cached = self.session.cached()
        keep = 0
        for a, b in zip(cached, context, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(context) - 1)  # the last context token is read again for its logits
        if not self.session.keep(keep):
            self.session.clear()
            keep = 0
        self.session.decode(list(context[keep:]))
        out: list[int] = []
        lib = self.session.lib
        for i in range(n):
            logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(self.session.ctx, -1), shape=(self.n_vocab,))
            token = int(logits.argmax())
            if self.session.is_eog(token):
                break
            out.append(token)
            if i + 1 < n:
                self.session.decode((token,))
        return out

    def result(self, drafted: int, accepted: int) -> None:
        if accepted == drafted:
            self.draft_len = min(MAX_DRAFT, self.draft_len + 2)
            self._misses = 0
        elif accepted == 0:
            self.draft_len = max(MIN_DRAFT, self.draft_len // 2)
            self._misses += 1
            if self._misses >= PAUSE_AFTER_MISSES * 2:
                self._paused = PAUSE_TOKENS // 4
                self._misses = 0
        else:
            self.draft_len = max(MIN_DRAFT, accepted + 1)
            self._misses = 0
