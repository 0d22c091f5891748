"""File dialogs that open in the last folder the user went to in any of them (Attach, Open GGUF, Import,
Export...), not always in the home folder.

The folder is kept in the window's settings file (``ui.ini`` in the config folder), so it is the same in
every dialog and survives a restart.  Each dialog asks Qt's own dialog; only the starting folder is ours.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QWidget

from app import paths

KEY = "last_folder"


def ui_settings() -> QSettings:
    """The window's settings file (Qt shares one in-memory copy between the QSettings on a file)."""
    return QSettings(str(paths.config_dir() / "ui.ini"), QSettings.Format.IniFormat)


def last_folder(settings: QSettings | None = None) -> Path:
    folder = Path(str((settings or ui_settings()).value(KEY, str(Path.home()))))
    return folder if folder.is_dir() else Path.home()


def remember_folder(chosen: Path, settings: QSettings | None = None) -> None:
    """Remember the folder of what was chosen (a file's folder, or the folder itself)."""
    folder = chosen if chosen.is_dir() else chosen.parent
    (settings or ui_settings()).setValue(KEY, str(folder))


def open_file(parent: QWidget, title: str, filters: str) -> Path | None:
    """One file, starting in the last folder used; None when the user cancels."""
    path, _ = QFileDialog.getOpenFileName(parent, title, str(last_folder()), filters)
    if not path:
        return None
    remember_folder(Path(path))
    return Path(path)


def open_files(parent: QWidget, title: str, filters: str) -> list[Path]:
    files, _ = QFileDialog.getOpenFileNames(parent, title, str(last_folder()), filters)
    if files:
        remember_folder(Path(files[0]))
    return [Path(f) for f in files]


def open_folder(parent: QWidget, title: str) -> Path | None:
    folder = QFileDialog.getExistingDirectory(parent, title, str(last_folder()))
    if not folder:
        return None
    remember_folder(Path(folder))
    return Path(folder)
