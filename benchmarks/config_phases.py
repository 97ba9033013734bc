"""The config side of one read, phase by phase: `.keras` (config JSON, Tree, walk, finish) and legacy
`.h5` (_read_config, Tree, _attach, _finish), as a reader runs them (gc disabled, as in the sandbox).

Each phase is timed once per fresh process (a second call runs warm: not what `varctl list` pays),
N processes per model, best per phase. With --base ROOT (a checkout holding another `varctl`
package, e.g. `git archive <commit> varctl | tar -x -C ROOT`), the two are run interleaved and
compared. The HDF5 scan is not timed here; `(find_risks)` is timed apart, after the Tree.

Usage: python benchmarks/config_phases.py [--base ROOT] [-n N] [MODEL ...]
(default models: benchmarks/.cache/{nasnet_mobile,layers_4000}.{keras,h5})
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"


def child(path: str) -> None:
    import gc

    gc.disable()
    from varctl.formats import _manifest, hdf5meta, keras_zip, legacy_h5
    from varctl.formats._layout import (
        CONFIG_MEMBER,
        MODEL_CONFIG,
        MODEL_WEIGHTS,
        NOT_MODEL_STATE,
        WEIGHTS_MEMBER,
    )
    from varctl.formats.tree import Tree, find_risks

    h5s, clock, took = hdf5meta.h5safe, time.perf_counter, {}
    if path.endswith(".keras"):  # keras_zip.read's order: config, Tree, weights scan, walk, finish
        with keras_zip.open_archive(path) as (raw, zf, members):
            data = zf.read(members[CONFIG_MEMBER])
            t = clock()
            config = keras_zip.parse_json(data, CONFIG_MEMBER)
            took["json"], t = clock() - t, clock()
            tree = Tree(config, None)
            took["Tree"] = clock() - t
            with keras_zip.open_weights(raw, zf, members[WEIGHTS_MEMBER], h5s) as h5:
                scanned = _manifest.scan(h5s, h5, h5s.Budget(), NOT_MODEL_STATE)
        t = clock()
        keras_zip.walk(tree, config, scanned)
        took["walk"], t = clock() - t, clock()
        keras_zip._finish(tree, config, keras_zip.Manifest(scanned, None), path)
        took["finish"] = clock() - t
    else:  # legacy_h5._read's order: config, weights scan, Tree, attach, finish
        with _manifest.open_hdf5(h5s, path) as f:
            text = h5s.str_attr(f, MODEL_CONFIG)
            read = type("Read", (), {"str_attr": staticmethod(lambda h5, key: text)})  # the attribute
            t = clock()
            config = legacy_h5._read_config(None, read)
            took["_read_config"] = clock() - t
            # (the order matters: parsed after the scan, the config's objects lie scattered among
            # the scan's freed ones, and each walk of them is up to 1.8x slower)
            groups = legacy_h5._scan(h5s.get_group(f, MODEL_WEIGHTS), h5s)
            manifest = legacy_h5.Manifest(groups, h5s.str_attr(f, "keras_version"), None)
        t = clock()
        tree = Tree(config, manifest.keras_version)
        took["Tree"], t = clock() - t, clock()
        legacy_h5._attach(tree, manifest)
        took["_attach"], t = clock() - t, clock()
        legacy_h5._finish(tree, manifest, path)
        took["_finish"] = clock() - t
    t = clock()
    find_risks(config)
    took["(find_risks)"] = clock() - t
    print(json.dumps({k: v * 1000 for k, v in took.items()}))


def run(root: Path, model: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(root), "VARCTL_NO_SANDBOX": "1"}
    # cwd=root too: `python -m`-style runs put the cwd first on sys.path
    out = subprocess.run([sys.executable, __file__, "--child", model], env=env, cwd=root, check=True,
                         stdout=subprocess.PIPE, text=True).stdout  # fmt: skip
    return json.loads(out)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*")
    parser.add_argument("--base", type=Path)
    parser.add_argument("-n", type=int, default=9)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    models = args.models or [
        str(CACHE / f"{m}.{e}") for m in ("nasnet_mobile", "layers_4000") for e in ("keras", "h5")
    ]
    roots = {"after": ROOT} if args.base is None else {"before": args.base.resolve(), "after": ROOT}
    for model in models:
        best: dict[str, dict[str, float]] = {label: {} for label in roots}
        for _ in range(args.n):
            for label, root in roots.items():  # interleaved: load elsewhere hits both alike
                for phase, ms in run(root, model).items():
                    best[label][phase] = min(best[label].get(phase, ms), ms)
        print(Path(model).name)
        for phase in best["after"]:
            shown = [f"{best[label][phase]:7.2f}" for label in roots]
            ratio = f"  x{best['before'][phase] / best['after'][phase]:.2f}" if "before" in best else ""
            print(f"  {phase:14s} {' -> '.join(shown)} ms{ratio}")
        sums = {label: sum(v for k, v in best[label].items() if not k.startswith("(")) for label in roots}
        ratio = f"  x{sums['before'] / sums['after']:.2f}" if "before" in sums else ""
        print(f"  {'sum':14s} {' -> '.join(f'{s:7.2f}' for s in sums.values())} ms{ratio}")


if __name__ == "__main__":
    main()
