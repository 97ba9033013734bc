"""Time and peak memory of `varctl list` and `varctl freeze -o` on a small and a large model.

Usage: python benchmarks/bench_list.py [--large-mb 400] [--runs 5] [--json out.json]
Builds the large model once into benchmarks/.cache (needs keras), then runs each command in a fresh
process several times and prints medians, spread and peak RSS, plus ratios measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"
VARCTL = [sys.executable, "-m", "varctl"]


def build_large(mb: int) -> Path:
    path = CACHE / f"dense_{mb}mb.keras"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    # Built in a child process: importing Keras here would inflate every measured peak RSS
    # (a forked child starts with its parent's resident memory).
    code = (
        "import os; os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3'); import keras, sys\n"
        "w = 4096; n = max(1, int(sys.argv[1]) * 1_000_000 // (w * w * 4))\n"
        "m = keras.Sequential([keras.Input((w,))] + [keras.layers.Dense(w) for _ in range(n)])\n"
        "m.save(sys.argv[2])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(mb), str(path)], check=True)
    return path


def measure(cmd: list[str], runs: int) -> dict:
    times, peaks = [], []
    for _ in range(runs):
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.execvp(cmd[0], cmd)
        _, status, usage = os.wait4(pid, 0)
        times.append(time.perf_counter() - start)
        peaks.append(usage.ru_maxrss / 1024)  # KiB -> MiB on Linux
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}")
    return {
        "median_s": statistics.median(times),
        "spread_s": max(times) - min(times),
        "peak_rss_mb": max(peaks),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--large-mb", type=int, default=400)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    small = ROOT / "sample_models" / "seed_dense.keras"
    tl = ROOT / "sample_models" / "transfer_learning.keras"
    large = build_large(args.large_mb)
    tmp = CACHE / "out.keras"
    rows = {}
    for label, path in (("small", small), ("transfer_learning", tl), ("large", large)):
        size = path.stat().st_size
        rows[f"list {label} ({size / 1e6:.1f} MB)"] = measure(VARCTL + ["list", str(path), "-f", "json"], args.runs)
    rows["freeze -o large"] = measure(VARCTL + ["freeze", str(large), "-p", "dense", "-o", str(tmp)], args.runs)
    rows["cp large"] = measure(["cp", str(large), str(tmp)], args.runs)
    rows["python -c pass"] = measure([sys.executable, "-c", "pass"], args.runs)
    rows["varctl --version"] = measure(VARCTL + ["--version"], args.runs)
    tmp.unlink(missing_ok=True)
    width = max(len(k) for k in rows)
    print(f"{'command':<{width}}  {'median s':>9}  {'spread s':>9}  {'peak RSS MB':>11}")
    for k, r in rows.items():
        print(f"{k:<{width}}  {r['median_s']:>9.3f}  {r['spread_s']:>9.3f}  {r['peak_rss_mb']:>11.1f}")
    keys = list(rows)
    ratio = rows[keys[2]]["median_s"] / rows[keys[0]]["median_s"]
    print(f"\nlist large / list small time ratio: {ratio:.2f}")
    print(f"freeze -o large / cp large time ratio: {rows['freeze -o large']['median_s'] / rows['cp large']['median_s']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
