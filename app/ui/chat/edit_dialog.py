"""Editing one of the user's messages before it is sent again."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QVBoxLayout, QWidget


class EditMessageDialog(QDialog):
    """Edit one of the user's messages; the answers after it will be replaced."""

    def __init__(self, parent: QWidget, text: str) -> None:
        super().__init__(parent)
        self.setWindowTitle("Edit message")
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("The answers after this message will be replaced."))
        self.editor = QPlainTextEdit(text)
        layout.addWidget(self.editor)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Send")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(560, 300)

    def text(self) -> str:
        return self.editor.toPlainText()
