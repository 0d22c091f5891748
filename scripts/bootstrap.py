"""Set up Paddock in ./.venv: llama-cpp-python built with safe flags, then Paddock.

    python3 scripts/bootstrap.py          # to run the app
    python3 scripts/bootstrap.py --dev    # plus the test and lint tools and the test model

Safe to run again: the llama.cpp build is cached (see scripts/install_llama_cpp.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", action="store_true", help="also install test, lint and benchmark tools")
    args = parser.parse_args()
    if not venv_python().exists():
        print(f"Creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    py = str(venv_python())
    quiet = ["-q"] if os.environ.get("CI") else []
    subprocess.run([py, "-m", "pip", "install", *quiet, "--upgrade", "pip", "wheel"], check=True)
    subprocess.run([py, str(ROOT / "scripts" / "install_llama_cpp.py")], check=True)
    target = f"{ROOT}[dev]" if args.dev else str(ROOT)
    subprocess.run([py, "-m", "pip", "install", *quiet, "-e", target], check=True)
    # Prove the installed llama.cpp is the safe build, not a wheel from pip's cache.
    subprocess.run([py, "-c", "from app.engine.buildcheck import main; raise SystemExit(main())"], check=True)
    # Qt's X11 plugin needs system libraries many desktops lack: name them now, not at first start.
    subprocess.run([py, "-m", "app.ui.platform_check"], check=False)
    if args.dev:
        subprocess.run([py, str(ROOT / "scripts" / "test_models.py")], check=True)  # the instruct test model
    print("\nPaddock is ready: run .venv/bin/paddock (Windows: .venv\\Scripts\\paddock)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
