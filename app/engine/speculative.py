"""Prompt-lookup drafts: speculative decoding without a second model.

An answer that quotes its prompt (a passage repeated, a line of code fixed, a
list copied) writes token runs that already occur earlier in the context.  After
each token the drafter looks for the last few tokens earlier in the context
(prompt + answer so far) and proposes the tokens that followed there.  The engine
evaluates the token and the draft in one batch and keeps the draft tokens the
model itself samples at each position, so the output is the model's own
(identical under greedy decoding; under sampling each position is drawn from the
model's distribution and a draft token is kept only when it is the one drawn,
which is llama.cpp's acceptance rule for a deterministic draft).  A batch of k
tokens costs little more than one on memory-bound hardware, so accepted drafts
are tokens for free.

A draft model (a small model of the same family, the user's choice) drafts where
the context offers nothing: it reads the same tokens and writes its greedy guess
of the next few, verified the same way.

Drafting adapts to how well it pays: the draft length doubles after a draft is
taken whole and halves after one is refused, and after several refused drafts
in a row it pauses, so an answer that quotes nothing pays almost nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_NGRAM = 4
MIN_NGRAM = 3
MAX_DRAFT = 16
MIN_DRAFT = 2
PAUSE_AFTER_MISSES = 2  # drafts refused in a row
PAUSE_TOKENS = 48


class PromptLookup:
    """Proposes drafts from the context and learns from what is accepted.

    Every n-gram of the context (n = MIN_NGRAM..MAX_NGRAM) is indexed by where it last
    ended, so a lookup after each token is a dictionary read, not a scan.

    Args:
        prompt: the prompt's tokens (the answer's are added with :meth:`push`).
    """

    def __init__(self, prompt: Sequence[int], n_ctx: int = 0) -> None:
        self._tokens: list[int] = list(prompt)
        self._last_end: dict[tuple[int, ...], int] = {}
        for end in range(len(self._tokens) - 1):  # every n-gram but those ending at the tail
            self._index(end)
        self.draft_len = 4
        self._misses = 0
        self._paused = 0
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

    def draft(self, room: int) -> list[int]:
        """Up to ``room`` tokens likely to come next (may be empty)."""
        if self._paused or room < 1:
            return []
        tokens = self._tokens
        n = len(tokens)
        for size in range(min(MAX_NGRAM, n), MIN_NGRAM - 1, -1):
            end = self._last_end.get(tuple(tokens[n - size :]))
            if end is not None:
                return tokens[end + 1 : end + 1 + min(self.draft_len, room)]
        return []

    def result(self, drafted: int, accepted: int) -> None:
        """How many of a draft's tokens the model kept."""
        self.drafted += drafted
        self.accepted += accepted
        if accepted == drafted:
            self.draft_len = min(MAX_DRAFT, self.draft_len * 2)
            self._misses = 0
        elif accepted == 0:
            self.draft_len = max(MIN_DRAFT, self.draft_len // 2)
            self._misses += 1
            if self._misses >= PAUSE_AFTER_MISSES:
                self._paused = PAUSE_TOKENS
                self._misses = 0
        else:
            self.draft_len = max(MIN_DRAFT, accepted + 1)
            self._misses = 0


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
