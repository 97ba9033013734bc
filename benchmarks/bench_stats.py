"""Peak memory (and time) of `varctl stats` on models with one large variable, against reading it whole.

Usage: python benchmarks/bench_stats.py [--dims 4096,8192] [--runs 3] [--chunked] [--json out.json]
For each N in --dims, builds once into benchmarks/.cache (needs keras) a model whose Dense(N) kernel
is N x N float32 (8192 -> 256 MiB), then runs each command in a fresh process (fork + exec,
peak RSS from os.wait4's ru_maxrss) and prints medians. "read whole" is the naive way: one
`dataset[()]` of the kernel (inside the .keras, opened in place) plus its mean: what `stats` would
cost without chunks. "cat" is the I/O alone.
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

READ_WHOLE = """
import sys, zipfile
from varctl.formats import keras_zip, open_model
info = open_model(sys.argv[1])
kernel = max(info.variables, key=lambda v: v.params)
with zipfile.ZipFile(sys.argv[1]) as zf:
    with keras_zip.open_weights(sys.argv[1], zf, zf.getinfo("model.weights.h5")) as h5:
        x = h5[kernel.storage][()]
        print(float(x.mean()))
"""


def build(n: int) -> Path:
    path = CACHE / f"dense_{n}x{n}.keras"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    # Built in a child process: importing Keras here would inflate every measured peak RSS
    # (a forked child starts with its parent's resident memory).
    code = (
        "import os; os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3'); import keras, sys\n"
        "n = int(sys.argv[1]); keras.utils.set_random_seed(0)\n"
        "keras.Sequential([keras.Input((n,)), keras.layers.Dense(n)]).save(sys.argv[2])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(n), str(path)], check=True)
    return path


def build_chunked(n: int) -> Path:
    """The same model, its kernel rewritten in ordinary gzip chunks (h5py's default chunk shape): the
    layout a non-Keras tool may write, read chunk by chunk without re-inflating any chunk."""
    path = CACHE / f"dense_{n}x{n}_gzip_chunks.keras"
    if path.exists():
        return path
    code = (
        "import sys, shutil, zipfile, h5py\n"
        "src, dst = sys.argv[1], sys.argv[2]\n"
        "tmp = dst + '.weights.h5'\n"
        "with zipfile.ZipFile(src) as z:\n"
        "    parts = {i.filename: z.read(i) for i in z.infolist() if i.filename != 'model.weights.h5'}\n"
        "    with z.open('model.weights.h5') as w, open(tmp, 'wb') as out: shutil.copyfileobj(w, out)\n"
        "with h5py.File(tmp, 'r+') as f:\n"
        "    old = f['layers/dense/vars/0']; data = old[()]; del f['layers/dense/vars/0']\n"
        "    f['layers/dense/vars'].create_dataset('0', data=data, chunks=True, compression='gzip', compression_opts=1)\n"
        "with zipfile.ZipFile(dst, 'w') as z:\n"
        "    for k, v in parts.items(): z.writestr(k, v)\n"
        "    z.write(tmp, 'model.weights.h5')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(build(n)), str(path)], check=True)
    (CACHE / f"{path.name}.weights.h5").unlink()
    return path


def measure(cmd: list[str], runs: int, ok_codes: tuple[int, ...] = (0,)) -> dict:
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
        if os.waitstatus_to_exitcode(status) not in ok_codes:
            raise SystemExit(f"failed: {' '.join(cmd)}")
    return {"median_s": statistics.median(times), "peak_rss_mib": max(peaks)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", default="4096,8192", help="comma-separated N for the N x N kernels")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chunked", action="store_true", help="also the kernel in gzip chunks (builds a copy)")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows: dict[str, dict] = {}
    rows["python -c pass"] = measure([sys.executable, "-c", "pass"], args.runs)
    small = ROOT / "sample_models" / "batchnorm.keras"
    rows["stats batchnorm.keras (3.5 KB of weights)"] = measure(
        VARCTL + ["stats", str(small), "-f", "json"], args.runs
    )
    for n in (int(d) for d in args.dims.split(",")):
        path = build(n)
        label = f"{n}x{n} ({path.stat().st_size / 2**20:.0f} MiB file)"
        rows[f"list {label}"] = measure(VARCTL + ["list", str(path), "-f", "json"], args.runs)
        rows[f"stats {label}"] = measure(VARCTL + ["stats", str(path), "-f", "json"], args.runs)
        rows[f"check --finite {label}"] = measure(VARCTL + ["check", str(path), "--finite"], args.runs)
        rows[f"diff --values {label} vs itself"] = measure(
            VARCTL + ["diff", str(path), str(path), "--values", "-f", "json"], args.runs
        )
        rows[f"read whole kernel {label}"] = measure([sys.executable, "-c", READ_WHOLE, str(path)], args.runs)
        rows[f"cat {label}"] = measure(["cat", str(path)], args.runs)
        if args.chunked:
            chunked = build_chunked(n)
            label = f"{n}x{n} in gzip chunks ({chunked.stat().st_size / 2**20:.0f} MiB file)"
            rows[f"stats {label}"] = measure(VARCTL + ["stats", str(chunked), "-f", "json"], args.runs)
            rows[f"diff --values {label} vs contiguous"] = measure(
                VARCTL + ["diff", str(chunked), str(path), "--values", "-f", "json"], args.runs
            )
    width = max(len(k) for k in rows)
    print(f"{'command':<{width}}  {'median s':>9}  {'peak RSS MiB':>12}")
    for k, r in rows.items():
        print(f"{k:<{width}}  {r['median_s']:>9.2f}  {r['peak_rss_mib']:>12.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
