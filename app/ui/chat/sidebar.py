"""The sidebar: New chat, search, the conversation list, and the way to Models, Settings and About."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from PySide6.QtCore import QEvent, QModelIndex, QObject, QPersistentModelIndex, QPoint, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QKeyEvent, QMouseEvent, QPainter, QPalette, QTextDocument
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
)

from app.store.chats import ChatStore
from app.ui.chat.itemmodels import ConversationListModel, ConvRole

MATCH_COLOUR = "#fff3a3"  # as the Sources window marks a passage


class Sidebar(QFrame):
    """Conversations by last use, filtered by the search box; right-click for rename, export, delete.

    Signals:
        conversationSelected(int): the user picked a conversation.
        conversationClicked(int): a conversation was clicked (also the one already selected).
        newChatRequested(): *New chat*.
        modelsRequested(), settingsRequested(), aboutRequested(): the buttons below the list.
        renameRequested(int), deleteRequested(int): from a conversation's context menu.
        exportRequested(int, str): a conversation, as "md" or "json".
    """

    conversationSelected = Signal(int)
    conversationClicked = Signal(int)
    newChatRequested = Signal()
    modelsRequested = Signal()
    settingsRequested = Signal()
    aboutRequested = Signal()
    renameRequested = Signal(int)
    deleteRequested = Signal(int)
    exportRequested = Signal(int, str)

    def __init__(self, store: ChatStore, model_name: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self.setObjectName("sidebar")
        self.conversations = ConversationListModel(store, self, model_name)
        side = QVBoxLayout(self)
        side.setContentsMargins(10, 12, 10, 10)
        side.addWidget(QLabel("<span style='font-size:17px; font-weight:600'>Paddock</span>"))
        self.new_button = QPushButton("+  New chat")
        self.new_button.setObjectName("primaryButton")
        self.new_button.clicked.connect(self.newChatRequested.emit)
        side.addWidget(self.new_button)
        self.search = _SearchBox()
        self.search.setPlaceholderText("Search chats (Esc clears)")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._on_search)
        side.addWidget(self.search)
        self.conv_list = QListView()
        self.conv_list.setObjectName("conversationList")
        self.conv_list.setModel(self.conversations)
        self.marks = SearchMarks(self.conversations, self.conv_list)  # the searched words, highlighted
        self.conv_list.setItemDelegate(self.marks)
        self.conv_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.conv_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.conv_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.conv_list.customContextMenuRequested.connect(self._conv_menu)
        self.conv_list.viewport().installEventFilter(self)  # a right-click opens the menu, not the chat
        self.conv_list.selectionModel().currentChanged.connect(self._on_current_changed)
        side.addWidget(self.conv_list, 1)
        self.no_results = QLabel("No chat matches this search.")
        self.no_results.setObjectName("hint")
        self.no_results.setWordWrap(True)
        self.no_results.hide()
        side.addWidget(self.no_results)
        self.conv_list.clicked.connect(self._on_clicked)
        buttons: list[QPushButton] = []
        for text, signal in (("Models", self.modelsRequested), ("App settings", self.settingsRequested),
                             ("About Paddock", self.aboutRequested)):
            button = QPushButton(text)
            button.clicked.connect(signal.emit)
            side.addWidget(button)
            buttons.append(button)
        self.models_button = buttons[0]
        self.models_button.setCheckable(True)  # pressed while the Models page is shown; clicked again: back
        self.models_button.setToolTip("Find, download and manage models (click again, or Esc, to go back)")
        self.current: int | None = None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """A right press does not select (and open) the chat: the menu acts on it where it is."""
        if (watched is self.conv_list.viewport() and event.type() == QEvent.Type.MouseButtonPress
                and isinstance(event, QMouseEvent) and event.button() == Qt.MouseButton.RightButton):
            return True
        return super().eventFilter(watched, event)

    def set_models_shown(self, shown: bool) -> None:
        self.models_button.setChecked(shown)

    def refresh(self, current: int | None) -> str | None:
        """Reload the list, keeping ``current`` selected; returns its title, if it is listed."""
        self.current = current
        self.conversations.refresh()
        return self._reselect()

    def _reselect(self) -> str | None:
        """Select ``current`` again after the list was reloaded; its title, if it is listed."""
        current = self.current
        if current is None:
            return None
        row = self.conversations.row_of(current)
        if row < 0:
            return None
        selection = self.conv_list.selectionModel()
        selection.blockSignals(True)
        self.conv_list.setCurrentIndex(self.conversations.index(row))
        selection.blockSignals(False)
        conv = self.conversations.conversation_at(row)
        return conv.title if conv is not None else None

    def first_conversation(self) -> int | None:
        conv = self.conversations.conversation_at(0)
        return conv.id if conv is not None else None

    def clear_search(self) -> None:
        self.search.clear()

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def _on_search(self, text: str) -> None:
        self.conversations.set_search(text)  # reloads the list
        self._reselect()
        self.no_results.setVisible(bool(text.strip()) and self.conversations.rowCount() == 0)

    def _on_current_changed(self, index: QModelIndex, _previous: QModelIndex) -> None:
        if index.isValid():
            self.conversationSelected.emit(int(index.data(ConvRole.Id)))

    def _on_clicked(self, index: QModelIndex) -> None:
        if index.isValid():
            self.conversationClicked.emit(int(index.data(ConvRole.Id)))

    def _conv_menu(self, pos: QPoint) -> None:
        index = self.conv_list.indexAt(pos)
        if not index.isValid():
            return
        conv_id = int(index.data(ConvRole.Id))
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self.renameRequested.emit(conv_id))
        menu.addAction("Export as Markdown…", lambda: self.exportRequested.emit(conv_id, "md"))
        menu.addAction("Export as JSON…", lambda: self.exportRequested.emit(conv_id, "json"))
        menu.addSeparator()
        menu.addAction("Delete…", lambda: self.deleteRequested.emit(conv_id))
        menu.exec(self.conv_list.viewport().mapToGlobal(pos))


def mark_words(text: str, words: list[str]) -> str:
    """``text`` as HTML with each searched word (a prefix, any case, as the search matches) highlighted."""
    if not words:
        return html.escape(text)
    pattern = re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)), re.IGNORECASE)
    out, last = [], 0
    for m in pattern.finditer(text):
        out += [html.escape(text[last:m.start()]),
                f'<span style="background:{MATCH_COLOUR}; color:#1f2328">{html.escape(m.group())}</span>']
        last = m.end()
    return "".join([*out, html.escape(text[last:])])


class SearchMarks(QStyledItemDelegate):
    """While the chats are searched: each title with the searched words highlighted and, for a chat listed
    for its messages, a line of the message that matched (highlighted too), so a user sees why it is there.
    Without a search the list is drawn as Qt draws it."""

    def __init__(self, model: ConversationListModel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model = model

    def words(self) -> list[str]:
        return self.model.search.split()

    def row_html(self, index: QModelIndex | QPersistentModelIndex, width: int, option: QStyleOptionViewItem) -> str:
        """What a row shows while searching (titles and snippets elided to ``width`` first)."""
        metrics = option.fontMetrics
        title = metrics.elidedText(str(index.data() or ""), Qt.TextElideMode.ElideRight, width)
        snippet = str(index.data(ConvRole.Snippet) or "")
        text = mark_words(title, self.words())
        if snippet:
            snippet = metrics.elidedText(snippet, Qt.TextElideMode.ElideRight, width)
            text += f'<br><span style="color:#6b7280">{mark_words(snippet, self.words())}</span>'
        return text

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        if not self.words():
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""  # the background and the selection as the style draws them; the text is ours
        style = opt.widget.style() if opt.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        area = opt.rect.adjusted(8, 3, -8, -3)
        doc = QTextDocument()
        doc.setDocumentMargin(2)
        doc.setDefaultFont(opt.font)
        colour = opt.palette.color(QPalette.ColorRole.Text).name()  # the theme's, light or dark
        doc.setHtml(f'<div style="color:{colour}">{self.row_html(index, area.width() - 6, opt)}</div>')
        painter.save()
        painter.translate(area.topLeft())
        painter.setClipRect(QRectF(0, 0, area.width(), area.height()))
        doc.drawContents(painter, QRectF(0, 0, area.width(), area.height()))
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        hint = super().sizeHint(option, index)
        if self.words() and index.data(ConvRole.Snippet):
            hint.setHeight(hint.height() + option.fontMetrics.height() + 2)  # the snippet's line
        return hint


class _SearchBox(QLineEdit):
    """The chat search: Esc empties it (before the window's Esc, which stops an answer, sees the key)."""

    def event(self, event: QEvent) -> bool:
        if (event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent)
                and event.key() == Qt.Key.Key_Escape and self.text()):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape and self.text():
            self.clear()
            return
        super().keyPressEvent(event)
