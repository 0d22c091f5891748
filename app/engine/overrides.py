"""Tensor buffer-type overrides: MoE experts kept in RAM while their layers run on the GPU.

llama-cpp-python 0.3.36 binds ``llama_model_params.tensor_buft_overrides`` only as a
``c_void_p`` and its ``Llama(...)`` drops unknown keywords, so this module builds the C list
itself: ``{const char *pattern; ggml_backend_buffer_type_t buft}`` entries ended by a NULL
pattern; llama.cpp ``regex_search``es each tensor name, the first match wins, and logs
``buffer type overridden`` (DEBUG) for each. The CPU buffer type must come from libllama's
own handle (``llama_cpp.llama_cpp._lib``): the wheel ships separate copies of the ggml
libraries, and a pointer from another copy silently fails llama.cpp's comparison.

The list and its strings must outlive the model (llama.cpp keeps the pointers): the
:class:`ExpertOverrides` object is owned by the engine for as long as the model is loaded.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from typing import Any

from app.engine.placement import EXPERTS_PATTERN


class TensorBuftOverride(ctypes.Structure):
    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def expert_patterns(n_cpu_moe: int, n_layers: int) -> list[str]:
    """llama.cpp's own patterns: ``--cpu-moe`` (every layer) or ``--n-cpu-moe N`` (the first N)."""
    if n_cpu_moe <= 0:
        return []
    if n_cpu_moe >= n_layers:
        return [EXPERTS_PATTERN]
    return [rf"blk\.{i}{EXPERTS_PATTERN}" for i in range(n_cpu_moe)]


def cpu_buffer_type() -> int:
    """``ggml_backend_cpu_buffer_type()`` as libllama itself sees it."""
    from llama_cpp import llama_cpp

    fn = llama_cpp._lib.ggml_backend_cpu_buffer_type
    fn.argtypes = []
    fn.restype = ctypes.c_void_p
    buft = fn()
    if not buft:
        raise RuntimeError("llama.cpp has no CPU buffer type")
    return int(buft)


class ExpertOverrides:
    """The NULL-terminated override list for the routed experts of the first ``n_cpu_moe`` layers."""

    def __init__(self, n_cpu_moe: int, n_layers: int) -> None:
        self.patterns = expert_patterns(n_cpu_moe, n_layers)
        self._encoded = [p.encode() for p in self.patterns]  # kept: the C list points into them
        buft = cpu_buffer_type() if self.patterns else 0
        self.array = (TensorBuftOverride * (len(self._encoded) + 1))()
        for i, pattern in enumerate(self._encoded):
            self.array[i].pattern = pattern
            self.array[i].buft = buft
        self.array[len(self._encoded)].pattern = None
        self.array[len(self._encoded)].buft = None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """While the block runs, every ``Llama(...)`` created gets these overrides.

        ``Llama`` builds its ``llama_model_params`` from ``llama_model_default_params()`` and
        has no parameter for the list, so the defaults are wrapped for the duration of the
        load (the engine child loads one model at a time).
        """
        if not self.patterns:
            yield
            return
        from llama_cpp import llama_cpp

        original = llama_cpp.llama_model_default_params
        address = ctypes.cast(self.array, ctypes.c_void_p)

        def with_overrides() -> Any:
            params = original()
            params.tensor_buft_overrides = address
            return params

        llama_cpp.llama_model_default_params = with_overrides
        try:
            yield
        finally:
            llama_cpp.llama_model_default_params = original


def load_attempts(n_gpu_layers: int, n_cpu_moe: int, n_layers: int, moe: bool) -> list[tuple[int, int, str]]:
    """The plans to try in order when the GPU runs out of memory at load: the plan itself, then every
    expert in RAM (MoE), then half the layers on the GPU, then the CPU. Each with how to tell the user."""
    attempts = [(n_gpu_layers, n_cpu_moe, "")]
    if n_gpu_layers == 0:
        return attempts
    if moe and n_cpu_moe < n_layers:
        n_cpu_moe = n_layers
        attempts.append((n_gpu_layers, n_cpu_moe, "with the experts of every layer in RAM"))
    on_gpu = n_layers if n_gpu_layers < 0 else min(n_gpu_layers, n_layers)
    if on_gpu // 2 > 0:
        attempts.append((on_gpu // 2, n_cpu_moe, f"with {on_gpu // 2} of {n_layers} layers on the GPU"))
    attempts.append((0, 0, "on the CPU"))
    return attempts
