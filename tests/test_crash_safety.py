"""kill -9 in the middle of an in-place edit never damages the original, and the next run removes
what the killed run left behind."""

from __future__ import annotations

import hashlib
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import pytest

pytest.importorskip("keras")

from varctl.formats import open_model

TRIALS = 12


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    """A compiled, trained ~40 MB model, so a write takes long enough to be interrupted."""
    import keras
    import numpy as np

    path = tmp_path_factory.mktemp("big") / "big.keras"
    # Named layers: auto-names (`dense_57`) depend on what earlier tests built in this process.
    model = keras.Sequential(
        [keras.Input((1024,))] + [keras.layers.Dense(1024, name=f"d{k}") for k in range(3)]
    )
    model.compile("adam", "mse")
    model.fit(np.zeros((2, 1024)), np.zeros((2, 1024)), verbose=0)
    model.save(path)
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kill_9_during_in_place_write_leaves_a_valid_model(big_model, tmp_path):
    target = tmp_path / "m.keras"
    shutil.copy(big_model, target)
    rng = random.Random(0)
    outcomes = {"before the write": 0, "mid-write": 0, "after the rename": 0}
    previous = _digest(target)
    for i in range(TRIALS):
        pattern = "d0" if i % 2 == 0 else "d1"
        proc = subprocess.Popen(
            [sys.executable, "-m", "varctl", "freeze", str(target), "-p", pattern, "--in-place"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if i % 3 == 0:  # at a random moment of the whole run
            time.sleep(rng.uniform(0.05, 1.0))
        else:  # at a random moment once the temp file exists: during the write
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if any(p.name.startswith(".varctl-") for p in tmp_path.iterdir()):
                    break
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.03))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        digest = _digest(target)
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".varctl-")]
        # The file is always a complete archive: the old one or a finished new one, never a mix.
        with zipfile.ZipFile(target) as zf:
            assert zf.testzip() is None
        info = open_model(str(target))
        assert len(info.variables) == 6
        if digest != previous:
            outcomes["after the rename"] += 1
        elif temps:
            outcomes["mid-write"] += 1
        else:
            outcomes["before the write"] += 1
        previous = digest
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "m.keras"]
    # the next run cleans up after the killed ones
    result = subprocess.run(
        [sys.executable, "-m", "varctl", "freeze", str(target), "-p", "d0", "--dry-run"],
        capture_output=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "varctl",
            "freeze",
            str(target),
            "-p",
            "d0",
            "-o",
            str(tmp_path / "x.keras"),
        ],
        capture_output=True,
        check=True,
    )
    assert result.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "x.keras"], leftovers
    from tests.keras_oracle import load

    load(str(target), compile=True)
    print(f"kill -9 trials: {outcomes}; temp files left by the kills: {len(leftovers)}")
    assert outcomes["mid-write"] > 0, "no kill landed during a write: the test proved nothing"
