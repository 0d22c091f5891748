"""OpenAI's API: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``.

Every parameter of OpenAI's reference is honoured or refused with a 400 that
names it (see :mod:`app.api.params`).  Errors have OpenAI's shape and status,
streamed or not; a prompt that does not fit is refused (400
``context_length_exceeded``) before any stream starts, and every stream ends
with ``data: [DONE]``.  ``n`` choices are generated one after the other, with
seeds ``seed``, ``seed + 1``, … when a seed is given.
"""

from __future__ import annotations

import base64
import json
import random
import struct
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from importlib.metadata import version
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

import app.api.params as P
from app import __version__
from app.api.errors import ApiError, bad_request
from app.api.models import Lease, ModelSource
from app.api.run import Job, Piece, Run
from app.engine.types import ChatMessage, GenerationResult, SamplingParams, TokenLogprob
from app.errors import ContextOverflowError, EngineCrashedError, InvalidRequestError, PaddockError

CHAT_FIELDS = {
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "n", "max_tokens",
    "max_completion_tokens", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
    "top_logprobs", "response_format", "tools", "tool_choice", "parallel_tool_calls", "user", "metadata", "store",
    "service_tier", "modalities",
    # llama-server / vLLM extensions Paddock honours
    "top_k", "min_p", "repeat_penalty", "chat_template_kwargs",
}
COMPLETION_FIELDS = {
    "model", "prompt", "stream", "stream_options", "temperature", "top_p", "n", "max_tokens", "stop", "seed",
    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "echo", "best_of", "suffix", "user",
    "top_k", "min_p", "repeat_penalty",
}
EMBEDDING_FIELDS = {"model", "input", "encoding_format", "dimensions", "user", "truncate"}
# OpenAI's "backend configuration" the answer came from: this Paddock and its llama.cpp build
FINGERPRINT = f"paddock-{__version__}-llama-cpp-python-{version('llama-cpp-python')}"
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for the legacy completions endpoint


def finish_reason(result: GenerationResult | None) -> str:
    reason = result.stats.finish_reason if result else "stop"
    if reason in ("length", "context_full"):
        return "length"
    return "tool_calls" if reason == "tool_calls" else "stop"


def usage(results: list[GenerationResult], prompt_tokens: int) -> dict[str, Any]:
    completion = sum(r.stats.completion_tokens for r in results)
    cached = max((r.stats.prompt_reused for r in results), default=0)
    # OpenAI's own field for prompt tokens served from the cache
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion, "prompt_tokens_details": {"cached_tokens": cached}}


def outgoing_calls(result: GenerationResult | None, parallel: bool = True) -> list[dict[str, Any]]:
    calls = list(result.tool_calls if result else ())
    if not parallel:
        calls = calls[:1]
    return [{"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}), ensure_ascii=False)}}
            for c in calls]


def chat_logprobs(entries: tuple[TokenLogprob, ...]) -> dict[str, Any]:
    def one(text: str, value: float, data: bytes) -> dict[str, Any]:
        return {"token": text, "logprob": value, "bytes": list(data)}

    return {"content": [{**one(e.token, e.logprob, e.data), "top_logprobs": [one(*t) for t in e.top]}
                        for e in entries], "refusal": None}


def completion_logprobs(entries: tuple[TokenLogprob, ...], offset: int = 0) -> dict[str, Any]:
    offsets, at = [], offset
    for e in entries:
        offsets.append(at)
        at += len(e.token)
    return {"tokens": [e.token for e in entries], "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{t: v for t, v, _ in e.top} for e in entries], "text_offset": offsets}


def sampling(body: P.Body, max_tokens: int | None, n_ctx: int) -> SamplingParams:
    base = SamplingParams()
    seed = body.integer("seed", None, -(2**63), 2**64)
    return SamplingParams(
        temperature=body.number("temperature", base.temperature, 0.0, 2.0),
        top_p=body.number("top_p", base.top_p, 0.0, 1.0),
        top_k=int(body.integer("top_k", base.top_k, 0) or 0),
        min_p=body.number("min_p", base.min_p, 0.0, 1.0),
        repeat_penalty=body.number("repeat_penalty", base.repeat_penalty, 0.0, 10.0),
        presence_penalty=body.number("presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=body.number("frequency_penalty", 0.0, -2.0, 2.0),
        logit_bias=P.logit_bias(body.get("logit_bias")),
        stop=body.stops(),
        max_tokens=max_tokens if max_tokens is not None else n_ctx,
        seed=seed % 2**32 if seed is not None else None,
    )


def seeded(params: SamplingParams, i: int) -> SamplingParams:
    """Choice ``i``'s sampling: the request's seed + i, or a fresh random seed."""
    seed = (params.seed + i) % 2**32 if params.seed is not None else random.randrange(2**31)
    return replace(params, seed=seed) if i or params.seed is None else params


class OpenAIRoutes:
    def __init__(self, source: ModelSource) -> None:
        self.source = source

    async def models(self, request: Request) -> Response:
        data = [{"id": e.id, "object": "model", "created": int(e.modified), "owned_by": "paddock"}
                for e in self.source.entries()]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        wanted = request.path_params["model"]
        for e in self.source.entries():
            if e.matches(wanted):
                return JSONResponse({"id": e.id, "object": "model", "created": int(e.modified), "owned_by": "paddock"})
        raise ApiError(404, f"The model '{wanted}' does not exist", code="model_not_found", param="model")

    # -- chat ----------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        body = P.Body(await _json(request))
        body.refuse_unknown(CHAT_FIELDS)
        messages = P.chat_messages(body.get("messages"))
        tools, tool_choice = P.tools(body.get("tools"), body.get("tool_choice"))
        parallel = body.boolean("parallel_tool_calls", True)
        n = int(body.integer("n", 1, 1, P.MAX_N) or 1)
        explicit = body.integer("max_completion_tokens", None, 1)
        if explicit is None:
            explicit = body.integer("max_tokens", None, 1)
        stream = body.boolean("stream")
        include_usage = _stream_options(body, stream)
        want_logprobs = body.boolean("logprobs")
        top = body.integer("top_logprobs", None, 0, 20)
        if top is not None and not want_logprobs:
            raise bad_request("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
        grammar = P.response_format(body.get("response_format"))
        if body.boolean("store"):
            raise bad_request("Paddock does not store completions ('store': true)", param="store")
        if body.get("service_tier") not in (None, "auto", "default"):
            raise bad_request("'service_tier' can only be auto or default here", param="service_tier")
        if body.get("modalities") not in (None, ["text"]):
            raise bad_request("Paddock answers in text only ('modalities': [\"text\"])", param="modalities")
        if body.get("metadata") is not None and not isinstance(body.get("metadata"), dict):
            raise bad_request("'metadata' must be an object", param="metadata")
        body.string("user")
        kwargs = body.obj("chat_template_kwargs")
        think = None
        if kwargs is not None:
            kwargs.refuse_unknown({"enable_thinking"})
            think = kwargs.get("enable_thinking")
            if think is not None and not isinstance(think, bool):
                raise bad_request("'chat_template_kwargs.enable_thinking' must be true or false",
                                  param="chat_template_kwargs")
        lease = await run_in_threadpool(self.source.lease, body.string("model"))
        try:
            params = replace(sampling(body, explicit, lease.loaded.n_ctx), grammar=grammar, enable_thinking=think,
                             logprobs=(top or 0) if want_logprobs else None)
            job = Job(messages, params, tools=tools, tool_choice=tool_choice, room=explicit or 1)
            return await self._respond(lease, job, n, stream=stream, chat=True, include_usage=include_usage,
                                       parallel=parallel)
        except BaseException:
            lease.release()
            raise

    # -- completions -----------------------------------------------------------------------

    async def completions(self, request: Request) -> Response:
        body = P.Body(await _json(request))
        body.refuse_unknown(COMPLETION_FIELDS)
        prompts = _prompts(body.get("prompt"))
        n = int(body.integer("n", 1, 1, P.MAX_N) or 1)
        best_of = body.integer("best_of", None, 1)
        if best_of not in (None, n):
            raise bad_request("'best_of' other than 'n' is not supported (Paddock does not rank choices)",
                              param="best_of")
        if body.get("suffix"):
            raise bad_request("'suffix' (fill in the middle) is not supported", param="suffix")
        explicit = body.integer("max_tokens", COMPLETIONS_DEFAULT_MAX_TOKENS, 1)
        stream = body.boolean("stream")
        include_usage = _stream_options(body, stream)
        top = body.integer("logprobs", None, 0, 5)
        echo = body.boolean("echo")
        if echo and any(not isinstance(p, str) for p in prompts):
            raise bad_request("'echo' works with text prompts only", param="echo")
        if echo and stream:
            raise bad_request("'echo' cannot be combined with 'stream'", param="echo")
        body.string("user")
        lease = await run_in_threadpool(self.source.lease, body.string("model"))
        try:
            params = replace(sampling(body, explicit, lease.loaded.n_ctx), logprobs=top)
            jobs = [Job([ChatMessage("user", p if isinstance(p, str) else "")], params,
                        raw_prompt=p if isinstance(p, str) else None,
                        raw_tokens=None if isinstance(p, str) else p, room=explicit or 1,
                        extra={"echo": p if echo and isinstance(p, str) else ""}) for p in prompts]
            return await self._respond(lease, jobs, n, stream=stream, chat=False, include_usage=include_usage)
        except BaseException:
            lease.release()
            raise

    # -- shared: generate and answer ---------------------------------------------------------

    async def _respond(self, lease: Lease, jobs: Job | list[Job], n: int, *, stream: bool, chat: bool,
                       include_usage: bool, parallel: bool = True) -> Response:
        """Run every (job, choice); the lease is released when the last run ends."""
        jobs = jobs if isinstance(jobs, list) else [jobs]
        plan = [(j, i) for j in jobs for i in range(n)]
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(time.time())
        model = lease.entry.id
        first = Run(lease.engine, replace(plan[0][0], params=seeded(plan[0][0].params, 0)))
        try:
            await first.start()  # a prompt that does not fit is refused here, before any stream
        except PaddockError as exc:
            raise _api_error(exc) from exc
        if stream:
            events = self._sse(lease, plan, first, ident=ident, created=created, model=model, chat=chat,
                               include_usage=include_usage, parallel=parallel)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            choices, results, prompt_tokens = [], [], 0
            for index, (job, i) in enumerate(plan):
                run = first if index == 0 else Run(lease.engine, replace(job, params=seeded(job.params, i)))
                pieces: list[Piece] = [p async for p in run.pieces()]
                result = run.result
                assert result is not None
                results.append(result)
                if i == 0:
                    prompt_tokens += result.stats.prompt_tokens
                choices.append(self._choice(index, job, pieces, result, chat=chat, parallel=parallel))
        except PaddockError as exc:
            raise _api_error(exc) from exc
        finally:
            lease.release()
        return JSONResponse({"id": ident, "object": "chat.completion" if chat else "text_completion",
                             "created": created, "model": model, "system_fingerprint": FINGERPRINT,
                             "choices": choices, "usage": usage(results, prompt_tokens)})

    def _choice(self, index: int, job: Job, pieces: list[Piece], result: GenerationResult, *, chat: bool,
                parallel: bool) -> dict[str, Any]:
        answer = "".join(p.text for p in pieces if p.kind == "answer")
        want = job.params.logprobs is not None
        if not chat:
            echo = job.extra.get("echo", "")
            return {"index": index, "text": echo + answer, "finish_reason": finish_reason(result),
                    "logprobs": completion_logprobs(result.logprobs, len(echo)) if want else None}
        calls = outgoing_calls(result, parallel)
        message: dict[str, Any] = {"role": "assistant", "content": answer if answer or not calls else None}
        thinking = "".join(p.text for p in pieces if p.kind == "thinking")
        if thinking:
            message["reasoning_content"] = thinking  # the field llama-server and vLLM use
        if calls:
            message["tool_calls"] = calls
        return {"index": index, "message": message, "finish_reason": finish_reason(result),
                "logprobs": chat_logprobs(result.logprobs) if want else None}

    async def _sse(self, lease: Lease, plan: list[tuple[Job, int]], first: Run, *, ident: str, created: int,
                   model: str, chat: bool, include_usage: bool, parallel: bool) -> AsyncIterator[bytes]:
        kind = "chat.completion.chunk" if chat else "text_completion"

        def event(payload: dict[str, Any]) -> bytes:
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

        def chunk(choice: dict[str, Any] | None, use: dict[str, Any] | None = None) -> bytes:
            payload: dict[str, Any] = {"id": ident, "object": kind, "created": created, "model": model,
                                       "system_fingerprint": FINGERPRINT, "choices": [choice] if choice else []}
            if use is not None:
                payload["usage"] = use
            return event(payload)

        results: list[GenerationResult] = []
        prompt_tokens = 0
        try:
            for index, (job, i) in enumerate(plan):
                run = first if index == 0 else Run(lease.engine, replace(job, params=seeded(job.params, i)))
                want = job.params.logprobs is not None
                if chat:
                    yield chunk({"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                 "finish_reason": None})
                offset = 0
                async for piece in run.pieces():
                    if not chat:
                        if piece.kind == "answer":
                            lp = completion_logprobs(piece.logprobs, offset) if want else None
                            offset += len(piece.text)
                            yield chunk({"index": index, "text": piece.text, "logprobs": lp, "finish_reason": None})
                        continue
                    field = "reasoning_content" if piece.kind == "thinking" else "content"
                    yield chunk({"index": index, "delta": {field: piece.text} if piece.text else {},
                                 "logprobs": chat_logprobs(piece.logprobs) if want else None,
                                 "finish_reason": None})
                result = run.result
                assert result is not None
                results.append(result)
                if i == 0:
                    prompt_tokens += result.stats.prompt_tokens
                if chat:
                    for k, call in enumerate(outgoing_calls(result, parallel)):  # a call is known whole at the end
                        yield chunk({"index": index, "delta": {"tool_calls": [{"index": k, **call}]},
                                     "logprobs": None, "finish_reason": None})
                    yield chunk({"index": index, "delta": {}, "logprobs": None,
                                 "finish_reason": finish_reason(result)})
                else:
                    yield chunk({"index": index, "text": "", "logprobs": None, "finish_reason": finish_reason(result)})
            if include_usage:
                yield chunk(None, usage(results, prompt_tokens))
        except PaddockError as exc:
            # the status line is sent already: the error goes in the stream, in OpenAI's shape
            error = _api_error(exc)
            yield event({"error": {"message": error.message, "type": "server_error" if error.status >= 500
                                   else "invalid_request_error", "param": error.param, "code": error.code}})
        finally:
            lease.release()
        yield b"data: [DONE]\n\n"

    # -- embeddings ------------------------------------------------------------------------

    async def embeddings(self, request: Request) -> Response:
        body = P.Body(await _json(request))
        body.refuse_unknown(EMBEDDING_FIELDS)
        inputs = _embedding_inputs(body.get("input"))
        encoding = body.string("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise bad_request("'encoding_format' must be float or base64", param="encoding_format")
        dimensions = body.integer("dimensions", None, 1)
        truncate = body.boolean("truncate")
        body.string("user")
        lease = await run_in_threadpool(self.source.lease, body.string("model"))
        try:
            vectors, n_tokens = await run_in_threadpool(lease.engine.embed, inputs, truncate)
        except PaddockError as exc:
            raise _api_error(exc) from exc
        finally:
            lease.release()
        if dimensions is not None and vectors and dimensions != len(vectors[0]):
            raise bad_request(f"this model's embeddings have {len(vectors[0])} dimensions; 'dimensions' cannot "
                              "change that", param="dimensions")

        def encode(v: list[float]) -> list[float] | str:
            return base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if encoding == "base64" else v

        data = [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)]
        return JSONResponse({"object": "list", "data": data, "model": lease.entry.id,
                             "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})


def _stream_options(body: P.Body, stream: bool) -> bool:
    options = body.obj("stream_options")
    if options is None:
        return False
    if not stream:
        raise bad_request("'stream_options' is only allowed with 'stream': true", param="stream_options")
    options.refuse_unknown({"include_usage", "include_obfuscation"})
    if options.get("include_obfuscation"):
        raise bad_request("'stream_options.include_obfuscation' is not supported", param="stream_options")
    return options.boolean("include_usage")


def _prompts(value: Any, param: str = "prompt") -> list[str | list[int]]:
    """A completion's ``prompt``: a string, a list of strings, a list of token ids, or a list of those."""
    def is_tokens(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(t, int) and not isinstance(t, bool) for t in v)

    if isinstance(value, str):
        return [value]
    if is_tokens(value):
        return [value]
    if isinstance(value, list) and value and all(isinstance(p, str) or is_tokens(p) for p in value):
        return list(value)
    raise bad_request(f"'{param}' must be a string, a list of strings, a list of token ids or a list of those",
                      param=param)


def _embedding_inputs(value: Any) -> list[str | list[int]]:
    inputs = _prompts(value, "input") if value not in ("", [], None) else None
    if inputs is None:
        raise bad_request("'input' must not be empty", param="input")
    for i, item in enumerate(inputs):
        if isinstance(item, str) and not item.strip():
            raise bad_request(f"'input' item {i} is empty: there is nothing to embed", param="input")
    return inputs


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON ({exc})") from exc


def _api_error(exc: PaddockError) -> ApiError:
    if isinstance(exc, ContextOverflowError):
        return ApiError(400, str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, InvalidRequestError):
        return bad_request(str(exc))
    if isinstance(exc, EngineCrashedError):
        return ApiError(503, f"{exc} Paddock is restarting the engine.", code="engine_crashed", retry_after=5)
    return ApiError(500, str(exc), code="engine_error")
