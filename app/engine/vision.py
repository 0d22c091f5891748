"""Images through libmtmd, in the engine child, beside :class:`~app.engine.native.Session`.

llama-cpp-python's ``MTMDChatHandler`` is not used: it clears the KV cache on every call (no
prefix reuse, no kept states), fetches URLs itself and fails on text-only templates.  Here the
engine renders the chat template as for text (each image is :data:`IMAGE_MARKER` in its
message), and :meth:`Vision.tokenize` has mtmd cut the prompt into chunks: text tokens, and one
chunk per image.

The engine's token list (the KV cache's key) gets one placeholder id per *position* of an
image (``n_pos``: Qwen 2.5-VL's M-RoPE takes fewer positions than it has embeddings), negative
so that it is never a real token, derived from the image's digest.  The same picture at the
same place therefore matches as a prefix, and a follow-up question about it evaluates only the
new text; another picture breaks the prefix where it starts.  Kept conversation states store
the same list, so they work for chats with images too.

This module is the one owner of the mtmd context and its ctypes; :meth:`Vision.close` frees it
before the model that it points into.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine.images import IMAGE_MARKER, ImageInput
from app.errors import ImageError, ProjectorError

log = logging.getLogger("paddock.engine.vision")

_TEXT, _IMAGE = 0, 1  # mtmd_input_chunk_type


def placeholder(digest: str) -> int:
    """The KV-cache key of one position of an image: negative, never a real token id."""
    return -1 - int(digest[:7], 16)


@dataclass
class MediaPrompt:
    """A prompt cut into mtmd chunks: ``tokens`` has text ids and image placeholders in order;
    ``images`` holds ``(start, end, chunk)`` spans of ``tokens`` for each image chunk."""

    tokens: list[int]
    images: list[tuple[int, int, Any]] = field(default_factory=list)
    n_image_tokens: int = 0  # embeddings the images put into the KV cache
    _chunks: Any = None
    _lib: Any = None

    @property
    def extra_cells(self) -> int:
        """KV cells the images take beyond their positions (M-RoPE: fewer positions than embeddings)."""
        return max(0, self.n_image_tokens - sum(end - start for start, end, _ in self.images))

    def image_start(self, position: int) -> int:
        """``position``, or the start of the image it falls inside (an image is evaluated whole)."""
        for start, end, _ in self.images:
            if start < position < end:
                return start
        return position

    def close(self) -> None:
        if self._chunks is not None:
            self._lib.mtmd_input_chunks_free(self._chunks)
            self._chunks = None


class Vision:
    """The mtmd context of a loaded model and its projector.

    Raises:
        ProjectorError: mtmd refused the projector (not a projector, another model's, damaged).
    """

    def __init__(self, mmproj: str, llm: Any, n_threads: int, use_gpu: bool) -> None:
        from llama_cpp import mtmd_cpp

        self.lib = mtmd_cpp
        self.path = mmproj
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.print_timings = False
        params.n_threads = n_threads
        params.media_marker = IMAGE_MARKER.encode()
        self._marker = params.media_marker  # the struct keeps a pointer into these bytes
        ctx = mtmd_cpp.mtmd_init_from_file(mmproj.encode(), llm._model.model, params)
        if not ctx:
            raise ProjectorError(
                f"the image projector {Path(mmproj).name} cannot be used with {Path(llm.model_path).name}: it may be "
                "damaged, made for another model, or of a kind this version of llama.cpp does not support"
            )
        self.ctx = ctx
        if not mtmd_cpp.mtmd_support_vision(ctx):
            self.close()
            raise ProjectorError(f"{Path(mmproj).name} is not an image projector (it has no vision encoder)")

    def tokenize(self, text: str, add_bos: bool, images: Sequence[ImageInput]) -> MediaPrompt:
        """Cut ``text`` (with one marker per image) into text tokens and image chunks.

        Raises:
            ImageError: mtmd could not prepare an image, or markers and images do not match.
        """
        lib = self.lib
        bitmaps = []
        try:
            for image in images:
                pixels = (ctypes.c_uint8 * len(image.rgb)).from_buffer_copy(image.rgb)
                bitmap = lib.mtmd_bitmap_init(image.width, image.height, pixels)
                if not bitmap:
                    raise ImageError(f"{image.name or 'an image'} could not be prepared for the model")
                bitmaps.append(bitmap)
                lib.mtmd_bitmap_set_id(bitmap, image.digest.encode())
            chunks = lib.mtmd_input_chunks_init()
            encoded = text.encode("utf-8")
            inp = lib.mtmd_input_text(encoded, len(encoded), add_bos, True)
            array = (lib.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            code = int(lib.mtmd_tokenize(self.ctx, chunks, ctypes.byref(inp), array, len(bitmaps)))
            if code != 0:
                lib.mtmd_input_chunks_free(chunks)
                raise ImageError(
                    "the images could not be placed in the prompt (" + (
                        "the number of images and image places differ" if code == 1 else f"mtmd error {code}"
                    ) + ")"
                )
        finally:
            for bitmap in bitmaps:
                lib.mtmd_bitmap_free(bitmap)
        prompt = MediaPrompt([], _chunks=chunks, _lib=lib)
        digests = iter(image.digest for image in images)
        for i in range(int(lib.mtmd_input_chunks_size(chunks))):
            chunk = lib.mtmd_input_chunks_get(chunks, i)
            kind = int(lib.mtmd_input_chunk_get_type(chunk))
            if kind == _TEXT:
                n = ctypes.c_size_t(0)
                ptr = lib.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                prompt.tokens.extend(int(ptr[k]) for k in range(n.value))
            elif kind == _IMAGE:
                n_pos = int(lib.mtmd_input_chunk_get_n_pos(chunk))
                chunk_id = lib.mtmd_input_chunk_get_id(chunk)
                digest = chunk_id.decode() if chunk_id else next(digests, "0")
                start = len(prompt.tokens)
                prompt.tokens.extend([placeholder(digest)] * n_pos)
                prompt.images.append((start, start + n_pos, chunk))
                prompt.n_image_tokens += int(lib.mtmd_input_chunk_get_n_tokens(chunk))
            else:
                prompt.close()
                raise ImageError("this projector reads audio, not images")
        return prompt

    def eval_image(self, llm_ctx: Any, chunk: Any, n_past: int, n_batch: int, logits_last: bool) -> int:
        """Encode one image chunk and put its embeddings into the KV cache at ``n_past``; the new n_past.

        Returns:
            the position after the image, or a negative mtmd/llama error code.
        """
        new_n_past = ctypes.c_int32(n_past)
        code = int(self.lib.mtmd_helper_eval_chunk_single(self.ctx, llm_ctx, chunk, n_past, 0, n_batch,
                                                          logits_last, ctypes.byref(new_n_past)))
        return -abs(code) if code != 0 else int(new_n_past.value)

    def close(self) -> None:
        if self.ctx is not None:
            self.lib.mtmd_free(self.ctx)
            self.ctx = None
