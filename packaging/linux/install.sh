#!/usr/bin/env sh
# Add Paddock to your applications menu (per user, no root): run from the unpacked folder.
set -eu
APPDIR=$(cd "$(dirname "$0")" && pwd)
DEST="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
mkdir -p "$DEST"
sed "s|@APPDIR@|$APPDIR|g" "$APPDIR/paddock.desktop" > "$DEST/paddock.desktop"
chmod +x "$DEST/paddock.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$DEST" || true
echo "Paddock is in your applications menu. To remove it: rm $DEST/paddock.desktop"
