"""The engine child process: the one owner of the ``Llama`` object.

Runs :func:`serve` in a process of its own (``multiprocessing`` spawn), so that
a crash in native code (a crafted GGUF, a driver failure, an out-of-memory
kill) ends only this process.  A reader thread takes requests off the pipe;
``Cancel`` sets an event at once, which both the token loop and llama.cpp's
abort callback (checked between graph nodes during prompt evaluation) watch,
so cancellation lands within one token or one compute step.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import dataclasses
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from app.engine import hardware, rpc
from app.engine.adapters import AdapterSet, adapter_key
from app.engine.chat_format import (
    FALLBACK_NOTICE,
    ChatFormatter,
    RenderedPrompt,
    call_grammar,
    forced_call_format,
    output_parser,
    parse_tool_calls,
    special_markers,
)
from app.engine.gguf_file import GGUFInfo, read_gguf
from app.engine.images import images_in, place_markers
from app.engine.kvstates import (
    MIN_TOKENS,
    KeptState,
    StateStore,
    clear_folder,
    common_prefix,
    state_key,
    states_folder,
)
from app.engine.loadplan import place_for_load
from app.engine.native import DecodeError, Sampler, Session
from app.engine.overrides import ExpertOverrides, load_attempts
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
from app.engine.speculative import DraftModel, PromptLookup, VerifyCost
from app.engine.types import (
    ChatMessage,
    GenerationResult,
    GenerationStats,
    LoadedModel,
    LoadSettings,
    LoraAdapter,
    TokenLogprob,
)
from app.engine.vision import MediaPrompt, Vision
from app.errors import (
    ContextOverflowError,
    EngineError,
    ImageError,
    InvalidModelError,
    InvalidRequestError,
    ModelLoadError,
    PaddockError,
)

log = logging.getLogger("paddock.engine.host")

GGML_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}
# Text is sent at most once per display frame: the first piece at once, later ones
# coalesced when tokens come faster than 60/s (each message wakes the receiving
# process, which competes with llama.cpp's threads for the cores).
CHUNK_INTERVAL_S = 0.016
EMBED_MAX_CTX = 2048  # embedding models read one chunk (~250 tokens) at a time
# ggml_log_level (NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5) -> logging levels.
# llama.cpp's INFO is a page of buffer sizes per load: keep it at DEBUG.
_LLAMA_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}


class _PipeLogHandler(logging.Handler):
    """Sends log records to the parent, which re-emits them in its own logging tree."""

    def __init__(self, send: Any) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self._send(LogRecord(record.levelno, record.name, self.format(record)))


class EngineHost:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._send_lock = threading.Lock()
        self.requests: queue.Queue[Request | None] = queue.Queue()
        self.cancel = threading.Event()
        self.llm: Any = None
        self.embedder: Any = None
        self.embedding_mode = False
        self.info: GGUFInfo | None = None
        self.formatter: ChatFormatter | None = None
        self._told: set[str] = set()  # notices of this model's template, each told once
        self.loaded: LoadedModel | None = None
        self.session: Session | None = None
        self.drafter: DraftModel | None = None  # the draft model, when the user chose one
        self.verify_cost = VerifyCost()  # what a prompt-lookup draft costs with this model (measured)
        self._draft_llm: Any = None
        self.vision: Vision | None = None  # the image projector's mtmd context, when the model has one
        self._media: MediaPrompt | None = None  # the current prompt's image chunks (freed after the answer)
        self.states: StateStore | None = None
        # LoRA adapters on the context; kept states are keyed by the set (state_key's arguments)
        self.adapters: AdapterSet | None = None
        self._states_args: tuple[str, list[object], int, int] | None = None
        self._callbacks: list[Any] = []  # ctypes callbacks must outlive their registration
        self._abort: Any = None  # the abort callback (native.Session arms it for prompt batches)
        self._overrides: ExpertOverrides | None = None  # the loaded model's tensor overrides (MoE experts in RAM)
        self._load_log: list[str] | None = None  # llama.cpp's log lines while a model loads (placement)

    # -- plumbing --------------------------------------------------------------

    def send(self, event: Event) -> None:
        with self._send_lock:
            self.conn.send(event)

    def _reader(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                # The parent is gone: nobody is left to answer to.
                os._exit(0)
            if isinstance(msg, Cancel):
                self.cancel.set()
            else:
                self.requests.put(msg)

    def _install_llama_logging(self, llama_cpp: Any) -> None:
        llama_log = logging.getLogger("paddock.llama")
        state = {"level": logging.DEBUG}

        @llama_cpp.llama_log_callback
        def callback(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
            pylevel = state["level"] if level == 5 else _LLAMA_LEVELS.get(level, logging.DEBUG)
            state["level"] = pylevel
            if self.cancel.is_set():
                pylevel = logging.DEBUG  # an aborted decode is how Stop works, not an error
            message = text.decode("utf-8", errors="replace").rstrip()
            if self._load_log is not None and message:
                self._load_log.append(message)
            if message and llama_log.isEnabledFor(pylevel):
                llama_log.log(pylevel, "%s", message)

        self._callbacks.append(callback)
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        with contextlib.suppress(ImportError, OSError, AttributeError):  # libmtmd (images) logs on its own
            from llama_cpp import mtmd_cpp

            mtmd_cpp.mtmd_log_set(callback, ctypes.c_void_p(0))
            mtmd_cpp.mtmd_helper_log_set(callback, ctypes.c_void_p(0))

    # -- main loop -------------------------------------------------------------

    def run(self) -> None:
        root = logging.getLogger()
        root.handlers[:] = [_PipeLogHandler(self.send)]
        root.setLevel(int(os.environ.get("PADDOCK_ENGINE_LOG_LEVEL", logging.INFO)))
        import llama_cpp

        self._install_llama_logging(llama_cpp)
        threading.Thread(target=self._reader, name="engine-reader", daemon=True).start()
        self.send(
            Ready(llama_cpp.llama_print_system_info().decode(errors="replace"), hardware.detect_backend())
        )
        while True:
            request = self.requests.get()
            if request is None or isinstance(request, Shutdown):
                self._unload()
                self.send(Ok())
                return
            self.cancel.clear()
            try:
                self._dispatch(request)
            except PaddockError as exc:
                self.send(Failed(type(exc).__name__, str(exc)))
            except Exception as exc:
                log.exception("engine request failed")
                self.send(Failed("EngineError", f"the engine failed: {exc}"))

    def _dispatch(self, request: Request) -> None:
        if isinstance(request, Load):
            try:
                self.send(Loaded(self._load(request.path, request.settings)))
            finally:
                self._load_log = None
        elif isinstance(request, Unload):
            self._unload()
            self.send(Ok())
        elif isinstance(request, Generate):
            self.send(Done(self._generate(request)))
        elif isinstance(request, ClearStates):
            if self.states is not None:
                self.states.clear()
            clear_folder(states_folder())
            self.send(Ok())
        elif isinstance(request, Embed):
            self.send(self._embed(request.texts, request.truncate))
        elif isinstance(request, CountTokens):
            messages = self._with_markers(request.messages)
            prompt = self._formatter().render(messages)
            tokens, media = self._prompt_tokens(prompt, messages)
            if media is not None:
                media.close()
            self.send(TokenCount(len(tokens), self.llm.n_ctx() if self.llm else 0))
        else:
            raise EngineError(f"unknown engine request {type(request).__name__}")

    # -- load ------------------------------------------------------------------

    def _embed(self, inputs: tuple[str | tuple[int, ...], ...], truncate: bool) -> Embeddings:
        """Pooled, unit-length vectors, each input decoded alone in a context of its own sequence.

        A second llama.cpp context in embedding mode on the same weights (mmap shares them), unless
        the model was loaded as an embedding model.  Each input is read on its own, so its vector
        never depends on what else was asked with it, and every input is checked before llama.cpp
        sees it: ``Llama.embed`` left its batch half-filled after a failed decode (an empty input),
        and the next input then wrote past the batch's end (heap corruption, a SIGABRT).
        """
        from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama
        from llama_cpp import llama_cpp as lib

        if self.llm is None or self.loaded is None:
            raise EngineError("no model is loaded: choose a model first")
        if self.embedding_mode:
            self.embedder = self.llm
        elif self.embedder is None:
            size = min(self.loaded.n_ctx, 8192)
            self.embedder = Llama(
                model_path=self.loaded.path, embedding=True, pooling_type=LLAMA_POOLING_TYPE_MEAN,
                n_ctx=size, n_batch=size, n_ubatch=size, n_threads=self.loaded.n_threads,
                n_gpu_layers=self.loaded.n_gpu_layers, verbose=False,
            )
        embedder = self.embedder
        # the whole input must be one micro-batch (pooling reads all of its tokens at once)
        limit = min(embedder.n_ctx(), int(embedder.context_params.n_ubatch))
        n_vocab = embedder.n_vocab()
        token_lists: list[list[int]] = []
        for i, item in enumerate(inputs):
            tokens = (embedder.tokenize(item.encode("utf-8")) if isinstance(item, str) else list(item))
            if (isinstance(item, str) and not item) or not tokens:
                raise InvalidRequestError(f"input {i} is empty: there is nothing to embed")
            if not all(0 <= t < n_vocab for t in tokens):
                raise InvalidRequestError(f"input {i} has token ids outside the vocabulary (0 to {n_vocab - 1})")
            if len(tokens) > limit:
                if not truncate:
                    raise ContextOverflowError(
                        f"input {i} is {len(tokens)} tokens, but the embedding context holds {limit}: "
                        "shorten it, or ask for truncation"
                    )
                tokens = tokens[:limit]
            token_lists.append(tokens)
        ctx = embedder._ctx.ctx
        memory = lib.llama_get_memory(ctx)
        n_embd = embedder.n_embd()
        vectors = []
        for tokens in token_lists:
            lib.llama_memory_clear(memory, True)
            arr = (ctypes.c_int32 * len(tokens))(*tokens)
            code = int(lib.llama_decode(ctx, lib.llama_batch_get_one(arr, len(tokens))))
            if code != 0:
                raise EngineError(f"llama.cpp could not embed the input (llama_decode returned {code})")
            ptr = lib.llama_get_embeddings_seq(ctx, 0)
            if not ptr:
                ptr = lib.llama_get_embeddings_ith(ctx, -1)  # a model without pooling: the last token's
            vec = [float(ptr[k]) for k in range(n_embd)]
            norm = sum(x * x for x in vec) ** 0.5 or 1.0
            vectors.append(tuple(x / norm for x in vec))
        lib.llama_memory_clear(memory, True)
        return Embeddings(tuple(vectors), sum(len(t) for t in token_lists))

    def _unload(self) -> None:
        if self.states is not None:
            try:
                self._keep_current()
                self.states.flush()
            except Exception:  # a cache: never in the way of unloading
                log.exception("could not keep the conversation states")
            self.states = None
        if self.adapters is not None:
            self.adapters.close()  # cleared from the context and freed before the model
            self.adapters = None
        self._states_args = None
        if self.embedder is not None and self.embedder is not self.llm:
            self.embedder.close()
        self.embedder = None
        self.embedding_mode = False
        if self.drafter is not None:
            self.drafter.session.close()
        if self._draft_llm is not None:
            self._draft_llm.close()
        self.drafter = self._draft_llm = None
        if self.vision is not None:  # it points into the model: freed first
            self.vision.close()
            self.vision = None
        if self.session is not None:
            self.session.close()
        if self.llm is not None:
            self.llm.close()
        self.llm = None
        self._overrides = None
        self.session = None
        self.info = None
        self.formatter = None
        self._told = set()
        self.loaded = None

    def _load(self, path: str, settings: LoadSettings) -> LoadedModel:
        from llama_cpp import Llama

        info = read_gguf(path)  # raises InvalidModelError before llama.cpp sees the file
        if info.get("general.type") == "adapter":
            raise InvalidModelError(f"{info.path.name} is a LoRA adapter, not a model: load its base model and "
                                    "apply the adapter to it")
        try:
            verify_cost = VerifyCost.for_engine()
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from exc
        self._unload()
        hw = hardware.detect()
        plan = hardware.plan_load(info.shape, hw, settings.n_ctx, settings.n_gpu_layers, settings.kv_cache_type)
        notices = list(plan.notices)
        if settings.workers or rpc.registered():
            plan = self._use_workers(settings, plan, notices)
        n_threads = settings.n_threads or hw.physical_cores
        # On unless turned off: llama.cpp's own tools default to "auto", which turns it on
        # for CPU, Metal and CUDA (llama-cpp-python's constructor takes only a bool). On
        # this machine's CPU it measured +2.5 % decode and +6 % prompt speed; a quantized
        # V cache needs it.
        flash = True if settings.flash_attn is None else settings.flash_attn
        kwargs: dict[str, Any] = {
            "model_path": str(info.path),
            "n_ctx": plan.n_ctx,
            "n_threads": n_threads,
            "n_threads_batch": n_threads,
            "n_batch": settings.n_batch,
            "flash_attn": flash,
            "type_k": GGML_TYPES[settings.kv_cache_type],
            "type_v": GGML_TYPES[settings.kv_cache_type],
            # Sliding-window models (Gemma 2/3, ...) keep a full-size cache so that a
            # follow-up turn can reuse the whole prefix (otherwise llama.cpp drops
            # positions outside the window and the prompt must be re-evaluated).
            "swa_full": True,
            "verbose": False,
        }
        if settings.embedding:
            # One sequence per chunk, each fitting a batch; the model's own pooling if it
            # declares one (BERT-style embedders), else the mean of the token vectors.
            from llama_cpp import LLAMA_POOLING_TYPE_MEAN

            size = min(plan.n_ctx, info.context_length or plan.n_ctx, EMBED_MAX_CTX)
            kwargs.update(n_ctx=size, n_batch=size, n_ubatch=size, embedding=True, swa_full=False)
            if info.get(f"{info.architecture}.pooling_type") is None:
                kwargs["pooling_type"] = LLAMA_POOLING_TYPE_MEAN
        placed = place_for_load(info, hw, plan, settings, n_threads)  # refuses a model that fits nowhere
        gpu_layers, n_cpu_moe = placed.n_gpu_layers, placed.n_cpu_moe
        started = time.perf_counter()
        llm = None
        attempts = load_attempts(gpu_layers, n_cpu_moe, info.block_count, placed.moe)
        for i, (gpu_layers, n_cpu_moe, _how) in enumerate(attempts):
            overrides = ExpertOverrides(n_cpu_moe, info.block_count)
            self._load_log = []  # the placement is read from this attempt's log
            try:
                with overrides.applied():
                    llm = Llama(n_gpu_layers=gpu_layers, **kwargs)
            except (ValueError, RuntimeError) as exc:
                if i + 1 == len(attempts):
                    raise ModelLoadError(
                        f"llama.cpp could not load {info.path.name}: {exc}. The file may be damaged "
                        "or use an architecture this version of llama.cpp does not support."
                    ) from exc
                log.warning("loading with %d GPU layers failed (%s); retrying %s", gpu_layers, exc, attempts[i + 1][2])
                notices.append(f"Loading as planned failed on the GPU ({exc}); the model was loaded "
                               f"{attempts[i + 1][2]} instead, which is slower.")
                continue
            self._overrides = overrides  # llama.cpp keeps pointers into it for the model's lifetime
            break
        assert llm is not None
        self._set_abort_callback(llm)
        session = Session(llm, self._abort)
        self.verify_cost = verify_cost
        if not settings.embedding:
            # Warm up as llama.cpp's tools do: one decode maps every weight page into this
            # process and sizes the compute buffers, so the first answer does not pay for
            # it (measured: 0.1-0.2 s of the first answer on a 250 MB model).
            bos = llm.token_bos()
            try:
                session.decode((bos if bos >= 0 else 0,))
            except DecodeError as exc:
                llm.close()
                raise ModelLoadError(f"llama.cpp could not run {info.path.name} ({exc})") from exc
            session.clear()
        load_s = time.perf_counter() - started
        devices = rpc.placement_from_log(self._load_log or (), info.shape.n_layers)
        self._load_log = None
        if any(d.worker for d in devices):
            notices.append(rpc.placement_notice(devices))
        self.llm = llm
        self.session = session
        self.adapters = AdapterSet(llm)
        if settings.mmproj and not settings.embedding:
            try:
                self.vision = Vision(settings.mmproj, llm, n_threads, use_gpu=gpu_layers != 0)
            except PaddockError:
                session.close()
                llm.close()
                self._unload()
                raise
        if not settings.embedding:
            # (a projector changes what an image's positions hold: part of the key when there is one)
            extra = [os.path.realpath(settings.mmproj)] if self.vision is not None and settings.mmproj else []
            self._states_args = (str(info.path), [llm.n_ctx(), settings.kv_cache_type, flash, True, *extra],
                                 settings.kept_states_ram_mb << 20, settings.kept_states_disk_mb << 20)
            self.states = self._state_store()
        self.embedding_mode = settings.embedding
        self.info = info
        template = settings.chat_template or info.chat_template
        try:
            self.formatter = ChatFormatter(
                template,
                _token_text(llm, llm.token_bos()),
                _token_text(llm, llm.token_eos()),
                bool(info.get("tokenizer.ggml.add_bos_token", True)),
                info.name,
            )
        except PaddockError:
            llm.close()
            self._unload()
            raise
        if self.formatter.source == "fallback":
            notices.append(FALLBACK_NOTICE)
        fmt = self.formatter.reasoning
        shown = []
        for marker in special_markers(fmt, (self.formatter.eos_token,)):
            ids = llm.tokenize(marker.encode("utf-8"), add_bos=False, special=True)
            if len(ids) == 1:
                shown.append(ids[0])
        session.show_special(shown)
        has_switch, thinking_default = self.formatter.thinking_switch()
        if settings.draft_model and not settings.embedding:
            notice = self._load_draft(settings.draft_model, llm, kwargs, gpu_layers)
            if notice:
                notices.append(notice)
        backend = hw.backend if gpu_layers != 0 else "cpu"
        self.loaded = LoadedModel(
            path=str(info.path),
            name=info.name,
            architecture=info.architecture,
            n_ctx=llm.n_ctx(),
            n_ctx_train=info.context_length,
            n_threads=n_threads,
            n_gpu_layers=gpu_layers,
            backend=backend,
            prompt_lookup=settings.prompt_lookup,
            draft_model=settings.draft_model or "" if self.drafter is not None else "",
            template_source=(
                "fallback" if self.formatter.source == "fallback"
                else "override" if settings.chat_template else "gguf"
            ),
            load_s=load_s,
            notices=tuple(notices),
            reasoning_format=fmt.name if self.formatter.source != "fallback" else "",
            thinking_switch=has_switch,
            thinking_default=thinking_default,
            n_cpu_moe=n_cpu_moe if placed.moe else 0,
            plan=placed.line(gpu_layers, n_cpu_moe),
            predicted_tokens_per_s=placed.predicted(gpu_layers, n_cpu_moe),
            devices=devices,
            mmproj=settings.mmproj or "" if self.vision is not None else "",
        )
        log.info("loaded %s: n_ctx=%d threads=%d gpu_layers=%d backend=%s in %.2fs",
                 info.name, llm.n_ctx(), n_threads, gpu_layers, backend, load_s)
        return self.loaded

    def _use_workers(self, settings: LoadSettings, plan: hardware.Plan, notices: list[str]) -> hardware.Plan:
        """Register the workers that answer (and only they serve this load); the user is told about
        those left out. With workers and no layer count chosen, every layer is offloaded: llama.cpp
        spreads them over the workers and this machine's GPUs by their free memory."""
        usable, left_out = rpc.register_workers(settings.workers)
        for status in left_out:
            notices.append(f"The worker at {status.endpoint} was left out ({status.error}); the model loads "
                           "without it.")
        if usable and settings.n_gpu_layers is None:
            plan = dataclasses.replace(plan, n_gpu_layers=-1)
        return plan

    def _load_draft(self, path: str, llm: Any, kwargs: dict[str, Any], gpu_layers: int) -> str | None:
        """Load the draft model next to the target; a notice if it cannot serve as one."""
        from llama_cpp import Llama

        name = os.path.basename(path)
        try:
            read_gguf(path)
            draft = Llama(**{**kwargs, "model_path": path, "n_gpu_layers": gpu_layers})
        except (PaddockError, ValueError, RuntimeError, OSError) as exc:
            return f"The draft model {name} could not be loaded ({exc}); answers are written without it."
        same = draft.n_vocab() == llm.n_vocab() and all(
            _token_text(draft, t) == _token_text(llm, t) for t in (*range(0, min(llm.n_vocab(), 400), 7),
                                                                  llm.token_bos(), llm.token_eos()) if t >= 0
        )
        if not same:
            draft.close()
            return (f"The draft model {name} has another vocabulary than this model, so it cannot draft for it: "
                    "choose a smaller model of the same family.")
        self._draft_llm = draft
        self.drafter = DraftModel(Session(draft), draft.n_vocab())
        return None

    def _next_tokens(self, session: Session, sampler: Sampler, token: int, lookup: PromptLookup | None,
                     drafter: DraftModel | None, *, stats: GenerationStats, room: int) -> list[int]:
        """Evaluate the last token taken and draw what follows: one token, or with a draft
        (prompt lookup, else the draft model), every draft token the model itself draws and one more.

        Raises:
            DecodeError: llama.cpp failed (or Stop aborted it).
        """
        if token < 0:  # the first answer token: the prompt's logits are there
            return [sampler.sample(session.ctx)]
        draft = lookup.draft(room - 1) if lookup is not None else []
        source: PromptLookup | DraftModel | None = lookup
        if not draft and drafter is not None and room > 1:
            draft = drafter.draft([*session.cached(), token], room - 1)
            source = drafter
        if not draft or source is None:
            if lookup is None:
                session.decode_one(token)
                return [sampler.sample(session.ctx)]
            started = time.perf_counter()  # what a plain step costs, against which drafts are weighed
            session.decode_one(token)
            taken = sampler.sample(session.ctx)
            lookup.cost.alone(time.perf_counter() - started)
            return [taken]
        started = time.perf_counter()
        base = session.n_past
        session.decode_all([token, *draft])
        drawn: list[int] = []
        tie = False
        for i in range(len(draft) + 1):
            choice, clear = sampler.sample_clear(session.ctx, i)
            if not clear:
                # A near tie between the two likeliest tokens: a batch's logits differ from one token's
                # in the last bits, and greedy output must be what plain decoding gives. The tokens
                # taken so far stand; the last of them is evaluated again on its own.
                tie = True
                break
            drawn.append(choice)
            if i == len(draft) or choice != draft[i]:
                break
        if source is lookup:
            lookup.cost.verified(len(draft), time.perf_counter() - started)
        accepted = len(drawn) if tie else len(drawn) - 1
        source.result(len(draft), accepted)
        stats.draft_tokens += len(draft)
        stats.draft_accepted += accepted
        # the refused rest of the draft leaves the KV cache (at a tie, the last taken token too)
        session.keep(base + accepted + (not tie))
        if not drawn:  # a tie at once: the token itself is evaluated alone
            session.decode_one(token)
            return [sampler.sample(session.ctx)]
        return drawn

    # -- kept conversation states ------------------------------------------------

    def _keep_current(self) -> None:
        """Snapshot the evaluated sequence into the state store."""
        session, states = self.session, self.states
        if session is None or states is None or session.n_past < MIN_TOKENS:
            return
        tokens = session.cached()
        if any(len(s.tokens) == len(tokens) and list(s.tokens) == tokens for s in states.states):
            return  # already kept
        try:
            data = session.save_state()
        except DecodeError as exc:
            log.warning("could not snapshot the conversation state: %s", exc)
            return
        states.put(tokens, data)

    def _state_store(self) -> StateStore:
        """The kept states of this model, settings and adapter set (without adapters: the model's own key)."""
        assert self._states_args is not None
        path, settings, ram, disk = self._states_args
        lora = [list(k) for k in self.adapters.key] if self.adapters is not None else []
        return StateStore(states_folder(), state_key(path, settings + lora if lora else settings), ram, disk)

    def _use_adapters(self, adapters: Sequence[LoraAdapter]) -> None:
        """Apply the request's LoRA adapter set.  Nothing computed under one set is used under another:
        on a change the evaluated sequence is kept under the old set's key and cleared, and the kept
        states of the new set (their own key) take the place of the old set's.

        Raises:
            InvalidAdapterError: an adapter is gone, changed since it was checked, or refused (nothing changed).
        """
        if self.adapters is None or self.session is None or adapter_key(adapters) == self.adapters.key:
            return
        if self.states is not None:
            self._keep_current()  # computed under the old set: kept under its key, before the set changes
        if not self.adapters.apply(adapters):
            return
        self.session.clear()
        if self.states is not None:
            try:
                self.states.flush()
            except Exception:  # a cache: never in the way of an answer
                log.exception("could not keep the conversation states")
            self.states = self._state_store()

    def _restore(self, state: KeptState) -> bool:
        session, states = self.session, self.states
        if session is None or states is None:
            return False
        data = states.data(state)
        if data is None:
            return False
        if not session.load_state(data, state.tokens):
            log.warning("llama.cpp refused a kept state: removed")
            states.discard(state)
            return False
        return True

    def _set_abort_callback(self, llm: Any) -> None:
        """llama.cpp checks this between compute steps of ``llama_decode``."""
        import llama_cpp
        from llama_cpp import llama_cpp as lib

        fn = lib._lib.llama_set_abort_callback
        fn.argtypes = [ctypes.c_void_p, llama_cpp.ggml_abort_callback, ctypes.c_void_p]
        fn.restype = None
        cancel = self.cancel

        @llama_cpp.ggml_abort_callback
        def abort(_data: ctypes.c_void_p) -> bool:
            return cancel.is_set()

        self._callbacks.append(abort)
        self._abort = abort
        fn(llm._ctx.ctx, abort, None)

    # -- generation ------------------------------------------------------------

    def _formatter(self) -> ChatFormatter:
        if self.llm is None or self.formatter is None:
            raise EngineError("no model is loaded: choose a model first")
        return self.formatter

    def _tokenize(self, prompt: RenderedPrompt) -> list[int]:
        tokens: list[int] = self.llm.tokenize(prompt.text.encode("utf-8"), add_bos=prompt.add_bos, special=True)
        return tokens

    def _with_markers(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """``messages`` with one image marker per image in each, when the conversation has images.

        Raises:
            ImageError: the conversation has images and this model cannot see.
        """
        if not images_in(messages):
            return list(messages)
        if self.vision is None:
            name = self.info.name if self.info is not None else "this model"
            raise ImageError(
                f"{name} cannot see images: it was loaded without an image projector (mmproj). Choose a model "
                "that can see, or load this one with its projector; or send the message without images."
            )
        return [dataclasses.replace(m, content=place_markers(m.content, len(m.images))) for m in messages]

    def _prompt_tokens(self, prompt: RenderedPrompt,
                       messages: Sequence[ChatMessage]) -> tuple[list[int], MediaPrompt | None]:
        """The prompt's tokens; with images, mtmd's chunks too (an image is one placeholder per position)."""
        images = [image for m in messages for image in m.images]
        if not images or self.vision is None:
            return self._tokenize(prompt), None
        media = self.vision.tokenize(prompt.text, prompt.add_bos, images)
        return media.tokens, media

    def _fit(
        self, messages: Sequence[ChatMessage], max_tokens: int, enable_thinking: bool | None = None,
        continue_final: bool = False, tools: Sequence[dict[str, Any]] = (), *, room: int | None = None,
    ) -> tuple[RenderedPrompt, list[int], int, MediaPrompt | None]:
        """Render the conversation; drop the oldest turns (never the system prompt
        or the newest message) until prompt + answer room fit the context.  With ``room``
        nothing is dropped: the prompt and ``room`` answer tokens fit, or ContextOverflowError."""
        formatter = self._formatter()
        n_ctx = self.llm.n_ctx()
        reserve = max(1, min(max_tokens, n_ctx // 4))
        msgs = self._with_markers(messages)
        dropped = 0
        while True:
            prompt = formatter.render(msgs, enable_thinking=enable_thinking, continue_final=continue_final,
                                      tools=tools)
            tokens, media = self._prompt_tokens(prompt, msgs)
            cells = len(tokens) + (media.extra_cells if media is not None else 0)
            if room is not None:
                try:
                    _check_room(cells, room, n_ctx)
                except ContextOverflowError:
                    if media is not None:
                        media.close()
                    raise
                return prompt, tokens, 0, media
            if cells + reserve <= n_ctx:
                return prompt, tokens, dropped, media
            if media is not None:
                media.close()
            keep_last = 2 if continue_final else 1  # a continued answer keeps its question
            droppable = [i for i, m in enumerate(msgs[:-keep_last]) if m.role != "system"]
            if not droppable:
                raise ContextOverflowError(
                    f"this message needs {cells} tokens plus {reserve} for the answer, but the "
                    f"model's context holds {n_ctx}: shorten it, or raise the context length in the "
                    "model settings"
                )
            del msgs[droppable[0]]
            dropped += 1

    def _generate(self, req: Generate) -> GenerationResult:
        try:
            return self._answer(req)
        finally:
            if self._media is not None:
                self._media.close()
                self._media = None

    def _answer(self, req: Generate) -> GenerationResult:
        llm, session = self.llm, self.session
        if llm is None or session is None:
            raise EngineError("no model is loaded: choose a model first")
        self._use_adapters(req.adapters)
        params = req.params
        notices: list[str] = []
        raw = req.raw_prompt is not None or req.raw_tokens is not None
        media: MediaPrompt | None = None
        if raw:
            bos = bool(self.info.get("tokenizer.ggml.add_bos_token", True)) if self.info else True
            prompt = RenderedPrompt(req.raw_prompt or "", (), "raw", bos)
            if req.raw_tokens is not None:
                tokens = list(req.raw_tokens)
                if not tokens or not all(0 <= t < llm.n_vocab() for t in tokens):
                    raise InvalidRequestError(f"a prompt of token ids needs ids from 0 to {llm.n_vocab() - 1}")
            else:
                tokens = self._tokenize(prompt)
            dropped = 0
            _check_room(len(tokens), req.room or 1, llm.n_ctx())
        else:
            tools = req.tools if req.tool_choice != "none" else ()
            prompt, tokens, dropped, media = self._fit(
                req.messages, params.max_tokens, params.enable_thinking, req.continue_final, tools, room=req.room
            )
            self._media = media
            for notice in prompt.notices:
                if notice not in self._told:
                    self._told.add(notice)
                    notices.append(notice)
            if dropped:
                notices.append(
                    f"The {dropped} oldest message{'s' if dropped > 1 else ''} no longer fit the "
                    f"{llm.n_ctx()}-token context and {'were' if dropped > 1 else 'was'} left out of this answer."
                )
        n_ctx = llm.n_ctx()
        stats = GenerationStats(prompt_tokens=len(tokens), dropped_messages=dropped, n_ctx=n_ctx)
        started = time.perf_counter()

        # Reuse the KV cache for the longest common prefix with what is already evaluated,
        # or with a kept state (another chat's, a past session's) when that shares more.
        cached = session.cached()
        prefix = common_prefix(cached, tokens)
        if self.states is not None and not raw:
            if len(cached) - prefix >= MIN_TOKENS:
                self._keep_current()  # about to be overwritten: keep it for when its chat returns
            best = self.states.best(tokens)
            if best is not None and best[1] > prefix + 16 and self._restore(best[0]):
                prefix = common_prefix(session.cached(), tokens)
                stats.prompt_restored = min(prefix, len(tokens) - 1)
        reuse = min(prefix, len(tokens) - 1)
        if media is not None:
            reuse = media.image_start(reuse)  # an image is evaluated whole
        if reuse == 0 or not session.keep(reuse):
            reuse = 0
            session.clear()
        stats.prompt_reused = reuse
        stats.prompt_evaluated = len(tokens) - reuse

        seed = params.seed if params.seed is not None else random.randrange(2**31)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            if media is not None:
                self._decode_images(session, media, reuse, stats)
            if params.seed is not None and len(tokens) - session.n_past > 1:
                # With a fixed seed the last prompt token is decoded on its own: a batched
                # decode gives slightly different logits than a single-token one, and the
                # answer must not depend on how much of the prompt was cached.
                session.decode(tokens[session.n_past:-1])
                session.decode(tokens[-1:])
            else:
                session.decode(tokens[session.n_past:])
        except DecodeError as exc:
            if self.cancel.is_set():
                stats.finish_reason = "cancelled"
                stats.total_s = time.perf_counter() - started
                return GenerationResult("", stats, tuple(notices))
            raise EngineError(f"llama.cpp failed while reading the prompt ({exc})") from exc

        grammar = params.grammar  # structured output (the API's response_format)
        if req.tools and req.tool_choice not in ("auto", "none") and prompt.tool_format is not None:
            # A call is required: constrain the output to one valid call of the offered tools.
            if grammar is not None:
                raise InvalidRequestError("a required tool call cannot be combined with a response format")
            only = None if req.tool_choice == "required" else req.tool_choice
            try:
                grammar = call_grammar(prompt.tool_format, req.tools, only)
            except ValueError as exc:
                raise EngineError(f"cannot require that tool: {exc}") from exc
            # The call comes in the grammar's syntax, which may not be the family's own markers.
            prompt = dataclasses.replace(prompt, tool_format=forced_call_format(prompt.tool_format))
        try:
            history = tokens if media is None else [t for t in tokens if t >= 0]
            sampler = Sampler(params, llm.n_vocab(), seed, history, grammar=grammar, vocab=session.vocab)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from exc
        parser = output_parser(prompt, continuing=req.continue_final, stops=params.stop)
        if grammar is not None:
            parser.in_thinking = False  # the grammar starts the call (or the structured answer) at once
        unsent, unsent_thinking = "", ""  # text not sent yet (coalesced, see CHUNK_INTERVAL_S)
        sent_at = 0.0
        first_token_at: float | None = None
        decoded_before = 0.0  # session.decode_s at the first answer token
        thinking_started: float | None = None
        thinking_s = 0.0
        n_generated = 0
        finish = "length"
        token = -1  # the last token taken, not yet evaluated
        ready: list[int] = []  # tokens drawn and not yet taken (a verified draft's)
        # No drafts while a grammar constrains the answer, nor when each token's probabilities are
        # reported (they are read from the one position each plain step leaves).
        # Nor with images: their placeholder ids are not tokens a draft may propose.
        plain = grammar is None and params.logprobs is None and media is None
        lookup = (PromptLookup(tokens, n_ctx, self.verify_cost) if self.loaded is not None
                  and self.loaded.prompt_lookup and plain else None)
        drafter = self.drafter if plain else None
        logprobs: list[TokenLogprob] = []
        unsent_logprobs: list[TokenLogprob] = []
        try:
            while True:
                if n_generated >= params.max_tokens:
                    finish = "length"  # (before decoding the last token for nothing)
                    break
                if not ready:
                    if self.cancel.is_set():
                        finish = "cancelled"
                        break
                    past = session.n_past
                    if past >= n_ctx - 1 - (token >= 0):
                        finish = "context_full"
                        notices.append("The answer reached the end of the model's context and was cut there.")
                        break
                    try:
                        ready = self._next_tokens(session, sampler, token, lookup, drafter, stats=stats,
                                                  room=min(params.max_tokens - n_generated, n_ctx - 2 - past))
                    except DecodeError as exc:
                        if self.cancel.is_set():
                            finish = "cancelled"
                            break
                        raise EngineError(f"llama.cpp failed while generating ({exc})") from exc
                taken = ready.pop(0)
                # the last drawn token is evaluated next round; a verified draft's others already are
                token = -1 if ready else taken
                now = time.perf_counter()
                if first_token_at is None:
                    first_token_at = now
                    decoded_before = session.decode_s
                if session.is_eog(taken):
                    finish = "stop"
                    break
                if lookup is not None:
                    lookup.push(taken)
                if params.logprobs is not None:
                    entry = self._logprob(session, taken, params.logprobs)
                    logprobs.append(entry)
                    unsent_logprobs.append(entry)
                n_generated += 1
                if parser.in_thinking and thinking_started is None:
                    thinking_started = now
                for kind, text in parser.feed(decoder.decode(session.piece(taken))):
                    if kind == "thinking":
                        unsent_thinking += text
                    else:
                        unsent += text
                if parser.in_thinking and thinking_started is None:
                    thinking_started = now
                elif not parser.in_thinking and thinking_started is not None:
                    thinking_s += now - thinking_started
                    thinking_started = None
                if parser.stopped:
                    finish = "stop"
                    break
                if (unsent or unsent_thinking) and now - sent_at >= CHUNK_INTERVAL_S:
                    self.send(Chunk(unsent, unsent_thinking, tuple(unsent_logprobs)))
                    unsent, unsent_thinking, sent_at = "", "", now
                    unsent_logprobs = []
        finally:
            sampler.close()
        tail = parser.feed(decoder.decode(b"", final=True)) + parser.finish()
        tool_calls: list[dict[str, Any]] = []
        if parser.in_tool:
            tool_calls = parse_tool_calls(prompt, parser.tool_text)
            if tool_calls:
                finish = "tool_calls"
            else:  # not a call after all (or one Paddock cannot read): it is the answer
                log.info("unreadable tool call kept as text: %r", parser.tool_text[:200])
                tail += parser.release_tool_text()
        for kind, text in tail:
            if kind == "thinking":
                unsent_thinking += text
            else:
                unsent += text
        if unsent or unsent_thinking or unsent_logprobs:
            self.send(Chunk(unsent, unsent_thinking, tuple(unsent_logprobs)))
        if finish == "stop" and parser.in_thinking and not parser.answer:
            notices.append("The model ended its turn while still thinking: its thinking is shown, "
                           "but it gave no answer. Regenerate, or turn Think off for this chat.")
        ended = time.perf_counter()
        if thinking_started is not None:  # still thinking when the answer ended
            thinking_s += ended - thinking_started
        stats.completion_tokens = n_generated
        stats.finish_reason = finish
        stats.total_s = ended - started
        if first_token_at is not None:
            stats.ttft_s = first_token_at - started
            answer_s = ended - first_token_at
            stats.tokens_per_s = (n_generated - 1) / answer_s if n_generated > 1 and answer_s > 0 else 0.0
            stats.decode_s = session.decode_s - decoded_before
        return GenerationResult(parser.answer, stats, tuple(notices), parser.thinking, thinking_s, tuple(tool_calls),
                                tuple(logprobs))

    def _decode_images(self, session: Session, media: MediaPrompt, reuse: int, stats: GenerationStats) -> None:
        """Evaluate the prompt up to the end of its last image: the text between images as text, each
        image not already in the KV cache through mtmd (encoded, then decoded as embeddings).

        Raises:
            DecodeError: llama.cpp or mtmd failed (or Stop aborted it).
        """
        assert self.vision is not None
        stats.images = len(media.images)
        stats.image_tokens = sum(end - start for start, end, _ in media.images)
        for start, end, chunk in media.images:
            if end <= reuse:
                continue  # in the KV cache already
            session.decode(media.tokens[session.n_past:start])
            began = time.perf_counter()
            session.arm_abort(True)
            new_past = self.vision.eval_image(session.ctx, chunk, session.n_past, session.n_batch,
                                              end == len(media.tokens))
            if new_past < 0:
                raise DecodeError(new_past)
            session.record(media.tokens[start:end], new_past)
            stats.images_evaluated += 1
            stats.image_s += time.perf_counter() - began

    def _logprob(self, session: Session, token: int, top: int) -> TokenLogprob:
        """``token``'s log-probability at the last evaluated position, and the ``top`` likeliest."""
        import numpy as np
        from llama_cpp import llama_cpp as lib

        n_vocab = self.llm.n_vocab()
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(session.ctx, -1), shape=(n_vocab,))
        shifted = logits.astype(np.float64) - float(logits.max())
        logz = float(np.log(np.exp(shifted).sum()))

        def entry(t: int) -> tuple[str, float, bytes]:
            data = session.piece(t)
            return data.decode("utf-8", errors="replace"), float(shifted[t]) - logz, data

        best = np.argpartition(-logits, top)[:top] if 0 < top < n_vocab else np.arange(0)
        best = best[np.argsort(-logits[best], kind="stable")]
        text, value, data = entry(token)
        return TokenLogprob(text, value, data, tuple(entry(int(t)) for t in best))


def _check_room(n_prompt: int, room: int, n_ctx: int) -> None:
    """The prompt and ``room`` answer tokens fit the context, or ContextOverflowError (OpenAI's words)."""
    if n_prompt + max(1, room) > n_ctx:
        asked = f"{n_prompt} in the prompt" + (f" and {room} for the answer" if room > 1 else "")
        raise ContextOverflowError(
            f"This model's maximum context length is {n_ctx} tokens. However, you requested "
            f"{n_prompt + max(1, room)} tokens ({asked}). Please reduce the length of the messages or "
            "of the answer (max_tokens), or load the model with a larger context."
        )


def _token_text(llm: Any, token: int) -> str:
    return llm.detokenize([token], special=True).decode(errors="replace") if token >= 0 else ""


def serve(conn: Connection, yield_to_window: bool = False) -> None:
    """Entry point of the engine process (``yield_to_window``: see :class:`app.engine.client.Engine`)."""
    if yield_to_window:
        _lower_priority()
    EngineHost(conn).run()


def _lower_priority() -> None:
    """Below the window's CPU priority: nice +5 (an increment, so a Paddock started under ``nice``
    stays below it), below normal on Windows."""
    import psutil

    try:
        if os.name == "nt":
            psutil.Process().nice(psutil.BELOW_NORMAL_PRIORITY_CLASS)  # type: ignore[attr-defined]
        else:
            os.nice(5)
    except (OSError, psutil.Error) as exc:  # not allowed here: the engine runs as it would have
        log.info("engine priority left as it was: %s", exc)
