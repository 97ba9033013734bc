"""The benchmark suite: varctl against the metadata floor, Keras, cp and cat; start-up; scaling; targets.

Usage: python benchmarks/run.py [--quick] [--runs N] [--skip SECTION ...] [--markdown FILE] [--json FILE]
The page: python benchmarks/run.py --markdown benchmarks/README.md

Builds its models once into benchmarks/.cache (needs Keras: `pip install -e '.[test]'`; without it,
or with --no-build, only the committed samples and what is already cached are measured), then
runs every command in a fresh process several times, the compared commands of one row group
interleaved (a, b, c, a, b, c, ...) so that load from elsewhere on the machine hits them alike.
It prints medians, spread (max - min) and peak RSS, the ratios measured in this run (absolute
times vary between machines, ratios hold) and a "Targets" table: each goal of the round, the
ratio measured, met or missed (computed, never typed).
`--markdown FILE` writes the same page as Markdown: benchmarks/README.md is made that way.

Peak RSS comes from os.wait4's ru_maxrss of each child. Linux keeps the largest resident size a
process had, fork included, so this script never imports anything heavy (no Keras, no numpy):
models are built by a separate Python process, and a child forked from here starts small.

A command that fails (varctl cannot read a format yet, Keras missing, ...) is shown as
"n/a (exit N)" and the suite goes on; a model that cannot be built is left out, and the targets
that need it say so.

Sections (each can be skipped with --skip): startup, list, many, freeze, stats, layers, bytes.
--quick leaves out VGG16, the 4,000-layer model and the GB-sized models (the sharded pair is
~70 MB instead of ~1 GB) and runs fewer repetitions: a CI-sized run of a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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

# The floor: what any tool must pay to answer `list` — start Python, import h5py, read the model
# config and walk the HDF5 metadata (shape and dtype of every dataset). A .keras is read in place
# inside the zip; a legacy .h5 is opened with h5py; sharded weights: the index, then every shard.
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

rows = []
def visit(name, obj):
    if isinstance(obj, h5py.Dataset):
        rows.append((name, obj.shape, obj.dtype.name))

path = sys.argv[1]
if path.endswith(".json"):
    with open(path) as f:
        index = json.load(f)
    shards = set()
    for value in index["weight_map"].values():
        shards.update([value] if isinstance(value, str) else value)
    for shard in sorted(shards):
        with h5py.File(os.path.join(os.path.dirname(path), shard), "r") as h5:
            h5.visititems(visit)
elif zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
        info = zf.getinfo("model.weights.h5")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        with h5py.File(Window(f.fileno(), start, info.file_size), "r") as h5:
            h5.visititems(visit)
else:
    with h5py.File(path, "r") as h5:
        config = json.loads(h5.attrs["model_config"])
        h5.visititems(visit)
for row in rows:
    print(*row)
"""

# The start-up floor of any static reader of a .keras file: Python plus the two stdlib modules.
BARE = "import zipfile, json"

# The baseline a user writes today: load the model with Keras and iterate over its variables.
KERAS = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
model = keras.saving.load_model(sys.argv[1])
for v in model.variables:
    print(v.path, tuple(v.shape), v.dtype, v.trainable)
"""

# Run in one child process (the only one that imports Keras) to build the missing models. Each
# model is built once and saved in every format asked for; one that fails is reported and skipped.
BUILD = r"""
import inspect, json, os, shutil, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
sys.setrecursionlimit(100_000)

def make(kind, arg):
    if kind == "vgg16":
        return keras.applications.VGG16(weights=None)
    if kind == "nasnet":
        return keras.applications.NASNetMobile(weights=None)
    if kind == "dense":  # 8 Dense(width) layers in a row: weight bytes grow with width**2
        return keras.Sequential(
            [keras.Input((arg,))] + [keras.layers.Dense(arg) for _ in range(8)], name=f"dense8x{arg}"
        )
    if kind == "sharded":  # depth Dense(width) layers, saved as sharded weights
        width, depth, _ = arg
        return keras.Sequential(
            [keras.Input((width,))] + [keras.layers.Dense(width) for _ in range(depth)],
            name=f"sharded{width}",
        )
    if kind == "wide":  # `arg` Dense(4) layers side by side: a deep chain overflows Keras's recursion
        x = keras.Input((4,))
        outs = [keras.layers.Dense(4)(x) for _ in range(arg)]
        y = keras.layers.Concatenate()(outs) if len(outs) > 1 else outs[0]
        return keras.Model(x, y, name=f"layers_{arg}")
    raise ValueError(f"unknown model kind {kind}")

def save(model, arg, out):
    if not out.endswith(".weights.json"):
        tmp = out + ".part" + os.path.splitext(out)[1]  # Keras picks the format by suffix
        model.save(tmp)
        os.replace(tmp, out)
        return out
    folder, name = os.path.split(out)
    tmp = folder + ".part"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    if "max_shard_size" in inspect.signature(model.save_weights).parameters:
        model.save_weights(os.path.join(tmp, name), max_shard_size=arg[2])
    else:  # no sharding in this Keras: one .keras with the same bytes instead
        model.save(os.path.join(tmp, "model.keras"))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder

failed = 0
for kind, arg, outs in json.loads(sys.argv[1]):
    try:
        keras.utils.set_random_seed(0)
        model = make(kind, arg)
        for out in outs:
            done = save(model, arg, out)
            print(f"built {done}", file=sys.stderr, flush=True)
    except Exception as exc:
        failed += 1
        print(f"could not build {kind} {arg}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    model = None
    keras.backend.clear_session()
sys.exit(1 if failed else 0)
"""

LAYERS_FULL = (10, 100, 1000, 4000)
LAYERS_QUICK = (10, 100, 1000)
WIDTHS_FULL = (256, 1024, 4096, 8192)  # 8 x width**2 float32: 2 MB, 34 MB, 537 MB, 2.1 GB
WIDTHS_QUICK = (256, 1024)
# Sharded weights (width, depth, max_shard_size GB): depth x width**2 float32.
SHARDED_SMALL = (64, 4, 0.25)  # 66 KB, one shard
SHARDED_BIG_FULL = (8192, 4, 0.25)  # 1.07 GB, 5 shards
SHARDED_BIG_QUICK = (2048, 4, 0.02)  # 67 MB, 4 shards
MANY_FILES = 100
CPU_LIMIT_S = 1800  # a child looping on a bad file is killed (SIGXCPU) instead of hanging the suite


@dataclass
class Result:
    section: str
    label: str
    command: list[str]
    times: list[float] = field(default_factory=list)
    peaks_mib: list[float] = field(default_factory=list)
    failed: str | None = None  # "exit N" once a run failed; the command is not run again

    @property
    def ok(self) -> bool:
        return self.failed is None and bool(self.times)

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
        doc: dict = {"section": self.section, "label": self.label, "command": shown(self.command)}
        if not self.ok:
            return doc | {"failed": self.failed or "not run"}
        return doc | {
            "runs": len(self.times),
            "median_s": round(self.median, 4),
            "spread_s": round(self.spread, 4),
            "min_s": round(min(self.times), 4),
            "peak_rss_mib": round(self.peak, 1),
        }


@dataclass
class Target:
    """One goal of the round: a ratio from this run against a bound; met/missed is computed."""

    goal: str
    model: str
    bound: float
    at_least: bool = False  # True: the ratio must be >= bound (a speed-up); else <= bound
    value: float | None = None
    note: str = "not run"

    @property
    def status(self) -> str:
        if self.value is None:
            return self.note
        return (
            "met" if (self.value >= self.bound if self.at_least else self.value <= self.bound) else "missed"
        )

    @property
    def goal_text(self) -> str:
        return f"{'≥' if self.at_least else '≤'} {self.bound:g}×"


def varctl() -> list[str]:
    """The installed console script (what users run), else `python -m varctl`."""
    script = Path(PY).parent / "varctl"
    return [str(script)] if script.exists() else [PY, "-m", "varctl"]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The children's environment: this one, but bytecode caching on, as users have it.

    With PYTHONDONTWRITEBYTECODE set, an editable install compiles every varctl module from
    source on each run (60 ms here); the untimed warm-up run writes the .pyc files instead.
    varctl's read timeout (60 s) is raised to 600 s: a slow read is measured, not refused.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.setdefault("VARCTL_READ_TIMEOUT", "600")
    env.update(extra or {})
    return env


def run_once(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, exit code) of one fresh process; stdout and stderr go to /dev/null."""
    env = env if env is not None else child_env()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT_S, CPU_LIMIT_S + 10))
            os.execvpe(cmd[0], cmd, env)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    return elapsed, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)  # KiB -> MiB on Linux


def measure(
    section: str,
    cmds: dict[str, list[str]],
    runs: int,
    *,
    counts: dict[str, int] | None = None,
    warmup: bool = True,
    env: dict[str, dict[str, str]] | None = None,
) -> list[Result]:
    """Run the commands round-robin `runs` times (after one untimed warm-up each).

    A label in `counts` runs only that many times (in the first rounds, still interleaved) and
    without warm-up: Keras loads and multi-GB copies. A command that exits non-zero is marked
    failed and left out of the later rounds.
    """
    counts, envs = counts or {}, env or {}
    results = [Result(section, label, cmd) for label, cmd in cmds.items()]

    def run(r: Result, timed: bool) -> None:
        if r.failed:
            return
        t, rss, code = run_once(r.command, envs.get(r.label))
        if code != 0:
            r.failed = f"exit {code}" if code > 0 else f"signal {-code}"
            print(f"  {r.label}: {r.failed}: {shown(r.command)}", file=sys.stderr, flush=True)
        elif timed:
            r.times.append(t)
            r.peaks_mib.append(rss)

    for r in results:
        if warmup and r.label not in counts:
            run(r, timed=False)
    for i in range(runs):
        for r in results:
            if i < counts.get(r.label, runs):
                run(r, timed=True)
    for r in results:
        text = f"{r.median:8.3f} s  ±{r.spread:6.3f}  {r.peak:8.1f} MiB" if r.ok else f"n/a ({r.failed})"
        print(f"  {r.label:<52} {text}", file=sys.stderr, flush=True)
    return results


def shown(cmd: list[str]) -> str:
    """A command line for messages: inline scripts shortened."""
    return shlex.join("<script>" if "\n" in arg else arg for arg in cmd)


def have_keras() -> bool:
    try:
        metadata.version("keras")
        metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        return False
    return True


def build(specs: dict[tuple[str, str], list[Path]]) -> None:
    """Build the missing models in one child process; failures are reported, never raised."""
    missing = [
        (kind, json.loads(arg), [str(p) for p in paths if not p.exists()])
        for (kind, arg), paths in specs.items()
    ]
    missing = [m for m in missing if m[2]]
    if not missing:
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"building {len(missing)} model(s) into {CACHE} (once) ...", file=sys.stderr, flush=True)
    code = subprocess.run(
        [PY, "-c", BUILD, json.dumps(missing)], env=child_env({"TF_CPP_MIN_LOG_LEVEL": "3"})
    ).returncode
    if code:
        print(f"building models failed (exit {code}): measuring the others", file=sys.stderr, flush=True)


def machine() -> dict:
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f"{kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    versions: dict[str, str | None] = {}
    for pkg in ("varctl", "keras", "tensorflow", "h5py", "numpy", "typer", "rich"):
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
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit(),
    }


def commit() -> str:
    """The git commit of the measured tree (+ "with local changes" when varctl/ differs), or ""."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "varctl"], capture_output=True, text=True
        )
    except OSError:
        return ""
    if head.returncode:
        return ""
    return head.stdout.strip() + (" with local changes in varctl/" if dirty.stdout.strip() else "")


def nbytes(path: Path) -> int:
    """Size of a model: a file, or a sharded index plus the shards in its folder."""
    if path.suffix == ".json" or path.is_dir():
        folder = path if path.is_dir() else path.parent
        return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return path.stat().st_size


def size_label(path: Path) -> str:
    n = nbytes(path)
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} KB"


def sharded(folder: Path) -> Path:
    """The sharded index in `folder`, or the .keras the build wrote when Keras cannot shard."""
    fallback = folder / "model.keras"
    return fallback if fallback.exists() else folder / "model.weights.json"


def main() -> None:  # noqa: C901 - one flat script: options, build, each section in turn
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized: small models, fewer runs")
    ap.add_argument("--runs", type=int, help="timed runs per command (default 5, --quick 3)")
    ap.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="leave out a section")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--markdown", metavar="FILE", help="also write the results as a Markdown page")
    ap.add_argument("--build-only", action="store_true", help="build the cached models, measure nothing")
    ap.add_argument("--no-build", action="store_true", help="measure only the models already in the cache")
    ap.add_argument(
        "--varctl",
        metavar="CMD",
        help="how to run varctl (default: the installed script), e.g. 'python -m varctl'",
    )
    args = ap.parse_args()
    runs = max(1, args.runs or (3 if args.quick else 5))
    heavy = max(1, min(runs, max(2, runs // 2)))  # Keras loads, multi-GB copies: fewer repetitions
    want = [s for s in SECTIONS if s not in args.skip]
    began = time.perf_counter()
    keras_ok = have_keras()
    if not keras_ok:
        print(
            "Keras/TensorFlow not installed: building nothing, measuring the samples and the cache",
            file=sys.stderr,
        )

    # The models of the `list` section: name -> (path, build kind, build argument). Kind "sample"
    # is committed; the others are built into the cache, once, by one child process.
    catalog: dict[str, tuple[Path, str, object]] = {
        "transfer .keras": (SAMPLES / "transfer_learning.keras", "sample", None),
        "transfer .h5": (SAMPLES / "transfer_learning.h5", "sample", None),
        "VGG16 .keras": (CACHE / "vgg16.keras", "vgg16", 0),
        "VGG16 .h5": (CACHE / "vgg16.h5", "vgg16", 0),
        "NASNetMobile .keras": (CACHE / "nasnet_mobile.keras", "nasnet", 0),
        "NASNetMobile .h5": (CACHE / "nasnet_mobile.h5", "nasnet", 0),
        "4,000 layers .keras": (CACHE / "layers_4000.keras", "wide", 4000),
        "4,000 layers .h5": (CACHE / "layers_4000.h5", "wide", 4000),
    }
    full_only = {"VGG16 .keras", "VGG16 .h5", "4,000 layers .keras", "4,000 layers .h5"}
    layer_counts = LAYERS_QUICK if args.quick else LAYERS_FULL
    widths = WIDTHS_QUICK if args.quick else WIDTHS_FULL
    wide = {n: CACHE / f"layers_{n}.keras" for n in layer_counts}
    dense = {w: CACHE / f"dense8x{w}.keras" for w in widths}
    big_spec = SHARDED_BIG_QUICK if args.quick else SHARDED_BIG_FULL
    shard_dirs = {
        "small": (CACHE / "sharded_{}x{}".format(*SHARDED_SMALL), SHARDED_SMALL),
        "big": (CACHE / "sharded_{}x{}".format(*big_spec), big_spec),
    }

    why: dict[str, str] = {}  # model name -> why it is not measured
    for name in catalog:
        if args.quick and name in full_only:
            why[name] = "not run (--quick)"
        elif "list" not in want:
            why[name] = "not run (--skip list)"
    specs: dict[tuple[str, str], list[Path]] = {}

    def need(kind: str, arg: object, path: Path) -> None:
        specs.setdefault((kind, json.dumps(arg)), []).append(path)

    if keras_ok and not args.no_build:
        for name, (path, kind, arg) in catalog.items():
            if kind != "sample" and name not in why:
                need(kind, arg, path)
        if args.quick is False and {"freeze", "stats"} & set(want):
            need("vgg16", 0, CACHE / "vgg16.keras")
        if "layers" in want:
            for n, p in wide.items():
                need("wide", n, p)
        if "bytes" in want:
            for w, p in dense.items():
                need("dense", w, p)
            for folder, spec in shard_dirs.values():
                if not sharded(folder).exists():
                    need("sharded", list(spec), folder / "model.weights.json")
        specs = {k: sorted(set(v)) for k, v in specs.items()}
        build(specs)
    built = time.perf_counter() - began
    if args.build_only:
        return

    models: dict[str, Path] = {}
    for name, (path, _, _) in catalog.items():
        if name in why:
            continue
        if path.exists():
            models[name] = path
        else:
            why[name] = "n/a (no model: " + ("no Keras)" if not keras_ok else "not built)")
    V = shlex.split(args.varctl) if args.varctl else varctl()
    out_path = CACHE / "out.keras"
    CACHE.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    ratios: dict[str, float | None] = {}

    def get(label: str) -> Result | None:
        return next((r for r in results if r.label == label), None)

    def med(label: str) -> float | None:
        r = get(label)
        return r.median if r and r.ok else None

    def ratio(a: str, b: str) -> float | None:
        x, y = med(a), med(b)
        return x / y if x is not None and y else None

    if "startup" in want:
        print("startup", file=sys.stderr)
        results += measure(
            "startup",
            {
                "python -c pass": [PY, "-c", "pass"],
                f"python -c '{BARE}'": [PY, "-c", BARE],
                "varctl --version": V + ["--version"],
                "varctl --help": V + ["--help"],
            },
            runs * 2,
        )
        ratios["--version / python -c pass"] = ratio("varctl --version", "python -c pass")
        ratios["--help / python -c pass"] = ratio("varctl --help", "python -c pass")

    bare_for = {"transfer .keras", "VGG16 .keras"}  # the stdlib start-up target
    keras_for = {"transfer .keras", "VGG16 .keras"}  # the load_model target
    if "list" in want:
        for name, path in models.items():
            print(f"list {name} ({size_label(path)})", file=sys.stderr)
            cmds = {f"list {name}": V + ["list", str(path)], f"floor {name}": [PY, "-c", FLOOR, str(path)]}
            env: dict[str, dict[str, str]] = {}
            counts: dict[str, int] = {}
            if name == "transfer .keras":  # what -f json and the sandbox cost, on one model
                cmds[f"list -f json {name}"] = V + ["list", str(path), "-f", "json"]
                cmds[f"list -f json, no sandbox {name}"] = V + ["list", str(path), "-f", "json"]
                env[f"list -f json, no sandbox {name}"] = child_env({"VARCTL_NO_SANDBOX": "1"})
            if name in bare_for:
                cmds[f"python -c '{BARE}' [{name}]"] = [PY, "-c", BARE]
            if name in keras_for and keras_ok:
                cmds[f"keras load_model {name}"] = [PY, "-c", KERAS, str(path)]
                counts[f"keras load_model {name}"] = heavy
            slow = name.startswith("4,000")  # a minute per run before the redesign: fewer, no warm-up
            results += measure("list", cmds, heavy if slow else runs, counts=counts, env=env, warmup=not slow)
            if name == "transfer .keras":
                ratios[f"list -f json / floor: {name}"] = ratio(f"list -f json {name}", f"floor {name}")
                ratios[f"sandbox cost, list -f json: {name}"] = ratio(
                    f"list -f json {name}", f"list -f json, no sandbox {name}"
                )

    if "many" in want:
        small = SAMPLES / "seed_dense.keras"
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
        one = med("list -f json, 1 file")
        for fmt, label in (("list -f json", f"list -f json, {MANY_FILES} files"),
                           ("list, table", f"list (table), {MANY_FILES} files")):  # fmt: skip
            many = med(label)
            ratios[f"ms per additional file ({fmt})"] = (
                (many - one) / (MANY_FILES - 1) * 1000 if many is not None and one is not None else None
            )

    if "freeze" in want:
        targets = {"transfer .keras": (SAMPLES / "transfer_learning.keras", "Conv1")}
        if not args.quick:
            targets["VGG16 .keras"] = (CACHE / "vgg16.keras", "block1_conv1")
        for name, (path, layer) in targets.items():
            if not path.exists():
                why.setdefault(name, "n/a (no model)")
                continue
            print(f"freeze {name} ({size_label(path)})", file=sys.stderr)
            cp_sync = ["sh", "-c", 'cp "$1" "$2" && sync "$2"', "sh", str(path), str(out_path)]
            results += measure(
                "freeze",
                {
                    f"freeze -o {name}": V + ["freeze", str(path), "-p", layer, "-o", str(out_path)],
                    f"cp {name}": ["cp", str(path), str(out_path)],
                    f"cp && sync {name}": cp_sync,
                },
                heavy if name.startswith("VGG16") else runs,
            )
            ratios[f"freeze -o / cp: {name}"] = ratio(f"freeze -o {name}", f"cp {name}")
            ratios[f"freeze -o / cp && sync: {name}"] = ratio(f"freeze -o {name}", f"cp && sync {name}")
        out_path.unlink(missing_ok=True)

    if "stats" in want:
        targets_s = {"transfer .keras": SAMPLES / "transfer_learning.keras"}
        if not args.quick:
            targets_s["VGG16 .keras"] = CACHE / "vgg16.keras"
        for name, path in targets_s.items():
            if not path.exists():
                continue
            print(f"stats {name} ({size_label(path)})", file=sys.stderr)
            results += measure(
                "stats",
                {f"stats {name}": V + ["stats", str(path), "-f", "json"], f"cat {name}": ["cat", str(path)]},
                heavy if name.startswith("VGG16") else runs,
            )
            ratios[f"stats / cat: {name}"] = ratio(f"stats {name}", f"cat {name}")

    pair_labels: dict[str, str] = {}  # "small"/"big" -> label of `list` on the sharded pair
    dense_labels: dict[int, str] = {}  # width -> label of `list -f json` on 8 x Dense(width)
    if "layers" in want:
        print("scaling with layers", file=sys.stderr)
        for n, path in wide.items():
            if not path.exists():
                continue
            size = size_label(path)
            results += measure(
                "layers",
                {f"list -f json, {n:,} layers ({size})": V + ["list", str(path), "-f", "json"],
                 f"list, {n:,} layers ({size})": V + ["list", str(path)],
                 f"floor, {n:,} layers ({size})": [PY, "-c", FLOOR, str(path)]},
                runs if n < 4000 else heavy,
            )  # fmt: skip
    if "bytes" in want:
        print("scaling with weight bytes (8 Dense layers)", file=sys.stderr)
        for w, path in dense.items():
            if not path.exists():
                continue
            size = size_label(path)
            dense_labels[w] = f"list -f json, 8 x Dense({w}) ({size})"
            results += measure(
                "bytes",
                {f"list -f json, 8 x Dense({w}) ({size})": V + ["list", str(path), "-f", "json"],
                 f"floor, 8 x Dense({w}) ({size})": [PY, "-c", FLOOR, str(path)]},
                runs,
            )  # fmt: skip
        pair = {k: sharded(folder) for k, (folder, _) in shard_dirs.items()}
        if all(p.exists() for p in pair.values()):
            kind = "sharded" if pair["big"].suffix == ".json" else "one .keras"  # Keras cannot shard
            pair_labels = {k: f"list, {kind} {size_label(p)}" for k, p in pair.items()}
            print(f"flat in weight bytes ({pair_labels['small']} vs {pair_labels['big']})", file=sys.stderr)
            results += measure(
                "bytes",
                {pair_labels[k]: V + ["list", str(p)] for k, p in pair.items()}
                | {f"floor, {kind} {size_label(p)}": [PY, "-c", FLOOR, str(p)] for p in pair.values()},
                runs,
            )

    targets_t: list[Target] = []

    def target(
        goal: str, model: str, bound: float, value: float | None, fails: list[str], at_least=False
    ) -> None:
        t = Target(goal, model, bound, at_least, value)
        if value is None:
            bad = [get(label) for label in fails]
            failed = [r for r in bad if r is not None and r.failed]
            t.note = f"n/a ({failed[0].failed}: {failed[0].label})" if failed else why.get(model, "not run")
        targets_t.append(t)

    for name in catalog:
        target("list / metadata floor", name, 1.5, ratio(f"list {name}", f"floor {name}"),
               [f"list {name}", f"floor {name}"])  # fmt: skip
    for name in ("transfer .keras", "VGG16 .keras"):
        bare = f"python -c '{BARE}' [{name}]"
        target(f'list / `python -c "{BARE}"`', name, 2.5, ratio(f"list {name}", bare), [f"list {name}", bare])
    for name in ("NASNetMobile .keras", "NASNetMobile .h5", "4,000 layers .keras", "4,000 layers .h5"):
        target("list / h5py metadata floor", name, 0.3, ratio(f"list {name}", f"floor {name}"),
               [f"list {name}", f"floor {name}"])  # fmt: skip
    for name in ("transfer .keras", "VGG16 .keras"):
        k = f"keras load_model {name}"
        if not keras_ok and name not in why:
            why[name] = "n/a (no Keras)"
        target(
            "Keras load_model / list (speed-up)",
            name,
            50,
            ratio(k, f"list {name}"),
            [k, f"list {name}"],
            True,
        )
    why.setdefault("VGG16 .keras", "not run (--skip freeze)" if "freeze" not in want else "not run")
    target("freeze -o / cp", "VGG16 .keras", 2.0, ratio("freeze -o VGG16 .keras", "cp VGG16 .keras"),
           ["freeze -o VGG16 .keras", "cp VGG16 .keras"])  # fmt: skip

    def rss_target(labels: dict[str, str], model: str) -> None:
        """Flat in weight bytes: peak RSS of `list` on the big model / on the small one."""
        a, b = get(labels.get("small", "")), get(labels.get("big", ""))
        if "bytes" not in want:
            why[model] = "not run (--skip bytes)"
        elif not (a and b):
            why[model] = "n/a (no model: " + ("no Keras)" if not keras_ok else "not built)")
        value = b.peak / a.peak if a and b and a.ok and b.ok else None
        target("peak RSS of list, big / small model", model, 1.2, value, list(labels.values()))

    pair_text = " vs ".join(
        pair_labels[k].removeprefix("list, ") for k in ("big", "small") if k in pair_labels
    )
    rss_target(pair_labels, pair_text or "sharded ~1 GB vs small")
    if len(dense_labels) > 1:  # the same on .keras files (all weights in one HDF5 member)
        lo, hi = dense_labels[min(dense_labels)], dense_labels[max(dense_labels)]
        rss_target({"small": lo, "big": hi}, f"{hi} vs {lo}".replace("list -f json, ", ""))

    total = time.perf_counter() - began
    info = machine()
    cmdline = shlex.join(["python", "benchmarks/run.py", *sys.argv[1:]])
    page = render(info, cmdline, V, args.quick, runs, heavy, results, ratios, targets_t)
    print(page)
    print(f"{total:.0f} s in all ({built:.0f} s building models); {runs} runs per command ({heavy} heavy)")
    if args.markdown:
        Path(args.markdown).write_text(page)
    if args.json:
        doc = {
            "command": cmdline,
            "machine": info,
            "quick": args.quick,
            "runs": runs,
            "heavy_runs": heavy,
            "seconds": round(total, 1),
            "results": [r.summary() for r in results],
            "ratios": {k: None if v is None else round(v, 4) for k, v in ratios.items()},
            "targets": [
                {
                    "goal": t.goal,
                    "model": t.model,
                    "bound": t.goal_text,
                    "value": None if t.value is None else round(t.value, 4),
                    "status": t.status,
                }
                for t in targets_t
            ],  # fmt: skip
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")


def table(header: list[str], align: str, rows: list[list[str]]) -> list[str]:
    """A GitHub pipe table; `align` has one letter per column: l or r."""
    rule = ["---:" if a == "r" else "---" for a in align]
    return ["| " + " | ".join(cells) + " |" for cells in [header, rule, *rows]]


def cell_md(text: str) -> str:
    return text.replace("|", "\\|")


def render(
    info: dict,
    cmdline: str,
    varctl_cmd: list[str],
    quick: bool,
    runs: int,
    heavy: int,
    results: list[Result],
    ratios: dict[str, float | None],
    targets: list[Target],
) -> str:
    """The whole report as one Markdown page (also what goes to stdout)."""
    lines = ["# varctl benchmarks", ""]
    if quick:
        lines += [
            "> **Quick run (`--quick`)**: CI-sized models and few repetitions. VGG16 and the",
            "> 4,000-layer model are left out and the sharded model is ~70 MB, not ~1 GB:",
            "> run without `--quick` for the real table.",
            "",
        ]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    varctl_shown = shlex.join(varctl_cmd).replace(str(ROOT) + "/", "").replace(sys.prefix, "$VENV")
    lines += [
        "Generated by the command below (never edit by hand); absolute times vary between machines,",
        "ratios measured in one run hold. Each command runs in a fresh process, the commands of a",
        f"group interleaved; timed runs per command: {runs} ({heavy} for Keras loads, VGG16 copies and",
        "4,000-layer models), after one untimed warm-up; spread = max − min; peak RSS from `wait4`.",
        "",
        f"- Command: `{cmdline}` (varctl run as `{varctl_shown}`)",
        f"- Code: commit {info['commit'] or 'unknown'}",
        f"- Machine: {info['platform']}, {info['cpus']} CPUs, {info['memory']}, Python {info['python']}",
        f"- Versions: {versions}",
        f"- Date: {info['date']}",
        "",
        "Yardsticks: the *metadata floor* is a Python process that imports h5py, reads the model",
        "config and walks the HDF5 metadata (shape and dtype of every dataset) — in place inside a",
        f'`.keras`, in a legacy `.h5`, or in every shard of a sharded index; `python -c "{BARE}"`',
        "is the start-up of a stdlib-only reader; *Keras load_model* loads the model and iterates over",
        "`model.variables`; `cp` copies the file (`freeze -o` writes a whole new one). Peak RSS must",
        "stay flat in weight bytes.",
        "",
        "## Targets",
        "",
    ]

    def fmt_ratio(v: float | None) -> str:
        if v is None:
            return "n/a"
        return f"{v:.3f}×" if v < 10 else f"{v:.1f}×"  # 3 decimals: 1.503× must not read as 1.50×

    lines += table(
        ["target", "model", "measured", "goal", "status"],
        "lllrl",
        [[cell_md(t.goal), t.model, fmt_ratio(t.value), t.goal_text, cell_md(t.status)] for t in targets],
    )
    met = sum(t.status == "met" for t in targets)
    missed = sum(t.status == "missed" for t in targets)
    lines += ["", f"{met} met, {missed} missed, {len(targets) - met - missed} not measured.", ""]
    for section in SECTIONS:
        rows = [r for r in results if r.section == section]
        if not rows:
            continue
        lines += [f"## {section}", ""]
        lines += table(
            ["command", "median s", "spread s", "peak RSS MiB"],
            "lrrr",
            [
                [cell_md(r.label), f"{r.median:.3f}", f"{r.spread:.3f}", f"{r.peak:.1f}"]
                if r.ok
                else [cell_md(r.label), f"n/a ({r.failed or 'not run'})", "", ""]
                for r in rows
            ],
        )
        lines.append("")
    if ratios:
        lines += ["## Other ratios (same run)", ""]
        lines += table(
            ["ratio", "value"],
            "lr",
            [[cell_md(k), "n/a" if v is None else f"{v:.3f}"] for k, v in ratios.items()],
        )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    main()
