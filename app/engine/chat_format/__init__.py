"""Chat formats: everything that depends on the model family, in one place.

* :mod:`.jinja_env`: the Jinja environment chat templates were written for;
* :mod:`.prompt`: the prompt from the model's template (or the fallback);
* :mod:`.families`: each family's thinking and answer markers;
* :mod:`.output`: the streamed output split into thinking and answer, and stops.

The engine's token loop only renders with :class:`ChatFormatter` and feeds
text to the :class:`OutputParser` that :func:`output_parser` gives it.
"""

from __future__ import annotations

from collections.abc import Sequence

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
from app.engine.chat_format.tool_calls import HERMES, ParsedCall, ToolCallFormat, call_grammar, forced_call_format

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
    "ToolCallFormat",
    "call_grammar",
    "forced_call_format",
    "message_dict",
    "output_parser",
    "parse_tool_calls",
    "reasoning_format",
    "special_markers",
]


def output_parser(prompt: RenderedPrompt, continuing: bool = False, stops: Sequence[str] = ()) -> OutputParser:
    """The parser for the output that follows ``prompt``; ``stops``: the request's own stop strings."""
    chat = prompt.source != "raw"
    tools = prompt.tool_format
    return OutputParser(
        (*prompt.stops, *stops), prompt.reasoning if chat else None, thinking_open=prompt.thinking_open,
        strip_prefixes=prompt.strip_prefixes, chat=chat, continuing=continuing,
        tool_starts=tools.starts if tools else (), tool_json_start=bool(tools and tools.json_start),
    )


def parse_tool_calls(prompt: RenderedPrompt, text: str) -> list[ParsedCall]:
    """The calls in a tool call's text, read in the family's syntax (and Hermes', which
    Paddock itself describes to models whose template has no place for tools)."""
    fmt = prompt.tool_format
    if fmt is None or not text:
        return []
    return fmt.parse(text) or (HERMES.parse(text) if fmt is not HERMES else [])


def special_markers(prompt_format: ReasoningFormat, stops: tuple[str, ...]) -> tuple[str, ...]:
    """Marker texts the engine must render even when they are special tokens
    (llama.cpp renders control tokens as nothing; gpt-oss' channels are control tokens)."""
    return (*prompt_format.markers, *stops)
