"""Light and dark look, following the system's colour scheme."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = hints.colorScheme() if hasattr(hints, "colorScheme") else Qt.ColorScheme.Unknown
    if scheme == Qt.ColorScheme.Dark:
        return True
    if scheme == Qt.ColorScheme.Light:
        return False
    return QGuiApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128


def apply_theme(app: QApplication, dark: bool) -> None:
    # Fusion as it is: a Python QProxyStyle would be called back for every style hint, ~150 times per message
    # widget built (a third of the time to build one); what it changed is a style sheet property below.
    app.setStyle(QStyleFactory.create("Fusion"))
    pal = QPalette()
    if dark:
        colors = {
            QPalette.ColorRole.Window: "#1e1f22", QPalette.ColorRole.WindowText: "#e6e6e6",
            QPalette.ColorRole.Base: "#26282c", QPalette.ColorRole.AlternateBase: "#2b2d31",
            QPalette.ColorRole.Text: "#e6e6e6", QPalette.ColorRole.Button: "#2b2d31",
            QPalette.ColorRole.ButtonText: "#e6e6e6", QPalette.ColorRole.Highlight: "#3d6fd9",
            QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.ToolTipBase: "#2b2d31",
            QPalette.ColorRole.ToolTipText: "#e6e6e6", QPalette.ColorRole.Link: "#7aa7ff",
            QPalette.ColorRole.PlaceholderText: "#8a8f98",
        }
    else:
        colors = {
            QPalette.ColorRole.Window: "#f7f7f8", QPalette.ColorRole.WindowText: "#1f2328",
            QPalette.ColorRole.Base: "#ffffff", QPalette.ColorRole.AlternateBase: "#f3f4f6",
            QPalette.ColorRole.Text: "#1f2328", QPalette.ColorRole.Button: "#ffffff",
            QPalette.ColorRole.ButtonText: "#1f2328", QPalette.ColorRole.Highlight: "#2f6fed",
            QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.ToolTipBase: "#ffffff",
            QPalette.ColorRole.ToolTipText: "#1f2328", QPalette.ColorRole.Link: "#2f6fed",
            QPalette.ColorRole.PlaceholderText: "#8a8f98",
        }
    for role, color in colors.items():
        pal.setColor(role, QColor(color))
    app.setPalette(pal)
    app.setStyleSheet(_stylesheet(dark))


def _stylesheet(dark: bool) -> str:
    side = "#17181a" if dark else "#eef0f3"
    user_bg = "#263042" if dark else "#eaf1ff"
    asst_bg = "#232427" if dark else "#ffffff"
    border = "#33363b" if dark else "#e1e4e8"
    muted = "#8a8f98"
    return f"""
    QDialogButtonBox {{ dialogbuttonbox-buttons-have-icons: 0; }} /* no green ticks and red crosses: flat */
    QFrame#sidebar {{ background: {side}; border-right: 1px solid {border}; }}
    QListView#conversationList {{ background: transparent; border: none; font-size: 13px; }}
    QListView#conversationList::item {{ padding: 7px 8px; border-radius: 6px; }}
    QListView#conversationList::item:selected {{ background: {'#2f3440' if dark else '#dfe5ee'};
        color: palette(text); }}
    QPushButton {{ padding: 6px 12px; border-radius: 6px; border: 1px solid {border}; }}
    QPushButton#primaryButton {{ background: #2f6fed; color: white; border: none; font-weight: 600; }}
    QPushButton#primaryButton:hover {{ background: #255fd0; }}
    QPushButton#primaryButton:disabled {{ background: {border}; color: {muted}; }}
    QPushButton#stopButton {{ background: #d64545; color: white; border: none; font-weight: 600; }}
    QPushButton#smallButton {{ padding: 2px 6px; border: none; color: {muted}; font-size: 12px; }}
    QPushButton#smallButton:hover {{ color: palette(text); }}
    QFrame#chatHeader {{ border-bottom: 1px solid {border}; }}
    QLabel#chatTitle {{ font-size: 15px; font-weight: 600; }}
    QFrame#message {{ border-radius: 10px; border: 1px solid {border}; background: {asst_bg}; }}
    QFrame#message[role="user"] {{ background: {user_bg}; border: none; }}
    QTextBrowser#messageBody {{ background: transparent; font-size: 14px; }}
    QLabel#messageError {{ color: #d64545; }}
    QLabel#limitNote {{ color: {muted}; font-size: 12px; }}
    QToolButton#thinkingToggle {{ border: none; color: {muted}; font-size: 12px; padding: 0px; }}
    QTextBrowser#thinkingBody {{ color: {muted}; background: transparent; font-size: 12px;
        border-left: 2px solid {muted}; padding-left: 6px; }}
    QLabel#messageStats, QLabel#hint {{ color: {muted}; font-size: 11px; }}
    QWidget#chatContainer {{ background: palette(window); }}
    QFrame#composerBox {{ border-top: 1px solid {border}; }}
    QPlainTextEdit#composer {{ border: 1px solid {border}; border-radius: 8px; padding: 6px; font-size: 14px;
        background: palette(base); }}
    QFrame#noticeBar {{ background: {'#3a3320' if dark else '#fff4d6'}; color: palette(text); padding: 6px 16px; }}
    QFrame#settingsPanel {{ border-left: 1px solid {border}; }}
    QProgressBar#contextMeter {{ max-height: 14px; font-size: 11px; }}
    QFrame#statusSeparator {{ color: {border}; }}
    QLabel#messageError {{ color: #d64545; }}
    /* Dialogs and forms: the same flat look as the window (borders, radii, focus colour). */
    QDialog {{ background: palette(window); }}
    QLineEdit, QPlainTextEdit, QListWidget, QTreeWidget, QTableWidget, QTextBrowser#passageViewer {{
        border: 1px solid {border}; border-radius: 6px; background: palette(base); }}
    QLineEdit {{ padding: 3px 6px; }}
    QLineEdit:focus, QPlainTextEdit:focus {{ border: 1px solid #2f6fed; }}
    QPushButton:default {{ border: 1px solid #2f6fed; }}
    QPushButton:checked {{ background: {'#2f3440' if dark else '#dfe5ee'}; }}
    QTabWidget::pane {{ border: 1px solid {border}; border-radius: 6px; }}
    """
