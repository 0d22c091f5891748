"""The model's prompt: its own chat template, rendered by Hugging Face's rules, or a fallback.

GGUF files carry their chat template (``tokenizer.chat_template``) as Jinja
source written for transformers' ``apply_chat_template``; it is rendered in the
same environment (:mod:`.jinja_env`), sandboxed, with the same inputs:
messages as plain dicts (an assistant turn's thinking as ``reasoning_content``,
aliased ``thinking``, which a template keeps or drops as its makers chose),
``tools`` and ``documents`` as None, ``add_generation_prompt``, the special
tokens, and ``enable_thinking`` only when the user set the chat's Think switch.

A template may refuse a conversation the app sends.  Two refusals have a known
answer, found once per model and then used for every turn (so the prompt stays
the same from turn to turn and the KV cache keeps matching):

* a template written only for tool use (Hermes' ``*-tool_use``, Command R+)
  iterates ``tools`` (firefunction: ``functions`` and ``datetime``): it gets
  empty lists (and today's date);
* a template refusing a system role (Gemma 2: "System role not supported")
  gets the system prompt folded into the first user message, and the user is
  told once.

Fallback, for models without a template (base models such as the Gemma test
model): a plain question/answer transcript ::

    <system prompt>

    Question: <message>
    Answer: <answer>
    Question: <message>
    Answer:

with stop strings on the next ``Question:`` / ``Answer:`` line, because a base
model continues the transcript on its own.  Measured on the Gemma 3 270M base
model (greedy): "User:/Assistant:" repeats a statement given as a prompt, a
preamble + "User:/Assistant:" echoes it; "Question:/Answer:" answers both
"The capital of France is" and "What is the capital of France?" with Paris.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2

from app.engine.chat_format.families import ReasoningFormat, opens_thinking, reasoning_format
from app.engine.chat_format.jinja_env import TemplateRefusal, compile_template
from app.engine.chat_format.tool_calls import HERMES, ToolCallFormat, tool_call_format, tools_system_prompt
from app.engine.types import ChatMessage
from app.errors import TemplateError

FALLBACK_STOPS = ("\nQuestion:", "\nAnswer:", "\nUser:", "\nAssistant:", "<end_of_turn>", "</s>")
FALLBACK_NOTICE = (
    "This model has no chat template in its file (it is probably a base model, not a chat model); "
    "Paddock uses a plain 'Question: / Answer:' transcript. Answers may be less accurate than with "
    "an instruct model."
)
FOLD_NOTICE = (
    "This model's chat template does not accept a system prompt; Paddock puts the chat's system "
    "prompt at the start of your first message instead."
)
# A template's output is a prompt; anything this large is a runaway loop.
MAX_RENDERED_CHARS = 4_000_000
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "  # the marker transformers uses for the same job


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    stops: tuple[str, ...]
    source: str  # "gguf", "fallback" or "raw"
    add_bos: bool
    # Text a model may repeat at the start of its answer, removed there.
    strip_prefixes: tuple[str, ...] = ()
    reasoning: ReasoningFormat | None = None
    # The prompt ends inside an opened thinking block: the output starts as thinking.
    thinking_open: bool = False
    # Told to the user once (e.g. the system prompt was folded into the first message).
    notices: tuple[str, ...] = ()
    # How this model writes tool calls (when tools were offered).
    tool_format: ToolCallFormat | None = None


@dataclass(frozen=True)
class _Adaptation:
    """How this model's template is fed so that it accepts the app's conversations."""

    empty_tools: bool = False
    fold_system: bool = False
    notices: tuple[str, ...] = field(default=())


_PLAIN = _Adaptation()


class ChatFormatter:
    """Turns a list of messages into the model's prompt text.

    Args:
        template: the GGUF ``tokenizer.chat_template`` source, or None for the fallback.
        bos_token / eos_token: the model's special token texts (templates reference them).
        model_adds_bos: the model's ``tokenizer.ggml.add_bos_token``.
        model_name: named in error messages.

    Raises:
        TemplateError: the template is not valid Jinja.
    """

    def __init__(
        self, template: str | None, bos_token: str, eos_token: str, model_adds_bos: bool, model_name: str = ""
    ) -> None:
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.model_adds_bos = model_adds_bos
        self.model_name = model_name or "this model"
        self.source = "gguf" if template else "fallback"
        self.reasoning = reasoning_format(template)
        self.tool_format, self.renders_tools = tool_call_format(template)
        self._source_text = template or ""
        self._template: jinja2.Template | None = None
        self._adaptation: _Adaptation | None = None  # found on the first render
        if template:
            try:
                self._template = compile_template(template)
            except jinja2.TemplateError as exc:
                raise TemplateError(f"the chat template of {self.model_name} is invalid: {exc}") from exc
        self._thinking_switch: tuple[bool, bool] | None = None

    # -- what the template offers ------------------------------------------------

    def thinking_switch(self) -> tuple[bool, bool]:
        """``(has_switch, default_on)``: whether ``enable_thinking`` changes this
        template's prompt, and whether thinking is on when the switch is left unset."""
        if self._thinking_switch is None:
            result = (False, False)
            if self._template is not None and "enable_thinking" in self._source_text:
                probe = [ChatMessage("user", "Hello")]
                try:
                    unset = self.render(probe).text
                    on = self.render(probe, enable_thinking=True).text
                    off = self.render(probe, enable_thinking=False).text
                    result = (on != off, unset == on)
                except TemplateError:
                    pass
            self._thinking_switch = result
        return self._thinking_switch

    # -- rendering ---------------------------------------------------------------

    def render(
        self,
        messages: Sequence[ChatMessage],
        add_generation_prompt: bool = True,
        enable_thinking: bool | None = None,
        continue_final: bool = False,
        tools: Sequence[dict[str, Any]] = (),
    ) -> RenderedPrompt:
        """The prompt for ``messages``.

        Args:
            add_generation_prompt: end with the opening of the assistant's turn.
            enable_thinking: the chat's Think switch (None: the template's default).
            continue_final: the last message is a cut-off assistant answer; the prompt
                ends where it ends, so the model goes on writing it (Continue).
            tools: tools the model may call (OpenAI ``tools`` entries): given to the template,
                or described in a system message when the template has no place for them.

        Raises:
            TemplateError: the template failed or refused, naming the model and the cause.
        """
        if self._template is None:
            if continue_final and messages and messages[-1].role == "assistant":
                text = _fallback(messages[:-1]) + " " + messages[-1].content.strip()
                return RenderedPrompt(text, FALLBACK_STOPS, "fallback", self.model_adds_bos)
            return RenderedPrompt(_fallback(messages), FALLBACK_STOPS, "fallback", self.model_adds_bos, ("Answer:",))
        extra: dict[str, Any] = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
        tool_format = None
        if tools or any(m.role == "tool" or m.tool_calls for m in messages):
            tool_format = self.tool_format if self.renders_tools else HERMES
            if self.renders_tools:
                if tools:
                    extra["tools"] = [dict(t) for t in tools]
            else:
                messages = _tools_as_text(messages, tools)
        if continue_final:
            text = self._render_continued(messages, extra)
        else:
            text = self._render_adapted(messages, add_generation_prompt, extra)
        if len(text) > MAX_RENDERED_CHARS:
            raise TemplateError(f"the chat template of {self.model_name} produced an impossibly long prompt")
        # Templates usually write the BOS token themselves; adding another would double it.
        add_bos = self.model_adds_bos and not (self.bos_token and text.startswith(self.bos_token))
        stops = tuple(s for s in (self.eos_token, *self.reasoning.stops) if s)
        adaptation = self._adaptation or _PLAIN
        return RenderedPrompt(
            text, stops, "gguf", add_bos, reasoning=self.reasoning,
            thinking_open=add_generation_prompt and not continue_final and opens_thinking(text, self.reasoning),
            notices=adaptation.notices, tool_format=tool_format if tools else None,
        )

    def _render_adapted(self, messages: Sequence[ChatMessage], add_generation_prompt: bool,
                        extra: dict[str, Any]) -> str:
        if self._adaptation is not None:
            try:
                return self._render_once(messages, self._adaptation, add_generation_prompt, extra)
            except TemplateError:
                pass  # e.g. a system prompt added later: look again
        first_error: TemplateError | None = None
        for adaptation in self._adaptations(messages):
            try:
                text = self._render_once(messages, adaptation, add_generation_prompt, extra)
            except TemplateError as exc:
                first_error = first_error or exc
                continue
            self._adaptation = adaptation
            return text
        assert first_error is not None
        raise first_error

    def _adaptations(self, messages: Sequence[ChatMessage]) -> list[_Adaptation]:
        tool_use = "tools" in self._source_text or "functions" in self._source_text
        system = any(m.role == "system" for m in messages)
        options = [_PLAIN]
        if tool_use:
            options.append(_Adaptation(empty_tools=True))
        if system:
            options.append(_Adaptation(fold_system=True, notices=(FOLD_NOTICE,)))
            if tool_use:
                options.append(_Adaptation(empty_tools=True, fold_system=True, notices=(FOLD_NOTICE,)))
        return options

    def _render_continued(self, messages: Sequence[ChatMessage], extra: dict[str, Any]) -> str:
        """transformers' ``continue_final_message``: render the cut-off answer with a
        tag after it, and end the prompt where the tag begins."""
        if not messages or messages[-1].role != "assistant":
            raise TemplateError("there is no answer to continue")
        last = messages[-1]
        tagged = [*messages[:-1], ChatMessage("assistant", last.content + _CONTINUE_TAG, last.reasoning)]
        text = self._render_adapted(tagged, False, extra)
        at = text.rfind(_CONTINUE_TAG.strip())
        if at < 0 or last.content.strip() not in text:
            raise TemplateError(f"the chat template of {self.model_name} cannot continue an answer")
        if text[at : at + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
            return text[:at]
        return text[:at].rstrip()

    def _render_once(self, messages: Sequence[ChatMessage], adaptation: _Adaptation,
                     add_generation_prompt: bool, extra: dict[str, Any]) -> str:
        assert self._template is not None
        dicts = [message_dict(m) for m in messages]
        if adaptation.fold_system:
            dicts = fold_system(dicts)
        context: dict[str, Any] = {
            "messages": dicts,
            "tools": [] if adaptation.empty_tools else None,
            "documents": None,
            "add_generation_prompt": add_generation_prompt,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            **extra,
        }
        if context["tools"] is None and adaptation.empty_tools:
            context["tools"] = []
        if adaptation.empty_tools:
            # firefunction's template takes the function list as JSON text and the date
            # as the Fireworks API passes them.
            context["functions"] = "[]"
            context["datetime"] = datetime.date.today().isoformat()
        try:
            return str(self._template.render(**context))
        except TemplateRefusal as exc:
            raise TemplateError(f"the chat template of {self.model_name} refused the conversation: {exc}") from exc
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(
                f"the chat template of {self.model_name} tried an unsafe operation and was stopped ({exc})"
            ) from exc
        except Exception as exc:
            # The template is untrusted code from the model file: whatever it raises
            # (OverflowError from the sandbox's range cap, TypeError, ...) is its failure.
            raise TemplateError(f"the chat template of {self.model_name} failed: {exc}") from exc


def message_dict(message: ChatMessage) -> dict[str, Any]:
    """A message as transformers hands it to a template: role and content, an assistant's
    thinking under the names templates read (``reasoning_content``, ``thinking``), its
    tool calls in the OpenAI shape (arguments as an object), a tool result's call id."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.reasoning:
        out["reasoning_content"] = message.reasoning
        out["thinking"] = message.reasoning
    if message.tool_calls:
        out["tool_calls"] = [{"type": "function", "id": c.get("id", ""),
                              "function": {"name": c["name"], "arguments": c.get("arguments", {})}}
                             for c in message.tool_calls]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
        out["name"] = message.name
    return out


def _tools_as_text(messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]]) -> list[ChatMessage]:
    """For a template without tools: describe them in the system message, and write calls and
    results as Hermes does (``<tool_call>`` in the answer, ``<tool_response>`` as a user turn)."""
    out: list[ChatMessage] = []
    for m in messages:
        if m.role == "tool":
            text = f"<tool_response>\n{m.content}\n</tool_response>"
            if out and out[-1].role == "user" and out[-1].content.startswith("<tool_response>"):
                out[-1] = ChatMessage("user", out[-1].content + "\n" + text)
            else:
                out.append(ChatMessage("user", text))
        elif m.tool_calls:
            calls = "\n".join(
                "<tool_call>\n" + json.dumps({"name": c["name"], "arguments": c.get("arguments", {})},
                                              ensure_ascii=False) + "\n</tool_call>"
                for c in m.tool_calls
            )
            out.append(ChatMessage("assistant", (m.content + "\n" if m.content else "") + calls, m.reasoning))
        else:
            out.append(m)
    if tools:
        described = tools_system_prompt(tools)
        if out and out[0].role == "system":
            out[0] = ChatMessage("system", f"{out[0].content}\n\n{described}")
        else:
            out.insert(0, ChatMessage("system", described))
    return out


def fold_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Put the system prompt(s) at the start of the first user message (Gemma 2's own advice)."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"].strip())
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{system}\n\n{m['content']}"
            return rest
    return [{"role": "user", "content": system}, *rest]


def _fallback(messages: Sequence[ChatMessage]) -> str:
    parts: list[str] = []
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content.strip())
    if system:
        parts.append(system.strip() + "\n\n")
    for m in messages:
        if m.role == "user":
            parts.append(f"Question: {m.content.strip()}\n")
        elif m.role == "assistant":
            parts.append(f"Answer: {m.content.strip()}\n")
    parts.append("Answer:")
    return "".join(parts)
