"""One generation on a thread of its own, its pieces handed to the event loop.

The engine's lock belongs to the thread that took it, and a generation holds it
until the answer ends, so each request's generation runs on a thread; its
pieces reach the request's coroutine through an asyncio queue.  The first item
is awaited before an HTTP status is chosen: a prompt that overflows the context
is refused with 400 before any stream starts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.engine.client import Engine
from app.engine.types import ChatMessage, DeltaKind, GenerationResult, SamplingParams, TokenLogprob
from app.errors import PaddockError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Piece:
    kind: DeltaKind
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass
class Job:
    """What to generate: a chat (``messages``) or a raw completion (``raw_prompt`` / ``raw_tokens``)."""

    messages: Sequence[ChatMessage]
    params: SamplingParams
    raw_prompt: str | None = None
    raw_tokens: Sequence[int] | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str = "auto"
    room: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class Run:
    """Starts at once; iterate :meth:`pieces`; ``result`` once they end."""

    def __init__(self, engine: Engine, job: Job, on_end: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.job = job
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.stop = threading.Event()
        self.result: GenerationResult | None = None
        self._on_end = on_end
        self._first: tuple[str, Any] | None = None
        threading.Thread(target=self._work, name="api-generation", daemon=True).start()

    def _put(self, item: tuple[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def _work(self) -> None:
        job = self.job
        try:
            gen = self.engine.stream(job.messages, job.params, raw_prompt=job.raw_prompt, tools=job.tools,
                                     tool_choice=job.tool_choice, room=job.room, raw_tokens=job.raw_tokens)
            seen = 0
            for kind, text in gen.deltas():
                if self.stop.is_set():
                    self.engine.cancel()  # the client went away: stop within a token
                    continue  # drain to the end of the generation
                new = tuple(gen.logprobs[seen:]) if kind == "answer" else ()
                seen += len(new)
                self._put(("piece", Piece(kind, text, new)))
            self.result = gen.result
            if self.result is not None and len(self.result.logprobs) > seen and not self.stop.is_set():
                self._put(("piece", Piece("answer", "", self.result.logprobs[seen:])))
            self._put(("done", None))
        except PaddockError as exc:
            self._put(("error", exc))
        except Exception as exc:
            log.exception("API generation failed")
            self._put(("error", PaddockError(f"the engine failed: {exc}")))
        finally:
            if self._on_end is not None:
                self._on_end()

    async def start(self) -> None:
        """Wait for the first piece (or the end): raises the request's error, if it fails at once."""
        self._first = await self.queue.get()
        if self._first[0] == "error":
            raise self._first[1]

    async def pieces(self) -> AsyncIterator[Piece]:
        try:
            while True:
                if self._first is not None:
                    kind, value = self._first
                    self._first = None
                else:
                    kind, value = await self.queue.get()
                if kind == "piece":
                    yield value
                elif kind == "done":
                    return
                else:
                    raise value
        finally:
            self.stop.set()
