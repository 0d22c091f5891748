"""Can Qt open a window here?  Asked before the QApplication exists.

Qt >= 6.5's X11 platform plugin (``libqxcb.so``) links against libraries many
Linux desktops lack (``libxcb-cursor0`` above all).  Without them Qt prints
"Could not load the Qt platform plugin xcb ... Reinstalling the application may
fix this problem" and aborts with a core dump.  With no display at all it does
the same.  This module finds both cases first and words them as one line that
names what to install, so ``paddock`` can exit with code 1 instead.

No QtWidgets and no QtGui here: only QtCore's library paths, which load
without a display.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# soname -> (Debian/Ubuntu, Fedora, Arch) package.  The libraries the xcb plugin and
# libQt6XcbQpa need beyond what every X11 desktop has; README "System packages".
XCB_PACKAGES: dict[str, tuple[str, str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb", "libxcb"),
    "libxcb-glx.so.0": ("libxcb-glx0", "libxcb", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb", "libxcb"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11"),
    "libX11.so.6": ("libx11-6", "libX11", "libx11"),
    "libSM.so.6": ("libsm6", "libSM", "libsm"),
    "libICE.so.6": ("libice6", "libICE", "libice"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd"),
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl", "libglvnd"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype", "freetype2"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2", "glib2"),
}
# Platforms that need no display server (tests, the self-test, remote framebuffers).
HEADLESS_PLATFORMS = {"offscreen", "minimal", "vnc", "eglfs", "linuxfb", "vkkhrdisplay"}


def requested_platform(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """The platform plugin Qt will be asked for: ``-platform NAME``, else ``QT_QPA_PLATFORM``."""
    args = list(argv)
    for i, arg in enumerate(args[:-1]):
        if arg in ("-platform", "--platform"):
            return args[i + 1].split(":")[0]
    return env.get("QT_QPA_PLATFORM", "").split(":")[0]


def xcb_plugin() -> Path | None:
    """PySide6's X11 platform plugin (in a packaged build: the bundled one)."""
    from PySide6.QtCore import QLibraryInfo

    plugin = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms" / "libqxcb.so"
    return plugin if plugin.exists() else None


def linked_libraries(library: Path) -> dict[str, str | None]:
    """What ``ldd`` says ``library`` loads, directly or through others: soname -> file, None when not
    found.  Empty where there is no ``ldd`` (musl, stripped images)."""
    ldd = shutil.which("ldd")
    if not ldd:
        return {}
    try:
        out = subprocess.run([ldd, str(library)], check=False, capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    linked: dict[str, str | None] = {}
    for line in out.splitlines():
        name, arrow, rest = line.strip().partition(" => ")
        if arrow:
            linked[name] = None if rest.startswith("not found") else rest.split(" (")[0]
    return linked


def missing_libraries(library: Path) -> list[str]:
    """Shared libraries ``library`` needs (directly or through others) that cannot be loaded.

    ``ldd`` lists every one that is absent; a library that is present but broken (truncated, wrong
    architecture) stops the loader instead, and its own message names it.
    """
    missing = [name for name, found in linked_libraries(library).items() if found is None]
    if not missing:
        try:
            ctypes.CDLL(str(library))  # what Qt will do next; its libraries are loaded for the app anyway
        except OSError as exc:
            missing = [_named_library(str(exc), library)]
    return missing


def _named_library(message: str, library: Path) -> str:
    """The library a loader error is about: 'libxcb-cursor.so.0: cannot open shared object file'."""
    head = message.split(": ", 1)[0].strip()
    if not head or Path(head) == library:
        return message
    return Path(head).name


def install_hint(sonames: Sequence[str]) -> str:
    """``sudo apt install ...`` (and the Fedora and Arch forms) for these libraries."""
    known = [XCB_PACKAGES[s] for s in sonames if s in XCB_PACKAGES]
    if not known:
        return "install the packages that provide them"
    debian, fedora, arch = (" ".join(dict.fromkeys(p[i] for p in known)) for i in range(3))
    return (f"install with: sudo apt install {debian} (Debian/Ubuntu) · sudo dnf install {fedora} (Fedora) · "
            f"sudo pacman -S {arch} (Arch)")


def display_problem(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
                    platform: str | None = None) -> str | None:
    """One line saying why Qt cannot open a window here, or None when it can (or when we cannot tell).

    Only Linux and the BSDs have this problem; macOS and Windows always have their platform plugin.
    """
    argv = sys.argv if argv is None else argv
    env = os.environ if env is None else env
    platform = platform or sys.platform
    if not (platform.startswith("linux") or "bsd" in platform):
        return None
    requested = requested_platform(argv, env)
    names = [n.strip() for n in requested.split(";") if n.strip()]
    if any(n in HEADLESS_PLATFORMS for n in names):
        return None
    wayland = bool(env.get("WAYLAND_DISPLAY"))
    x11 = bool(env.get("DISPLAY"))
    if not x11 and not wayland:
        return ("paddock: no display found (neither DISPLAY nor WAYLAND_DISPLAY is set): start Paddock from a "
                "desktop session, or use 'paddock chat' / 'paddock serve' in a terminal")
    if wayland and "xcb" not in names:
        return None  # Qt takes its Wayland plugin here; it needs none of the xcb libraries
    if names and "xcb" not in names:
        return None  # another plugin asked for by name: Qt reports on it itself
    plugin = xcb_plugin()
    if plugin is None:
        return None
    missing = missing_libraries(plugin)
    if not missing:
        return None
    return (f"paddock: cannot open a window: Qt's X11 plugin needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed; {install_hint(missing)}")


def setup_warning() -> str | None:
    """For ``scripts/bootstrap.py``: the X11 libraries this machine lacks, whatever the display now."""
    if not sys.platform.startswith("linux"):
        return None
    plugin = xcb_plugin()
    missing = missing_libraries(plugin) if plugin is not None else []
    if not missing:
        return None
    return (f"warning: the desktop window needs {', '.join(missing)} (Qt's X11 plugin); {install_hint(missing)}. "
            "paddock chat / serve work without them.")


if __name__ == "__main__":
    warning = setup_warning()
    if warning:
        print(warning, file=sys.stderr)
