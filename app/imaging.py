"""Pictures decoded with Qt's image readers, in the parent process (``QtGui`` only: no widgets, no
application object needed), into :class:`app.engine.images.ImageInput` for the engine.

Every format Qt reads, EXIF orientation applied, very large pictures scaled down, and a picture
that declares more pixels than :data:`~app.engine.images.MAX_PIXELS` (a decompression bomb)
refused before its pixels are decoded.  Kept apart from the core (``app/engine``, ``app/store``...),
which never imports Qt's GUI classes itself.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.engine.images import (
    IMAGE_MARKER,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    MAX_SIDE,
    ImageInput,
    place_markers,
)
from app.errors import ImageError


def load_image(path: str | Path) -> ImageInput:
    """Read and decode an image file.

    Raises:
        ImageError: missing, unreadable, not an image, too large, or a decompression bomb.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageError(f"{p.name} is {size >> 20} MB: Paddock reads images up to {MAX_FILE_BYTES >> 20} MB")
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise ImageError(f"{p} does not exist") from exc
    except OSError as exc:
        raise ImageError(f"{p.name} cannot be read: {exc.strerror or exc}") from exc
    return decode_image(data, p.name)


def decode_image(data: bytes, name: str = "image") -> ImageInput:
    """Decode encoded image bytes (PNG, JPEG, WebP, GIF, BMP... whatever Qt reads) to RGB.

    EXIF orientation is applied; a side longer than :data:`MAX_SIDE` is scaled down (keeping the
    aspect ratio); transparent pixels are shown over white.

    Raises:
        ImageError: not an image, damaged, or declaring more than :data:`MAX_PIXELS` pixels.
    """
    import numpy as np
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QSize, Qt
    from PySide6.QtGui import QImage, QImageReader

    if not data:
        raise ImageError(f"{name} is empty")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{name} is {len(data) >> 20} MB: Paddock reads images up to {MAX_FILE_BYTES >> 20} MB")
    buffer = QBuffer()
    buffer.setData(QByteArray(data))
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    reader = QImageReader(buffer)
    reader.setAutoTransform(True)  # EXIF orientation
    if not reader.canRead():
        raise ImageError(f"{name} is not an image Paddock can read (PNG, JPEG, WebP, GIF, BMP...)")
    declared = reader.size()
    if declared.isValid():
        w, h = declared.width(), declared.height()
        if w * h > MAX_PIXELS:
            raise ImageError(
                f"{name} is {w:,} x {h:,} pixels ({w * h / 1e6:.0f} megapixels): Paddock reads images up to "
                f"{MAX_PIXELS // 1_000_000} megapixels. Scale it down and attach it again."
            )
        longest = max(w, h)
        if longest > MAX_SIDE:
            factor = MAX_SIDE / longest
            reader.setScaledSize(QSize(max(1, round(w * factor)), max(1, round(h * factor))))
    image = reader.read()
    if image.isNull():
        raise ImageError(f"{name} could not be decoded ({reader.errorString()}): the file may be damaged")
    if max(image.width(), image.height()) > MAX_SIDE:  # a format that did not declare its size
        image = image.scaled(QSize(MAX_SIDE, MAX_SIDE), mode=Qt.TransformationMode.SmoothTransformation,
                             aspectMode=Qt.AspectRatioMode.KeepAspectRatio)
    width, height = image.width(), image.height()
    if image.hasAlphaChannel():
        rgba = image.convertToFormat(QImage.Format.Format_RGBA8888)
        arr = _pixels(rgba, 4).astype(np.float32)
        alpha = arr[..., 3:4] / 255.0
        rgb_arr = np.rint(arr[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    else:
        rgb_arr = _pixels(image.convertToFormat(QImage.Format.Format_RGB888), 3)
    return ImageInput.from_rgb(width, height, rgb_arr.tobytes(), name)


_decoded: OrderedDict[str, ImageInput] = OrderedDict()
_DECODED_KEEP = 16
_decoded_lock = threading.Lock()


def decode_image_cached(data: bytes, name: str = "image") -> ImageInput:
    """:func:`decode_image`, remembering the last few (a stored chat's pictures are sent with every turn)."""
    key = hashlib.sha256(data).hexdigest()
    with _decoded_lock:
        found = _decoded.get(key)
        if found is not None:
            _decoded.move_to_end(key)
            return found
    found = decode_image(data, name)
    with _decoded_lock:
        _decoded[key] = found
        while len(_decoded) > _DECODED_KEEP:
            _decoded.popitem(last=False)
    return found


def _pixels(image: Any, channels: int) -> Any:
    """The image's pixels as a (height, width, channels) uint8 array (rows are padded in Qt)."""
    import numpy as np

    width, height, per_line = image.width(), image.height(), image.bytesPerLine()
    raw = np.frombuffer(bytes(image.constBits()), dtype=np.uint8)
    return raw[: height * per_line].reshape(height, per_line)[:, : width * channels].reshape(height, width, channels)


def png_data_uri(image: ImageInput) -> str:
    """The picture as a ``data:image/png;base64,...`` URI (what a remote OpenAI-compatible server takes)."""
    from PySide6.QtCore import QBuffer, QIODevice
    from PySide6.QtGui import QImage

    qimage = QImage(image.rgb, image.width, image.height, image.width * 3, QImage.Format.Format_RGB888)
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    qimage.save(buffer, "PNG")  # type: ignore[call-overload]  # (PySide6 takes a str here, refuses bytes)
    return "data:image/png;base64," + base64.b64encode(bytes(buffer.data().data())).decode("ascii")


def content_parts(text: str, images: Sequence[ImageInput]) -> list[dict[str, Any]]:
    """OpenAI content parts of a message: its text pieces and pictures, each picture where its marker is."""
    pieces = place_markers(text, len(images)).split(IMAGE_MARKER)
    parts: list[dict[str, Any]] = []
    for i, piece in enumerate(pieces):
        if piece:
            parts.append({"type": "text", "text": piece})
        if i < len(images):
            parts.append({"type": "image_url", "image_url": {"url": png_data_uri(images[i])}})
    return parts


