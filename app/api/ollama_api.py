"""Ollama's API (``/api/tags``, ``/api/show``, ``/api/chat``, ``/api/generate``, ``/api/embed``, …),
so that the many tools that only speak Ollama use Paddock's models.

Streaming is Ollama's: one JSON object per line (NDJSON), on by default.  Model
names are Paddock's ids, with or without Ollama's ``:latest`` tag.  Options are
honoured or refused like the OpenAI side's: load-time options (``num_ctx``,
``num_gpu``, …) are set when the server starts (``paddock serve --ctx``), so a
request asking for other values is refused rather than quietly served with the
server's.  ``keep_alive: 0`` unloads the model after the request; any other
value keeps it loaded until memory is needed (Paddock never unloads earlier).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

import app.api.params as P
from app import __version__
from app.api.errors import ApiError, bad_request
from app.api.models import Lease, ModelEntry, ModelSource
from app.api.openai_api import _api_error, _json, outgoing_calls
from app.api.run import Job, Run
from app.engine.gguf_file import read_gguf
from app.engine.types import ChatMessage, GenerationResult, SamplingParams
from app.errors import PaddockError

OLLAMA_API_VERSION = "0.12.0"  # the Ollama API version these routes follow
OPTIONS = {"temperature", "top_p", "top_k", "min_p", "seed", "num_predict", "stop", "repeat_penalty",
           "presence_penalty", "frequency_penalty", "repeat_last_n", "num_ctx"}
CHAT_FIELDS = {"model", "messages", "stream", "format", "options", "tools", "think", "keep_alive"}
GENERATE_FIELDS = {"model", "prompt", "system", "stream", "format", "options", "raw", "think", "keep_alive",
                   "images", "suffix", "template", "context"}
EMBED_FIELDS = {"model", "input", "truncate", "options", "keep_alive", "dimensions"}


def _time(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).isoformat().replace("+00:00", "Z")


def _name(entry: ModelEntry) -> str:
    return f"{entry.id}:latest"


def _digest(entry: ModelEntry) -> str:
    if entry.sha256:
        return entry.sha256
    return hashlib.sha256(f"{entry.path}|{entry.size}|{entry.modified}".encode()).hexdigest()


def _details(entry: ModelEntry) -> dict[str, Any]:
    try:
        info = read_gguf(entry.path)
    except PaddockError:
        return {"format": "gguf", "family": "", "families": [], "parameter_size": "", "quantization_level": ""}
    params = info.get("general.size_label") or ""
    return {"parent_model": "", "format": "gguf", "family": info.architecture, "families": [info.architecture],
            "parameter_size": str(params), "quantization_level": info.quantization or ""}


def _options(body: P.Body, n_ctx: int) -> SamplingParams:
    base = SamplingParams()
    opts = body.obj("options") or P.Body({})
    opts.refuse_unknown(OPTIONS)
    num_ctx = opts.integer("num_ctx", None, 1)
    if num_ctx is not None and num_ctx != n_ctx:
        raise bad_request(f"this model is loaded with a {n_ctx}-token context; start `paddock serve --ctx "
                          f"{num_ctx}` for another (options.num_ctx)")
    if opts.integer("repeat_last_n", 64, -1) != 64:
        raise bad_request("options.repeat_last_n: Paddock's penalties look at the last 64 tokens")
    predict = opts.integer("num_predict", -1, -2)
    seed = opts.integer("seed", None, -(2**63), 2**64)
    return SamplingParams(
        temperature=opts.number("temperature", 0.8, 0.0, 100.0),  # Ollama's default
        top_p=opts.number("top_p", 0.9, 0.0, 1.0),
        top_k=int(opts.integer("top_k", base.top_k, 0) or 0),
        min_p=opts.number("min_p", 0.0, 0.0, 1.0),
        repeat_penalty=opts.number("repeat_penalty", 1.1, 0.0, 10.0),
        presence_penalty=opts.number("presence_penalty", 0.0, -10.0, 10.0),
        frequency_penalty=opts.number("frequency_penalty", 0.0, -10.0, 10.0),
        stop=opts.stops(),
        max_tokens=predict if predict is not None and predict > 0 else n_ctx,
        seed=seed % 2**32 if seed is not None else None,
    )


def _format(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if value == "json":
        return P.json_grammar("json_object")
    if isinstance(value, dict):
        return P.json_grammar("json_schema", value)
    raise bad_request("'format' must be \"json\" or a JSON schema")


def _think(body: P.Body) -> bool | None:
    value = body.get("think")
    if value is None or isinstance(value, bool):
        return value
    raise bad_request("'think' must be true or false (Paddock has no thinking levels)")


def _done(result: GenerationResult | None, lease: Lease, started: float) -> dict[str, Any]:
    s = result.stats if result else None
    total = time.perf_counter() - started
    reason = "length" if s and s.finish_reason in ("length", "context_full") else "stop"
    if result is not None and result.tool_calls:
        reason = "stop"
    ns = 1_000_000_000
    eval_s = max(0.0, (s.total_s - s.ttft_s) if s else 0.0)
    return {"done": True, "done_reason": reason, "total_duration": int(total * ns), "load_duration": 0,
            "prompt_eval_count": s.prompt_tokens if s else 0, "prompt_eval_duration": int((s.ttft_s if s else 0) * ns),
            "eval_count": s.completion_tokens if s else 0, "eval_duration": int(eval_s * ns)}


class OllamaRoutes:
    def __init__(self, source: ModelSource, unload: Any = None) -> None:
        self.source = source
        self._unload = unload  # keep_alive 0: unload the model after the request (the pool's)

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": OLLAMA_API_VERSION, "paddock": __version__})

    async def tags(self, request: Request) -> Response:
        models = []
        for e in self.source.entries():
            models.append({"name": _name(e), "model": _name(e), "modified_at": _time(e.modified), "size": e.size,
                           "digest": _digest(e), "details": _details(e)})
        return JSONResponse({"models": models})

    async def ps(self, request: Request) -> Response:
        models = [{"name": _name(e), "model": _name(e), "size": e.size, "digest": _digest(e),
                   "details": _details(e), "expires_at": "0001-01-01T00:00:00Z",
                   "size_vram": e.size if loaded.n_gpu_layers else 0, "context_length": loaded.n_ctx}
                  for e, loaded in self.source.running()]
        return JSONResponse({"models": models})

    async def show(self, request: Request) -> Response:
        body = P.Body(await _json(request))
        body.refuse_unknown({"model", "name", "verbose"})
        wanted = body.string("model") or body.string("name")
        entry = next((e for e in self.source.entries() if wanted and e.matches(wanted)), None)
        if entry is None:
            raise ApiError(404, f"model '{wanted}' not found")
        info = await run_in_threadpool(read_gguf, entry.path)
        arch = info.architecture
        model_info = {"general.architecture": arch, "general.name": info.name,
                      f"{arch}.context_length": info.context_length}
        template = info.chat_template or ""
        capabilities = ["completion"] + (["tools"] if "tools" in template else []) + \
            (["thinking"] if "enable_thinking" in template or "<think>" in template else [])
        return JSONResponse({"modelfile": f"FROM {entry.path}\n", "parameters": "", "template": template,
                             "details": _details(entry), "model_info": model_info, "capabilities": capabilities,
                             "modified_at": _time(entry.modified), "license": str(info.license or "")})

    async def unsupported(self, request: Request) -> Response:
        raise ApiError(501, f"{request.url.path} is not offered by Paddock: manage models in the app or with "
                            "`paddock models` (pull, import, rm, quantize)")

    # -- generation -------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        body = P.Body(await _json(request))
        body.refuse_unknown(CHAT_FIELDS)
        messages = P.chat_messages(body.get("messages"), ollama=True)
        tools, _ = P.tools(body.get("tools"), None)
        stream = body.boolean("stream", True)
        grammar = _format(body.get("format"))
        think = _think(body)
        keep = _keep_alive(body)
        lease = await run_in_threadpool(self.source.lease, body.string("model"))
        try:
            params = replace(_options(body, lease.loaded.n_ctx), grammar=grammar, enable_thinking=think)
            job = Job(messages, params, tools=tools, room=1)
            return await self._respond(lease, job, chat=True, stream=stream, keep=keep)
        except BaseException:
            lease.release()
            raise

    async def generate(self, request: Request) -> Response:
        body = P.Body(await _json(request))
        body.refuse_unknown(GENERATE_FIELDS)
        for field, why in (("images", "Paddock cannot show images to this model yet"),
                           ("suffix", "fill in the middle ('suffix') is not supported"),
                           ("template", "a per-request 'template' is not supported: use `paddock chat "
                                        "--chat-template` or the model's own"),
                           ("context", "'context' (token context of an earlier answer) is not supported: send "
                                       "the conversation to /api/chat")):
            if body.get(field):
                raise bad_request(why)
        prompt = body.string("prompt", "") or ""
        system = body.string("system")
        raw = body.boolean("raw")
        stream = body.boolean("stream", True)
        grammar = _format(body.get("format"))
        think = _think(body)
        keep = _keep_alive(body)
        lease = await run_in_threadpool(self.source.lease, body.string("model"))
        try:
            if not prompt and not system:  # Ollama's way to load a model: nothing to generate
                lease.release()
                if keep == 0 and self._unload is not None:
                    await run_in_threadpool(self._unload, lease.entry.id)
                return JSONResponse({"model": _name(lease.entry), "created_at": _time(), "response": "",
                                     "done": True, "done_reason": "unload" if keep == 0 else "load"})
            params = replace(_options(body, lease.loaded.n_ctx), grammar=grammar, enable_thinking=think)
            messages = ([ChatMessage("system", system)] if system else []) + [ChatMessage("user", prompt)]
            job = Job(messages, params, raw_prompt=prompt if raw else None, room=1)
            return await self._respond(lease, job, chat=False, stream=stream, keep=keep)
        except BaseException:
            lease.release()
            raise

    async def _respond(self, lease: Lease, job: Job, *, chat: bool, stream: bool, keep: float | None) -> Response:
        started = time.perf_counter()
        run = Run(lease.engine, job)
        try:
            await run.start()
        except PaddockError as exc:
            raise _api_error(exc) from exc
        name = _name(lease.entry)

        def message(text: str, thinking: str = "") -> dict[str, Any]:
            if chat:
                msg: dict[str, Any] = {"role": "assistant", "content": text}
                if thinking:
                    msg["thinking"] = thinking
                return {"model": name, "created_at": _time(), "message": msg}
            out: dict[str, Any] = {"model": name, "created_at": _time(), "response": text}
            if thinking:
                out["thinking"] = thinking
            return out

        def final(result: GenerationResult | None) -> dict[str, Any]:
            last = message("")
            calls = outgoing_calls(result)
            if chat and calls:
                last["message"]["tool_calls"] = [{"function": {"name": c["function"]["name"],
                                                               "arguments": json.loads(c["function"]["arguments"])}}
                                                 for c in calls]
            return {**last, **_done(result, lease, started)}

        async def finish() -> None:
            lease.release()
            if keep == 0 and self._unload is not None:
                await run_in_threadpool(self._unload, lease.entry.id)

        if stream:
            async def lines() -> AsyncIterator[bytes]:
                try:
                    async for piece in run.pieces():
                        if piece.text:
                            item = message(piece.text) if piece.kind == "answer" else message("", piece.text)
                            yield (json.dumps(item, ensure_ascii=False) + "\n").encode()
                    yield (json.dumps(final(run.result), ensure_ascii=False) + "\n").encode()
                except PaddockError as exc:
                    yield (json.dumps({"error": _api_error(exc).message}) + "\n").encode()
                finally:
                    await finish()

            return StreamingResponse(lines(), media_type="application/x-ndjson")
        try:
            text: list[str] = []
            thinking: list[str] = []
            async for piece in run.pieces():
                (text if piece.kind == "answer" else thinking).append(piece.text)
        except PaddockError as exc:
            raise _api_error(exc) from exc
        finally:
            await finish()
        body = final(run.result)
        if chat:
            body["message"]["content"] = "".join(text)
            if thinking:
                body["message"]["thinking"] = "".join(thinking)
        else:
            body["response"] = "".join(text)
            if thinking:
                body["thinking"] = "".join(thinking)
        return JSONResponse(body)

    # -- embeddings ---------------------------------------------------------------------------

    async def embed(self, request: Request) -> Response:
        body = P.Body(await _json(request))
        body.refuse_unknown(EMBED_FIELDS)
        value = body.get("input")
        inputs = [value] if isinstance(value, str) else value
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
            raise bad_request("'input' must be a string or a list of strings")
        if any(not t.strip() for t in inputs):
            raise bad_request("'input' holds an empty text: there is nothing to embed")
        truncate = body.boolean("truncate", True)  # Ollama truncates unless told not to
        if body.get("options"):
            raise bad_request("'options' are not used for embeddings")
        dimensions = body.integer("dimensions", None, 1)
        keep = _keep_alive(body)
        started = time.perf_counter()
        lease = await run_in_threadpool(self.source.lease, body.string("model"))
        try:
            vectors, n_tokens = await run_in_threadpool(lease.engine.embed, inputs, truncate)
        except PaddockError as exc:
            raise _api_error(exc) from exc
        finally:
            lease.release()
            if keep == 0 and self._unload is not None:
                await run_in_threadpool(self._unload, lease.entry.id)
        if dimensions is not None and vectors and dimensions != len(vectors[0]):
            raise bad_request(f"this model's embeddings have {len(vectors[0])} dimensions")
        return JSONResponse({"model": _name(lease.entry), "embeddings": vectors,
                             "total_duration": int((time.perf_counter() - started) * 1e9), "load_duration": 0,
                             "prompt_eval_count": n_tokens})

    async def embeddings(self, request: Request) -> Response:
        """The older single-text endpoint: ``{"prompt"}`` in, ``{"embedding"}`` out."""
        body = P.Body(await _json(request))
        body.refuse_unknown({"model", "prompt", "options", "keep_alive"})
        prompt = body.string("prompt")
        if not prompt or not prompt.strip():
            raise bad_request("'prompt' must be a non-empty text")
        lease = await run_in_threadpool(self.source.lease, body.string("model"))
        try:
            vectors, _ = await run_in_threadpool(lease.engine.embed, [prompt], True)
        except PaddockError as exc:
            raise _api_error(exc) from exc
        finally:
            lease.release()
        return JSONResponse({"embedding": vectors[0]})


def _keep_alive(body: P.Body) -> float | None:
    """Ollama's ``keep_alive``: 0 (or "0", "0s") unloads after the request; other values are accepted."""
    value = body.get("keep_alive")
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip():
        text = value.strip().lower()
        return 0.0 if text in ("0", "0s", "0m", "0h") else -1.0
    raise bad_request("'keep_alive' must be a number of seconds or a duration such as \"5m\"")
