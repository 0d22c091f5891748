"""The first-run page: what a GGUF model is, and where to get one."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app import paths


class WelcomePage(QWidget):
    """Shown while there is no chat and no model.

    Signals:
        openFileRequested(): *Open a GGUF file…*.
        modelsRequested(): *Browse models*.
    """

    openFileRequested = Signal()
    modelsRequested = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("welcome")
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        box = QVBoxLayout()
        box.setSpacing(14)
        title = QLabel("<h1>Welcome to Paddock</h1>")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = QLabel(
            "Chat with open-weight language models privately: everything runs on this computer and "
            "nothing you type leaves it.<br><br>"
            "To start, you need a model file in <b>GGUF</b> format (for example "
            "<i>Llama-3.2-3B-Instruct-Q4_K_M.gguf</i>, about 2 GB, fine on most laptops).<br>"
            "Open one you already have, or put GGUF files in the models folder:<br>"
            f"<code>{paths.models_dir()}</code>"
        )
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text.setMinimumWidth(560)
        self.text.setMaximumWidth(640)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        open_button = QPushButton("Open a GGUF file…")
        open_button.setObjectName("primaryButton")
        open_button.clicked.connect(self.openFileRequested.emit)
        models_button = QPushButton("Browse models")
        models_button.clicked.connect(self.modelsRequested.emit)
        buttons.addWidget(open_button)
        buttons.addWidget(models_button)
        buttons.addStretch(1)
        box.addWidget(title)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.text)
        row.addStretch(1)
        box.addLayout(row)
        box.addLayout(buttons)
        outer.addLayout(box)
        outer.addStretch(2)
