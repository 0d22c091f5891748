"""Reading a request's JSON: every field is checked, and what cannot be honoured is refused.

A client that sends a parameter must get what it asked for or a 400 that names
the parameter: nothing is silently dropped.  ``null`` means "the default", as
the OpenAI specification allows.  Each protocol declares the fields it knows;
an unknown field is refused too (OpenAI's own "Unrecognized request argument").
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from app.api.errors import bad_request
from app.engine.types import ChatMessage

MAX_N = 16  # choices per request
# What a message may carry: OpenAI's fields, the thinking fields of llama-server, vLLM and Ollama, Ollama's
# images and tool_name ("refusal" and "annotations" come back from OpenAI's own answers and are harmless).
MESSAGE_FIELDS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content", "reasoning",
                            "thinking", "refusal", "annotations", "images", "tool_name"})
MAX_STOPS = 16


class Body:
    """A JSON object from a request, read field by field (each read marks the field as known)."""

    def __init__(self, data: Any, what: str = "the request body", path: str = "") -> None:
        """``path``: where this object sits in the request ("response_format."), for the error's ``param``."""
        if not isinstance(data, dict):
            raise bad_request(f"{what} must be a JSON object", param=path.rstrip(".") or None)
        self.data: dict[str, Any] = data
        self.what = what
        self.path = path

    def refuse_unknown(self, known: Iterable[str]) -> None:
        unknown = sorted(set(self.data) - set(known))
        if unknown:
            names = ", ".join(self.path + u for u in unknown)
            raise bad_request(f"Unrecognized request argument supplied: {names} (Paddock does not support it, "
                              "and does not ignore what a client asks for)", param=self.path + unknown[0])

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad_request(f"'{key}' must be a number", param=key)
        if not lo <= value <= hi:
            raise bad_request(f"'{key}' must be between {lo:g} and {hi:g} (got {value})", param=key)
        return float(value)

    def integer(self, key: str, default: int | None, lo: int, hi: int | None = None) -> int | None:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request(f"'{key}' must be an integer", param=key)
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise bad_request(f"'{key}' must be {bound} (got {value})", param=key)
        return value

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise bad_request(f"'{key}' must be true or false", param=key)
        return value

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise bad_request(f"'{key}' must be a string", param=key)
        return value

    def obj(self, key: str) -> Body | None:
        value = self.data.get(key)
        if value is None:
            return None
        return Body(value, f"'{key}'")

    def stops(self, key: str = "stop") -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise bad_request(f"'{key}' must be a string or a list of strings", param=key)
        if len(values) > MAX_STOPS:
            raise bad_request(f"'{key}' may hold at most {MAX_STOPS} strings", param=key)
        if any(not v for v in values):
            raise bad_request(f"'{key}' strings must not be empty", param=key)
        return tuple(values)


def logit_bias(value: Any) -> tuple[tuple[int, float], ...]:
    """OpenAI's ``logit_bias``: {"token id": bias from -100 to 100}."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise bad_request("'logit_bias' must map token ids to numbers", param="logit_bias")
    out = []
    for key, bias in value.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise bad_request(f"'logit_bias' keys must be token ids (got {key!r})", param="logit_bias") from None
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise bad_request(f"'logit_bias' values must be numbers from -100 to 100 (got {bias!r})",
                              param="logit_bias")
        out.append((token, float(bias)))
    return tuple(out)


def json_grammar(kind: str, schema: Any = None) -> str:
    """A GBNF grammar for any JSON object, or for JSON matching ``schema``."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    if kind == "json_object":
        schema = {"type": "object"}
    try:
        return str(json_schema_to_gbnf(json.dumps(schema)))
    except Exception as exc:  # the converter raises plain exceptions for schemas it cannot express
        raise bad_request(f"the JSON schema cannot be enforced: {exc}", param="response_format") from exc


def response_format(value: Any) -> str | None:
    """OpenAI's ``response_format``: None (text) or a grammar."""
    if value is None:
        return None
    fmt = Body(value, "'response_format'", "response_format.")
    # "schema" beside json_object: llama-server's and vLLM's way to give the schema, honoured too
    fmt.refuse_unknown({"type", "json_schema", "schema"})
    kind = fmt.string("type")
    if kind == "text" and fmt.get("schema") is None:
        return None
    if kind == "json_object":
        extra = fmt.get("schema")
        if extra is None:
            return json_grammar("json_object")
        if not isinstance(extra, dict):
            raise bad_request("'response_format.schema' must be a JSON schema object", param="response_format")
        return json_grammar("json_schema", extra)
    if kind == "json_schema":
        raw_spec = fmt.get("json_schema")
        spec = Body(raw_spec, "'response_format.json_schema'", "response_format.json_schema.") \
            if raw_spec is not None else None
        if spec is not None:
            spec.refuse_unknown({"name", "schema", "strict", "description"})
        schema = spec.get("schema") if spec is not None else None
        if not isinstance(schema, dict):
            raise bad_request("'response_format.json_schema.schema' must be a JSON schema object",
                              param="response_format")
        return json_grammar("json_schema", schema)
    raise bad_request(f"'response_format.type' must be text, json_object or json_schema (got {kind!r})",
                      param="response_format")


def text_content(value: Any, role: str, where: str) -> str:
    """A message's content: a string, null (an assistant turn that only calls tools), or text parts."""
    if isinstance(value, str):
        return value
    if value is None and role in ("assistant", "tool"):
        return ""
    if isinstance(value, list):
        texts = []
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind in ("image_url", "input_image", "image"):
                raise bad_request(f"{where}: Paddock cannot show images to this model yet", param="messages")
            elif kind in ("input_audio", "file"):
                raise bad_request(f"{where}: content parts of type {kind!r} are not supported", param="messages")
            else:
                raise bad_request(f"{where}: each content part must be {{\"type\": \"text\", \"text\": ...}}",
                                  param="messages")
        return "".join(texts)
    raise bad_request(f"{where}: 'content' must be a string or a list of text parts", param="messages")


def chat_messages(raw: Any, *, ollama: bool = False) -> list[ChatMessage]:
    if not isinstance(raw, list) or not raw:
        raise bad_request("'messages' must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad_request(f"{where} must be an object", param="messages")
        unknown = sorted(k for k, v in m.items() if k not in MESSAGE_FIELDS and v is not None)  # null: absent
        if unknown:
            raise bad_request(f"{where}: unrecognized field {unknown[0]!r} (Paddock does not ignore what a client "
                              "sends)", param="messages")
        role = m.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise bad_request(f"{where}: unsupported role {role!r}", param="messages")
        if ollama and m.get("images"):
            raise bad_request(f"{where}: Paddock cannot show images to this model yet", param="messages")
        content = text_content(m.get("content"), role, where)
        if role == "tool":
            out.append(ChatMessage("tool", content, tool_call_id=str(m.get("tool_call_id") or ""),
                                   name=str(m.get("name") or m.get("tool_name") or "")))
            continue
        # A client may send an earlier answer's thinking back (llama-server / vLLM / Ollama field);
        # the model's template decides whether it goes into the prompt.
        reasoning = m.get("reasoning_content") or m.get("reasoning") or m.get("thinking") or ""
        calls = tuple(incoming_call(c, where) for c in m.get("tool_calls") or [])
        out.append(ChatMessage(role, content, reasoning if isinstance(reasoning, str) else "", tool_calls=calls))
    return out


def incoming_call(call: Any, where: str) -> dict[str, Any]:
    """An OpenAI tool call (arguments as a JSON string; Ollama's as an object) as the engine keeps it."""
    if not isinstance(call, dict):
        raise bad_request(f"{where}: each tool call must be an object", param="messages")
    fn = call.get("function") or {}
    args: Any = fn.get("arguments") or {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError as exc:
            raise bad_request(f"{where}: tool call arguments are not JSON: {exc}", param="messages") from exc
    return {"id": str(call.get("id") or ""), "name": str(fn.get("name") or ""), "arguments": args}


def tools(value: Any, choice: Any) -> tuple[tuple[dict[str, Any], ...], str]:
    """The request's ``tools`` and ``tool_choice`` ("auto", "none", "required" or a tool's name)."""
    listed = value or []
    if not isinstance(listed, list) or any(not isinstance(t, dict) or t.get("type", "function") != "function"
                                           or not isinstance(t.get("function"), dict)
                                           or not t["function"].get("name") for t in listed):
        raise bad_request("'tools' must be a list of {\"type\": \"function\", \"function\": {\"name\": ...}}",
                          param="tools")
    if choice is None:
        choice = "auto"
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name")
        if not choice:
            raise bad_request("'tool_choice' names no function", param="tool_choice")
        if choice not in {t["function"]["name"] for t in listed}:
            raise bad_request(f"'tool_choice' names {choice!r}, which is not in 'tools'", param="tool_choice")
    elif choice not in ("auto", "none", "required"):
        raise bad_request("'tool_choice' must be auto, none, required or {\"type\": \"function\", ...}",
                          param="tool_choice")
    elif choice == "required" and not listed:
        raise bad_request("'tool_choice' is required but no 'tools' are given", param="tool_choice")
    return tuple(listed), str(choice)
