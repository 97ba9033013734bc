"""Writes that cannot lose data (issue 7): freeze/unfreeze `--in-place` and `-o` when the disk is full,
the folder is read-only, the target is a symlink, another varctl edits the same file, and legacy
`.h5` configs and name lists exceed HDF5's 64 KB attribute limit. The original is always intact,
no temp file is left behind, and what is written loads in Keras."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.test_hostile import _cli_as_nobody
from varctl.cli import app
from varctl.errors import EXIT_UNWRITABLE
from varctl.formats import open_model

keras = pytest.importorskip("keras")

ENV = {"NO_COLOR": "1", "COLUMNS": "120"}


def run(*args: str):
    result = CliRunner().invoke(app, list(args), env=ENV)
    assert "Traceback" not in result.output
    return result


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frozen_paths(path: Path) -> list[str]:
    return sorted(v.path for v in open_model(str(path)).variables if not v.trainable)


@pytest.fixture(scope="module")
def model_1mb(tmp_path_factory) -> Path:
    """A ~1.1 MB compiled .keras model: small enough for a 2 MB tmpfs, too big for two copies."""
    path = tmp_path_factory.mktemp("m") / "m.keras"
    model = keras.Sequential(
        [keras.Input((512,)), keras.layers.Dense(512, name="d0"), keras.layers.Dense(16, name="d1")]
    )
    model.save(path)
    assert 1_000_000 < path.stat().st_size < 1_400_000
    return path


@pytest.fixture
def tiny_disk(tmpfs):
    """A 2 MB tmpfs (root only): the disk fills up during the write."""
    return tmpfs("2m")


def test_in_place_on_a_full_disk_keeps_the_original(model_1mb, tiny_disk):
    target = tiny_disk / "m.keras"
    shutil.copy(model_1mb, target)
    before = digest(target)
    result = run("freeze", str(target), "-p", "d0", "--in-place")
    assert result.exit_code == EXIT_UNWRITABLE, result.output
    assert result.stdout == "" or "d0" in result.stdout
    assert "No space left on device" in result.stderr
    assert digest(target) == before
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["m.keras"]


def test_output_on_a_full_disk_leaves_nothing(model_1mb, tiny_disk):
    (tiny_disk / "filler").write_bytes(b"\0" * 1_500_000)
    out = tiny_disk / "out.keras"
    before = digest(model_1mb)
    result = run("freeze", str(model_1mb), "-p", "d0", "-o", str(out))
    assert result.exit_code == EXIT_UNWRITABLE, result.output
    assert "No space left on device" in result.stderr
    assert digest(model_1mb) == before
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]


@pytest.fixture
def immutable_folder(tmp_path, model_1mb):
    """A folder with `chattr +i`: not even root may create or rename files in it."""
    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copy(model_1mb, folder / "m.keras")
    proc = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {proc.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("mode", ["--in-place", "-o"])
def test_read_only_folder_is_exit_4_and_changes_nothing(immutable_folder, model_1mb, mode):
    target = immutable_folder / "m.keras"
    before = digest(target)
    args = ["--in-place"] if mode == "--in-place" else ["-o", str(immutable_folder / "out.keras")]
    src = target if mode == "--in-place" else model_1mb
    result = run("freeze", str(src), "-p", "d0", *args)
    assert result.exit_code == EXIT_UNWRITABLE, result.output
    assert "cannot write" in result.stderr and len(result.stderr.splitlines()) == 1
    assert digest(target) == before
    assert sorted(p.name for p in immutable_folder.iterdir()) == ["m.keras"]


def test_folder_that_another_user_cannot_write(public_tmp, model_1mb):
    folder = public_tmp
    shutil.copy(model_1mb, folder / "m.keras")
    (folder / "m.keras").chmod(0o644)
    before = digest(folder / "m.keras")
    code, stdout, stderr = _cli_as_nobody("freeze", str(folder / "m.keras"), "-p", "d0", "--in-place")
    assert code == EXIT_UNWRITABLE, stderr
    assert "cannot write" in stderr and "Permission denied" in stderr
    assert digest(folder / "m.keras") == before
    assert sorted(p.name for p in folder.iterdir()) == ["m.keras"]


def test_output_through_a_symlink_edits_the_file_and_keeps_the_link(tmp_path, model_1mb):
    real = tmp_path / "real.keras"
    real.write_bytes(b"old contents")
    link = tmp_path / "link.keras"
    link.symlink_to(real)
    dangling = tmp_path / "dangling.keras"
    dangling.symlink_to(tmp_path / "new.keras")
    for out, file in ((link, real), (dangling, tmp_path / "new.keras")):
        result = run("freeze", str(model_1mb), "-p", "d0", "-o", str(out))
        assert result.exit_code == 0, result.output
        assert out.is_symlink()
        assert frozen_paths(file) == ["d0/bias", "d0/kernel"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dangling.keras",
        "link.keras",
        "new.keras",
        "real.keras",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_in_place_keeps_mode_and_owner(tmp_path, model_1mb):
    target = tmp_path / "m.keras"
    shutil.copy(model_1mb, target)
    os.chown(target, 1234, 5678)
    target.chmod(0o640)
    inode = target.stat().st_ino
    result = run("freeze", str(target), "-p", "d0", "--in-place")
    assert result.exit_code == 0, result.output
    st = target.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 5678, 0o640)
    assert st.st_ino != inode  # a new file renamed over the old one, not rewritten in place
    assert frozen_paths(target) == ["d0/bias", "d0/kernel"]


# -- two processes editing one file ---------------------------------------------------------------


@pytest.fixture(scope="module")
def model_40mb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.keras"
    model = keras.Sequential(
        [keras.Input((1024,))] + [keras.layers.Dense(1024, name=f"d{k}") for k in range(10)]
    )
    model.save(path)
    return path


def test_two_processes_editing_one_file(tmp_path, model_40mb):
    """Both start at once: the second gets a clear error (or runs after the first); the file is
    always one of the valid results, never a mix."""
    target = tmp_path / "m.keras"
    seen = {"conflict": 0, "both ran": 0}
    for trial in range(4):
        shutil.copy(model_40mb, target)
        cmds = [
            [sys.executable, "-m", "varctl", "freeze", str(target), "-p", p, "--in-place"]
            for p in ("d0", "d1")
        ]
        procs = [
            subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in cmds
        ]
        outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
        for p in procs:
            p.stderr.close()  # type: ignore[union-attr]
        codes = sorted(code for code, _ in outcomes)
        with zipfile.ZipFile(target) as zf:
            assert zf.testzip() is None
        frozen = frozen_paths(target)
        if codes == [0, EXIT_UNWRITABLE]:
            seen["conflict"] += 1
            loser = next(err for code, err in outcomes if code)
            assert (
                "is being edited by another varctl process" in loser or "was changed by someone else" in loser
            )
            winner = "d0" if outcomes[0][0] == 0 else "d1"
            assert frozen == [f"{winner}/bias", f"{winner}/kernel"]
        else:
            assert codes == [0, 0], outcomes
            seen["both ran"] += 1
            assert frozen == ["d0/bias", "d0/kernel", "d1/bias", "d1/kernel"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
        if seen["conflict"] and trial >= 1:
            break
    print(f"two writers: {seen}")
    assert seen["conflict"] > 0, "the two processes never overlapped: the test proved nothing"


# -- legacy .h5 past HDF5's 64 KB attribute limit -------------------------------------------------


N_LONG = 35  # layers per level: 70 in all, with 2,000-character names


def _long(prefix: str, k: int) -> str:
    return f"{prefix}_{k:04d}_" + "x" * 2000


@pytest.fixture(scope="module")
def big_config_h5(tmp_path_factory) -> Path:
    """model_config ~150 KB; `layer_names` (36 long names, ~72 KB) and the nested base's
    `weight_names` (~140 KB) pass HDF5's 64 KB header limit, so Keras splits them into
    `layer_names0, 1, ...` / `weight_names0, 1, ...`."""
    import h5py

    path = tmp_path_factory.mktemp("h5") / "big.h5"
    base = keras.Sequential(
        [keras.Input((1,))] + [keras.layers.Dense(1, name=_long("inner", k)) for k in range(N_LONG)],
        name="base",
    )
    x = i = keras.Input((1,))
    x = base(x)
    for k in range(N_LONG):
        x = keras.layers.Dense(1, name=_long("top", k))(x)
    keras.Model(i, x, name="big").save(path)
    with h5py.File(path) as f:
        assert len(f.attrs["model_config"]) > 64 * 1024
        assert "layer_names0" in f["model_weights"].attrs
        assert "weight_names0" in f["model_weights/base"].attrs
    return path


def test_large_legacy_config_and_split_names_round_trip(big_config_h5, tmp_path):
    listed = open_model(str(big_config_h5))
    assert len(listed.variables) == 2 * 2 * N_LONG
    out = tmp_path / "out.h5"
    result = run("freeze", str(big_config_h5), "-p", "base", "-p", "top_000[0-4]*", "-o", str(out))
    assert result.exit_code == 0, result.output
    model = keras.saving.load_model(str(big_config_h5), compile=False)
    model.get_layer("base").trainable = False
    for k in range(5):
        model.get_layer(_long("top", k)).trainable = False
    want = len(model.trainable_variables)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = keras.saving.load_model(str(out), compile=False)
    assert len(got.trainable_variables) == want == 2 * (N_LONG - 5)
    assert sorted(v.path for v in open_model(str(out)).variables if v.trainable) == sorted(
        v.path for v in got.trainable_variables
    )
    for a, b in zip(model.weights, got.weights, strict=True):  # nothing swapped by the reorder
        assert (a.numpy() == b.numpy()).all()
