"""The model menu above a chat, and the list of models a chat can use."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QComboBox, QSizePolicy

from app.engine import hardware, placement
from app.engine.gguf_file import GGUFInfo, read_gguf
from app.engine.hardware import Hardware
from app.engine.remote import parse_ref
from app.errors import PaddockError
from app.models.library import Library
from app.models.names import file_display_name
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
        self._plans: dict[str, str] = {}
        self._hardware: Hardware | None = None

    def info(self, path: str) -> GGUFInfo | None:
        if path not in self._info:
            try:
                self._info[path] = read_gguf(path)
            except PaddockError:
                self._info[path] = None
        return self._info[path]

    def plan(self, path: str) -> str:
        """The placement planner's line for a model before it is loaded ("" when unknown); worked out once per
        model, from its header and the hardware, both read once (the menu is filled at every chat switch)."""
        if path not in self._plans:
            info = self.info(path)
            if info is None or not info.tensors or not info.block_count:
                return ""
            if self._hardware is None:
                self._hardware = hardware.detect()
            self._plans[path] = placement.plan(placement.ModelTable.from_info(info), self._hardware).explain()
        return self._plans[path]

    def known(self) -> list[tuple[str, GGUFInfo | None]]:
        recent = [p for p in self.store.get_setting("recent_models", []) if Path(p).exists()]
        library = [str(m.path) for m in self.library.models() if m.path.exists()]
        return [(p, self.info(p)) for p in dict.fromkeys(recent + library)]

    def remember(self, path: str) -> None:
        recent = [p for p in self.store.get_setting("recent_models", []) if p != path]
        self.store.set_setting("recent_models", [path, *recent][:RECENT_LIMIT])

    def adapters_for(self, path: str) -> list[tuple[str, str]]:
        """(name, path) of the library's LoRA adapters whose base model is the file at ``path``."""
        base = self.library.registry.model_by_path(Path(path))
        if base is None:
            return []
        return [(a.name, str(a.path)) for a in self.library.adapters_for(base) if a.path.exists()]

    def sees(self, path: str) -> bool:
        """The model has an image projector (paired in the library, or beside it)."""
        return self.library.projector_for(Path(path)) is not None

    def name(self, path: str) -> str:
        """The model's one display name (:mod:`app.models.names`), as My models, the CLI and exports say it."""
        if parse_ref(path) is not None:
            return self.servers.remotes.label(path)
        info = self.info(path)  # read once: the menu names each model at every fill
        return file_display_name(Path(path), self.library.registry, info.quantization if info else None)


class ModelPicker(QComboBox):
    """The chat's model: known GGUF files, remote models, then *Open GGUF file…* and *Add remote models…*.

    Signals:
        chosen(str): a model path or a server model reference was picked.
        openFileRequested(): *Open GGUF file…* was picked.
        addServerRequested(): *Add remote models…* was picked.
    """

    chosen = Signal(str)
    openFileRequested = Signal()
    addServerRequested = Signal()

    def __init__(self, choices: ModelChoices) -> None:
        super().__init__()
        self.choices = choices
        # As wide as the header allows, never wider: a long model name is elided, not the window widened.
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(10)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMaximumWidth(420)
        self.view().setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.activated.connect(self._on_activated)
        self.currentIndexChanged.connect(lambda _index: self.updateGeometry())

    def sizeHint(self) -> QSize:
        """Room for the chosen model's whole name when the header has it (the minimum stays small)."""
        hint = super().sizeHint()
        text = self.fontMetrics().horizontalAdvance(self.currentText()) + 48
        return QSize(min(max(hint.width(), text), self.maximumWidth()), hint.height())

    def fill(self, selected: str | None) -> None:
        self.blockSignals(True)
        self.clear()
        if selected is None:
            self.addItem("Choose a model…", None)
        for path, _info in self.choices.known():
            sees = self.choices.sees(path)
            self.addItem(self.choices.name(path) + (" · sees images" if sees else ""), path)
            plan = self.choices.plan(path)
            tip = path + (f"\n{plan}" if plan else "")
            tip += "\nCan see images: drop or paste pictures into the message box." if sees else ""
            self.setItemData(self.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        if selected is not None and self.findData(selected) < 0:
            self.addItem(self.choices.name(selected) + " (missing)", selected)
        for label, ref in self.choices.servers.cached_models():
            self.addItem(label, ref)
        self.addItem("Open GGUF file…", OPEN_FILE)
        self.addItem("Add remote models…", ADD_SERVER)
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
