"""The benchmark suite: varctl against the Keras baseline, the metadata floor, cp and cat; start-up; scaling.

Usage: python benchmarks/run.py [--quick] [--runs N] [--json FILE] [--skip SECTION ...]

Builds its models once into benchmarks/.cache (needs Keras: `pip install -e '.[test]'`; without it
only the committed sample models are measured), then runs every command in a fresh process several
times, the compared commands of one row group interleaved (a, b, c, a, b, c, ...) so that load from
elsewhere on the machine hits them alike. It prints medians, spread (max - min) and peak RSS, and
ratios measured in this run: absolute times vary between machines, ratios hold.

Peak RSS comes from os.wait4's ru_maxrss of each child. Linux keeps the largest resident size a
process had, fork included, so this script never imports anything heavy (no Keras, no numpy):
models are built by a separate Python process, and a child forked from here starts small.

Sections (each can be skipped with --skip): startup, list, many, freeze, stats, layers, bytes.
--quick leaves out VGG16, the 2 GB model, the 5,000-layer model and the largest byte sizes, and
runs fewer repetitions: a CI-sized run of a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"
SAMPLES = ROOT / "sample_models"
PY = sys.executable
SECTIONS = ("startup", "list", "many", "freeze", "stats", "layers", "bytes")

# The floor: what any tool must pay to answer `list` — start Python, import h5py, read config.json
# and walk the HDF5 metadata (shape and dtype of every dataset) in place inside the zip.
FLOOR = r"""
import io, json, os, struct, sys, zipfile
import h5py

class Window(io.RawIOBase):
    def __init__(self, fd, start, size):
        self.fd, self.start, self.size, self.pos = fd, start, size, 0
    def readable(self): return True
    def seekable(self): return True
    def tell(self): return self.pos
    def seek(self, offset, whence=0):
        self.pos = (0, self.pos, self.size)[whence] + offset
        return self.pos
    def readinto(self, buf):
        n = max(0, min(len(buf), self.size - self.pos))
        n = os.preadv(self.fd, [memoryview(buf)[:n]], self.start + self.pos) if n else 0
        self.pos += n
        return n

path = sys.argv[1]
with zipfile.ZipFile(path) as zf:
    config = json.loads(zf.read("config.json"))
    info = zf.getinfo("model.weights.h5")
with open(path, "rb") as f:
    f.seek(info.header_offset)
    header = f.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    rows = []
    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            rows.append((name, obj.shape, obj.dtype.name))
    with h5py.File(Window(f.fileno(), start, info.file_size), "r") as h5:
        h5.visititems(visit)
for row in rows:
    print(*row)
"""

# The baseline a user writes today: load the model with Keras and iterate over its variables.
KERAS = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
model = keras.saving.load_model(sys.argv[1])
for v in model.variables:
    print(v.path, tuple(v.shape), v.dtype, v.trainable)
"""

# Run in one child process (the only one that imports Keras) to build the missing models.
BUILD = r"""
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
sys.setrecursionlimit(100_000)
for kind, arg, out in json.loads(sys.argv[1]):
    keras.utils.set_random_seed(0)
    if kind == "vgg16":
        model = keras.applications.VGG16(weights=None)
    elif kind == "dense":  # 8 Dense(width) layers in a row: weight bytes grow with width**2
        model = keras.Sequential(
            [keras.Input((arg,))] + [keras.layers.Dense(arg) for _ in range(8)], name=f"dense8x{arg}"
        )
    elif kind == "wide":  # `arg` Dense(4) layers side by side: a deep chain overflows Keras's recursion
        x = keras.Input((4,))
        outs = [keras.layers.Dense(4)(x) for _ in range(arg)]
        y = keras.layers.Concatenate()(outs) if len(outs) > 1 else outs[0]
        model = keras.Model(x, y, name=f"layers_{arg}")
    else:
        raise SystemExit(f"unknown model kind {kind}")
    tmp = out + ".part.keras"
    model.save(tmp)
    os.replace(tmp, out)
    print(f"built {out} ({os.path.getsize(out) / 1e6:.1f} MB)", file=sys.stderr, flush=True)
"""

LAYERS_FULL = (10, 100, 1000, 5000)
LAYERS_QUICK = (10, 100, 1000)
WIDTHS_FULL = (256, 1024, 4096, 8192)  # 8 x width**2 float32: 2 MB, 34 MB, 537 MB, 2.1 GB
WIDTHS_QUICK = (256, 1024)
MANY_FILES = 100


@dataclass
class Result:
    section: str
    label: str
    command: list[str]
    times: list[float] = field(default_factory=list)
    peaks_mib: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        return max(self.times) - min(self.times)

    @property
    def peak(self) -> float:
        return max(self.peaks_mib)

    def summary(self) -> dict:
        return {
            "section": self.section,
            "label": self.label,
            "command": " ".join(self.command),
            "runs": len(self.times),
            "median_s": round(self.median, 4),
            "spread_s": round(self.spread, 4),
            "min_s": round(min(self.times), 4),
            "peak_rss_mib": round(self.peak, 1),
        }


def varctl() -> list[str]:
    """The installed console script (what users run), else `python -m varctl`."""
    script = Path(PY).parent / "varctl"
    return [str(script)] if script.exists() else [PY, "-m", "varctl"]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The children's environment: this one, but bytecode caching on, as users have it.

    With PYTHONDONTWRITEBYTECODE set, an editable install compiles every varctl module from
    source on each run (60 ms here); the untimed warm-up run writes the .pyc files instead.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra or {})
    return env


def run_once(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one fresh process; stdout and stderr go to /dev/null."""
    env = env if env is not None else child_env()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.execvpe(cmd[0], cmd, env)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"exit {code}: {' '.join(cmd)}")
    return elapsed, usage.ru_maxrss / 1024  # KiB -> MiB on Linux


def measure(
    section: str, cmds: dict[str, list[str]], runs: int, *, warmup: bool = True, env: dict | None = None
) -> list[Result]:
    """Run the commands round-robin `runs` times (after one untimed warm-up each)."""
    envs = env or {}
    results = [Result(section, label, cmd) for label, cmd in cmds.items()]
    if warmup:
        for r in results:
            run_once(r.command, envs.get(r.label))
    for _ in range(runs):
        for r in results:
            t, rss = run_once(r.command, envs.get(r.label))
            r.times.append(t)
            r.peaks_mib.append(rss)
    for r in results:
        print(
            f"  {r.label:<52} {r.median:8.3f} s  ±{r.spread:6.3f}  {r.peak:8.1f} MiB",
            file=sys.stderr,
            flush=True,
        )
    return results


def have_keras() -> bool:
    try:
        metadata.version("keras")
        metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        return False
    return True


def build(specs: list[tuple[str, int, Path]]) -> None:
    missing = [(k, a, str(p)) for k, a, p in specs if not p.exists()]
    if not missing:
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"building {len(missing)} model(s) into {CACHE} (once) ...", file=sys.stderr, flush=True)
    subprocess.run(
        [PY, "-c", BUILD, json.dumps(missing)], check=True, env=child_env({"TF_CPP_MIN_LOG_LEVEL": "3"})
    )


def machine() -> dict:
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f"{kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    versions = {}
    for pkg in ("varctl", "typer", "rich", "h5py", "numpy", "keras", "tensorflow"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "versions": versions,
    }


def size_label(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized: small models, fewer runs")
    ap.add_argument("--runs", type=int, help="timed runs per command (default 5, --quick 3)")
    ap.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="leave out a section")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--build-only", action="store_true", help="build the cached models, measure nothing")
    ap.add_argument(
        "--varctl",
        metavar="CMD",
        help="how to run varctl (default: the installed script), e.g. 'python -m varctl'",
    )
    args = ap.parse_args()
    runs = args.runs or (3 if args.quick else 5)
    heavy = max(2, runs // 2)  # Keras loads, multi-GB copies: fewer repetitions
    want = [s for s in SECTIONS if s not in args.skip]
    began = time.perf_counter()
    keras_ok = have_keras()
    if not keras_ok:
        print("Keras/TensorFlow not installed: measuring the committed samples only", file=sys.stderr)

    small = SAMPLES / "seed_dense.keras"
    tl = SAMPLES / "transfer_learning.keras"
    vgg = CACHE / "vgg16.keras"
    layer_counts = LAYERS_QUICK if args.quick else LAYERS_FULL
    widths = WIDTHS_QUICK if args.quick else WIDTHS_FULL
    wide = {n: CACHE / f"layers_{n}.keras" for n in layer_counts}
    dense = {w: CACHE / f"dense8x{w}.keras" for w in widths}
    big = dense.get(8192)  # the synthetic ~2 GB model is the last point of the bytes curve
    specs: list[tuple[str, int, Path]] = []
    if keras_ok:
        if not args.quick and {"list", "freeze", "stats"} & set(want):
            specs.append(("vgg16", 0, vgg))
        if "layers" in want:
            specs += [("wide", n, p) for n, p in wide.items()]
        if "bytes" in want or (big and "list" in want):
            specs += [("dense", w, p) for w, p in dense.items()]
    build(specs)
    built = time.perf_counter() - began
    if args.build_only:
        return

    models = {"small (seed_dense)": small, "transfer_learning": tl}
    if keras_ok and not args.quick:
        models["VGG16"] = vgg
        if big is not None:
            models["synthetic 2 GB"] = big
    V = shlex.split(args.varctl) if args.varctl else varctl()
    out_path = CACHE / "out.keras"
    CACHE.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    ratios: dict[str, float] = {}

    def med(label: str) -> float:
        return next(r.median for r in results if r.label == label)

    def peak(label: str) -> float:
        return next(r.peak for r in results if r.label == label)

    if "startup" in want:
        print("startup", file=sys.stderr)
        results += measure(
            "startup",
            {
                "python -c pass": [PY, "-c", "pass"],
                "varctl --version": V + ["--version"],
                "varctl --help": V + ["--help"],
            },
            runs * 2,
        )
        ratios["--version / python -c pass"] = med("varctl --version") / med("python -c pass")
        ratios["--help / python -c pass"] = med("varctl --help") / med("python -c pass")

    if "list" in want:
        for name, path in models.items():
            print(f"list {name} ({size_label(path)})", file=sys.stderr)
            cmds = {
                f"list {name}": V + ["list", str(path)],
                f"list -f json {name}": V + ["list", str(path), "-f", "json"],
                f"list -f json, no sandbox {name}": V + ["list", str(path), "-f", "json"],
                f"floor {name}": [PY, "-c", FLOOR, str(path)],
            }
            env = {f"list -f json, no sandbox {name}": child_env({"VARCTL_NO_SANDBOX": "1"})}
            results += measure("list", cmds, runs, env=env)
            if keras_ok:
                results += measure(
                    "list", {f"keras load_model {name}": [PY, "-c", KERAS, str(path)]}, heavy, warmup=False
                )
                ratios[f"list / keras: {name}"] = med(f"list {name}") / med(f"keras load_model {name}")
            ratios[f"list / floor: {name}"] = med(f"list {name}") / med(f"floor {name}")
            ratios[f"list -f json / floor: {name}"] = med(f"list -f json {name}") / med(f"floor {name}")
            ratios[f"sandbox cost, list -f json: {name}"] = med(f"list -f json {name}") / med(
                f"list -f json, no sandbox {name}"
            )

    if "many" in want:
        print(f"many files ({MANY_FILES} copies of seed_dense.keras)", file=sys.stderr)
        folder = CACHE / "many"
        folder.mkdir(parents=True, exist_ok=True)
        copies = [folder / f"m{i:03d}.keras" for i in range(MANY_FILES)]
        for c in copies:
            if not c.exists():
                shutil.copyfile(small, c)
        results += measure(
            "many",
            {
                "list -f json, 1 file": V + ["list", str(copies[0]), "-f", "json"],
                f"list -f json, {MANY_FILES} files": V + ["list", *map(str, copies), "-f", "json"],
                f"list (table), {MANY_FILES} files": V + ["list", *map(str, copies)],
            },
            runs,
        )
        extra = (med(f"list -f json, {MANY_FILES} files") - med("list -f json, 1 file")) / (MANY_FILES - 1)
        ratios["ms per additional file (list -f json)"] = extra * 1000
        ratios["ms per additional file (list, table)"] = (
            (med(f"list (table), {MANY_FILES} files") - med("list -f json, 1 file")) / (MANY_FILES - 1) * 1000
        )

    if "freeze" in want:
        targets = {"transfer_learning": (tl, "Conv1")}
        if keras_ok and not args.quick:
            targets["VGG16"] = (vgg, "block1_conv1")
        for name, (path, layer) in targets.items():
            print(f"freeze {name} ({size_label(path)})", file=sys.stderr)
            cp_sync = ["sh", "-c", 'cp "$1" "$2" && sync "$2"', "sh", str(path), str(out_path)]
            results += measure(
                "freeze",
                {
                    f"freeze -o {name}": V + ["freeze", str(path), "-p", layer, "-o", str(out_path)],
                    f"cp {name}": ["cp", str(path), str(out_path)],
                    f"cp && sync {name}": cp_sync,
                },
                heavy if name == "VGG16" else runs,
            )
            ratios[f"freeze -o / cp: {name}"] = med(f"freeze -o {name}") / med(f"cp {name}")
            ratios[f"freeze -o / cp && sync: {name}"] = med(f"freeze -o {name}") / med(f"cp && sync {name}")
        out_path.unlink(missing_ok=True)

    if "stats" in want:
        targets = {"transfer_learning": tl}
        if keras_ok and not args.quick:
            targets["VGG16"] = vgg
        for name, path in targets.items():
            print(f"stats {name} ({size_label(path)})", file=sys.stderr)
            results += measure(
                "stats",
                {f"stats {name}": V + ["stats", str(path), "-f", "json"], f"cat {name}": ["cat", str(path)]},
                heavy if name == "VGG16" else runs,
            )
            ratios[f"stats / cat: {name}"] = med(f"stats {name}") / med(f"cat {name}")

    scaling: dict[str, list[dict]] = {"layers": [], "bytes": []}
    if "layers" in want and keras_ok:
        print("scaling with layers", file=sys.stderr)
        for n, path in wide.items():
            r = measure(
                "layers",
                {f"list -f json, {n} layers": V + ["list", str(path), "-f", "json"],
                 f"list, {n} layers": V + ["list", str(path)],
                 f"floor, {n} layers": [PY, "-c", FLOOR, str(path)]},
                runs if n < 5000 else heavy,
            )  # fmt: skip
            results += r
            scaling["layers"].append(
                {"layers": n, "file_mb": round(path.stat().st_size / 1e6, 1), "json_s": r[0].median,
                 "table_s": r[1].median, "floor_s": r[2].median, "peak_rss_mib": r[1].peak}
            )  # fmt: skip
    if "bytes" in want and keras_ok:
        print("scaling with weight bytes (8 Dense layers)", file=sys.stderr)
        for w, path in dense.items():
            r = measure(
                "bytes",
                {f"list -f json, 8 x Dense({w})": V + ["list", str(path), "-f", "json"],
                 f"floor, 8 x Dense({w})": [PY, "-c", FLOOR, str(path)]},
                runs,
            )  # fmt: skip
            results += r
            scaling["bytes"].append(
                {"width": w, "file_mb": round(path.stat().st_size / 1e6, 1), "json_s": r[0].median,
                 "floor_s": r[1].median, "peak_rss_mib": r[0].peak}
            )  # fmt: skip

    report(results, ratios, scaling)
    total = time.perf_counter() - began
    print(f"\n{total:.0f} s in all ({built:.0f} s building models); {runs} runs per command ({heavy} heavy)")
    if args.json:
        doc = {
            "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
            "machine": machine(),
            "runs": runs,
            "heavy_runs": heavy,
            "seconds": round(total, 1),
            "results": [r.summary() for r in results],
            "ratios": {k: round(v, 4) for k, v in ratios.items()},
            "scaling": scaling,
            "peak_rss_mib": {r.label: round(r.peak, 1) for r in results},
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")


def report(results: list[Result], ratios: dict[str, float], scaling: dict[str, list[dict]]) -> None:
    info = machine()
    print(f"# {info['platform']}, {info['cpus']} CPUs, {info['memory']}, Python {info['python']}")
    print("# " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v))
    width = max(len(r.label) for r in results) if results else 10
    print(f"\n| {'command':<{width}} | median s | spread s | peak RSS MiB |")
    print(f"|{'-' * (width + 2)}|---------:|---------:|-------------:|")
    for r in results:
        print(f"| {r.label:<{width}} | {r.median:8.3f} | {r.spread:8.3f} | {r.peak:12.1f} |")
    if ratios:
        w = max(map(len, ratios))
        print(f"\n| {'ratio (same run)':<{w}} |    value |")
        print(f"|{'-' * (w + 2)}|---------:|")
        for k, v in ratios.items():
            print(f"| {k:<{w}} | {v:8.3f} |")
    if scaling["layers"]:
        print("\n| layers | file MB | list -f json s | list (table) s | floor s | peak RSS MiB |")
        print("|-------:|--------:|---------------:|---------------:|--------:|-------------:|")
        for row in scaling["layers"]:
            print(
                f"| {row['layers']:>6,} | {row['file_mb']:>7.1f} | {row['json_s']:>14.3f} | {row['table_s']:>14.3f} "
                f"| {row['floor_s']:>7.3f} | {row['peak_rss_mib']:>12.1f} |"
            )
    if scaling["bytes"]:
        print("\n| weights (8 x Dense(w)) | file MB | list -f json s | floor s | peak RSS MiB |")
        print("|-----------------------:|--------:|---------------:|--------:|-------------:|")
        for row in scaling["bytes"]:
            print(
                f"| {row['width']:>22,} | {row['file_mb']:>7.1f} | {row['json_s']:>14.3f} "
                f"| {row['floor_s']:>7.3f} | {row['peak_rss_mib']:>12.1f} |"
            )


if __name__ == "__main__":
    main()
