"""The parent side of the engine: starts the child process and speaks its protocol.

:class:`Engine` is thread-safe: requests are serialised by a lock (one owner of
the model at a time), while :meth:`Engine.cancel` may be called from any thread
at any moment.  If the child dies, the running request raises
:class:`EngineCrashedError` with the text generated so far, and the next
request starts a fresh child.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from app import errors
from app.engine.protocol import (
    Cancel,
    Chunk,
    ClearStates,
    CountTokens,
    Done,
    Embed,
    Embeddings,
    Event,
    Failed,
    Generate,
    Load,
    Loaded,
    LogRecord,
    Ok,
    Ready,
    Request,
    Shutdown,
    TokenCount,
    Unload,
)
from app.engine.types import (
    ChatMessage,
    Delta,
    GenerationResult,
    LoadedModel,
    LoadSettings,
    LoraAdapter,
    SamplingParams,
    TokenLogprob,
)

log = logging.getLogger(__name__)
START_TIMEOUT_S = 120.0
# With RPC workers: after this long without a word from the engine, check that each worker still
# answers. A worker's machine that vanishes (no connection reset) would leave llama.cpp waiting on
# its socket for ever; one that no longer answers ends the engine, and the message names it.
WORKER_WATCH_S = 10.0
E = TypeVar("E", bound=Event)

_ERROR_TYPES: dict[str, type[errors.PaddockError]] = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, errors.PaddockError) and cls is not errors.EngineCrashedError
}


SHUTDOWN_TIMEOUT_S = 30.0


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped responding"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (possibly out of memory)" if name == "SIGKILL" else ""
        return f"crashed ({name}){hint}"
    return f"exited with code {exitcode}"


def _lost_workers(workers: Sequence[str]) -> list[str]:
    """The workers among ``workers`` that no longer answer (asked at once, each within a second)."""
    if not workers:
        return []
    from concurrent.futures import ThreadPoolExecutor

    from app.engine import rpc

    with ThreadPoolExecutor(max_workers=min(8, len(workers))) as pool:
        statuses = list(pool.map(lambda w: rpc.probe(w, 1.0), workers))
    return [s.endpoint for s in statuses if not s.reachable]


class Generation:
    """An answer being streamed: iterate for the answer's text chunks, or
    :meth:`deltas` for thinking and answer apart; ``result`` when done.

    Raises (while iterating):
        EngineCrashedError: the engine died; ``partial_text`` holds what came.
        PaddockError: the request failed (context overflow, template error...).
    """

    def __init__(self, engine: Engine, request: Generate) -> None:
        self._engine = engine
        self._request = request
        self.text = ""
        self.thinking = ""
        self.result: GenerationResult | None = None
        self.logprobs: list[TokenLogprob] = []  # as they stream, when asked for

    def __iter__(self) -> Iterator[str]:
        for kind, text in self.deltas():
            if kind == "answer":
                yield text

    def deltas(self) -> Iterator[Delta]:
        """``("thinking", text)`` and ``("answer", text)`` pieces as they stream."""
        with self._engine._lock:
            self._engine._send(self._request)
            while True:
                event = self._engine._next_event("generating", partial=self.text)
                if isinstance(event, Chunk):
                    self.logprobs.extend(event.logprobs)
                    if event.thinking:
                        self.thinking += event.thinking
                        yield ("thinking", event.thinking)
                    if event.text:
                        self.text += event.text
                        yield ("answer", event.text)
                elif isinstance(event, Done):
                    self.result = event.result
                    return
                else:
                    self._engine._unexpected(event)


class Engine:
    """Handle on one engine child process.

    Args:
        on_crash: called (from the requesting thread) with the crash error, e.g. to
            update a status bar; the error is raised as well.
        adapters: LoRA adapters of answers that name none (``paddock serve --lora``).
        yield_to_window: the app's window runs beside this engine: the child runs at a lower
            CPU priority (nice +5; below normal on Windows), so that when decoding keeps every
            core busy the window still gets the CPU the moment it needs it. On this project's
            2 cores this took the soak's event-loop stall p99 from 23 to 14 ms; decoding is as
            fast (the window takes little CPU, and the same CPU either way).
    """

    def __init__(self, on_crash: Callable[[errors.EngineCrashedError], None] | None = None,
                 adapters: Sequence[LoraAdapter] = (), *, yield_to_window: bool = False) -> None:
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self.on_crash = on_crash
        self.adapters = tuple(adapters)
        self.yield_to_window = yield_to_window
        self.loaded: LoadedModel | None = None
        self.system_info = ""
        self.backend = "cpu"
        # Generations and embeddings sent to the child: what the API's request checks are tested
        # against (a refused request never reaches the engine).
        self.requests = 0
        # The RPC workers the loaded model uses (a crash names those that no longer answer, and a
        # silent engine is checked against them), and those the load asked for.
        self.workers: tuple[str, ...] = ()
        self._asked_workers: tuple[str, ...] = ()

    # -- process lifecycle -----------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def exitcode(self) -> int | None:
        """The child's exit code once it has ended (negative: the signal that ended it)."""
        return self._proc.exitcode if self._proc is not None else None

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def start(self) -> None:
        with self._lock:
            if self.is_alive():
                return
            from app.engine.host import serve

            ctx = mp.get_context("spawn")
            parent, child = ctx.Pipe(duplex=True)
            proc = ctx.Process(target=serve, args=(child, self.yield_to_window), name="paddock-engine", daemon=True)
            proc.start()
            child.close()  # so that recv() sees EOF when the child dies
            self._proc, self._conn = proc, parent
            ready = self._expect(Ready, "starting", timeout=START_TIMEOUT_S)
            self.system_info, self.backend = ready.system_info, ready.backend
            log.info("engine started (pid %s, backend %s)", proc.pid, self.backend)

    def close(self) -> None:
        """Stop the child politely, then firmly."""
        with self._lock:
            proc, conn = self._proc, self._conn
            if proc is None or conn is None:
                return
            if proc.is_alive():
                with contextlib.suppress(Exception):
                    self._send(Shutdown())
                    # It writes kept conversation states to disk first; its log lines (e.g. a
                    # save skipped on a full disk) come through while we wait for the answer.
                    self._expect(Ok, "shutting down", timeout=SHUTDOWN_TIMEOUT_S)
                proc.join(5)
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)
            conn.close()
            self._proc = self._conn = None
            self.loaded = None

    def kill(self) -> None:
        """SIGKILL the child (used by tests and by "force stop")."""
        if self._proc is not None and self._proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGKILL)

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests --------------------------------------------------------------

    def load(self, path: str, settings: LoadSettings | None = None) -> LoadedModel:
        """Load a GGUF (replacing any loaded model).

        Raises:
            InvalidModelError / ModelNotFoundError: the file is not a usable GGUF.
            ModelLoadError: llama.cpp refused it.
            EngineCrashedError: llama.cpp crashed on it (the next request starts a new engine).
            ProjectorError: ``settings.mmproj`` is not a projector for this model.
        """
        if settings is not None and settings.mmproj:
            from app.engine.projectors import check_projector

            check_projector(path, settings.mmproj)  # refused here, before the engine sees either file
        with self._lock:
            self.start()
            self.loaded = None
            settings = settings or LoadSettings()
            self.workers, self._asked_workers = (), settings.workers
            self._send(Load(str(path), settings))
            self.loaded = self._expect(Loaded, "loading the model").model
            self.workers = tuple(dict.fromkeys(d.worker for d in self.loaded.devices if d.worker))
            return self.loaded

    def unload(self) -> None:
        with self._lock:
            if self.is_alive():
                self._send(Unload())
                self._expect(Ok, "unloading")
            self.loaded = None

    def stream(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams | None = None,
        raw_prompt: str | None = None,
        *,
        continue_final: bool = False,
        tools: Sequence[dict[str, Any]] = (),
        tool_choice: str = "auto",
        room: int | None = None,
        raw_tokens: Sequence[int] | None = None,
        adapters: Sequence[LoraAdapter] | None = None,
    ) -> Generation:
        """An answer to ``messages``; with ``continue_final`` the last message is a cut-off
        answer that the model writes on from where it ended.  ``tools`` (OpenAI entries) may
        be called ("auto"), must be ("required", or one tool's name), or not ("none").

        Args:
            room: None leaves the oldest turns out until the prompt fits (the window tells the
                user); a number requires the whole prompt plus that many answer tokens to fit,
                else :class:`ContextOverflowError` before anything is generated (the API).
            raw_tokens: a raw completion of these token ids (instead of ``raw_prompt`` text).
            adapters: LoRA adapters (file and scale) applied to this answer; switching needs no reload.
                None: the engine's own (``adapters`` given when it was made); ``()``: none.

        Raises:
            InvalidAdapterError: an adapter does not fit the loaded model (checked here, before the engine).
        """
        if not self.is_alive() or self.loaded is None:
            raise errors.EngineError("no model is loaded: choose a model first")
        checked = self.check_adapters(self.adapters if adapters is None else adapters)
        return Generation(self, Generate(tuple(messages), params or SamplingParams(), raw_prompt, continue_final,
                                         tuple(tools), tool_choice, room,
                                         tuple(raw_tokens) if raw_tokens is not None else None, checked))

    def generate(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams | None = None,
        raw_prompt: str | None = None,
        *,
        continue_final: bool = False,
        tools: Sequence[dict[str, Any]] = (),
        tool_choice: str = "auto",
        adapters: Sequence[LoraAdapter] | None = None,
    ) -> GenerationResult:
        gen = self.stream(messages, params, raw_prompt, continue_final=continue_final, tools=tools,
                          tool_choice=tool_choice, adapters=adapters)
        for _ in gen:
            pass
        assert gen.result is not None
        return gen.result

    def check_adapters(self, adapters: Sequence[LoraAdapter]) -> tuple[LoraAdapter, ...]:
        """Each adapter checked against the loaded model (app/engine/lora.py), with the file identity it
        was checked at, which the engine holds it to.

        Raises:
            InvalidAdapterError: one does not fit, or its scale is not a finite number.
        """
        from app.engine.lora import check_adapter

        if not adapters:
            return ()
        if self.loaded is None:
            raise errors.EngineError("no model is loaded: choose a model first")
        checked = []
        for adapter in adapters:
            if not math.isfinite(adapter.scale):
                raise errors.InvalidAdapterError(f"the scale of {os.path.basename(adapter.path)} must be a number")
            checked.append(check_adapter(adapter.path, self.loaded.path).use(adapter.scale))
        return tuple(checked)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> tuple[int, int]:
        """(prompt tokens, context size) for these messages with the loaded model."""
        with self._lock:
            if not self.is_alive() or self.loaded is None:
                raise errors.EngineError("no model is loaded: choose a model first")
            self._send(CountTokens(tuple(messages)))
            count = self._expect(TokenCount, "counting tokens")
            return count.n_tokens, count.n_ctx

    def clear_states(self) -> None:
        """Forget every kept conversation state (RAM and disk); files only if no engine runs."""
        from app.engine.kvstates import clear_folder, states_folder

        with self._lock:
            if self.is_alive():
                self._send(ClearStates())
                self._expect(Ok, "clearing kept states")
                return
        clear_folder(states_folder())

    def embed(self, texts: Sequence[str | Sequence[int]], truncate: bool = True) -> tuple[list[list[float]], int]:
        """(unit-length vectors, tokens read) for ``texts`` (strings or token-id lists) with the
        loaded model, each read on its own.

        Raises:
            ContextOverflowError: an input is longer than the context and ``truncate`` is off.
            InvalidRequestError: an empty input, or a token id outside the vocabulary.
        """
        with self._lock:
            if not self.is_alive() or self.loaded is None:
                raise errors.EngineError("no model is loaded: choose a model first")
            self._send(Embed(tuple(t if isinstance(t, str) else tuple(t) for t in texts), truncate))
            result = self._expect(Embeddings, "computing embeddings")
            return [list(v) for v in result.vectors], result.n_tokens

    def cancel(self) -> None:
        """Stop the current generation (safe from any thread; no-op when idle)."""
        if self.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self._send(Cancel())

    # -- plumbing --------------------------------------------------------------

    def _send(self, request: Request) -> None:
        conn = self._conn
        if conn is None:
            raise errors.EngineError("the engine is not running")
        if isinstance(request, Generate | Embed):
            self.requests += 1
        with self._send_lock:
            try:
                conn.send(request)
            except (OSError, ValueError) as exc:
                self._crashed("sending a request", "")
                raise errors.EngineError("the engine is not running") from exc

    def _next_event(self, doing: str, partial: str = "", timeout: float | None = None) -> Event:
        """The next non-log event; raises on child death or a failed request."""
        conn, proc = self._conn, self._proc
        assert conn is not None
        assert proc is not None
        waited = 0.0
        while True:
            try:
                ready = conn.poll(0.25)
            except (OSError, EOFError):
                ready = True
            if ready:
                try:
                    event: Event = conn.recv()
                except (EOFError, OSError):
                    raise self._crashed(doing, partial) from None
                if isinstance(event, LogRecord):
                    logging.getLogger(event.name).log(event.level, "%s", event.message)
                    continue
                if isinstance(event, Failed):
                    raise _ERROR_TYPES.get(event.kind, errors.EngineError)(event.message)
                return event
            if not proc.is_alive():
                raise self._crashed(doing, partial)
            waited += 0.25
            if self.workers and waited % WORKER_WATCH_S < 0.25 and _lost_workers(self.workers):
                log.warning("a worker stopped answering while %s: stopping the engine", doing)
                self.kill()
                raise self._crashed(doing, partial)
            if timeout is not None and waited >= timeout:
                self.kill()
                raise self._crashed(doing, partial)

    def _expect(self, kind: type[E], doing: str, timeout: float | None = None) -> E:
        event = self._next_event(doing, timeout=timeout)
        if not isinstance(event, kind):
            self._unexpected(event)
        assert isinstance(event, kind)
        return event

    def _unexpected(self, event: Event) -> None:
        raise errors.EngineError(f"the engine answered out of turn ({type(event).__name__})")

    def _crashed(self, doing: str, partial: str) -> errors.EngineCrashedError:
        proc, conn = self._proc, self._conn
        exitcode: int | None = None
        if proc is not None:
            proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
            exitcode = proc.exitcode
        if conn is not None:
            conn.close()
        self._proc = self._conn = None
        model = self.loaded.name if self.loaded else "the model"
        self.loaded = None
        what = f"The model engine {_describe_exit(exitcode)}"
        lost = _lost_workers(self.workers or self._asked_workers)
        if lost:
            names = ", ".join(lost)
            what = (f"The worker{'s' if len(lost) > 1 else ''} at {names} stopped answering, so the model engine "
                    "stopped (llama.cpp cannot go on without a worker's layers)")
        error = errors.EngineCrashedError(
            f"{what} while {doing} with {model}. "
            "Your chats are safe and the text generated so far was kept; load the model again to continue"
            + (" (a worker that does not answer is left out)." if lost else "."),
            partial_text=partial,
            exitcode=exitcode,
        )
        log.error("%s", error)
        if self.on_crash is not None:
            self.on_crash(error)
        return error
