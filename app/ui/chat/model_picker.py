"""The model menu above a chat, and the list of models a chat can use."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox

from app.engine.gguf_file import GGUFInfo, read_gguf
from app.errors import PaddockError
from app.models.library import Library
from app.store.chats import ChatStore
from app.ui.settings.servers import ServerHub

OPEN_FILE = "__open__"
ADD_SERVER = "__server__"
RECENT_LIMIT = 20


class ModelChoices:
    """Models a chat can use: files opened recently, then the library's, each with its GGUF header (cached)."""

    def __init__(self, store: ChatStore, library: Library, servers: ServerHub) -> None:
        self.store = store
        self.library = library
        self.servers = servers
        self._info: dict[str, GGUFInfo | None] = {}

    def info(self, path: str) -> GGUFInfo | None:
        if path not in self._info:
            try:
                self._info[path] = read_gguf(path)
            except PaddockError:
                self._info[path] = None
        return self._info[path]

    def known(self) -> list[tuple[str, GGUFInfo | None]]:
        recent = [p for p in self.store.get_setting("recent_models", []) if Path(p).exists()]
        library = [str(m.path) for m in self.library.models() if m.path.exists()]
        return [(p, self.info(p)) for p in dict.fromkeys(recent + library)]

    def remember(self, path: str) -> None:
        recent = [p for p in self.store.get_setting("recent_models", []) if p != path]
        self.store.set_setting("recent_models", [path, *recent][:RECENT_LIMIT])

    def name(self, path: str) -> str:
        info = self.info(path)
        return info.name if info else Path(path).name


class ModelPicker(QComboBox):
    """The chat's model: known GGUF files, servers' models, then *Open GGUF file…* and *Add a server…*.

    Signals:
        chosen(str): a model path or a server model reference was picked.
        openFileRequested(): *Open GGUF file…* was picked.
        addServerRequested(): *Add a server…* was picked.
    """

    chosen = Signal(str)
    openFileRequested = Signal()
    addServerRequested = Signal()

    def __init__(self, choices: ModelChoices) -> None:
        super().__init__()
        self.choices = choices
        self.setMinimumWidth(260)
        self.activated.connect(self._on_activated)

    def fill(self, selected: str | None) -> None:
        self.blockSignals(True)
        self.clear()
        if selected is None:
            self.addItem("Choose a model…", None)
        for path, info in self.choices.known():
            self.addItem(f"{info.name} · {info.quantization}" if info else Path(path).name, path)
            self.setItemData(self.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
        if selected is not None and self.findData(selected) < 0:
            self.addItem(Path(selected).name + " (missing)", selected)
        for label, ref in self.choices.servers.cached_models():
            self.addItem(label, ref)
        self.addItem("Open GGUF file…", OPEN_FILE)
        self.addItem("Add a server…", ADD_SERVER)
        self.setCurrentIndex(max(0, self.findData(selected)) if selected else 0)
        self.blockSignals(False)

    def _on_activated(self, index: int) -> None:
        data = self.itemData(index)
        if data == OPEN_FILE:
            self.openFileRequested.emit()
        elif data == ADD_SERVER:
            self.addServerRequested.emit()
        elif data:
            self.chosen.emit(str(data))
