"""The model's output, split as it streams: thinking, answer, and where it stops.

The token loop hands every decoded piece of text to :class:`OutputParser` and
sends on what comes out.  The parser holds back only what may still turn out
to be a marker (the start of ``</think>`` or of a stop string) or trailing
white space, so text reaches the user as soon as it is known to be theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from app.engine.chat_format.families import ReasoningFormat

Kind = Literal["answer", "thinking"]
Piece = tuple[Kind, str]


class OutputParser:
    """Splits streamed output into answer and thinking, and finds where it stops.

    Args:
        stops: strings that end the answer (not shown).
        reasoning: the family's thinking markers; None parses no thinking (raw completions).
        thinking_open: the prompt opened the thinking block, so output starts as thinking.
        strip_prefixes: text dropped if the answer starts with it ("Answer:" of the fallback).
        chat: trim white space around the answer (off for raw completions).
        continuing: the output continues an existing answer (keep its leading space).
        tool_starts: markers that open a tool call (tools were offered): from there on the
            output is the call, kept in ``tool_text`` and not shown.
        tool_json_start: the family may write the call as the whole answer (a JSON object or
            a list): an answer starting with ``{`` or ``[`` is held in ``tool_text`` until the
            end, then read as a call or given back with :meth:`release_tool_text`.
    """

    def __init__(
        self,
        stops: Sequence[str],
        reasoning: ReasoningFormat | None = None,
        *,
        thinking_open: bool = False,
        strip_prefixes: Sequence[str] = (),
        chat: bool = True,
        continuing: bool = False,
        tool_starts: Sequence[str] = (),
        tool_json_start: bool = False,
    ) -> None:
        self.answer = ""
        self.thinking = ""
        self.stopped = False  # a stop string was reached
        self.in_thinking = thinking_open and reasoning is not None
        self._reasoning = reasoning
        self._stops = tuple(s for s in (*stops, *(reasoning.stops if reasoning else ())) if s)
        self._strip_prefixes = tuple(p for p in strip_prefixes if p)
        self._chat = chat
        self._answer_started = continuing or not chat
        self._thinking_started = False
        self._pending = ""
        self._held_ws = ""  # trailing white space, sent once more text follows
        self._tool_starts = tuple(t for t in tool_starts if t)
        self._tool_json_start = tool_json_start
        self.in_tool = False
        self.tool_text = ""  # a tool call's text, from its opening marker on
        # The first characters of every marker any state may look for: text holding none of them
        # can neither hold a marker nor end with the start of one, and is let through at once
        # (most pieces of most answers: the token loop's common case)
        every = (*self._stops, *self._tool_starts, *self._strip_prefixes, *(reasoning.markers if reasoning else ()))
        self._marker_starts = frozenset(m[0] for m in every if m)

    def _markers(self) -> list[str]:
        markers = list(self._stops)
        if self.in_tool:
            return markers  # a call's own syntax is not ours to interpret
        if not self.in_thinking:
            markers += self._tool_starts
        if self._reasoning is not None:
            markers += self._reasoning.markers
        if not self._answer_started:
            markers += self._strip_prefixes
        return markers

    def feed(self, text: str) -> list[Piece]:
        """The pieces that ``text`` (appended to the output so far) makes certain."""
        if self.stopped:
            return []
        self._pending += text
        out: list[Piece] = []
        if self._marker_starts.isdisjoint(self._pending):
            ready, self._pending = self._pending, ""
            self._emit(ready, out)
            return out
        while self._pending:
            markers = self._markers()
            at, marker = _earliest(self._pending, markers)
            if marker is None:
                hold = _partial_marker_len(self._pending, markers)
                cut = len(self._pending) - hold
                ready, self._pending = self._pending[:cut], self._pending[cut:]
                self._emit(ready, out)
                break
            self._emit(self._pending[:at], out)
            self._pending = self._pending[at + len(marker) :]
            self._on_marker(marker)
            if self.stopped:
                self._pending = ""
                break
        return out

    def release_tool_text(self) -> list[Piece]:
        """Give back held text that turned out not to be a tool call, as answer."""
        text, self.tool_text, self.in_tool = self.tool_text, "", False
        out: list[Piece] = []
        self._tool_json_start = False
        self._emit(text, out)
        self._held_ws = ""
        return out

    def finish(self) -> list[Piece]:
        """What was held back, now that the output is complete."""
        out: list[Piece] = []
        if not self.stopped and self._pending:
            self._emit(self._pending, out)
        self._pending = ""
        if not self._chat and self._held_ws:
            out.append(self._add("answer", self._held_ws))
        self._held_ws = ""
        return out

    # -- internals ---------------------------------------------------------------

    def _on_marker(self, marker: str) -> None:
        fmt = self._reasoning
        if marker in self._stops:
            self.stopped = True
        elif marker in self._tool_starts and not self.in_tool and not self.in_thinking:
            self.in_tool = True
            self.tool_text = marker
            self._held_ws = ""
        elif fmt is not None and marker == fmt.open and not self.in_thinking:
            self.in_thinking = True
            self._held_ws = ""
        elif fmt is not None and marker == fmt.close and self.in_thinking:
            self.in_thinking = False
            self._held_ws = ""
        # answer markers and a stray close marker are dropped; a strip prefix too

    def _emit(self, text: str, out: list[Piece]) -> None:
        if not text:
            return
        if self.in_tool:
            self.tool_text += text
            return
        if (self._tool_json_start and not self._answer_started and not self.in_thinking
                and text.lstrip()[:1] in ("{", "[")):
            self.in_tool = True  # maybe a call written as the whole answer; decided at the end
            self.tool_text = text.lstrip()
            return
        if not self._chat:
            out.append(self._add("answer", text))
            return
        kind: Kind = "thinking" if self.in_thinking else "answer"
        started = self._thinking_started if kind == "thinking" else self._answer_started
        if not started:
            text = text.lstrip()
            if not text:
                return
        text = self._held_ws + text
        body = text.rstrip()
        self._held_ws = text[len(body) :]
        if body:
            if kind == "thinking":
                if not self._thinking_started and self.thinking:
                    body = "\n\n" + body  # a second thinking block
                self._thinking_started = True
            else:
                self._answer_started = True
            out.append(self._add(kind, body))

    def _add(self, kind: Kind, text: str) -> Piece:
        if kind == "thinking":
            self.thinking += text
        else:
            self.answer += text
            self._thinking_started = False  # thinking after this answer text is a new block
        return (kind, text)


def _earliest(text: str, markers: Sequence[str]) -> tuple[int, str | None]:
    """The first marker in ``text`` (the longest where several start at the same place)."""
    best_at, best = len(text) + 1, None
    for marker in markers:
        at = text.find(marker)
        if at >= 0 and (at < best_at or (at == best_at and best is not None and len(marker) > len(best))):
            best_at, best = at, marker
    return best_at, best


def _partial_marker_len(text: str, markers: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that could begin a marker."""
    best = 0
    for marker in markers:
        for n in range(min(len(marker) - 1, len(text)), best, -1):
            if text.endswith(marker[:n]):
                best = n
                break
    return best
