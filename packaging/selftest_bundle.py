"""Run a built bundle's ``--selftest`` and record its size and start-up figures.

    python packaging/selftest_bundle.py PATH/TO/paddock MODEL.gguf

Writes packaging/dist/selftest.json; exits non-zero if the self-test fails.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main(binary: Path, model: Path) -> int:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("PYTHONPATH", None)
    starts = []
    for _ in range(3):  # process start to exit of the frozen interpreter, warm cache
        t = time.perf_counter()
        subprocess.run([str(binary), "--version"], check=True, capture_output=True, env=env)
        starts.append(time.perf_counter() - t)
    t = time.perf_counter()
    proc = subprocess.run([str(binary), "--selftest", "--model", str(model)], check=False, capture_output=True,
                          text=True,
                          env=env, timeout=600)
    total = time.perf_counter() - t
    sys.stderr.write(proc.stderr[-2000:])
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        print(proc.stdout)
        print(f"self-test printed no report (exit {proc.returncode})", file=sys.stderr)
        return 1
    summary = {
        "binary": str(binary),
        "bundle_mb": round(folder_size(binary.parent) / 1e6, 1),
        "version_start_s": round(statistics.median(starts), 3),
        "selftest_s": round(total, 2),
        "window_shown_s": report["checks"].get("qt", {}).get("s"),
        "selftest": report,
    }
    out = binary.parent.parent / "selftest.json"
    out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "selftest"}, indent=2))
    print("self-test", "passed" if proc.returncode == 0 and report.get("ok") else "FAILED")
    return 0 if proc.returncode == 0 and report.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))
