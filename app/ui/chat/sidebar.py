"""The sidebar: New chat, search, the conversation list, and the way to Models, Settings and About."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPoint, Qt, Signal
from PySide6.QtWidgets import QFrame, QLabel, QLineEdit, QListView, QMenu, QPushButton, QVBoxLayout

from app.store.chats import ChatStore
from app.ui.chat.itemmodels import ConversationListModel, ConvRole


class Sidebar(QFrame):
    """Conversations by last use, filtered by the search box; right-click for rename, export, delete.

    Signals:
        conversationSelected(int): the user picked a conversation.
        newChatRequested(): *New chat*.
        modelsRequested(), settingsRequested(), aboutRequested(): the buttons below the list.
        renameRequested(int), deleteRequested(int): from a conversation's context menu.
        exportRequested(int, str): a conversation, as "md" or "json".
    """

    conversationSelected = Signal(int)
    newChatRequested = Signal()
    modelsRequested = Signal()
    settingsRequested = Signal()
    aboutRequested = Signal()
    renameRequested = Signal(int)
    deleteRequested = Signal(int)
    exportRequested = Signal(int, str)

    def __init__(self, store: ChatStore) -> None:
        super().__init__()
        self.setObjectName("sidebar")
        self.conversations = ConversationListModel(store, self)
        side = QVBoxLayout(self)
        side.setContentsMargins(10, 12, 10, 10)
        side.addWidget(QLabel("<span style='font-size:17px; font-weight:600'>Paddock</span>"))
        self.new_button = QPushButton("+  New chat")
        self.new_button.setObjectName("primaryButton")
        self.new_button.clicked.connect(self.newChatRequested.emit)
        side.addWidget(self.new_button)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search chats")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._on_search)
        side.addWidget(self.search)
        self.conv_list = QListView()
        self.conv_list.setObjectName("conversationList")
        self.conv_list.setModel(self.conversations)
        self.conv_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.conv_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.conv_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.conv_list.customContextMenuRequested.connect(self._conv_menu)
        self.conv_list.selectionModel().currentChanged.connect(self._on_current_changed)
        side.addWidget(self.conv_list, 1)
        for text, signal in (("Models", self.modelsRequested), ("Settings", self.settingsRequested),
                             ("About Paddock", self.aboutRequested)):
            button = QPushButton(text)
            button.clicked.connect(signal.emit)
            side.addWidget(button)
        self.current: int | None = None

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

    def _on_current_changed(self, index: QModelIndex, _previous: QModelIndex) -> None:
        if index.isValid():
            self.conversationSelected.emit(int(index.data(ConvRole.Id)))

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
