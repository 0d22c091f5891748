"""Start the desktop app."""

from __future__ import annotations

import gc
import logging
import logging.handlers
import sys
from typing import TYPE_CHECKING

from app import __version__, paths

if TYPE_CHECKING:
    from app.ui.autopilot import DrivePlan


def _setup_logging() -> None:
    handler = logging.handlers.RotatingFileHandler(
        paths.log_dir() / "paddock.log", maxBytes=2_000_000, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("paddock.llama").setLevel(logging.WARNING)


def run_app(argv: list[str] | None = None, drive: DrivePlan | None = None) -> int:
    """The desktop app; ``drive`` lets the autopilot use it (tests, self-test, soak benchmark).

    Returns the exit code: 1, with one line on stderr, when Qt cannot open a window here.
    """
    from app.ui.platform_check import display_problem

    argv = argv or sys.argv
    problem = display_problem(argv)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    from PySide6.QtWidgets import QApplication, QMessageBox

    from app.engine.client import Engine
    from app.errors import PaddockError
    from app.store.chats import ChatStore
    from app.ui.chat.controller import ChatController
    from app.ui.common.theme import apply_theme, system_is_dark
    from app.ui.window import MainWindow

    _setup_logging()
    app = QApplication.instance() or QApplication(argv)
    assert isinstance(app, QApplication)
    app.setApplicationName("Paddock")
    app.setApplicationVersion(__version__)
    app.setOrganizationName("Paddock")
    app.setDesktopFileName("paddock")  # matches the .desktop entry on Linux (taskbar icon and name)
    icon = paths.resources_dir() / "paddock.svg"
    if icon.exists():
        from PySide6.QtGui import QIcon

        app.setWindowIcon(QIcon(str(icon)))
    dark = system_is_dark()
    apply_theme(app, dark)
    try:
        store = ChatStore(paths.database_path())
    except PaddockError as exc:
        QMessageBox.critical(None, "Paddock cannot open your chats", str(exc))
        return 1
    controller = ChatController(store, Engine(yield_to_window=True))
    window = MainWindow(controller, dark=dark)
    window.show()
    pilot = None
    if drive is not None:
        from app.ui.autopilot import Autopilot

        pilot = Autopilot(window, drive)
        pilot.start()
    # What startup made (modules, classes, the window's Python side: ~150,000 objects) lives as long as the app.
    # Left to the collector, every full collection walks it all again, 50 ms or more on the GUI thread every
    # few minutes; frozen, a full collection walks only what came later (CPython's gc.freeze() docs). Objects
    # freed by reference counting still are; only a cycle among these would now stay.
    gc.freeze()
    code = app.exec()
    store.close()
    if pilot is not None:
        pilot.write_report()
    return int(code)
