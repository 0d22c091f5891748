"""Make the README's window screenshots again, from the real window on the real test models.

    python scripts/screenshots.py [--out docs] [--check /tmp/shots]

Runs on the display it is given (Xvfb with a window manager looks like a desktop:
``Xvfb :99 & DISPLAY=:99 openbox &``) or offscreen.  The data lives in a temporary
PADDOCK_HOME.  ``--check`` also writes the chat page at 800 × 600 and 1280 × 800 with
every panel open, to look at by eye.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _wait(app: object, until: object, timeout: float = 120.0) -> None:
    from PySide6.QtWidgets import QApplication

    assert isinstance(app, QApplication)
    end = time.monotonic() + timeout
    while not until():  # type: ignore[operator]
        if time.monotonic() > end:
            raise TimeoutError("the window did not get there in time")
        app.processEvents()
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--check", type=Path, default=None, help="also write 800x600 and 1280x800 shots here")
    args = parser.parse_args()
    os.environ["PADDOCK_HOME"] = tempfile.mkdtemp(prefix="paddock-shots-")

    from PySide6.QtWidgets import QApplication

    from app import paths
    from app.engine.client import Engine
    from app.engine.types import LoadSettings, SamplingParams
    from app.store.chats import ChatStore
    from app.ui.chat.controller import ChatController
    from app.ui.common.theme import apply_theme
    from app.ui.window import MainWindow
    from scripts.test_models import smollm2

    app = QApplication.instance() or QApplication(sys.argv)
    assert isinstance(app, QApplication)
    apply_theme(app, dark=False)
    model = smollm2()
    store = ChatStore(paths.database_path())
    store.set_setting("recent_models", [str(model)])
    store.set_setting("default_sampling", SamplingParams(temperature=0.0, max_tokens=120).to_dict())
    window = MainWindow(ChatController(store, Engine(), LoadSettings(n_ctx=2048)))
    window.resize(1200, 780)
    window.show()
    try:
        rules = Path(os.environ["PADDOCK_HOME"]) / "library rules.md"
        rules.write_text(
            "# Library rules\n\nBe quiet in the reading room. Food stays in the café.\n\n"
            "## Regular hours\n\nThe library opens at nine and closes at six on weekdays, "
            "and at noon on Saturdays.\n\n## Holidays\n\nThe library is closed on public holidays.\n\n"
            "## Appointments\n\nBook an appointment with a librarian at the front desk.\n", encoding="utf-8")
        page = window.chat_page
        page.attach_paths([rules])
        _wait(app, lambda: "1 ready" in page.docs_panel.summary.text())
        finished: list[object] = []
        window.controller.streamFinished.connect(lambda *a: finished.append(a))
        page.composer.setPlainText("When does the library open on weekdays?")
        page.send_button.click()
        _wait(app, lambda: bool(finished), timeout=300)
        _wait(app, lambda: not window.controller.busy)
        args.out.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(args.out / "screenshot-chat.png"))
        answer = [m for m in store.messages(window.current_conv or 0) if m.role == "assistant"][-1]
        dialog = page.open_citation(answer.id, 1)
        if dialog is not None:
            dialog.resize(900, 560)
            dialog.list.setCurrentRow(0)
            _wait(app, dialog.isVisible)
            app.processEvents()
            dialog.grab().save(str(args.out / "screenshot-passage.png"))
            dialog.close()
        _documents_shot(app, window, args.out)
        _tools_shot(app, window, args.out)
        if args.check is not None:
            args.check.mkdir(parents=True, exist_ok=True)
            page.settings_button.setChecked(True)
            for width, height in ((800, 600), (1280, 800)):
                window.resize(width, height)
                settle = time.monotonic() + 0.5  # layouts and message heights follow the new width
                _wait(app, lambda settle=settle: time.monotonic() > settle)
                window.grab().save(str(args.check / f"chat-{width}x{height}.png"))
                window.show_models()
                app.processEvents()
                window.grab().save(str(args.check / f"models-{width}x{height}.png"))
                window.back_to_chat()
    finally:
        window.close()
        store.close()
    return 0


def _ask(app: object, window: object, question: str) -> None:
    """Send ``question`` in the chat on screen and wait for the whole answer."""
    from app.ui.window import MainWindow

    assert isinstance(window, MainWindow)
    finished: list[object] = []
    window.controller.streamFinished.connect(lambda *a: finished.append(a))
    window.chat_page.composer.setPlainText(question)
    window.chat_page.send_button.click()
    _wait(app, lambda: bool(finished), timeout=300)
    _wait(app, lambda: not window.controller.busy)


def _documents_shot(app: object, window: object, out: Path) -> None:
    """A chat with a few documents of different kinds, and an answer from their passages."""
    from app.ui.window import MainWindow

    assert isinstance(window, MainWindow)
    folder = Path(os.environ["PADDOCK_HOME"]) / "kitchen"
    folder.mkdir()
    (folder / "bread.md").write_text(
        "# Bread\n\n## Rye\n\nRye bread bakes at 230 degrees for the first ten minutes, then at 200.\n\n"
        "## Wheat\n\nWheat bread bakes at 220 degrees for forty minutes.\n", encoding="utf-8")
    (folder / "opening hours.html").write_text(
        "<html><body><h1>Bakery hours</h1><p>The bakery opens at seven and closes at two.</p>"
        "<p>On Sundays it is closed.</p></body></html>", encoding="utf-8")
    (folder / "orders.csv").write_text("item,price\nrye loaf,4.20\nwheat loaf,3.80\n", encoding="utf-8")
    window.new_chat()
    page = window.chat_page
    page.attach_paths(sorted(folder.iterdir()))
    _wait(app, lambda: "3 ready" in page.docs_panel.summary.text())
    _ask(app, window, "What temperature does rye bread bake at?")
    window.grab().save(str(out / "screenshot-documents.png"))


def _tools_shot(app: object, window: object, out: Path) -> None:
    """A tool (the tests' MCP server) switched on in a chat, and a call waiting for the user's approval."""
    from app.ui.tools.widgets import ToolsDialog
    from app.ui.window import MainWindow

    assert isinstance(window, MainWindow)
    dialog = ToolsDialog(window, window.tools)  # File → Tools (MCP)…, as a user fills it
    dialog.name.setText("Calculator")
    dialog.command.setText(f'"{sys.executable}" "{ROOT / "tests" / "tools" / "mcp_server.py"}"')
    dialog.add_button.click()
    dialog.accept()
    window.new_chat()
    page = window.chat_page
    assert page.tools_panel is not None
    assert window.current_conv is not None
    window.controller.rename(window.current_conv, "Sums")
    window.refresh_conversations()
    page.show_conversation(window.current_conv)
    (server_id, box), = page.tools_panel.boxes.items()
    box.setChecked(True)  # starts the tool in the background
    _wait(app, lambda: box.isEnabled() and window.tools.connection(server_id).alive)
    page.tools_panel.require.setChecked(True)
    page.composer.setPlainText("What is 2+3? Use the add tool.")
    page.send_button.click()
    _wait(app, lambda: not page.approval.isHidden(), timeout=300)
    settle = time.monotonic() + 0.3
    _wait(app, lambda: time.monotonic() > settle)
    window.grab().save(str(out / "screenshot-tools.png"))
    finished: list[object] = []
    window.controller.streamFinished.connect(lambda *a: finished.append(a))
    page.approval.deny.click()
    _wait(app, lambda: bool(finished), timeout=300)


if __name__ == "__main__":
    sys.exit(main())
