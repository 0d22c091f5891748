"""What differs between model families in the text a model writes back.

A reasoning model writes its thinking between markers before the answer; which
markers depends on the family (``<think>`` for Qwen 3, QwQ, DeepSeek R1, GLM,
MiniMax...; ``[THINK]`` for Magistral/Ministral; channels for gpt-oss and
Gemma 4; ...).  Some families also wrap the answer itself in markers (Command
R7B's ``<|START_RESPONSE|>``, gpt-oss's final channel header).  The family is
recognised from the model's own chat template: the markers it writes into past
assistant turns are the ones the model was trained to emit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReasoningFormat:
    """The markers around a family's thinking, and around its answer."""

    name: str
    open: str
    close: str
    # Markers around the answer text (removed from it, never shown).
    answer_markers: tuple[str, ...] = ()
    # Text after which the model says nothing for the user (e.g. gpt-oss' <|return|>).
    stops: tuple[str, ...] = ()
    # Text in a template that names this family (default: the opening marker).
    signature: str = ""

    @property
    def markers(self) -> tuple[str, ...]:
        return (self.open, self.close, *self.answer_markers)


# Order matters: the first family whose opening marker the template mentions wins,
# so the longer, more specific markers come before the generic <think>.
FORMATS: tuple[ReasoningFormat, ...] = (
    ReasoningFormat(
        "gpt-oss", "<|channel|>analysis<|message|>", "<|end|>",
        ("<|start|>assistant<|channel|>final<|message|>", "<|channel|>final<|message|>", "<|start|>assistant"),
        ("<|return|>", "<|call|>"),
    ),
    ReasoningFormat("gemma4", "<|channel>thought", "<channel|>"),
    ReasoningFormat("seed", "<seed:think>", "</seed:think>"),
    ReasoningFormat("hunyuan", "<think:opensource>", "</think:opensource>", signature="'<think{}>'.format(HYTK)"),
    ReasoningFormat("minimax", "<mm:think>", "</mm:think>"),
    ReasoningFormat("mistral", "[THINK]", "[/THINK]"),
    ReasoningFormat(
        "cohere", "<|START_THINKING|>", "<|END_THINKING|>",
        ("<|START_RESPONSE|>", "<|END_RESPONSE|>", "<|START_TEXT|>", "<|END_TEXT|>"),
    ),
    ReasoningFormat(
        "kimi3", "<|open|>think<|sep|>", "<|close|>think<|sep|>",
        ("<|open|>response<|sep|>", "<|close|>response<|sep|>"),
    ),
    ReasoningFormat(
        "apriel", "Here are my reasoning steps:", "[BEGIN FINAL RESPONSE]", ("[END FINAL RESPONSE]",),
        signature="[BEGIN FINAL RESPONSE]",
    ),
    ReasoningFormat("think", "<think>", "</think>"),
)

# A model whose template does not mention thinking may still have been tuned to think
# (a Qwen 3 fine-tune carrying an older template): <think> is watched for at the start.
DEFAULT_FORMAT = FORMATS[-1]


def reasoning_format(template: str | None) -> ReasoningFormat:
    """The reasoning format a chat template's family uses (``<think>`` if none is named)."""
    if template:
        for fmt in FORMATS:
            if (fmt.signature or fmt.open) in template:
                return fmt
    return DEFAULT_FORMAT


def opens_thinking(prompt: str, fmt: ReasoningFormat) -> bool:
    """Whether the prompt itself ends inside an opened thinking block (the template
    wrote the opening marker into the generation prompt, so the model starts thinking)."""
    tail = prompt.rstrip()
    return tail.endswith(fmt.open.strip())
