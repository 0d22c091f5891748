"""Paddock's local model as an OpenAI-compatible API (``paddock serve``, or the switch in the app).

``/v1/models``, ``/v1/chat/completions`` (streaming over server-sent events or
not), ``/v1/completions`` and ``/v1/embeddings``, on 127.0.0.1 by default.
Requests share the app's one :class:`~app.engine.client.Engine`: a generation
holds the engine until it ends, so the GUI's and the API's requests queue behind
each other instead of interleaving. Each generation runs on a thread of its own
(the engine's lock belongs to the thread that took it) and hands its chunks to
the event loop through a queue. Binding to anything but loopback needs an API
key.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.engine.client import Engine
from app.engine.types import ChatMessage, Delta, GenerationResult, LoadedModel, SamplingParams
from app.errors import ContextOverflowError, PaddockError

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}},
                        status_code=status)


def _content(value: Any) -> str:
    """OpenAI message content: a string, or a list of parts of which the text ones count."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p.get("text", "") for p in value if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _messages(body: dict[str, Any]) -> list[ChatMessage]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ValueError("'messages' must be a non-empty list")
    out = []
    for m in raw:
        role = m.get("role") if isinstance(m, dict) else None
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"unsupported message role {role!r}")
        if role == "tool":
            out.append(ChatMessage("tool", _content(m.get("content")), tool_call_id=str(m.get("tool_call_id") or ""),
                                   name=str(m.get("name") or "")))
            continue
        # A client may send an earlier answer's thinking back (llama-server / vLLM field);
        # the model's template decides whether it goes into the prompt.
        reasoning = m.get("reasoning_content") or m.get("reasoning") or ""
        calls = tuple(_incoming_call(c) for c in m.get("tool_calls") or [] if isinstance(c, dict))
        out.append(ChatMessage(role, _content(m.get("content")), reasoning if isinstance(reasoning, str) else "",
                               tool_calls=calls))
    return out


def _incoming_call(call: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI tool call (arguments as a JSON string) as the engine keeps it (arguments as an object)."""
    fn = call.get("function") or {}
    args: Any = fn.get("arguments") or {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError as exc:
            raise ValueError(f"tool call arguments are not JSON: {exc}") from exc
    return {"id": str(call.get("id") or ""), "name": str(fn.get("name") or ""), "arguments": args}


def _tools(body: dict[str, Any]) -> tuple[tuple[dict[str, Any], ...], str]:
    """The request's ``tools`` and ``tool_choice`` ("auto", "none", "required" or a tool's name)."""
    tools = body.get("tools") or []
    if not isinstance(tools, list) or any(not isinstance(t, dict) or t.get("type") != "function"
                                          or not isinstance(t.get("function"), dict)
                                          or not t["function"].get("name") for t in tools):
        raise ValueError("'tools' must be a list of {\"type\": \"function\", \"function\": {\"name\": ...}}")
    choice = body.get("tool_choice", "auto")
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name")
        if not choice:
            raise ValueError("'tool_choice' names no function")
        if choice not in {t["function"]["name"] for t in tools}:
            raise ValueError(f"'tool_choice' names {choice!r}, which is not in 'tools'")
    elif choice not in ("auto", "none", "required"):
        raise ValueError("'tool_choice' must be auto, none, required or {\"type\": \"function\", ...}")
    return tuple(tools), str(choice)


def _outgoing_calls(result: GenerationResult | None) -> list[dict[str, Any]]:
    return [{"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}), ensure_ascii=False)}}
            for c in (result.tool_calls if result else ())]


def _params(body: dict[str, Any]) -> SamplingParams:
    base = SamplingParams()
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or base.max_tokens
    seed = body.get("seed")
    # The thinking switch as vLLM and llama-server take it: chat_template_kwargs.enable_thinking
    kwargs = body.get("chat_template_kwargs") or {}
    think = kwargs.get("enable_thinking") if isinstance(kwargs, dict) else None
    return SamplingParams(
        temperature=float(body.get("temperature", base.temperature)),
        top_p=float(body.get("top_p", base.top_p)),
        max_tokens=int(max_tokens),
        seed=int(seed) if seed is not None else None,
        enable_thinking=bool(think) if think is not None else None,
    )


def _finish(result: GenerationResult | None) -> str:
    reason = result.stats.finish_reason if result else "stop"
    return reason if reason in ("length", "tool_calls") else "stop"


def _usage(result: GenerationResult | None) -> dict[str, Any]:
    if result is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    s = result.stats
    # OpenAI's own field for prompt tokens served from the cache
    return {"prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens,
            "total_tokens": s.prompt_tokens + s.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": s.prompt_reused}}


class _Run:
    """One generation on its own thread; chunks reach the event loop through an asyncio queue."""

    def __init__(self, engine: Engine, messages: list[ChatMessage], params: SamplingParams,
                 raw_prompt: str | None, *, tools: tuple[dict[str, Any], ...] = (), tool_choice: str = "auto") -> None:
        self.engine = engine
        self.messages = messages
        self.params = params
        self.raw_prompt = raw_prompt
        self.tools = tools
        self.tool_choice = tool_choice
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.stop = threading.Event()
        self.result: GenerationResult | None = None
        threading.Thread(target=self._work, name="api-generation", daemon=True).start()

    def _put(self, item: tuple[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def _work(self) -> None:
        try:
            gen = self.engine.stream(self.messages, self.params, raw_prompt=self.raw_prompt, tools=self.tools,
                                     tool_choice=self.tool_choice)
            for delta in gen.deltas():
                if self.stop.is_set():
                    self.engine.cancel()  # the client went away: stop within a token
                    continue  # drain to the end of the generation
                self._put(("delta", delta))
            self.result = gen.result
            self._put(("done", None))
        except PaddockError as exc:
            self._put(("error", exc))
        except Exception as exc:
            log.exception("API generation failed")
            self._put(("error", PaddockError(f"the engine failed: {exc}")))

    async def chunks(self) -> AsyncIterator[Delta]:
        """``("answer", text)`` and ``("thinking", text)`` pieces as they come."""
        try:
            while True:
                kind, value = await self.queue.get()
                if kind == "delta":
                    yield value
                elif kind == "done":
                    return
                else:
                    raise value
        finally:
            self.stop.set()


class ApiServer:
    """The OpenAI-compatible server around one engine."""

    def __init__(self, engine: Engine, *, host: str = "127.0.0.1", port: int = 8080, api_key: str | None = None,
                 model_name: Callable[[], str | None] | None = None) -> None:
        if not is_loopback(host) and not api_key:
            raise PaddockError(
                f"serving on {host} would let other machines use your model: set an API key (--api-key) "
                "or serve on 127.0.0.1"
            )
        self.engine = engine
        self.host = host
        self.port = port
        self.api_key = api_key
        self._model_name = model_name
        self.app = Starlette(routes=[
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
        ])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> None:
        """Serve on a background thread; returns once the socket is listening."""
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="api-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive():
                raise PaddockError(f"could not serve on {self.host}:{self.port} (is the port in use?)")
            if time.monotonic() > deadline:
                raise PaddockError(f"the API server did not start on {self.host}:{self.port}")
            time.sleep(0.05)
        if self.port == 0:
            self.port = self._server.servers[0].sockets[0].getsockname()[1]

    def serve_forever(self) -> None:
        uvicorn.run(self.app, host=self.host, port=self.port, log_level="info", lifespan="off")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    # -- helpers --------------------------------------------------------------------

    def _auth(self, request: Request) -> JSONResponse | None:
        if not self.api_key:
            return None
        header = request.headers.get("authorization", "")
        if header != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        return None

    def _loaded(self) -> LoadedModel | None:
        return self.engine.loaded if self.engine.is_alive() else None

    def _name(self) -> str:
        name = self._model_name() if self._model_name else None
        loaded = self._loaded()
        return name or (loaded.name if loaded else "paddock")

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError("the request body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise ValueError("the request body must be a JSON object")
        return body

    # -- routes ---------------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        loaded = self._loaded()
        data = [{"id": self._name(), "object": "model", "created": 0, "owned_by": "paddock"}] if loaded else []
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, chat=False)

    async def _generate(self, request: Request, chat: bool) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            body = await self._body(request)
            tools: tuple[dict[str, Any], ...] = ()
            tool_choice = "auto"
            if chat:
                messages, raw = _messages(body), None
                tools, tool_choice = _tools(body)
            else:
                prompt = body.get("prompt")
                prompt = prompt[0] if isinstance(prompt, list) and prompt else prompt
                if not isinstance(prompt, str):
                    raise ValueError("'prompt' must be a string")
                messages, raw = [ChatMessage("user", prompt)], prompt
            params = _params(body)
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        if self._loaded() is None:
            return _error(503, "no model is loaded in Paddock: load one in the app or start `paddock serve --model`",
                          "server_error", "model_not_loaded")
        run = _Run(self.engine, messages, params, raw, tools=tools, tool_choice=tool_choice)
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(time.time())
        model = self._name()
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(self._sse(run, ident, created, model, chat=chat, include_usage=include_usage),
                                     media_type="text/event-stream")
        text: list[str] = []
        thinking: list[str] = []
        try:
            async for kind, piece in run.chunks():
                (thinking if kind == "thinking" else text).append(piece)
        except ContextOverflowError as exc:
            return _error(400, str(exc), code="context_length_exceeded")
        except PaddockError as exc:
            return _error(500, str(exc), "server_error")
        answer = "".join(text)
        if chat:
            calls = _outgoing_calls(run.result)
            message: dict[str, Any] = {"role": "assistant", "content": answer if answer or not calls else None}
            if thinking:
                message["reasoning_content"] = "".join(thinking)  # the field llama-server and vLLM use
            if calls:
                message["tool_calls"] = calls
            choice: dict[str, Any] = {"index": 0, "message": message,
                                      "finish_reason": _finish(run.result), "logprobs": None}
        else:
            choice = {"index": 0, "text": answer, "finish_reason": _finish(run.result), "logprobs": None}
        return JSONResponse({"id": ident, "object": "chat.completion" if chat else "text_completion",
                             "created": created, "model": model, "choices": [choice], "usage": _usage(run.result)})

    async def _sse(self, run: _Run, ident: str, created: int, model: str, *, chat: bool,
                   include_usage: bool) -> AsyncIterator[bytes]:
        kind = "chat.completion.chunk" if chat else "text_completion"

        def event(choice: dict[str, Any] | None, usage: dict[str, Any] | None = None) -> bytes:
            payload: dict[str, Any] = {"id": ident, "object": kind, "created": created, "model": model,
                                       "choices": [choice] if choice else []}
            if usage is not None:
                payload["usage"] = usage
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

        if chat:
            yield event({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
        try:
            async for what, piece in run.chunks():
                if not chat:
                    if what == "answer":
                        yield event({"index": 0, "text": piece, "finish_reason": None})
                    continue
                field = "reasoning_content" if what == "thinking" else "content"
                yield event({"index": 0, "delta": {field: piece}, "finish_reason": None})
        except PaddockError as exc:
            payload = {"error": {"message": str(exc), "type": "server_error"}}
            yield f"data: {json.dumps(payload)}\n\n".encode()
            return
        if chat:
            for i, call in enumerate(_outgoing_calls(run.result)):  # a call is known whole at the end
                yield event({"index": 0, "delta": {"tool_calls": [{"index": i, **call}]}, "finish_reason": None})
        end = {"index": 0, "delta": {}, "finish_reason": _finish(run.result)} if chat else \
            {"index": 0, "text": "", "finish_reason": _finish(run.result)}
        yield event(end)
        if include_usage:
            yield event(None, _usage(run.result))
        yield b"data: [DONE]\n\n"

    async def embeddings(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            body = await self._body(request)
            value = body.get("input")
            texts = [value] if isinstance(value, str) else value
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise ValueError("'input' must be a string or a list of strings")
        except ValueError as exc:
            return _error(400, str(exc))
        if self._loaded() is None:
            return _error(503, "no model is loaded in Paddock", "server_error", "model_not_loaded")
        try:
            vectors, n_tokens = await run_in_threadpool(self.engine.embed, texts)
        except PaddockError as exc:
            return _error(500, str(exc), "server_error")
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return JSONResponse({"object": "list", "data": data, "model": self._name(),
                             "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})
