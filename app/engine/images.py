"""Images for models that see: decoded in the parent, sent to the engine child as RGB pixels.

An image travels as :class:`ImageInput` (width, height, RGB bytes and their SHA-256) inside the
:class:`~app.engine.types.ChatMessage` it belongs to; the message's text holds
:data:`IMAGE_MARKER` (mtmd's media marker) where each image sits.  The chat template renders
the text as it is, and libmtmd replaces each marker with the image's tokens
(``app/engine/vision.py``).  The digest identifies the image in the KV cache: a follow-up
question about the same picture reuses its evaluated tokens.

Decoding (Qt's image readers) lives in :mod:`app.imaging`, outside the core.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

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


def images_in(messages: Sequence[object]) -> int:
    """How many images ``messages`` (ChatMessage) carry."""
    return sum(len(getattr(m, "images", ())) for m in messages)
