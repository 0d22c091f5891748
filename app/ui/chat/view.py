"""The conversation view: one widget per message, driven by :class:`MessageListModel`.

Streaming stays cheap at any answer length: new text is appended to the end of
the document (work proportional to the new text), and the whole message is
re-rendered as Markdown at most four times a second and once at the end.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextCursor
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.docs.prompt import cited_numbers
from app.ui.chat.attachments import MessageImages
from app.ui.chat.itemmodels import MessageListModel, MsgRole
from app.ui.chat.reading import whole_label
from app.ui.common.elided import ElidedLabel
from app.ui.common.markdown import CITE_SCHEME, COPY_SCHEME, MarkdownRenderer, link_citations
from app.ui.common.textbrowser import SafeTextBrowser

RENDER_INTERVAL_MS = 250
# A chat opens with its newest message built at once, then the ones above it, one per event-loop turn, up to
# OPENED: no turn long enough for a user to notice, whatever the chat's length.
OPENED = 16  # messages built when a chat opens
WINDOW = 40  # messages built above those, a turn at a time, each time the user scrolls to the top
SPARE = OPENED  # hidden message widgets kept for the next chat (each holds a rendered document)
MAX_LIVE = 2 * WINDOW  # messages kept built while scrolling through a long chat; those far away are let go
TRIM = 4  # spare widgets beyond SPARE deleted per event-loop turn (after a long scroll there are many)
THINKING_MAX_HEIGHT = 240


class MessageWidget(QFrame):
    """One message.

    Signals:
        editRequested(int), regenerateRequested(), continueRequested(),
        citationRequested(int, int): (message id, source number; 0 = all sources)
    """

    editRequested = Signal(int)
    regenerateRequested = Signal()
    continueRequested = Signal()
    citationRequested = Signal(int, int)
    versionRequested = Signal(int)  # the id of the version of this message to show

    def __init__(self, renderer: MarkdownRenderer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.renderer = renderer
        self.message_id = -1
        self.role = "user"
        self.text = ""
        self.code_blocks: tuple[str, ...] = ()
        self.streaming = False
        self.sources: list[dict[str, Any]] = []
        self.thinking = ""
        self._thinking_s = 0.0
        self._rendered_text: str | None = None
        self.setObjectName("message")
        self.setFrameShape(QFrame.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(4)
        self.header = QLabel()
        self.header.setObjectName("messageHeader")
        layout.addWidget(self.header)
        # The model's thinking: a collapsed section above the answer, plain text, never
        # part of the answer (Copy, citations and history leave it out).
        self.thinking_toggle = _disclosure("thinkingToggle", lambda shown: self.thinking_view.setVisible(shown))
        self.thinking_toggle.hide()
        layout.addWidget(self.thinking_toggle)
        # made when a message first has thinking: most have none, and a rich-text view per
        # message would double what switching to a long chat builds
        self._thinking_view: SafeTextBrowser | None = None
        self._layout = layout
        self.tools_box = QVBoxLayout()  # the tools this answer called, each collapsed
        self.tools_box.setSpacing(2)
        self._tool_widgets: list[ToolCallWidget] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.body = SafeTextBrowser()
        self.body.setObjectName("messageBody")
        self.body.setOpenLinks(False)
        self.body.setOpenExternalLinks(False)
        self.body.setFrameShape(QFrame.Shape.NoFrame)
        self.body.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.body.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.body.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.body.document().setDocumentMargin(2)
        self.body.document().documentLayout().documentSizeChanged.connect(self._fit_height)
        self.body.anchorClicked.connect(self._on_anchor)
        self.images = MessageImages()  # the pictures a question showed the model
        layout.addWidget(self.images)
        layout.addWidget(self.body)
        layout.addLayout(self.tools_box)
        self.error = QLabel()
        self.error.setObjectName("messageError")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        layout.addWidget(self.error)
        self.limit_note = QLabel()
        self.limit_note.setObjectName("limitNote")
        self.limit_note.setWordWrap(True)
        self.limit_note.hide()
        layout.addWidget(self.limit_note)
        actions = QHBoxLayout()
        actions.setSpacing(6)
        # "‹ 2 / 3 ›": this message's versions (an edited question, a regenerated answer); the conversation
        # below follows the version shown
        self.versions: tuple[int, ...] = ()
        self.prev_version = _small_button("‹", "Show the previous version")
        self.prev_version.clicked.connect(lambda: self._step_version(-1))
        self.version_label = QLabel()
        self.version_label.setObjectName("versionLabel")
        self.next_version = _small_button("›", "Show the next version")
        self.next_version.clicked.connect(lambda: self._step_version(1))
        for w in (self.prev_version, self.version_label, self.next_version):
            actions.addWidget(w)
            w.hide()
        self.copy_button = _small_button("Copy", "Copy this message")
        self.copy_button.clicked.connect(self._copy)
        self.edit_button = _small_button("Edit", "Edit this message and send it again")
        self.edit_button.clicked.connect(lambda: self.editRequested.emit(self.message_id))
        self.regen_button = _small_button("Regenerate", "Answer this again")
        self.regen_button.clicked.connect(self.regenerateRequested.emit)
        self.continue_button = _small_button("Continue", "Write on from where the answer stopped")
        self.continue_button.clicked.connect(self.continueRequested.emit)
        for b in (self.copy_button, self.edit_button, self.regen_button, self.continue_button):
            actions.addWidget(b)
        actions.addStretch(1)
        self.stats_label = ElidedLabel()  # cut with "…" in a narrow window, whole in its tooltip
        self.stats_label.setObjectName("messageStats")
        self.stats_label.setAlignment(Qt.AlignmentFlag.AlignRight)
        actions.addWidget(self.stats_label, 1)
        layout.addLayout(actions)
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(RENDER_INTERVAL_MS)
        self._render_timer.timeout.connect(self._render)

    # -- content ---------------------------------------------------------------

    def set_message(self, index: QModelIndex | QPersistentModelIndex, is_last: bool) -> None:
        message_id = int(index.data(MsgRole.Id))
        if message_id != self.message_id:  # a widget reused for another message
            self.thinking_toggle.setChecked(False)
        self.message_id = message_id
        self.role = str(index.data(MsgRole.Role))
        status = str(index.data(MsgRole.Status))
        error = index.data(MsgRole.Error)
        stats = index.data(MsgRole.Stats) or {}
        sources = list(index.data(MsgRole.Sources) or [])
        if sources != self.sources:
            self.sources = sources
            self._rendered_text = None
        self.setProperty("role", self.role)
        self.streaming = status == "streaming"
        label = {"user": "You", "assistant": "Assistant", "system": "System"}.get(self.role, self.role)
        suffix = {"interrupted": " · interrupted", "error": " · failed", "streaming": " · writing…"}.get(status, "")
        self.header.setText(f"<b>{label}</b><span style='color:gray'>{suffix}</span>")
        self.edit_button.setVisible(self.role == "user" and not self.streaming)
        self.regen_button.setVisible(self.role == "assistant" and is_last and not self.streaming)
        self.copy_button.setVisible(not self.streaming)
        if error and status in ("error", "interrupted") and error != "Stopped":
            self.error.setText(str(error))
            self.error.show()
        else:
            self.error.hide()
        cut = self.role == "assistant" and status == "complete" and stats.get("finish_reason") == "length"
        self.limit_note.setText(
            f"Stopped at the limit of {stats.get('completion_tokens', 0)} tokens for this answer "
            "(Max tokens in the chat settings)." if cut else ""
        )
        self.limit_note.setVisible(cut)
        self.continue_button.setVisible(cut and is_last)
        self.set_versions(tuple(index.data(MsgRole.Versions) or (self.message_id,)))
        self._thinking_s = float(stats.get("reasoning_s") or 0.0)
        self.set_thinking(str(index.data(MsgRole.Reasoning) or ""))
        self.set_tool_calls(list(index.data(MsgRole.ToolCalls) or []))
        self.images.set_images(list(index.data(MsgRole.Images) or []))
        if stats.get("whole"):  # an answer over whole documents: what it read, not the last call's figures
            self.stats_label.setText(whole_label(stats["whole"]))
        elif stats.get("completion_tokens"):
            self.stats_label.setText(
                f"{stats['completion_tokens']} tokens · {stats.get('tokens_per_s', 0):.1f} tok/s · "
                f"first token {stats.get('ttft_s', 0):.2f}s"
            )
        else:
            self.stats_label.setText("")
        self.set_text(str(index.data(Qt.ItemDataRole.DisplayRole) or ""))
        if not self.streaming:
            self._render()

    def set_versions(self, versions: tuple[int, ...]) -> None:
        self.versions = versions
        many = len(versions) > 1 and self.message_id in versions
        for w in (self.prev_version, self.version_label, self.next_version):
            w.setVisible(many)
        if many:
            at = versions.index(self.message_id)
            self.version_label.setText(f"{at + 1} / {len(versions)}")
            self.prev_version.setEnabled(at > 0 and not self.streaming)
            self.next_version.setEnabled(at < len(versions) - 1 and not self.streaming)

    def _step_version(self, step: int) -> None:
        if self.message_id not in self.versions:
            return
        at = self.versions.index(self.message_id) + step
        if 0 <= at < len(self.versions):
            self.versionRequested.emit(self.versions[at])

    @property
    def thinking_view(self) -> SafeTextBrowser:
        if self._thinking_view is None:
            view = SafeTextBrowser()
            view.setObjectName("thinkingBody")
            view.setFrameShape(QFrame.Shape.NoFrame)
            view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            view.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            view.document().documentLayout().documentSizeChanged.connect(self._fit_thinking)
            view.hide()
            self._layout.insertWidget(self._layout.indexOf(self.thinking_toggle) + 1, view)
            self._thinking_view = view
        return self._thinking_view

    def set_thinking(self, thinking: str) -> None:
        if thinking != self.thinking:
            if thinking.startswith(self.thinking) and self.thinking:
                cursor = QTextCursor(self.thinking_view.document())
                cursor.movePosition(QTextCursor.MoveOperation.End)
                cursor.insertText(thinking[len(self.thinking) :])
            else:
                self.thinking_view.setPlainText(thinking)
            self.thinking = thinking
        self.thinking_toggle.setVisible(bool(thinking))
        if self.streaming and not self.text:
            label = "Thinking…"
        elif self._thinking_s:
            label = f"Thought for {_duration(self._thinking_s)}"
        else:
            label = "Thinking"
        self.thinking_toggle.setText(label)

    def set_tool_calls(self, calls: list[dict[str, Any]]) -> None:
        if calls == self.tool_calls:
            return
        self.tool_calls = [dict(c) for c in calls]
        for w in self._tool_widgets:
            self.tools_box.removeWidget(w)
            w.deleteLater()
        self._tool_widgets = []
        for call in self.tool_calls:
            w = ToolCallWidget(call)
            self.tools_box.addWidget(w)
            self._tool_widgets.append(w)
        if self.tool_calls and not self.text.strip():
            self.body.setVisible(False)  # an answer that only called tools: no empty text box
        else:
            self.body.setVisible(True)

    def set_text(self, text: str) -> None:
        if text == self.text:
            return
        if not self.text and self.thinking:
            self.set_thinking(self.thinking)  # the answer began: "Thinking…" becomes "Thinking"
        if self.streaming and text.startswith(self.text) and self._rendered_text is not None:
            # cheap path: append the new text now, format it at the next render
            cursor = QTextCursor(self.body.document())
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.insertText(text[len(self.text) :])
            self.text = text
            if not self._render_timer.isActive():
                self._render_timer.start()
            return
        self.text = text
        self._render()

    def _render(self) -> None:
        self._render_timer.stop()
        if self._rendered_text == self.text:
            return
        if self.role == "user":
            # what the user typed is shown as typed (no Markdown surprises)
            self.body.setPlainText(self.text)
            self.code_blocks = ()
        else:
            text = self.text or ("…" if self.streaming else "")
            if self.sources:
                text = link_citations(text, len(self.sources))
            rendered = self.renderer.render(text)
            self.code_blocks = rendered.code_blocks
            self.body.setHtml(rendered.html + self._sources_html())
        self._rendered_text = self.text

    def _sources_html(self) -> str:
        """Under an answer from documents: the cited sources, and a link to everything retrieved."""
        if not self.sources:
            return ""
        cited = cited_numbers(self.text, len(self.sources))
        links = []
        for number in cited:
            s = self.sources[number - 1]
            label = html.escape(f"[{number}] {s.get('source', '')} · {s.get('location', '')}")
            links.append(f'<a href="{CITE_SCHEME}:{number}">{label}</a>')
        total = len(self.sources)
        every = f'<a href="{CITE_SCHEME}:0">{total} passage{"s" if total != 1 else ""} given to the model</a>'
        head = "Sources: " + " · ".join(links) + f" — {every}" if links else f"From your documents: {every}"
        return f'<p style="font-size:small; color:gray; margin-top:6px;">{head}</p>'


    def _fit_thinking(self) -> None:
        # as tall as its text, up to a third of a laptop screen; longer thinking scrolls
        view = self._thinking_view
        if view is None:
            return
        height = min(THINKING_MAX_HEIGHT, int(view.document().size().height()) + 6)
        if view.height() != height:
            view.setFixedHeight(height)

    def _fit_height(self) -> None:
        height = int(self.body.document().size().height()) + 4
        if self.body.height() != height:
            self.body.setFixedHeight(height)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._fit_height()
        self._fit_thinking()

    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text)
        _say_copied(self.copy_button)

    def _on_anchor(self, url: QUrl) -> None:
        if url.scheme() == CITE_SCHEME:
            path = url.path()
            self.citationRequested.emit(self.message_id, int(path) if path.isdigit() else 0)
            return
        if url.scheme() == COPY_SCHEME:
            number = int(url.path() or -1)
            if 0 <= number < len(self.code_blocks):
                QGuiApplication.clipboard().setText(self.code_blocks[number])
                _say_copied(self.copy_button, "Code copied")
            return
        if url.scheme() not in ("http", "https", "mailto"):
            return
        answer = QMessageBox.question(
            self, "Open link?", f"Open this link in your web browser?\n\n{url.toString()}",
        )
        if answer == QMessageBox.StandardButton.Yes:
            QDesktopServices.openUrl(url)


TOOL_STATUS = {"pending": "waiting for your approval", "running": "running…", "done": "done", "error": "failed",
               "denied": "declined", "stopped": "stopped"}


class ToolCallWidget(QFrame):
    """One tool call of an answer: what ran (tool, arguments), its state, and its result,
    collapsed.  The result is the tool's untrusted output: shown as plain text only."""

    def __init__(self, call: dict[str, Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("toolCall")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 2)
        layout.setSpacing(2)
        status = str(call.get("status", ""))
        args = json.dumps(call.get("arguments", {}), ensure_ascii=False)
        server = f"{call.get('server')} › " if call.get("server") else ""
        self.result = QPlainTextEdit()
        self.toggle = _disclosure("toolCallToggle", self.result.setVisible)
        state = TOOL_STATUS.get(status, status)
        self.toggle.setText(_elide(f"Tool: {server}{call.get('name')}({args}) — {state}", 140))
        self.toggle.setToolTip(f"{server}{call.get('name')}\n{json.dumps(call.get('arguments', {}), indent=2)}")
        layout.addWidget(self.toggle)
        self.result.setObjectName("toolResult")
        self.result.setReadOnly(True)
        self.result.setPlainText(str(call.get("result") or ""))
        self.result.setMaximumHeight(180)
        self.result.hide()
        layout.addWidget(self.result)
        self.toggle.setEnabled(call.get("result") is not None)


def _disclosure(name: str, show: Callable[[bool], None]) -> QToolButton:
    """A flat "▸ label" button that opens (▾) and closes what ``show`` shows."""
    button = QToolButton()
    button.setObjectName(name)
    button.setCheckable(True)
    button.setAutoRaise(True)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    button.setArrowType(Qt.ArrowType.RightArrow)
    button.setCursor(Qt.CursorShape.PointingHandCursor)

    def toggled(shown: bool) -> None:
        button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        show(shown)

    button.toggled.connect(toggled)
    return button


def _elide(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {int(seconds % 60)} s"


def _small_button(text: str, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setObjectName("smallButton")
    button.setToolTip(tip)
    button.setFlat(True)
    button.setCursor(Qt.CursorShape.PointingHandCursor)
    return button


class ChatView(QScrollArea):
    """Scrollable column of :class:`MessageWidget`, kept in sync with the model.

    Signals:
        editRequested(int): the user wants to edit that message.
        regenerateRequested(): the user wants the last answer again.
        continueRequested(): the user wants the last answer, cut at the token limit, to go on.
        citationRequested(int, int): (message id, source number) a citation was clicked.
        versionRequested(int): the user wants that version of a message shown ("‹ 2 / 3 ›").
    """

    editRequested = Signal(int)
    regenerateRequested = Signal()
    continueRequested = Signal()
    citationRequested = Signal(int, int)
    versionRequested = Signal(int)

    def __init__(self, model: MessageListModel, dark: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.renderer = MarkdownRenderer(dark=dark)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.container = QWidget()
        self.container.setObjectName("chatContainer")
        self.column = QVBoxLayout(self.container)
        self.column.setContentsMargins(16, 12, 16, 12)
        self.column.setSpacing(8)
        # Only the latest messages are built when a chat opens, whatever its length; earlier ones are built a
        # window at a time when the user scrolls to the top (or clicks this).
        self.earlier = QPushButton()
        self.earlier.setObjectName("earlierMessages")
        self.earlier.setFlat(True)
        self.earlier.setCursor(Qt.CursorShape.PointingHandCursor)
        self.earlier.clicked.connect(self.show_earlier)
        self.earlier.hide()
        self.column.addWidget(self.earlier)
        self.later = QPushButton()  # after scrolling up a long way: the newest messages were let go
        self.later.setObjectName("laterMessages")
        self.later.setFlat(True)
        self.later.setCursor(Qt.CursorShape.PointingHandCursor)
        self.later.clicked.connect(self.show_later)
        self.later.hide()
        self.column.addWidget(self.later)
        self.column.addStretch(1)
        self.empty_hint = QLabel(
            "Ask anything. Your messages and the model's answers stay on this computer."
        )
        self.empty_hint.setObjectName("emptyHint")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)  # never wider than the window
        self.empty_hint.setStyleSheet("color: gray; font-size: 14px;")
        self.column.addWidget(self.empty_hint)
        self.column.addStretch(1)
        self.setWidget(self.container)
        self.widgets: list[MessageWidget] = []  # the messages shown, from model row ``first`` on
        self._spare: list[MessageWidget] = []  # made before, hidden, most recently shown first: reused first
        self._wanted: set[int] = set()  # the messages a chat opens with: their spare widgets are kept for them
        self._opening = False
        self.first = 0
        self._target_first = 0  # the first row to build while growing upwards
        self._target_last = 0  # one past the last row to build while growing downwards
        self._grow = QTimer(self)
        self._grow.setSingleShot(True)
        self._grow.setInterval(0)
        self._grow.timeout.connect(self._grow_step)
        # while messages are built or let go above the one the user looks at: that message and its offset
        # from the top of the view, restored once the layout has moved it
        self._anchor: tuple[MessageWidget, int] | None = None
        self._stick_to_bottom = True
        self.verticalScrollBar().valueChanged.connect(self._on_scroll)
        self.verticalScrollBar().rangeChanged.connect(self._on_range)
        model.modelReset.connect(self._rebuild)
        model.rowsInserted.connect(lambda *_: self._rebuild())
        model.rowsRemoved.connect(lambda *_: self._rebuild())
        model.dataChanged.connect(self._on_data_changed)

    def _rebuild(self) -> None:
        """Another chat (or branch, or this one read again): its newest message at once, the ones above it a
        turn at a time up to the latest OPENED. Until they fill the view, the view is not repainted: for those
        few turns it keeps showing what it showed (the chat before), never a part of this one. A widget that
        showed a message shows it again without rendering it again (a chat read again after a send costs
        little)."""
        rows = self.model.rowCount()
        self._anchor = None
        self._stick_to_bottom = True
        self._spare[:0] = self.widgets  # hidden below, once the messages shown now are chosen
        self.widgets = []
        self.first = self._target_last = rows
        self._target_first = max(0, rows - OPENED)
        self._wanted = {self._message_id(row) for row in range(self._target_first, rows)}
        if rows:
            self._build_above()
        for w in self._spare:
            if not w.isHidden():
                w.hide()
        self.empty_hint.setVisible(rows == 0)
        if not self._opening:
            self._opening = True
            self.viewport().setUpdatesEnabled(False)
        self._grow_step(build=False)

    @property
    def opening(self) -> bool:
        """A chat is opening: the messages that fill the view are being built (the view is not repainted)."""
        return self._opening

    @property
    def building(self) -> bool:
        """Messages are being built, a turn at a time (or widgets no longer needed deleted)."""
        return self._opening or self._grow.isActive()

    def _fills_view(self) -> bool:
        """The messages built fill the view (as their widgets ask to be laid out)."""
        room = self.viewport().height() - self.column.contentsMargins().top()
        for w in reversed(self.widgets):
            room -= w.sizeHint().height() + self.column.spacing()
            if room <= 0:
                return True
        return False

    def show_earlier(self) -> None:
        """Build the previous window of messages above, a few per event-loop turn, the view staying in place."""
        if self.first == 0:
            return
        self._target_first = max(0, min(self._target_first, self.first) - WINDOW)  # each call: one more window
        self._grow_step()

    def show_later(self) -> None:
        """Build the next window of messages below (after scrolling up far enough to let them go)."""
        rows = self.model.rowCount()
        if self._last >= rows:
            return
        self._target_last = min(rows, max(self._target_last, self._last) + WINDOW)
        self._grow_step()

    @property
    def _last(self) -> int:
        """One past the last row built."""
        return self.first + len(self.widgets)

    def _grow_step(self, build: bool = True) -> None:
        """Build a message above (or else below) those shown, keeping what the user looks at in place, and let
        go of those farthest away beyond MAX_LIVE; the timer comes back while there is more to build (or spare
        widgets to delete)."""
        self._restore_view()  # if the last turn's change left the range as it was, no rangeChanged came
        if build and self.first > self._target_first:
            if not self._stick_to_bottom:
                self._hold_view()  # content above changes
            self._build_above()
            while len(self.widgets) > MAX_LIVE:  # let go of the bottom ones
                self._let_go(self.widgets.pop())
            self._target_last = min(self._target_last, self._last)
        elif build and self._last < self._target_last:
            self._build_below()
            if len(self.widgets) > MAX_LIVE:  # let go of the top ones
                self._hold_view()
                while len(self.widgets) > MAX_LIVE:
                    self._let_go(self.widgets.pop(0))
                    self.first += 1
                self._target_first = max(self._target_first, self.first)
            self._stick_to_bottom = False
        for w in self._spare[SPARE:][-TRIM:]:  # the longest unused
            self._spare.remove(w)
            self.column.removeWidget(w)
            w.deleteLater()
        if self._opening and (self.first <= self._target_first or self._fills_view()):
            self._opening = False  # the view is full, or all the chat opens with is built: shown
            self.viewport().setUpdatesEnabled(True)  # (and repainted)
        self._show_earlier_button()
        if (self.first > self._target_first or self._last < self._target_last or len(self._spare) > SPARE
                or self._anchor is not None):
            self._grow.start()

    def _build_above(self) -> MessageWidget:
        """Show the message above those shown (in a spare widget, or a new one)."""
        self.first -= 1
        w = self._take_widget(self.first)
        self.column.insertWidget(self.column.indexOf(self.widgets[0]) if self.widgets else 1, w)
        self.widgets.insert(0, w)
        self._show(w, self.first)
        return w

    def _build_below(self) -> MessageWidget:
        """Show the message below those shown."""
        row = self._last
        w = self._take_widget(row)
        self.column.insertWidget(self.column.indexOf(self.widgets[-1]) + 1 if self.widgets else 1, w)
        self.widgets.append(w)
        self._show(w, row)
        return w

    def _show(self, w: MessageWidget, row: int) -> None:
        w.set_message(self.model.index(row), row == self.model.rowCount() - 1)
        if w.isHidden():
            w.show()

    def _take_widget(self, row: int) -> MessageWidget:
        """A widget for ``row``, out of the layout: the spare one that last showed its message (nothing to
        render again); else one still on screen from the chat before (showing a hidden widget again costs as
        much as rendering it), else the longest unused one, never one whose message is about to be shown
        again; else a new one."""
        msg_id = self._message_id(row)
        w = next((w for w in self._spare if w.message_id == msg_id), None)
        if w is None:
            free = [w for w in self._spare if w.message_id not in self._wanted]
            w = next((w for w in free if not w.isHidden()), free[-1] if free else None)
        if w is None:
            return self._new_widget()
        self._spare.remove(w)
        self.column.removeWidget(w)
        return w

    def _message_id(self, row: int) -> int:
        return int(self.model.index(row).data(MsgRole.Id))

    def _let_go(self, w: MessageWidget) -> None:
        w.hide()
        self._spare.insert(0, w)

    def _hold_view(self) -> None:
        """Keep the first message in view where it is while messages above it come or go."""
        if self._anchor is not None or not self.widgets:
            return
        top = self.verticalScrollBar().value()
        widget = next((w for w in self.widgets if w.y() + w.height() > top), self.widgets[-1])
        self._anchor = (widget, widget.y() - top)

    def _show_earlier_button(self) -> None:
        self.earlier.setText(f"Show {min(WINDOW, self.first)} earlier messages ({self.first} in all)")
        self.earlier.setVisible(self.first > 0)
        later = self.model.rowCount() - self._last
        self.later.setText(f"Show {min(WINDOW, later)} later messages ({later} in all)")
        self.later.setVisible(later > 0)

    def _new_widget(self) -> MessageWidget:
        w = MessageWidget(self.renderer)
        w.editRequested.connect(self.editRequested)
        w.regenerateRequested.connect(self.regenerateRequested)
        w.continueRequested.connect(self.continueRequested)
        w.citationRequested.connect(self.citationRequested)
        w.versionRequested.connect(self.versionRequested)
        return w

    def widget_for_row(self, row: int) -> MessageWidget | None:
        i = row - self.first
        return self.widgets[i] if 0 <= i < len(self.widgets) else None

    def _on_data_changed(self, top: QModelIndex, bottom: QModelIndex, roles: list[int] | None = None) -> None:
        rows = self.model.rowCount()
        for row in range(top.row(), bottom.row() + 1):
            widget = self.widget_for_row(row)
            if widget is None:
                continue
            index = self.model.index(row)
            if roles == [Qt.ItemDataRole.DisplayRole]:
                widget.set_text(str(index.data(Qt.ItemDataRole.DisplayRole) or ""))
            elif roles == [MsgRole.Reasoning]:
                widget.set_thinking(str(index.data(MsgRole.Reasoning) or ""))
            elif roles == [MsgRole.ToolCalls]:
                widget.set_tool_calls(list(index.data(MsgRole.ToolCalls) or []))
            else:
                widget.set_message(index, row == rows - 1)

    def _on_scroll(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._stick_to_bottom = value >= bar.maximum() - 24 and self._last >= self.model.rowCount()
        if self._anchor is not None or bar.maximum() == 0:
            return
        if value == bar.minimum() and self.first > 0:
            self.show_earlier()  # scrolled to the top: the previous window, the view staying in place
        elif value == bar.maximum() and self._last < self.model.rowCount():
            self.show_later()  # scrolled back down to messages let go of: built again

    def _on_range(self, _min: int, maximum: int) -> None:
        if self._anchor is not None:
            self._restore_view()
        elif self._stick_to_bottom:
            self.verticalScrollBar().setValue(maximum)

    def _restore_view(self) -> None:
        """Put the message held by :meth:`_hold_view` back where it was, now that the layout has moved it."""
        if self._anchor is not None:
            widget, offset = self._anchor
            self._anchor = None
            self.verticalScrollBar().setValue(widget.y() - offset)


def _say_copied(button: QPushButton, text: str = "Copied") -> None:
    """The button says what happened, for a moment (a copy is otherwise invisible)."""
    button.setText(f"{text} ✓")
    QTimer.singleShot(1500, button, lambda: button.setText("Copy"))
