"""Pictures in the composer (dropped, pasted or attached) and in sent messages: thumbnails, remove, full size.

Each picture is checked when it is added (the same decoding the model gets: a text file renamed
``.png``, a damaged file or a decompression bomb is told at once, not after sending).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMimeData, Qt, Signal
from PySide6.QtGui import QImage, QImageReader, QMouseEvent, QPixmap
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QScrollArea, QToolButton, QVBoxLayout, QWidget

from app.engine.images import MAX_FILE_BYTES
from app.errors import ImageError
from app.imaging import decode_image
from app.store.chats import StoredImage

THUMB = 64


def image_suffixes() -> frozenset[str]:
    """File name endings Qt can read as images here (``.png``, ``.jpg``...)."""
    return frozenset("." + bytes(f.data()).decode().lower() for f in QImageReader.supportedImageFormats())


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in image_suffixes()


def checked_image(data: bytes, name: str) -> StoredImage:
    """The picture as stored with a message, once it decodes as the model will get it.

    Raises:
        ImageError: not an image, damaged, too large.
    """
    decode_image(data, name)
    return StoredImage(name, data)


def read_image_file(path: Path) -> StoredImage:
    """Raises: ImageError (unreadable, not an image, too large)."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageError(f"{path.name} is larger than {MAX_FILE_BYTES >> 20} MB")
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path.name} cannot be read: {exc.strerror or exc}") from exc
    return checked_image(data, path.name)


def png_bytes(image: QImage) -> bytes:
    """A pasted picture (no file behind it) as PNG bytes."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")  # type: ignore[call-overload]  # (PySide6 takes a str here, refuses bytes)
    return bytes(buffer.data().data())


def thumbnail(data: bytes, size: int = THUMB) -> QPixmap:
    image = QImage()
    image.loadFromData(QByteArray(data))
    pixmap = QPixmap.fromImage(image)
    if pixmap.isNull():
        return pixmap
    return pixmap.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)


class ImageThumb(QLabel):
    """A picture's thumbnail; a click opens it full size."""

    def __init__(self, image: StoredImage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image = image
        self.setObjectName("imageThumb")
        self.setPixmap(thumbnail(image.data))
        self.setToolTip(f"{image.name} — click to open full size")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.viewer: QDialog | None = None

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.open_full()
        super().mouseReleaseEvent(event)

    def open_full(self) -> QDialog:
        dialog = QDialog(self.window())
        dialog.setWindowTitle(self.image.name)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        layout = QVBoxLayout(dialog)
        area = QScrollArea()
        label = QLabel()
        image = QImage()
        image.loadFromData(QByteArray(self.image.data))
        label.setPixmap(QPixmap.fromImage(image))
        area.setWidget(label)
        layout.addWidget(area)
        dialog.resize(min(1000, image.width() + 40), min(800, image.height() + 40))
        dialog.show()
        self.viewer = dialog
        return dialog


class ImageStrip(QWidget):
    """The pictures waiting in the composer, each with a remove button; hidden when there are none.

    Signals:
        changed(): pictures were added or removed.
    """

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageStrip")
        self._items: list[tuple[StoredImage, QWidget]] = []
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(0, 0, 0, 4)
        self._row.addStretch(1)
        self.hide()

    def images(self) -> list[StoredImage]:
        return [image for image, _ in self._items]

    def add(self, image: StoredImage) -> None:
        cell = QWidget()
        box = QHBoxLayout(cell)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        box.addWidget(ImageThumb(image))
        remove = QToolButton()
        remove.setText("×")
        remove.setObjectName("removeImage")
        remove.setToolTip(f"Remove {image.name}")
        remove.clicked.connect(lambda: self.remove(cell))
        box.addWidget(remove, 0, Qt.AlignmentFlag.AlignTop)
        self._row.insertWidget(len(self._items), cell)
        self._items.append((image, cell))
        self.show()
        self.changed.emit()

    def remove(self, cell: QWidget) -> None:
        self._items = [(image, w) for image, w in self._items if w is not cell]
        cell.deleteLater()
        self.setVisible(bool(self._items))
        self.changed.emit()

    def clear(self) -> None:
        for _, cell in self._items:
            cell.deleteLater()
        self._items = []
        self.hide()
        self.changed.emit()

    def add_files(self, paths: Sequence[Path]) -> list[str]:
        """Add picture files; the messages of those that cannot be shown."""
        errors = []
        for path in paths:
            try:
                self.add(read_image_file(path))
            except ImageError as exc:
                errors.append(str(exc))
        return errors

    def add_mime(self, mime: QMimeData) -> list[str] | None:
        """Add what a paste or drop carries if it is pictures; None if it carries none."""
        files = [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()] if mime.hasUrls() else []
        pictures = [p for p in files if is_image_file(p)]
        if pictures:
            return self.add_files(pictures)
        if mime.hasImage():
            image = mime.imageData()
            if isinstance(image, QImage) and not image.isNull():
                self.add(StoredImage("pasted image.png", png_bytes(image)))
                return []
        return None


class MessageImages(QWidget):
    """The pictures of a sent message, as thumbnails (click: full size)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(0, 0, 0, 0)
        self._row.addStretch(1)
        self.thumbs: list[ImageThumb] = []
        self.hide()

    def set_images(self, images: Sequence[StoredImage]) -> None:
        if [t.image for t in self.thumbs] == list(images):
            return
        for thumb in self.thumbs:
            thumb.deleteLater()
        self.thumbs = [ImageThumb(image) for image in images]
        for i, thumb in enumerate(self.thumbs):
            self._row.insertWidget(i, thumb)
        self.setVisible(bool(self.thumbs))
