"""Every path Paddock writes to comes from here.

``PADDOCK_HOME`` overrides the platform folders (tests and benchmarks use it to
stay isolated); otherwise platformdirs gives the standard per-user locations.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "Paddock"


def _home_override() -> Path | None:
    value = os.environ.get("PADDOCK_HOME")
    return Path(value).expanduser() if value else None


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """User data: the chat database and the model library index."""
    home = _home_override()
    return _ensure(home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)))


def models_dir() -> Path:
    """Downloaded, imported and quantized GGUF files."""
    return _ensure(data_dir() / "models")


def config_dir() -> Path:
    home = _home_override()
    return _ensure(home / "config" if home else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)))


def cache_dir() -> Path:
    home = _home_override()
    return _ensure(home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)))


def log_dir() -> Path:
    home = _home_override()
    return _ensure(home / "logs" if home else Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)))


def database_path() -> Path:
    return data_dir() / "paddock.sqlite3"


def library_path() -> Path:
    """The model library: registered models, license acceptances, the download queue."""
    return data_dir() / "library.sqlite3"


def docs_path() -> Path:
    """The document index: collections, extracted text, chunks, FTS5 and embedding vectors."""
    return data_dir() / "documents.sqlite3"


def resources_dir() -> Path:
    """The read-only ``resources/`` folder (icon, notices): next to ``app/``, or inside a PyInstaller bundle."""
    import sys

    bundle = getattr(sys, "_MEIPASS", None)
    return Path(bundle) / "resources" if bundle else Path(__file__).resolve().parents[1] / "resources"
