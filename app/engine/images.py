"""Images for models that see: decoded in the parent, sent to the engine child as RGB pixels.

An image travels as :class:`ImageInput` (width, height, RGB bytes and their SHA-256) inside the
:class:`~app.engine.types.ChatMessage` it belongs to; the message's text holds
:data:`IMAGE_MARKER` (mtmd's media marker) where each image sits.  The chat template renders
the text as it is, and libmtmd replaces each marker with the image's tokens
(``app/engine/vision.py``).  The digest identifies the image in the KV cache: a follow-up
question about the same picture reuses its evaluated tokens.

Decoding uses Qt's image readers (``QtGui`` only, no widgets, no application object needed):
every format Qt reads, EXIF orientation applied, very large pictures scaled down, and a
picture that declares more pixels than :data:`MAX_PIXELS` (a decompression bomb) refused
before its pixels are decoded.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import ImageError

IMAGE_MARKER = "<__media__>"  # libmtmd's mtmd_default_marker()
MAX_SIDE = 2048  # longer sides are scaled down to this (no model here reads finer than ~1,500 px)
MAX_PIXELS = 50_000_000  # more declared pixels than this is refused (a 20,000 x 20,000 PNG is 400 M)
MAX_FILE_BYTES = 64 << 20
_MARKER_RE = re.compile(re.escape(IMAGE_MARKER))


@dataclass(frozen=True)
class ImageInput:
    """One decoded picture: ``rgb`` is ``width * height * 3`` bytes, rows top to bottom."""

    width: int
    height: int
    rgb: bytes
    digest: str  # sha256 of the size and pixels: the image's identity in the KV cache
    name: str = ""

    @classmethod
    def from_rgb(cls, width: int, height: int, rgb: bytes, name: str = "") -> ImageInput:
        if width <= 0 or height <= 0 or len(rgb) != width * height * 3:
            raise ImageError(f"{name or 'the image'} has {len(rgb)} bytes of pixels, not {width} x {height} x 3")
        h = hashlib.sha256(f"{width}x{height}:".encode())
        h.update(rgb)
        return cls(width, height, rgb, h.hexdigest(), name)


def place_markers(text: str, n_images: int) -> str:
    """``text`` with exactly one marker per image: markers the text holds are kept in order (an
    API client placed them), missing ones go first, and any beyond ``n_images`` are removed."""
    found = len(_MARKER_RE.findall(text))
    if found > n_images:
        parts = _MARKER_RE.split(text)
        text = "".join(p + (IMAGE_MARKER if i < n_images else "") for i, p in enumerate(parts[:-1])) + parts[-1]
        found = n_images
    return IMAGE_MARKER * (n_images - found) + text


def strip_markers(text: str) -> str:
    """Text a user typed, with any literal marker removed (it would stand for an image)."""
    return _MARKER_RE.sub("", text)


def count_markers(text: str) -> int:
    return len(_MARKER_RE.findall(text))


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
    import base64

    from PySide6.QtCore import QBuffer, QIODevice
    from PySide6.QtGui import QImage

    qimage = QImage(image.rgb, image.width, image.height, image.width * 3, QImage.Format.Format_RGB888)
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    qimage.save(buffer, "PNG")  # type: ignore[call-overload]  # (PySide6 takes a str here, refuses bytes)
    return "data:image/png;base64," + base64.b64encode(bytes(buffer.data().data())).decode("ascii")


def content_parts(text: str, images: Sequence[ImageInput]) -> list[dict[str, Any]]:
    """OpenAI content parts of a message: its text pieces and pictures, each picture where its marker is."""
    pieces = _MARKER_RE.split(place_markers(text, len(images)))
    parts: list[dict[str, Any]] = []
    for i, piece in enumerate(pieces):
        if piece:
            parts.append({"type": "text", "text": piece})
        if i < len(images):
            parts.append({"type": "image_url", "image_url": {"url": png_data_uri(images[i])}})
    return parts


def images_in(messages: Sequence[object]) -> int:
    """How many images ``messages`` (ChatMessage) carry."""
    return sum(len(getattr(m, "images", ())) for m in messages)
