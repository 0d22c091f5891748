"""The engine child's LoRA adapters: loaded, applied to the context, freed in the order llama.cpp needs.

One owner (:class:`AdapterSet`) per loaded model.  An adapter reaches here only after the parent
checked it (app/engine/lora.py) and with the file identity it checked; a file that changed since is
refused, so nothing unchecked reaches ``llama_adapter_lora_init``.  ``llama_set_adapters_lora``
replaces the context's whole set at once (no reload of the model); adapters with scale 0 are left
out, as llama.cpp itself does.  ``llama_adapter_lora_free`` does not detach an adapter from a
context, so the context's set is cleared (or replaced) before an adapter is freed, and every adapter
is freed before the model (whose destructor would free them again).
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Sequence
from typing import Any

from app.engine.types import LoraAdapter
from app.errors import InvalidAdapterError

log = logging.getLogger("paddock.engine.adapters")

# (path, size, mtime_ns, scale) of each adapter with a non-zero scale, sorted: llama.cpp keeps the set
# in a map, so the order adapters are given in changes nothing.
AdapterKey = tuple[tuple[str, int, int, float], ...]


def adapter_key(adapters: Sequence[LoraAdapter]) -> AdapterKey:
    return tuple(sorted((a.path, *a.fingerprint, float(a.scale)) for a in adapters if a.scale != 0))


class AdapterSet:
    """The adapters applied to one llama.cpp context.

    Args:
        llm: the ``Llama`` whose model and context they belong to.
    """

    def __init__(self, llm: Any) -> None:
        from llama_cpp import llama_cpp as lib

        self.lib = lib
        self.llm = llm
        self.key: AdapterKey = ()
        self._loaded: dict[tuple[str, int, int], Any] = {}

    def apply(self, adapters: Sequence[LoraAdapter]) -> bool:
        """Make ``adapters`` the context's set; True if that changed it (the KV cache is then stale).

        Raises:
            InvalidAdapterError: a file is gone, changed since the parent checked it, or llama.cpp refused it.
        """
        key = adapter_key(adapters)
        if key == self.key:
            return False
        for path, size, mtime, _ in key:
            if (path, size, mtime) not in self._loaded:
                self._loaded[(path, size, mtime)] = self._init(path, size, mtime)
        n = len(key)
        lib = self.lib
        ctx = self.llm._ctx.ctx
        if n:
            ptrs = (lib.llama_adapter_lora_p_ctypes * n)(*(self._loaded[k[:3]] for k in key))
            scales = (ctypes.c_float * n)(*(k[3] for k in key))
            code = int(lib.llama_set_adapters_lora(ctx, ptrs, n, scales))
        else:
            code = int(lib.llama_set_adapters_lora(ctx, None, 0, None))
        if code != 0:
            raise InvalidAdapterError(f"llama.cpp could not apply the LoRA adapters (code {code})")
        self.key = key
        # adapters no longer in the set are freed now that the context does not hold them
        for k in [k for k in self._loaded if k not in {a[:3] for a in key}]:
            lib.llama_adapter_lora_free(self._loaded.pop(k))
        log.info("LoRA adapters: %s", ", ".join(f"{os.path.basename(p)}×{s:g}" for p, _, _, s in key) or "none")
        return True

    def close(self) -> None:
        """Clear the context's set, then free every adapter (before the model is freed)."""
        if self._loaded or self.key:
            self.lib.llama_set_adapters_lora(self.llm._ctx.ctx, None, 0, None)
        for ptr in self._loaded.values():
            self.lib.llama_adapter_lora_free(ptr)
        self._loaded.clear()
        self.key = ()

    def _init(self, path: str, size: int, mtime: int) -> Any:
        name = os.path.basename(path)
        try:
            st = os.stat(path)
        except OSError as exc:
            why = exc.strerror or exc
            raise InvalidAdapterError(f"the LoRA adapter {name} is gone ({why}): choose it again") from exc
        if (st.st_size, st.st_mtime_ns) != (size, mtime):
            raise InvalidAdapterError(
                f"the LoRA adapter {name} changed since it was checked: choose it again so that it is checked anew"
            )
        ptr = self.lib.llama_adapter_lora_init(self.llm._model.model, path.encode("utf-8"))
        if not ptr:
            raise InvalidAdapterError(f"llama.cpp could not load the LoRA adapter {name} (the log says why)")
        return ptr
