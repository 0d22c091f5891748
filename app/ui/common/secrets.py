"""Asking the user what to do with a secret that the system keyring cannot keep."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from app.models.auth import keyring_problem

KEEP = "Keep until I quit"


def keep_for_session(parent: QWidget, what: str, otherwise: str) -> bool:
    """Ask whether ``what`` may live in memory until Paddock quits (True) or must be dropped (False).

    Secrets go only to the system keyring; with none (or a locked one) the user chooses, as
    RELIABILITY asks, instead of being told afterwards in a log.
    """
    problem = keyring_problem() or "the system keyring did not keep it"
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("Keep it until you quit?")
    box.setText(f"Paddock cannot save {what}: {problem}.")
    box.setInformativeText(
        f"Paddock can keep it in memory until you quit, and ask again next time; otherwise {otherwise}. "
        "It is never written to a file. (Installing a keyring — GNOME Keyring, KWallet — lets Paddock save it.)"
    )
    keep = box.addButton(KEEP, QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Don't keep it", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(keep)
    box.exec()
    return box.clickedButton() is keep
