"""OpenAI-compatible servers (vLLM, llama.cpp's server, Ollama, LM Studio...) as chat backends.

A chat's model is either a local GGUF path or ``remote://<server id>/<model id>``.
Servers are kept in the settings (name and base URL); their API keys only in the
OS keyring (a session-only fallback, as for the Hugging Face token). Answers
stream over server-sent events through the official ``openai`` client, with
the same contract as the local engine: iterate for text, ``result`` at the end,
``cancel()`` from another thread, and a :class:`~app.errors.PaddockError` with a
message the user can act on — the text received so far stays in
``partial_text`` for the caller to keep.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx2
import openai

from app.engine.chat_format.tool_calls import new_call_id
from app.engine.types import ChatMessage, Delta, GenerationResult, GenerationStats, SamplingParams
from app.errors import EngineError
from app.models.auth import SaveResult, TokenStore

log = logging.getLogger(__name__)

SCHEME = "remote://"
SETTINGS_KEY = "remote_servers"


def model_ref(server_id: str, model: str) -> str:
    return f"{SCHEME}{server_id}/{model}"


def parse_ref(ref: str | None) -> tuple[str, str] | None:
    """``remote://id/model`` -> (id, model); None for a local model."""
    if not ref or not ref.startswith(SCHEME):
        return None
    server_id, _, model = ref[len(SCHEME):].partition("/")
    return (server_id, model) if server_id and model else None


@dataclass(frozen=True)
class RemoteServer:
    id: str
    name: str
    base_url: str


class RemoteError(EngineError):
    """A remote server failed; ``partial_text`` is what arrived before."""

    def __init__(self, message: str, partial_text: str = "") -> None:
        super().__init__(message)
        self.partial_text = partial_text


def explain(exc: BaseException, server: RemoteServer, model: str | None, partial: str) -> RemoteError:
    where = f"{server.name} ({server.base_url})"
    if isinstance(exc, openai.AuthenticationError):
        msg = f"{where} refused the API key (HTTP 401): check the key in File → Remote models."
    elif isinstance(exc, openai.PermissionDeniedError):
        msg = f"{where} does not allow this (HTTP 403): {exc.message}"
    elif isinstance(exc, openai.NotFoundError):
        msg = (f"The model {model!r} is not on {where} any more (HTTP 404): choose another model for this chat."
               if model else f"{where} has no OpenAI-compatible API at this address (HTTP 404): check the URL "
               "(it usually ends in /v1).")
    elif isinstance(exc, openai.RateLimitError):
        msg = f"{where} is busy or rate-limiting (HTTP 429): try again in a moment."
    elif isinstance(exc, openai.APIStatusError):
        msg = f"{where} answered HTTP {exc.status_code}: {exc.message}"
    elif partial and isinstance(exc, openai.APIConnectionError | httpx2.TransportError | openai.APIError):
        msg = f"The connection to {where} dropped in the middle of the answer; what arrived is kept."
    elif isinstance(exc, openai.APITimeoutError):
        msg = f"{where} did not answer in time: is it overloaded?"
    elif isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        msg = f"Cannot reach {where}: is the server running, and is the address right?"
    else:
        msg = f"{where} failed: {exc}"
    return RemoteError(msg, partial)


class RemoteGeneration:
    """An answer streaming from a server; same use as :class:`app.engine.client.Generation`."""

    def __init__(self, client: RemoteClient, model: str, messages: Sequence[ChatMessage],
                 params: SamplingParams, *, tools: Sequence[dict[str, Any]] = (), tool_choice: str = "auto") -> None:
        self.client = client
        self.model = model
        self.messages = messages
        self.params = params
        self.tools = list(tools)
        self.tool_choice = tool_choice
        self.text = ""
        self.thinking = ""
        self.result: GenerationResult | None = None
        self._cancelled = threading.Event()
        self._stream: Any = None

    def cancel(self) -> None:
        self._cancelled.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()  # ends the HTTP response: the server stops generating
            except Exception as exc:
                log.debug("closing the stream: %s", exc)

    def __iter__(self) -> Iterator[str]:
        for kind, text in self.deltas():
            if kind == "answer":
                yield text

    def deltas(self) -> Iterator[Delta]:
        """Thinking and answer apart: llama-server and vLLM send thinking as ``reasoning_content``
        (some servers as ``reasoning``)."""
        started = time.perf_counter()
        first: float | None = None
        pieces = 0
        usage: Any = None
        finish = ""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [_openai_message(m) for m in self.messages],
            "temperature": self.params.temperature,
            "top_p": self.params.top_p,
            "max_tokens": self.params.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.params.seed is not None:
            kwargs["seed"] = self.params.seed
        if self.tools:
            kwargs["tools"] = self.tools
            if self.tool_choice in ("required", "none"):
                kwargs["tool_choice"] = self.tool_choice
            elif self.tool_choice != "auto":
                kwargs["tool_choice"] = {"type": "function", "function": {"name": self.tool_choice}}
        calls: dict[int, dict[str, Any]] = {}  # streamed tool calls, put together by index
        try:
            try:
                self._stream = self.client.openai.chat.completions.create(**kwargs)
            except openai.UnprocessableEntityError:
                kwargs.pop("stream_options")  # servers that do not know it
                self._stream = self.client.openai.chat.completions.create(**kwargs)
            for chunk in self._stream:
                if self._cancelled.is_set():
                    finish = "cancelled"
                    break
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                for choice in chunk.choices or []:
                    delta = choice.delta
                    thought = _reasoning_of(delta)
                    if thought:
                        first = first or time.perf_counter()
                        pieces += 1
                        self.thinking += thought
                        yield ("thinking", thought)
                    for tc in (getattr(delta, "tool_calls", None) or []) if delta else []:
                        slot = calls.setdefault(int(tc.index or 0), {"id": "", "name": "", "arguments": ""})
                        slot["id"] = tc.id or slot["id"]
                        if tc.function is not None:
                            slot["name"] += tc.function.name or ""
                            slot["arguments"] += tc.function.arguments or ""
                    piece = delta.content if delta else None
                    if piece:
                        first = first or time.perf_counter()
                        pieces += 1
                        self.text += piece
                        yield ("answer", piece)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            if self._cancelled.is_set():
                finish = "cancelled"
            else:
                raise explain(exc, self.client.server, self.model, self.text) from exc
        finally:
            if self._stream is not None:
                with contextlib.suppress(Exception):  # best effort on a half-read stream
                    self._stream.close()
        if not finish and not self._cancelled.is_set():
            raise RemoteError(f"The stream from {self.client.server.name} ended without finishing the answer; "
                              "what arrived is kept.", self.text)
        total = time.perf_counter() - started
        completion = int(getattr(usage, "completion_tokens", 0) or pieces)
        decode_s = total - ((first or started) - started)
        stats = GenerationStats(
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            prompt_evaluated=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=completion,
            ttft_s=(first - started) if first else total,
            total_s=total,
            tokens_per_s=completion / decode_s if decode_s > 0 and completion else 0.0,
            finish_reason="cancelled" if self._cancelled.is_set() else finish,
        )
        self.result = GenerationResult(self.text, stats, reasoning=self.thinking,
                                       tool_calls=tuple(_parsed_call(c) for _, c in sorted(calls.items())))


def _openai_message(m: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.images:  # the pictures go as image_url parts with data: URIs, each where it sits in the text
        from app.imaging import content_parts  # (Qt's image writers: outside the core)

        out["content"] = content_parts(m.content, m.images)
    if m.tool_calls:
        out["tool_calls"] = [{"id": c["id"], "type": "function",
                              "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))}}
                             for c in m.tool_calls]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id
    return out


def _parsed_call(call: dict[str, Any]) -> dict[str, Any]:
    try:
        args = json.loads(call["arguments"]) if call["arguments"].strip() else {}
    except ValueError:
        args = {"_raw": call["arguments"]}  # shown as it came; the tool will refuse it
    return {"id": call["id"] or new_call_id(), "name": call["name"], "arguments": args}


def _reasoning_of(delta: Any) -> str:
    """The thinking in a streamed delta; the field is an extension the SDK keeps in ``model_extra``."""
    if delta is None:
        return ""
    extra = getattr(delta, "model_extra", None) or {}
    value = extra.get("reasoning_content") or extra.get("reasoning") or getattr(delta, "reasoning_content", None)
    return value if isinstance(value, str) else ""


class RemoteClient:
    def __init__(self, server: RemoteServer, api_key: str | None, timeout: float = 60.0) -> None:
        self.server = server
        self.openai = openai.OpenAI(
            base_url=server.base_url, api_key=api_key or "not-needed", max_retries=0,
            timeout=httpx2.Timeout(timeout, connect=10.0),
        )

    def models(self) -> list[str]:
        try:
            return sorted(m.id for m in self.openai.models.list())
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            raise explain(exc, self.server, None, "") from exc

    def stream(self, model: str, messages: Sequence[ChatMessage], params: SamplingParams, *,
               tools: Sequence[dict[str, Any]] = (), tool_choice: str = "auto") -> RemoteGeneration:
        return RemoteGeneration(self, model, messages, params, tools=tools, tool_choice=tool_choice)


class RemoteServers:
    """The servers the user added; persisted through ``get_setting`` / ``set_setting``."""

    def __init__(self, get_setting: Callable[[str, Any], Any], set_setting: Callable[[str, Any], None]) -> None:
        self._get = get_setting
        self._set = set_setting
        self._secrets: dict[str, TokenStore] = {}

    def _secret(self, server_id: str) -> TokenStore:
        if server_id not in self._secrets:
            self._secrets[server_id] = TokenStore(account=f"server-key:{server_id}", env_var=None)
        return self._secrets[server_id]

    def all(self) -> list[RemoteServer]:
        return [RemoteServer(**s) for s in self._get(SETTINGS_KEY, []) or []]

    def get(self, server_id: str) -> RemoteServer:
        for s in self.all():
            if s.id == server_id:
                return s
        raise EngineError("this chat's remote models were removed: add their address again in File → Remote models, "
                          "or pick a model")

    def add(self, name: str, base_url: str, api_key: str | None = None) -> tuple[RemoteServer, SaveResult | None]:
        base_url = base_url.strip().rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise EngineError("the server address must start with http:// or https:// (e.g. http://host:8000/v1)")
        server = RemoteServer(uuid.uuid4().hex[:8], name.strip() or base_url, base_url)
        self._set(SETTINGS_KEY, [asdict(s) for s in self.all()] + [asdict(server)])
        saved = self._secret(server.id).save(api_key) if api_key and api_key.strip() else None
        return server, saved

    def remove(self, server_id: str) -> None:
        self._set(SETTINGS_KEY, [asdict(s) for s in self.all() if s.id != server_id])
        self._secret(server_id).clear()

    def client(self, server_id: str) -> RemoteClient:
        return RemoteClient(self.get(server_id), self._secret(server_id).get())

    def label(self, ref: str) -> str:
        parsed = parse_ref(ref)
        if parsed is None:
            return ref
        try:
            name = self.get(parsed[0]).name
        except EngineError:
            name = "removed server"
        return f"{parsed[1]} · {name}"
