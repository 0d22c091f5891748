"""Chat prompts: the model's own Jinja template, sandboxed, or a documented fallback.

GGUF files carry their chat template (``tokenizer.chat_template``) as Jinja
source written by whoever converted the model, so it is untrusted code.  It is
rendered in Jinja2's :class:`ImmutableSandboxedEnvironment` (Jinja2 >= 3.1.6,
whose sandbox escapes are fixed): attribute access to ``__globals__`` and the
like raises :class:`jinja2.exceptions.SecurityError`, which becomes a
:class:`TemplateError`; nothing runs outside the sandbox.

Fallback, for models without a template (base models such as the test model):
a plain question/answer transcript ::

    <system prompt>

    Question: <message>
    Answer: <answer>
    Question: <message>
    Answer:

with stop strings on the next ``Question:`` / ``Answer:`` line, because a base
model continues the transcript on its own.  We measured three transcripts on
the Gemma 3 270M base model (greedy): "User:/Assistant:" repeats a statement
given as a prompt ("The capital of France is" -> the same line forever), a
preamble + "User:/Assistant:" echoes it; "Question:/Answer:" answers both
"The capital of France is" and "What is the capital of France?" with Paris.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.engine.types import ChatMessage
from app.errors import TemplateError

FALLBACK_STOPS = ("\nQuestion:", "\nAnswer:", "\nUser:", "\nAssistant:", "<end_of_turn>", "</s>")
FALLBACK_NOTICE = (
    "This model has no chat template in its file (it is probably a base model, not a chat model); "
    "Paddock uses a plain 'Question: / Answer:' transcript. Answers may be less accurate than with "
    "an instruct model."
)
# A template's output is a prompt; anything this large is a runaway loop.
MAX_RENDERED_CHARS = 4_000_000


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    stops: tuple[str, ...]
    source: str  # "gguf" or "fallback"
    add_bos: bool
    # Text a model may repeat at the start of its answer, removed there.
    strip_prefixes: tuple[str, ...] = ()


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(f"the model's chat template refused the conversation: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


class ChatFormatter:
    """Turns a list of messages into the model's prompt text.

    Args:
        template: the GGUF ``tokenizer.chat_template`` source, or None for the fallback.
        bos_token / eos_token: the model's special token texts (templates reference them).
        model_adds_bos: the model's ``tokenizer.ggml.add_bos_token``.
    """

    def __init__(self, template: str | None, bos_token: str, eos_token: str, model_adds_bos: bool) -> None:
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.model_adds_bos = model_adds_bos
        self.source = "gguf" if template else "fallback"
        self._template: jinja2.Template | None = None
        if template:
            env = ImmutableSandboxedEnvironment(
                trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined
            )
            env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
            try:
                self._template = env.from_string(template)
            except jinja2.TemplateError as exc:
                raise TemplateError(f"the model's chat template is invalid: {exc}") from exc

    def render(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> RenderedPrompt:
        if self._template is None:
            return RenderedPrompt(
                _fallback(messages), FALLBACK_STOPS, "fallback", self.model_adds_bos, ("Answer:",)
            )
        context: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "add_generation_prompt": add_generation_prompt,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
        }
        try:
            text = self._template.render(**context)
        except TemplateError:
            raise
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(
                f"the model's chat template tried an unsafe operation and was stopped ({exc})"
            ) from exc
        except Exception as exc:
            # The template is untrusted code from the model file: whatever it raises
            # (OverflowError from the sandbox's range cap, TypeError, ...) is its failure.
            raise TemplateError(f"the model's chat template failed: {exc}") from exc
        if len(text) > MAX_RENDERED_CHARS:
            raise TemplateError("the model's chat template produced an impossibly long prompt")
        # Templates usually write the BOS token themselves; adding another would double it.
        add_bos = self.model_adds_bos and not (self.bos_token and text.startswith(self.bos_token))
        stops = (self.eos_token,) if self.eos_token else ()
        return RenderedPrompt(text, stops, "gguf", add_bos)


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
