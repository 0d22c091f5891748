"""A chat out to a file (Markdown or JSON) and a JSON export back in, with file dialogs that remember
the last folder used (not always the home folder)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QWidget

from app.errors import PaddockError
from app.store.chats import ChatStore, Conversation
from app.ui.common.folders import last_folder, remember_folder
from app.ui.common.messages import MessageBridge


class ChatTransfer:
    """Export and import; what happened (or why not) goes to the message bridge."""

    def __init__(self, parent: QWidget, store: ChatStore, bridge: MessageBridge, settings: QSettings,
                 imported: Callable[[Conversation], None], *, model_name: Callable[[str], str]) -> None:
        self.parent = parent
        self.model_name = model_name  # the model's display name, as the window's menus say it
        self.imported = imported
        self.store = store
        self.bridge = bridge
        self.settings = settings

    def last_folder(self) -> Path:
        return last_folder(self.settings)

    def remember_folder(self, folder: Path) -> None:
        remember_folder(folder, self.settings)

    def export_chat(self, conv_id: int, kind: str) -> None:
        conv = self.store.conversation(conv_id)
        safe = "".join(ch if ch.isalnum() or ch in " -_" else "_" for ch in conv.title).strip() or "chat"
        suffix = ".md" if kind == "md" else ".json"
        path, _ = QFileDialog.getSaveFileName(
            self.parent, "Export chat", str(self.last_folder() / f"{safe}{suffix}"),
            "Markdown (*.md)" if kind == "md" else "JSON (*.json)",
        )
        if path:
            self.remember_folder(Path(path).parent)
            self.write_export(conv_id, kind, Path(path))

    def write_export(self, conv_id: int, kind: str, path: Path) -> None:
        model = self.store.conversation(conv_id).model
        name = self.model_name(model) if model else None
        try:
            if kind == "md":
                path.write_text(self.store.export_markdown(conv_id, name), encoding="utf-8")
            else:
                data = self.store.export_json(conv_id, name)
                path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        except OSError as exc:
            self.bridge.error(f"Could not write {path}: {exc.strerror or exc}")
            return
        self.bridge.status(f"Exported to {path}")

    def import_chat(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.parent, "Import chat", str(self.last_folder()), "JSON (*.json)")
        if path:
            self.remember_folder(Path(path).parent)
            self.read_import(Path(path))

    def read_import(self, path: Path) -> None:
        """Import a JSON export; the new chat is handed to ``imported`` (the window shows it)."""
        try:
            conv = self.store.import_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            self.bridge.error(f"Could not read {path.name}: {exc}")
            return
        except PaddockError as exc:
            self.bridge.error(str(exc))
            return
        self.imported(conv)
        self.bridge.status(f"Imported “{conv.title}”")
