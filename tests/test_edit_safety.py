"""freeze/unfreeze: one read of the input, a dry run that refuses what the real run refuses, output
targets that are regular files only (devices, FIFOs, sockets and folders untouched, modes kept),
and a full disk during the optimizer-state rewrite that ends in exit 4 with nothing left behind."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import ROOT, SAMPLES
from varctl.cli import app
from varctl.errors import EXIT_UNWRITABLE, EXIT_USAGE

ENV = {"NO_COLOR": "1", "COLUMNS": "120", "FORCE_COLOR": None}
TRANSFER = SAMPLES / "transfer_learning.keras"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def run(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args], env=ENV)
    assert "Traceback" not in result.output
    return result


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".varctl-"))


# -- read once ------------------------------------------------------------------------------------

_AUDIT = textwrap.dedent(
    """
    import os, sys
    src, log_path = sys.argv[1], sys.argv[2]
    target = os.path.realpath(src)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def hook(event, args):
        # forked readers inherit the hook and the log: their opens are counted too
        if event == "open" and args and isinstance(args[0], (str, bytes)):
            if os.path.realpath(os.fsdecode(args[0])) == target:
                os.write(log, f"{os.getpid()} {args[1]!r}\\n".encode())

    sys.addaudithook(hook)
    from varctl.cli import main
    sys.argv = ["varctl", *sys.argv[3:]]
    main()
    """
)


def test_unfreeze_reads_its_input_once(tmp_path):
    """Exactly 3 opens of the input: the lock (os.open, nothing read through it), ONE sandboxed
    metadata read (sniff, config, weights metadata and optimizer slots through one file object),
    and the copy of the members into the output. Before the split it was 4 sandboxed reads."""
    src = tmp_path / "in.keras"
    shutil.copy(TRANSFER, src)
    log = tmp_path / "opens.log"
    script = tmp_path / "audit.py"
    script.write_text(_AUDIT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    args = ["unfreeze", str(src), "-p", "block_16*", "-o", str(tmp_path / "out.keras")]
    proc = subprocess.run(
        [sys.executable, str(script), str(src), str(log), *args], env=env, capture_output=True
    )
    assert proc.returncode == 0, proc.stderr.decode()
    opens = log.read_text().splitlines()
    pids = [line.split()[0] for line in opens]
    assert len(opens) == 3, opens
    cli_pid = pids[0]  # the lock comes first, in the CLI process
    assert opens[0].endswith("None")  # os.open: the flock
    assert [p == cli_pid for p in pids] == [True, False, True], opens  # lock, read (sandbox), copy


# -- dry run = real run minus the write -------------------------------------------------------------


def test_dry_run_makes_the_writers_refusals(tmp_path, monkeypatch):
    """The legacy .h5 weight reorder is checked while planning: a dry run refuses it like -o does."""
    from varctl.errors import UsageError
    from varctl.formats import legacy_h5

    def refuse(before, after, manifest):
        raise UsageError("cannot reorder the weights of layer 'inner' in this legacy .h5 file safely")

    monkeypatch.setattr(legacy_h5, "weight_order", refuse)
    src = SAMPLES / "transfer_learning.h5"
    out = tmp_path / "out.h5"
    dry = run("unfreeze", src, "-p", "block_16*", "--dry-run")
    real = run("unfreeze", src, "-p", "block_16*", "-o", out)
    assert dry.exit_code == real.exit_code == EXIT_USAGE, (dry.output, real.output)
    assert dry.stderr == real.stderr
    assert "cannot reorder the weights of layer 'inner'" in dry.stderr
    assert not out.exists()


def test_h5_output_notes_say_what_keras_logs(tmp_path):
    """An uncompiled .h5 output: Keras logs 'No training configuration found', and varctl says so."""
    src = tmp_path / "m.h5"
    shutil.copy(SAMPLES / "batchnorm.h5", src)
    import h5py

    with h5py.File(src, "r+") as f:  # the same model saved uncompiled (Keras writes no attribute then)
        if "training_config" in f.attrs:
            del f.attrs["training_config"]
        if "optimizer_weights" in f:
            del f["optimizer_weights"]
    result = run("freeze", src, "--all", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "No training configuration found in the save file" in result.stderr
    assert "loads cleanly" not in result.stderr


def test_batchnorm_note_follows_the_transfer_learning_guide():
    result = run("unfreeze", TRANSFER, "-p", "block_16*", "--dry-run")
    assert result.exit_code == 0, result.output
    note = next(line for line in result.stderr.splitlines() if "BatchNormalization" in line)
    assert "base_model.trainable = True" in note and "training=False" in note
    assert "keeps them frozen" not in note


# -- output targets -------------------------------------------------------------------------------


@as_root
def test_a_device_is_refused_and_untouched(tmp_path):
    """A character device like /dev/null (1, 3), made here: a writer that replaced it would not
    take the machine's /dev/null down with it."""
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError as e:
        pytest.skip(f"cannot make a device node here: {e}")
    before = os.lstat(null)
    link = tmp_path / "out.keras"
    link.symlink_to(null)
    for target in (null, link):
        result = run("freeze", TRANSFER, "-p", "dense", "-o", target)
        assert result.exit_code == EXIT_UNWRITABLE, result.output
        assert "it is a device, not a regular file" in result.stderr
    after = os.lstat(null)
    assert stat.S_ISCHR(after.st_mode) and (after.st_rdev, after.st_ino) == (before.st_rdev, before.st_ino)
    assert leftovers(tmp_path) == []


def test_fifo_socket_and_folder_targets_are_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    folder = tmp_path / "dir"
    folder.mkdir()
    link = tmp_path / "link.keras"
    link.symlink_to(fifo)
    try:
        for target, kind in (
            (fifo, "a FIFO"),
            (sock_path, "a socket"),
            (folder, "a directory"),
            (link, "a FIFO"),
        ):
            result = run("freeze", TRANSFER, "-p", "dense", "-o", target)
            assert result.exit_code == EXIT_UNWRITABLE, (target, result.output)
            assert f"it is {kind}, not a regular file" in result.stderr
            assert result.stderr.count("\n") <= 2  # error (and hint) lines only
    finally:
        sock.close()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    assert os.listdir(folder) == [] and leftovers(tmp_path) == []


def test_replacing_a_file_keeps_its_mode(tmp_path):
    src = tmp_path / "in.keras"
    shutil.copy(TRANSFER, src)
    src.chmod(0o644)
    out = tmp_path / "private.keras"
    out.write_bytes(b"old")
    out.chmod(0o600)
    assert run("freeze", src, "-p", "dense", "-o", out).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    new = tmp_path / "new.keras"
    assert run("freeze", src, "-p", "dense", "-o", new).exit_code == 0
    assert stat.S_IMODE(new.stat().st_mode) == 0o644  # a new file gets the input's mode


@as_root
def test_replacing_a_file_keeps_its_owner(tmp_path):
    out = tmp_path / "theirs.keras"
    out.write_bytes(b"old")
    os.chown(out, 65534, 65534)
    assert run("freeze", TRANSFER, "-p", "dense", "-o", out).exit_code == 0
    assert (out.stat().st_uid, out.stat().st_gid) == (65534, 65534)


# -- a full disk during the optimizer-state rewrite -------------------------------------------------


@pytest.fixture(scope="module")
def trained_1mb(tmp_path_factory) -> Path:
    """A compiled, trained .keras model whose unfreeze remaps Adam's state: the weights copy is
    ~1.1 MB and the remap adds ~2 MB of fresh slots for the unfrozen 512x512 kernel."""
    keras = pytest.importorskip("keras")
    import numpy as np

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((512,)), keras.layers.Dense(512, name="d0"), keras.layers.Dense(4, name="d1")]
    )
    model.get_layer("d0").trainable = False
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((2, 512)), np.zeros((2, 4)), epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("trained") / "m.keras"
    model.save(path)
    return path


@pytest.fixture
def disk(tmpfs):
    """An 8 MB tmpfs (root only)."""
    return tmpfs("8m")


def _fill(disk: Path, free: int) -> None:
    st = os.statvfs(disk)
    left = st.f_bavail * st.f_frsize - free
    if left > 0:
        (disk / "filler").write_bytes(b"\0" * left)


@pytest.mark.parametrize(
    "free_kb",
    [40, 600, 1600, 2600, 4000],  # fails copying the weights, in the HDF5 remap (x2), writing the zip
)
def test_full_disk_during_the_remap(trained_1mb, disk, free_kb):
    target = disk / "m.keras"
    shutil.copy(trained_1mb, target)
    before = digest(target)
    _fill(disk, free_kb * 1024)
    result = run("unfreeze", target, "-p", "d0", "--in-place")
    assert result.exit_code == EXIT_UNWRITABLE, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("varctl: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert errors[0].endswith("No space left on device"), errors
    assert digest(target) == before
    assert leftovers(disk) == []


def test_edits_that_only_read_the_input_share_it_in_place_edits_do_not(tmp_path):
    """`-o` reads the input under a shared lock (several at once are fine); `--in-place` needs it
    alone, and is refused (exit 4) while another varctl reads it, as `-o` is while one replaces it."""
    import fcntl

    src = tmp_path / "m.keras"
    shutil.copy(SAMPLES / "seed_dense.keras", src)
    fd = os.open(src, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # another `-o` edit reading it
        assert run("freeze", src, "-p", "dense", "-o", tmp_path / "a.keras").exit_code == 0
        busy = run("freeze", src, "-p", "dense", "--in-place")
        assert busy.exit_code == EXIT_UNWRITABLE and "being edited" in busy.stderr
        fcntl.flock(fd, fcntl.LOCK_EX)  # another `--in-place` edit replacing it
        busy = run("freeze", src, "-p", "dense", "-o", tmp_path / "b.keras")
        assert busy.exit_code == EXIT_UNWRITABLE and not (tmp_path / "b.keras").exists()
    finally:
        os.close(fd)
    assert run("freeze", src, "-p", "dense", "--in-place").exit_code == 0
