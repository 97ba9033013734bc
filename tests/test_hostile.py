"""Hostile inputs (issue 7): a corpus of bad files built here, the sandbox that contains the HDF5 C
library, and risky content (code in the config) reported by `list` and refused by `check`.

Every refused input: the documented exit code, one `varctl: error: ...` line naming the file (plus an
optional hint), nothing on stdout, no traceback, and nothing written. Inputs that are odd but
readable (config and weights that disagree, strange names) are listed, with a warning where varctl
cannot vouch for the result. The decisions:

| finding                                                    | outcome          |
|------------------------------------------------------------|------------------|
| not a zip/HDF5, truncated, corrupt, not UTF-8, not JSON    | exit 3           |
| links, external/virtual storage, filter plugins, bombs,    | exit 3 (unsafe)  |
| duplicate members, lying sizes, absurd nesting or sizes    |                  |
| config layer without weights group, extra weights group,   | exit 0 + warning |
| wrong variable count, shape that the config contradicts    |                  |
| unknown layer class; code in the config (Lambda, custom)   | exit 0 + warning |
| `/`, glob metacharacters, non-ASCII in layer names         | exit 0, exact    |
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.test_errors import ENV, SAMPLES, _write
from varctl.cli import app
from varctl.errors import EXIT_FOUND, EXIT_UNREADABLE, EXIT_USAGE, UsageError

runner = CliRunner()
KERAS = SAMPLES / "seed_dense.keras"
H5 = SAMPLES / "seed_dense.h5"


# -- helpers -------------------------------------------------------------------------------------


def _members(src: Path = KERAS) -> dict[str, bytes]:
    with zipfile.ZipFile(src) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _stored(path: Path, members: list[tuple[str, bytes]] | dict[str, bytes]) -> Path:
    """A zip with every member stored, as Keras writes it (duplicates allowed in a list)."""
    items = members.items() if isinstance(members, dict) else members
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in items:
            if isinstance(members, list):
                zf.writestr(zipfile.ZipInfo(name), data)
            else:
                zf.writestr(name, data)
    return path


def _config() -> dict:
    return json.loads(_members()["config.json"])


def _with_config(path: Path, config: dict | bytes) -> Path:
    members = _members()
    members["config.json"] = config if isinstance(config, bytes) else json.dumps(config).encode()
    return _stored(path, members)


def _edit_weights(path: Path, edit: Callable[[h5py.File], None]) -> Path:
    """The sample .keras with its weights HDF5 changed by `edit` (through a scratch file)."""
    members = _members()
    scratch = path.with_suffix(".scratch.h5")
    scratch.write_bytes(members["model.weights.h5"])
    with h5py.File(scratch, "a") as f:
        edit(f)
    members["model.weights.h5"] = scratch.read_bytes()
    scratch.unlink()
    return _stored(path, members)


def _edit_h5(path: Path, edit: Callable[[h5py.File], None]) -> Path:
    shutil.copy(H5, path)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def _cut(fraction_or_bytes: float) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        data = KERAS.read_bytes()
        at = int(len(data) * fraction_or_bytes) if fraction_or_bytes < 1 else int(fraction_or_bytes)
        if at < 0:
            at = len(data) + at
        return _write(tmp / "cut.keras", data[:at])

    build.__name__ = f"truncated_zip_at_{str(fraction_or_bytes).replace('.', '_').replace('-', 'end_minus_')}"
    return build


def _patch_central(path: Path, name: str, **fields: int) -> Path:
    """Overwrite fields of `name`'s central directory entry (sizes lie without breaking the zip)."""
    data = bytearray(path.read_bytes())
    at = 0
    while (at := data.find(b"PK\x01\x02", at)) != -1:
        n = struct.unpack("<H", data[at + 28 : at + 30])[0]
        if data[at + 46 : at + 46 + n] == name.encode():
            for field, value in fields.items():
                offset = {"compress_size": 20, "file_size": 24}[field]
                data[at + offset : at + offset + 4] = struct.pack("<I", value)
            return _write(path, bytes(data))
        at += 4
    raise AssertionError(f"{name} not in the central directory")


# -- the corpus: refused inputs (exit 3) ----------------------------------------------------------


def config_not_utf8(tmp: Path) -> Path:
    return _with_config(
        tmp / "latin1.keras", json.dumps(_config()).encode().replace(b"seed_dense", b"s\xe9ed", 1)
    )


def config_object_nested_100k(tmp: Path) -> Path:
    return _with_config(tmp / "deep_obj.keras", b'{"a":' * 100_000 + b"1" + b"}" * 100_000)


def config_zip_bomb(tmp: Path) -> Path:
    # A real bomb: 80 MB of JSON whitespace deflates to ~80 KB; its declared size is refused unread.
    bomb = b"{" + b" " * (80 * 1024 * 1024) + b"}"
    with zipfile.ZipFile(tmp / "bomb.keras", "w") as zf:
        zf.writestr("config.json", bomb, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("model.weights.h5", _members()["model.weights.h5"])
    return tmp / "bomb.keras"


def config_bomb_lying_size(tmp: Path) -> Path:
    # The same bomb declaring 2 KB: the read stops at the declared size, then the CRC fails.
    path = config_zip_bomb(tmp)
    return _patch_central(path, "config.json", file_size=2048)


def config_not_an_object(tmp: Path) -> Path:
    return _with_config(tmp / "list.keras", b"[1, 2, 3]")


def config_layer_not_an_object(tmp: Path) -> Path:
    config = _config()
    config["config"]["layers"][1] = "Dense"
    return _with_config(tmp / "layer_str.keras", config)


def duplicate_config(tmp: Path) -> Path:
    members = _members()
    return _stored(tmp / "dup.keras", [*members.items(), ("config.json", b'{"class_name": "Evil"}')])


def duplicate_weights(tmp: Path) -> Path:
    members = _members()
    return _stored(tmp / "dupw.keras", [*members.items(), ("model.weights.h5", b"\x89HDF")])


def stored_weights_lying_size(tmp: Path) -> Path:
    path = _stored(tmp / "lying.keras", _members())
    size = len(_members()["model.weights.h5"])
    return _patch_central(path, "model.weights.h5", file_size=size * 1000)


def weights_header_names_another_member(tmp: Path) -> Path:
    # The central directory says model.weights.h5; the local header at its offset says otherwise.
    path = _stored(tmp / "swap.keras", _members())
    data = bytearray(path.read_bytes())
    local = data.rfind(b"PK\x03\x04", 0, data.find(b"model.weights.h5"))
    data[local + 30 : local + 30 + 16] = b"model.weights.XX"
    return _write(path, bytes(data))


def weights_not_hdf5(tmp: Path) -> Path:
    members = _members()
    members["model.weights.h5"] = os.urandom(4096)
    return _stored(tmp / "noise_w.keras", members)


def weights_truncated(tmp: Path) -> Path:
    members = _members()
    members["model.weights.h5"] = members["model.weights.h5"][:3000]
    return _stored(tmp / "trunc_w.keras", members)


def weights_superblock_zeroed(tmp: Path) -> Path:
    members = _members()
    w = bytearray(members["model.weights.h5"])
    w[8:96] = bytes(88)  # everything after the signature: versions, sizes, root addresses
    members["model.weights.h5"] = bytes(w)
    return _stored(tmp / "zero_sb.keras", members)


def sharded_weights(tmp: Path) -> Path:
    members = _members()
    del members["model.weights.h5"]
    members["model.weights.json"] = b'{"weight_map": {}}'
    return _stored(tmp / "sharded.keras", members)


def npz_weights(tmp: Path) -> Path:
    members = _members()
    del members["model.weights.h5"]
    members["model.weights.npz"] = b"PK\x05\x06" + bytes(18)
    return _stored(tmp / "npz.keras", members)


def empty_zip(tmp: Path) -> Path:
    return _write(tmp / "empty_zip.keras", b"PK\x05\x06" + bytes(18))


def metadata_not_json(tmp: Path) -> Path:
    members = _members()
    members["metadata.json"] = b"{keras_version: 3"
    return _stored(tmp / "meta.keras", members)


def keras_external_link(tmp: Path) -> Path:
    def edit(f: h5py.File) -> None:
        del f["layers/dense/vars"]
        f["layers/dense/vars"] = h5py.ExternalLink("/etc/passwd", "/")

    return _edit_weights(tmp / "extlink.keras", edit)


def keras_soft_link(tmp: Path) -> Path:
    def edit(f: h5py.File) -> None:
        del f["layers/dense_1"]
        f["layers/dense_1"] = h5py.SoftLink("/layers/dense")

    return _edit_weights(tmp / "softlink.keras", edit)


def keras_external_storage(tmp: Path) -> Path:
    def edit(f: h5py.File) -> None:
        del f["layers/dense/vars/1"]
        f["layers/dense/vars"].create_dataset(
            "1", shape=(64,), dtype="f4", external=[("/etc/passwd", 0, 256)]
        )

    return _edit_weights(tmp / "extstore.keras", edit)


def keras_deep_groups(tmp: Path) -> Path:
    def edit(f: h5py.File) -> None:
        g = f["layers"].create_group("intruder")
        for _ in range(3000):  # an extra group the walker lists generically, nested past any model
            g = g.create_group("x")

    return _edit_weights(tmp / "deep_groups.keras", edit)


def h5_external_storage(tmp: Path) -> Path:
    def edit(f: h5py.File) -> None:
        group = f["model_weights/dense/seed_dense/dense"]
        del group["bias"]
        group.create_dataset("bias", shape=(64,), dtype="f4", external=[("/etc/passwd", 0, 256)])

    return _edit_h5(tmp / "extstore.h5", edit)


def h5_virtual_dataset(tmp: Path) -> Path:
    def edit(f: h5py.File) -> None:
        group = f["model_weights/dense/seed_dense/dense"]
        del group["bias"]
        layout = h5py.VirtualLayout(shape=(64,), dtype="f4")
        layout[:] = h5py.VirtualSource("/etc/passwd", "data", shape=(64,))
        group.create_virtual_dataset("bias", layout)

    return _edit_h5(tmp / "virtual.h5", edit)


def h5_soft_link(tmp: Path) -> Path:
    def edit(f: h5py.File) -> None:
        del f["model_weights/dense_1"]
        f["model_weights/dense_1"] = h5py.SoftLink("/model_weights/dense")

    return _edit_h5(tmp / "softlink.h5", edit)


def h5_filter_plugin(tmp: Path) -> Path:
    def edit(f: h5py.File) -> None:
        group = f["model_weights/dense/seed_dense/dense"]
        del group["bias"]
        group.create_dataset(
            "bias", shape=(64,), dtype="f4", chunks=(64,), compression=32013, allow_unknown_filter=True
        )

    return _edit_h5(tmp / "plugin.h5", edit)


def h5_attribute_bomb(tmp: Path) -> Path:
    # 11 million names: past 64 KB an attribute needs dense storage (a v2 object header).
    path = tmp / "attr_bomb.h5"
    with h5py.File(H5) as src, h5py.File(path, "w", libver="latest") as f:
        for key, value in src.attrs.items():
            f.attrs[key] = value
        weights = f.create_group("model_weights")  # created here: a v2 header, dense attributes
        for name in src["model_weights"]:
            src.copy(f"model_weights/{name}", weights)
        weights.attrs["layer_names"] = np.zeros(11_000_000, dtype="S1")
    return path


def h5_without_model_weights(tmp: Path) -> Path:
    return _edit_h5(tmp / "noweights.h5", lambda f: f.__delitem__("model_weights"))


def h5_layer_names_missing_group(tmp: Path) -> Path:
    def edit(f: h5py.File) -> None:
        f["model_weights"].attrs["layer_names"] = np.array([b"dense", b"dense_1", b"ghost"])

    return _edit_h5(tmp / "ghost.h5", edit)


def h5_weight_names_missing_dataset(tmp: Path) -> Path:
    def edit(f: h5py.File) -> None:
        f["model_weights/dense"].attrs["weight_names"] = np.array([b"seed_dense/dense/nothing"])

    return _edit_h5(tmp / "ghost_ds.h5", edit)


def h5_truncated_small(tmp: Path) -> Path:
    return _write(tmp / "t1.h5", H5.read_bytes()[:1000])


def h5_truncated_late(tmp: Path) -> Path:
    data = H5.read_bytes()
    return _write(tmp / "t2.h5", data[: len(data) * 9 // 10])


def h5_root_header_zeroed(tmp: Path) -> Path:
    data = bytearray(H5.read_bytes())
    data[8:96] = bytes(88)
    return _write(tmp / "zero_sb.h5", bytes(data))


def symlink_loop(tmp: Path) -> Path:
    (tmp / "a.keras").symlink_to(tmp / "b.keras")
    (tmp / "b.keras").symlink_to(tmp / "a.keras")
    return tmp / "a.keras"


REFUSED: list[tuple[Callable[[Path], Path], str]] = [
    (_cut(30), "corrupt"),
    (_cut(0.25), ""),
    (_cut(0.75), ""),
    (_cut(-1), ""),
    (_cut(-22), ""),
    (config_not_utf8, "not UTF-8"),
    (config_object_nested_100k, "nested too deeply"),
    (config_zip_bomb, "declares 83,886,082 bytes"),
    (config_bomb_lying_size, "config.json"),
    (config_not_an_object, "no 'class_name'"),
    (config_layer_not_an_object, "not a config object"),
    (duplicate_config, "'config.json' twice"),
    (duplicate_weights, "'model.weights.h5' twice"),
    (stored_weights_lying_size, "lying sizes"),
    (weights_header_names_another_member, "names another member"),
    (weights_not_hdf5, "not a readable HDF5 file"),
    (weights_truncated, "not a readable HDF5 file"),
    (weights_superblock_zeroed, "not a readable HDF5 file"),
    (sharded_weights, "sharded"),
    (npz_weights, ".npz"),
    (empty_zip, "without config.json"),
    (metadata_not_json, "'metadata.json' is not valid JSON"),
    (keras_external_link, "external link"),
    (keras_soft_link, "soft link"),
    (keras_external_storage, "external file"),
    (keras_deep_groups, "nested too deeply"),
    (h5_external_storage, "external file"),
    (h5_virtual_dataset, "virtual dataset"),
    (h5_soft_link, "soft link"),
    (h5_filter_plugin, "filter plugin #32013"),
    (h5_attribute_bomb, "too large"),
    (h5_without_model_weights, "without 'model_weights'"),
    (h5_layer_names_missing_group, "no weights group for layer 'ghost'"),
    (h5_weight_names_missing_dataset, "no such dataset"),
    (h5_truncated_small, ""),
    (h5_truncated_late, ""),
    (h5_root_header_zeroed, ""),
    (symlink_loop, "symbolic links"),
]
IDS = [b.__name__ for b, _ in REFUSED]


def invoke(*args: str, env: dict | None = None):
    result = runner.invoke(app, list(args), env={**ENV, **(env or {})}, prog_name="varctl")
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def one_error_line(result, path: str) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) in (1, 2), lines
    assert lines[0].startswith(f"varctl: error: cannot open '{path}': "), lines
    if len(lines) == 2:
        assert lines[1].startswith("varctl: hint: "), lines
    return lines[0]


@pytest.mark.parametrize(("build", "message"), REFUSED, ids=IDS)
def test_refused_input_exits_3_with_one_line(tmp_path, build, message):
    path = str(build(tmp_path))
    before = sorted(p.name for p in tmp_path.iterdir())
    result = invoke("list", path, "-f", "json")
    assert result.exit_code == EXIT_UNREADABLE, result.output
    assert result.stdout == ""
    line = one_error_line(result, path)
    assert message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize(("build", "message"), REFUSED[::3], ids=IDS[::3])
def test_freeze_of_refused_input_writes_nothing(tmp_path, build, message):
    path = str(build(tmp_path))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    for args in (["-o", str(tmp_path / "out.keras")], ["--in-place"]):
        result = invoke("freeze", path, "-p", "dense", *args)
        assert result.exit_code == EXIT_UNREADABLE, result.output
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) in (1, 2)
        after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
        assert after == before


def as_nobody(fn: Callable[[], object]) -> object:
    """`fn()` in a forked child running as nobody (uid 65534): root ignores permissions. A fork, not
    a new interpreter, because this one may live where nobody cannot read (/root/.pyenv)."""
    import pickle

    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges to nobody")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                value: object = ("ok", fn())
            except BaseException as e:
                value = ("error", repr(e))
            os.write(w, pickle.dumps(value))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    assert kind == "ok", value
    return value


def _cli_as_nobody(*args: str) -> tuple[int, str, str]:
    # Everything varctl imports lazily is imported here first: nobody may not read the stdlib.
    invoke("list", str(KERAS), "--by-layer")
    invoke("freeze", str(KERAS), "-p", "dense", "--dry-run")

    def run() -> tuple[int, str, str]:
        result = runner.invoke(app, list(args), env=ENV, prog_name="varctl")
        return result.exit_code, result.stdout, result.stderr

    return as_nobody(run)  # type: ignore[return-value]


def test_unreadable_file_as_another_user(public_tmp):
    path = public_tmp / "secret.keras"
    shutil.copy(KERAS, path)
    path.chmod(0o600)
    assert _cli_as_nobody("list", str(KERAS))[0] == 0  # nobody can run varctl and read samples
    code, stdout, stderr = _cli_as_nobody("list", str(path))
    assert code == EXIT_UNREADABLE, stderr
    assert stdout == ""
    assert stderr == f"varctl: error: cannot open '{path}': permission denied\n"
    code, stdout, stderr = _cli_as_nobody("freeze", str(path), "-p", "dense", "--in-place")
    assert code == EXIT_UNREADABLE, stderr
    assert "permission denied" in stderr and len(stderr.splitlines()) == 1


# -- odd but readable: listed, with a warning where varctl cannot vouch --------------------------


def missing_group(tmp: Path) -> Path:
    return _edit_weights(tmp / "missing_group.keras", lambda f: f.__delitem__("layers/dense_1"))


def extra_group(tmp: Path) -> Path:
    def edit(f: h5py.File) -> None:
        f["layers"].create_group("stowaway/vars").create_dataset("0", data=np.zeros((2, 2), "f4"))

    return _edit_weights(tmp / "extra_group.keras", edit)


def wrong_variable_count(tmp: Path) -> Path:
    return _edit_weights(
        tmp / "count.keras", lambda f: f["layers/dense/vars"].create_dataset("2", data=np.zeros(3, "f4"))
    )


def shape_mismatch(tmp: Path) -> Path:
    def edit(f: h5py.File) -> None:
        del f["layers/dense/vars/0"]
        f["layers/dense/vars"].create_dataset("0", data=np.zeros((10, 3), "f4"))

    return _edit_weights(tmp / "shape.keras", edit)


def unknown_class(tmp: Path) -> Path:
    from varctl.formats.tree import to_snake_case

    config = _config()
    config["config"]["layers"][2]["class_name"] = "Evil[bold]Layer"
    config["config"]["layers"][2]["module"] = "evil.layers"
    path = _edit_weights(
        tmp / "unknown.keras", lambda f: f["layers"].move("dense_1", to_snake_case("Evil[bold]Layer"))
    )
    members = _members(path)
    members["config.json"] = json.dumps(config).encode()
    return _stored(path, members)


def _renamed(tmp: Path, name: str, file: str) -> Path:
    config = _config()
    config["config"]["layers"][2]["config"]["name"] = name
    return _with_config(tmp / file, config)


WARNED = [
    (missing_group, "`dense_1` (Dense) has no group in the weights file"),
    (extra_group, "not described by the config"),
    (wrong_variable_count, "has 3 variables in the file where varctl expects 2"),
    (shape_mismatch, "has shape (10, 3) in the file, but the config of `dense` (Dense) implies ('?', 64)"),
    (unknown_class, "layer class `Evil[bold]Layer` is not known to varctl"),
    (unknown_class, "layer class `Evil[bold]Layer` (module `evil.layers`) at `dense_1`"),
]


@pytest.mark.parametrize(
    ("build", "warning"), WARNED, ids=[f"{b.__name__}-{i}" for i, (b, _) in enumerate(WARNED)]
)
def test_mismatch_is_listed_with_a_warning(tmp_path, build, warning):
    path = str(build(tmp_path))
    result = invoke("list", path, "-f", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert any(warning in w for w in doc["warnings"]), doc["warnings"]
    assert f"varctl: warning: {path}: " in result.stderr


@pytest.mark.parametrize(
    "name",
    ["a/b", "dense[*]?", "слой_плотный", "層\u00e9\U0001f600"],
    ids=["slash", "glob-metacharacters", "cyrillic", "cjk-emoji"],
)
def test_strange_layer_names_are_kept_exactly(tmp_path, name):
    path = str(_renamed(tmp_path, name, "named.keras"))
    result = invoke("list", path, "-f", "json")
    assert result.exit_code == 0, result.output
    layers = [v["layer"] for v in json.loads(result.stdout)["variables"]]
    assert layers == ["dense", "dense", name, name]
    # --regex with the name escaped selects exactly that layer (a glob cannot spell every name).
    import re

    out = tmp_path / "frozen.keras"
    result = invoke("freeze", path, "--regex", "-p", re.escape(name), "-o", str(out))
    if "/" in name:  # a '/' makes the pattern a path pattern: the name itself is one component short
        assert result.exit_code in (0, EXIT_USAGE), result.output
        return
    assert result.exit_code == 0, result.output
    frozen = [
        v
        for v in json.loads(invoke("list", str(out), "-f", "json").stdout)["variables"]
        if not v["trainable"]
    ]
    assert [v["layer"] for v in frozen] == [name, name]


def test_member_names_that_climb_out_are_never_extracted(tmp_path):
    (tmp_path / "sub").mkdir()
    members = _members()
    members["../../escape.txt"] = b"x"
    path = _stored(tmp_path / "sub" / "climb.keras", members)
    assert invoke("list", str(path)).exit_code == 0
    out = tmp_path / "sub" / "out.keras"
    assert invoke("freeze", str(path), "-p", "dense", "-o", str(out)).exit_code == 0
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["climb.keras", "out.keras", "sub"]


# -- the sandbox: the HDF5 C library cannot take varctl down --------------------------------------


def _patch_reader(monkeypatch, fn):
    from varctl.formats import keras_zip

    monkeypatch.setattr(keras_zip, "read", fn)


def _no_children_left() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS])
def test_a_crash_in_the_reader_is_one_clean_line(monkeypatch, sig):
    _patch_reader(monkeypatch, lambda *a: os.kill(os.getpid(), sig))
    result = invoke("list", str(KERAS))
    assert result.exit_code == EXIT_UNREADABLE, result.output
    line = one_error_line(result, str(KERAS))
    assert line.endswith(
        f"the HDF5 library crashed while reading the file ({sig.name}): the file is malformed"
    )
    assert _no_children_left()


def test_a_hang_in_the_reader_is_cut_short(monkeypatch):
    import time

    _patch_reader(monkeypatch, lambda *a: time.sleep(600))
    start = time.monotonic()
    result = invoke("list", str(KERAS), env={"VARCTL_READ_TIMEOUT": "1"})
    assert time.monotonic() - start < 10
    assert result.exit_code == EXIT_UNREADABLE, result.output
    assert "took longer than 1 s" in one_error_line(result, str(KERAS))
    assert _no_children_left()


def test_a_memory_bomb_in_the_reader_is_refused(monkeypatch):
    _patch_reader(monkeypatch, lambda *a: bytearray(8 * 2**30))
    result = invoke("list", str(KERAS), env={"VARCTL_READ_MEMORY_MB": "512"})
    assert result.exit_code == EXIT_UNREADABLE, result.output
    assert "needs more than 512 MiB of memory" in one_error_line(result, str(KERAS))


def test_errors_cross_the_sandbox_with_type_message_and_hint(monkeypatch):
    def refuse(*a):
        raise UsageError("no such thing", hint="try another")

    _patch_reader(monkeypatch, refuse)
    result = invoke("list", str(KERAS))
    assert result.exit_code == EXIT_USAGE
    assert result.stderr == "varctl: error: no such thing\nvarctl: hint: try another\n"


def test_a_bug_in_the_reader_stays_a_bug(monkeypatch):
    _patch_reader(monkeypatch, lambda *a: {}["missing"])
    result = invoke("list", str(KERAS))
    assert result.exit_code == 70
    assert "internal error while reading" in result.stderr and "KeyError" in result.stderr


def test_large_answers_do_not_block_and_oversized_ones_are_refused(monkeypatch):
    from varctl.formats import _sandbox

    big = list(range(3_000_000))  # ~15 MB pickled: far more than a pipe buffer
    assert _sandbox.call(lambda: big) == big
    monkeypatch.setattr(_sandbox, "MAX_RESULT_BYTES", 1_000_000)
    with pytest.raises(Exception, match="more than 0 MiB of metadata"):
        _sandbox.call(lambda: big)
    assert _no_children_left()


def test_the_parent_never_unpickles_code():
    import pickle

    from varctl.formats import _sandbox

    for evil in (os.system, eval, subprocess.Popen):
        with pytest.raises(Exception, match="unreadable answer"):
            _sandbox._loads(pickle.dumps(("ok", evil)))


def test_escape_hatch_reads_in_process(monkeypatch):
    pids: list[int] = []
    real = __import__("varctl.formats.keras_zip", fromlist=["read"]).read

    def spy(*a):
        pids.append(os.getpid())
        return real(*a)

    _patch_reader(monkeypatch, spy)
    assert invoke("list", str(KERAS)).exit_code == 0
    assert pids == []  # it ran in the child
    assert invoke("list", str(KERAS), env={"VARCTL_NO_SANDBOX": "1"}).exit_code == 0
    assert pids == [os.getpid()]


# -- risky content: reported by list, refused by check --------------------------------------------


@pytest.fixture(scope="module")
def risky_models(tmp_path_factory):
    """Real Keras models: a Lambda in a Sequential in a Functional, and a registered custom layer."""
    keras = pytest.importorskip("keras")
    out = tmp_path_factory.mktemp("risky")

    @keras.saving.register_keras_serializable(package="varctl_test")
    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1],), name="w")

        def call(self, x):
            return x * self.w

    inner = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(3, name="d"),
            keras.layers.Lambda(lambda x: x + 1.0, name="lam"),
        ],
        name="inner",
    )
    i = keras.Input((3,))
    lam = keras.Model(i, keras.layers.Dense(1, name="head")(inner(i)), name="outer")
    lam.save(out / "lambda.keras")
    lam.save(out / "lambda.h5")
    i = keras.Input((3,))
    custom = keras.Model(i, keras.layers.Dense(1, name="head")(Scale(name="scale")(i)), name="custom")
    custom.save(out / "custom.keras")
    i = keras.Input((3,))
    plain = keras.Model(i, keras.layers.Dense(1, name="head")(i), name="plain")
    plain.save(out / "plain.keras")
    return out


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_list_notes_a_nested_lambda(risky_models, fmt):
    result = invoke("list", str(risky_models / f"lambda.{fmt}"), "-f", "json")
    assert result.exit_code == 0, result.output
    warnings = json.loads(result.stdout)["warnings"]
    assert any("Lambda layer at `inner/lam`" in w and "varctl never runs it" in w for w in warnings), warnings


def test_list_notes_a_registered_custom_layer(risky_models):
    result = invoke("list", str(risky_models / "custom.keras"), "-f", "json")
    warnings = json.loads(result.stdout)["warnings"]
    assert any("layer class `varctl_test>Scale`" in w and "at `scale`" in w for w in warnings), warnings


@pytest.mark.parametrize(
    ("model", "flag", "code", "offender"),
    [
        ("lambda.keras", "--no-lambda", EXIT_FOUND, "inner/lam"),
        ("lambda.h5", "--no-lambda", EXIT_FOUND, "inner/lam"),
        ("lambda.keras", "--only-keras-layers", EXIT_FOUND, "inner/lam"),
        ("custom.keras", "--no-lambda", 0, None),
        ("custom.keras", "--only-keras-layers", EXIT_FOUND, "scale"),
        ("plain.keras", "--no-lambda", 0, None),
        ("plain.keras", "--only-keras-layers", 0, None),
    ],
)
def test_check_refuses_code_in_the_config(risky_models, model, flag, code, offender):
    result = invoke("check", str(risky_models / model), flag, "-f", "json")
    assert result.exit_code == code, result.output
    (assertion,) = json.loads(result.stdout)["assertions"]
    assert assertion["assertion"] == flag.lstrip("-").replace("-", "_")
    assert [v["path"] for v in assertion["variables"]] == ([offender] if offender else [])


def test_check_risk_assertions_follow_patterns(risky_models):
    path = str(risky_models / "lambda.keras")
    assert invoke("check", path, "--no-lambda", "-p", "head").exit_code == 0
    assert invoke("check", path, "--no-lambda", "-p", "inner").exit_code == EXIT_FOUND


def test_keras_layer_list_covers_keras(risky_models):
    import keras

    from varctl.formats.catalog import KERAS_LAYER_CLASSES

    exported = {
        c.__name__
        for n in dir(keras.layers)
        if isinstance(c := getattr(keras.layers, n), type) and issubclass(c, keras.layers.Layer)
    }
    assert exported <= KERAS_LAYER_CLASSES, sorted(exported - KERAS_LAYER_CLASSES)


def test_the_bomb_is_real(tmp_path):
    with zipfile.ZipFile(config_zip_bomb(tmp_path)) as zf:
        info = zf.getinfo("config.json")
    assert info.compress_size < info.file_size / 500
