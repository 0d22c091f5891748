"""Chat formats: everything that depends on the model family, in one place.

* :mod:`.jinja_env`: the Jinja environment chat templates were written for;
* :mod:`.prompt`: the prompt from the model's template (or the fallback);
* :mod:`.families`: each family's thinking and answer markers;
* :mod:`.output`: the streamed output split into thinking and answer, and stops.

The engine's token loop only renders with :class:`ChatFormatter` and feeds
text to the :class:`OutputParser` that :func:`output_parser` gives it.
"""

from __future__ import annotations

from app.engine.chat_format.families import FORMATS, ReasoningFormat, reasoning_format
from app.engine.chat_format.output import OutputParser, Piece
from app.engine.chat_format.prompt import (
    FALLBACK_NOTICE,
    FALLBACK_STOPS,
    FOLD_NOTICE,
    ChatFormatter,
    RenderedPrompt,
    message_dict,
)

__all__ = [
    "FALLBACK_NOTICE",
    "FALLBACK_STOPS",
    "FOLD_NOTICE",
    "FORMATS",
    "ChatFormatter",
    "OutputParser",
    "Piece",
    "ReasoningFormat",
    "RenderedPrompt",
    "message_dict",
    "output_parser",
    "reasoning_format",
    "special_markers",
]


def output_parser(prompt: RenderedPrompt, continuing: bool = False) -> OutputParser:
    """The parser for the output that follows ``prompt``."""
    chat = prompt.source != "raw"
    return OutputParser(
        prompt.stops, prompt.reasoning if chat else None, thinking_open=prompt.thinking_open,
        strip_prefixes=prompt.strip_prefixes, chat=chat, continuing=continuing,
    )


def special_markers(prompt_format: ReasoningFormat, stops: tuple[str, ...]) -> tuple[str, ...]:
    """Marker texts the engine must render even when they are special tokens
    (llama.cpp renders control tokens as nothing; gpt-oss' channels are control tokens)."""
    return (*prompt_format.markers, *stops)
