"""Models → *From other apps…*: the GGUF models LM Studio, Ollama and the Hugging Face cache already have,
offered to add by reference (no copy)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from app.models.download import human_size
from app.models.other_apps import FoundModel


class OtherAppsDialog(QDialog):
    """A checklist of the models found; the ones already in the library are shown, not offered."""

    def __init__(self, found: Sequence[FoundModel], known: set[Path], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models from other apps")
        self.found = list(found)
        layout = QVBoxLayout(self)
        intro = QLabel(
            "These GGUF models are already on this computer. Added ones stay where the other app keeps them "
            "(no copy); if that app deletes or updates one, Paddock shows it as missing."
            if self.found else
            "No GGUF models were found in LM Studio's models folder, Ollama's store or the Hugging Face cache."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.list = QListWidget()
        for model in self.found:
            added = model.path in known
            kind = "LoRA adapter · " if model.adapter else ""
            item = QListWidgetItem(f"{model.app} · {kind}{model.name} · {human_size(model.size)}"
                                   + ("  (already in the library)" if added else ""))
            item.setToolTip(f"{model.location}\n→ {model.path.resolve()}")
            flags = item.flags() | Qt.ItemFlag.ItemIsUserCheckable
            item.setFlags(flags if not added else flags & ~Qt.ItemFlag.ItemIsEnabled)
            item.setCheckState(Qt.CheckState.Unchecked if added else Qt.CheckState.Checked)
            self.list.addItem(item)
        layout.addWidget(self.list, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.add_button = buttons.addButton("Add to library", QDialogButtonBox.ButtonRole.AcceptRole)
        self.add_button.setEnabled(any(m.path not in known for m in self.found))
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(720, 380)

    def chosen(self) -> list[FoundModel]:
        return [m for i, m in enumerate(self.found)
                if self.list.item(i).checkState() == Qt.CheckState.Checked
                and self.list.item(i).flags() & Qt.ItemFlag.ItemIsEnabled]
