"""The typed messages between Paddock and its engine child process.

Requests go parent -> child; events come back child -> parent.  All are small
picklable dataclasses sent over a ``multiprocessing`` pipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.engine.types import ChatMessage, GenerationResult, LoadedModel, LoadSettings, SamplingParams, TokenLogprob

# -- requests ------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    path: str
    settings: LoadSettings


@dataclass(frozen=True)
class Unload:
    pass


@dataclass(frozen=True)
class Generate:
    """Chat generation; or, with ``raw_prompt``, plain completion of that text."""

    messages: tuple[ChatMessage, ...]
    params: SamplingParams
    raw_prompt: str | None = None
    # The last message is an answer cut off by the token limit: write on from its end.
    continue_final: bool = False
    # Tools the model may call (OpenAI "tools" entries) and whether it must:
    # "auto", "required", "none", or the name of the one tool it must call.
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str = "auto"
    # None: the oldest turns are left out (and the user told) until the prompt fits. A number
    # (the API): the prompt plus that many answer tokens must fit, else ContextOverflowError.
    room: int | None = None
    # A raw completion given as token ids (the API's ``prompt: [12, 34]``) instead of text.
    raw_tokens: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Cancel:
    pass


@dataclass(frozen=True)
class CountTokens:
    """How many tokens ``messages`` take once rendered with the chat template."""

    messages: tuple[ChatMessage, ...]


@dataclass(frozen=True)
class ClearStates:
    """Forget every kept conversation state, in RAM and on disk."""


@dataclass(frozen=True)
class Embed:
    """Embedding vectors (pooled, L2-normalised) of texts or token-id lists, each read on its own
    (so a vector never depends on what else was asked with it).  An input longer than the
    embedding context is cut to fit with ``truncate``, else refused (ContextOverflowError)."""

    texts: tuple[str | tuple[int, ...], ...]
    truncate: bool = True


@dataclass(frozen=True)
class Shutdown:
    pass


Request = Load | Unload | Generate | Cancel | CountTokens | Embed | ClearStates | Shutdown

# -- events --------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """The child is up; llama.cpp's system info and backend."""

    system_info: str
    backend: str


@dataclass(frozen=True)
class Loaded:
    model: LoadedModel


@dataclass(frozen=True)
class Ok:
    pass


@dataclass(frozen=True)
class Chunk:
    text: str
    thinking: str = ""  # thinking that came before ``text`` (reasoning models)
    logprobs: tuple[TokenLogprob, ...] = ()  # the tokens of this chunk, when asked for


@dataclass(frozen=True)
class Done:
    result: GenerationResult


@dataclass(frozen=True)
class TokenCount:
    n_tokens: int
    n_ctx: int


@dataclass(frozen=True)
class Embeddings:
    vectors: tuple[tuple[float, ...], ...]
    n_tokens: int


@dataclass(frozen=True)
class Failed:
    """A request failed; ``kind`` names the :mod:`app.errors` class to raise in the parent."""

    kind: str
    message: str


@dataclass(frozen=True)
class LogRecord:
    level: int
    name: str
    message: str


Event = Ready | Loaded | Ok | Chunk | Done | TokenCount | Embeddings | Failed | LogRecord
