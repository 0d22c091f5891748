"""Render resources/paddock.svg to the PNG sizes the platforms want (Qt's SVG renderer, no extra tools).

    python packaging/make_icons.py      # writes packaging/build/icons/paddock-<size>.png
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "packaging" / "build" / "icons"
SIZES = (16, 32, 48, 64, 128, 256, 512, 1024)


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(ROOT / "resources" / "paddock.svg"))
    OUT.mkdir(parents=True, exist_ok=True)
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        image.save(str(OUT / f"paddock-{size}.png"))
        if size == 256:
            image.save(str(OUT / "paddock.ico"))  # Qt's ICO writer (Windows installer icon)
    print(OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
