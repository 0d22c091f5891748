"""Build llama.cpp's own ``llama-bench`` and ``llama-server`` from the exact source Paddock runs.

The source is ``vendor/llama.cpp`` inside the llama-cpp-python source
distribution of the pinned version (from PyPI), built with the same CMake
flags as Paddock's engine (``scripts/install_llama_cpp.py``), so that any
difference measured is Paddock's, not the build's.  Built once into
``benchmarks/.cache/peer-<version>-<flags hash>/``.  :func:`llama_bench` runs
the built ``llama-bench`` (the reference both ``benchmarks`` and
``benchmarks.kv_reuse`` compare with).

    .venv/bin/python -m benchmarks.peer     # prints the bin folder
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from install_llama_cpp import LLAMA_CPP_PYTHON_VERSION as VERSION  # noqa: E402
from install_llama_cpp import cmake_args  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
TARGETS = ("llama-bench", "llama-server")


def peer_dir() -> Path:
    flags = cmake_args()
    digest = hashlib.sha256(" ".join(flags).encode()).hexdigest()[:10]
    return CACHE / f"peer-{VERSION}-{digest}"


def build(jobs: int | None = None) -> Path:
    """The folder holding llama-bench and llama-server (built if missing)."""
    folder = peer_dir()
    bin_dir = folder / "build" / "bin"
    if all((bin_dir / t).exists() for t in TARGETS):
        return bin_dir
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "src"
    if not (source / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        download = folder / "sdist"
        download.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={VERSION}", "-d", str(download)], check=True)
        archive = next(download.glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
        extracted = next(p for p in folder.iterdir() if p.name.startswith("llama_cpp_python-"))
        if source.exists():
            shutil.rmtree(source)
        extracted.rename(source)
    flags = [f for f in cmake_args() if not f.startswith("-DLLAVA")]
    build_dir = folder / "build"
    subprocess.run(["cmake", "-S", str(source / "vendor" / "llama.cpp"), "-B", str(build_dir),
                    "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON", *flags],
                   check=True)
    subprocess.run(["cmake", "--build", str(build_dir), "--config", "Release", "-j", str(jobs or os.cpu_count() or 2),
                    "--target", *TARGETS], check=True)
    return bin_dir


def llama_bench(bin_dir: Path, model: Path, threads: int, n_prompt: int, n_gen: int, reps: int,
                depth: int = 0) -> list[float]:
    """tokens/s samples of one llama-bench test (pp when ``n_gen`` is 0, else tg), after ``depth``
    tokens already in the context (as an answer comes after its prompt)."""
    out = subprocess.run(
        [str(bin_dir / "llama-bench"), "-m", str(model), "-p", str(n_prompt), "-n", str(n_gen), "-t", str(threads),
         "-d", str(depth), "-r", str(reps), "-o", "json"],
        check=True, capture_output=True, text=True,
    ).stdout
    (row,) = json.loads(out)
    return [float(x) for x in row.get("samples_ts") or [row["avg_ts"]]]


if __name__ == "__main__":
    print(build())
