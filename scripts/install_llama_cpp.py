"""Build and install the pinned llama-cpp-python with flags that are safe on this CPU.

llama-cpp-python ships as a source distribution, so ``pip install`` compiles
llama.cpp.  Its default build (``GGML_NATIVE=ON``) enables every instruction
set of the build machine, including llama.cpp's AMX / AVX-512 CPU paths, and
version 0.3.36 built that way segfaults in ``llama_decode`` on Intel CPUs with
AMX (see the README).  This script therefore builds with an explicit, portable
x86-64 baseline (AVX2 + FMA + F16C, no AVX-512, no AMX), Metal on Apple
Silicon, and optionally CUDA.

pip's wheel cache does not know about ``CMAKE_ARGS``: a plain reinstall after a
flag change can silently reuse a wheel built with other flags.  We keep our own
wheel cache keyed by (version, flags, Python, platform), build with
``--no-cache-dir`` and install only from that folder.

Usage::

    python scripts/install_llama_cpp.py            # CPU (or Metal on macOS arm64)
    PADDOCK_GPU=cuda python scripts/install_llama_cpp.py
    PADDOCK_LLAMA_CMAKE_ARGS="..." python scripts/install_llama_cpp.py   # full override
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

LLAMA_CPP_PYTHON_VERSION = "0.3.36"

# Portable x86-64 baseline: any CPU from 2013 on (Haswell / Zen 1) runs it, and it
# never takes llama.cpp's AMX or AVX-512 paths (the crash described above).
X86_SAFE_FLAGS = [
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
    "-DGGML_AVX512=OFF",
    "-DGGML_AVX512_VBMI=OFF",
    "-DGGML_AVX512_VNNI=OFF",
    "-DGGML_AVX512_BF16=OFF",
    "-DGGML_AMX_TILE=OFF",
    "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF",
]
# libmtmd (images) is built, without its video path (that would run ffmpeg on a user's file);
# the RPC backend makes other machines' devices usable (``paddock worker``). RDMA stays off so the
# build never depends on which InfiniBand libraries the build machine happens to have.
COMMON_FLAGS = ["-DLLAVA_BUILD=ON", "-DMTMD_VIDEO=OFF", "-DGGML_RPC=ON", "-DGGML_RPC_RDMA=OFF"]


def cmake_args() -> list[str]:
    """The CMake flags for this platform and the requested GPU backend."""
    override = os.environ.get("PADDOCK_LLAMA_CMAKE_ARGS")
    if override:
        return override.split()
    machine = platform.machine().lower()
    gpu = os.environ.get("PADDOCK_GPU", "").lower()
    flags = list(COMMON_FLAGS)
    if sys.platform == "darwin" and machine in {"arm64", "aarch64"}:
        flags.append("-DGGML_METAL=ON")
    elif machine in {"x86_64", "amd64"}:
        flags.extend(X86_SAFE_FLAGS)
    if gpu == "cuda":
        flags.append("-DGGML_CUDA=ON")
    elif gpu == "vulkan":
        flags.append("-DGGML_VULKAN=ON")
    return flags


def cache_dir(flags: list[str]) -> Path:
    key = "|".join(
        [LLAMA_CPP_PYTHON_VERSION, sys.version.split()[0], sys.platform, platform.machine(), *flags]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    base = Path(os.environ.get("PADDOCK_WHEEL_CACHE", Path.home() / ".cache" / "paddock" / "wheels"))
    return base / f"llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}-{digest}"


def main() -> int:
    flags = cmake_args()
    wheels = cache_dir(flags)
    existing = sorted(wheels.glob("llama_cpp_python-*.whl"))
    if not existing:
        print(f"Building llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} (a few minutes) with:", flush=True)
        print("  CMAKE_ARGS=" + " ".join(flags), flush=True)
        tmp = wheels.with_name(wheels.name + ".partial")
        tmp.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, CMAKE_ARGS=" ".join(flags), FORCE_CMAKE="1")
        subprocess.run(
            [
                sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
                "--no-binary", "llama-cpp-python", "-w", str(tmp),
                f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
            ],
            check=True,
            env=env,
        )
        tmp.rename(wheels)  # only a finished build becomes visible to the next run
        existing = sorted(wheels.glob("llama_cpp_python-*.whl"))
    else:
        print(f"Using cached llama-cpp-python wheel: {existing[-1].name}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--force-reinstall", str(existing[-1])],
        check=True,
    )
    # The Python dependencies of llama-cpp-python (numpy, jinja2, ...) come from PyPI normally.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "typing-extensions>=4.5", "numpy>=1.20", "diskcache>=5.6.1",
         "jinja2>=3.1.6"],
        check=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
