"""Orbax checkpoint folders (keras.callbacks.OrbaxCheckpoint) list as the writer's Keras reports them.

The oracle is tests/orbax_files/<name>.expected.json, written by tests/orbax_files/make.py with
Keras 3.15 + JAX + orbax-checkpoint (a scratch venv: JAX is not a project dependency) right after
`keras.saving.load_model(folder)` restored the latest step.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from varctl.formats import open_model, read_model

ORBAX = Path(__file__).resolve().parent / "orbax_files"
WITH_CONFIG = ["dense", "frozen_bn", "nested"]


def expected(name: str) -> dict:
    return json.loads((ORBAX / f"{name}.expected.json").read_text())


def rows(info) -> list[tuple]:
    return [(v.path, list(v.shape), v.dtype, v.trainable) for v in info.variables]


@pytest.mark.parametrize("name", WITH_CONFIG)
def test_lists_as_the_writer_restores_it(name):
    want = expected(name)
    info = open_model(str(ORBAX / name))
    assert info.format == "orbax"
    # names, shapes, dtypes, trainable state, and model.weights order: all from the writer
    assert rows(info) == [(r["path"], r["shape"], r["dtype"], r["trainable"]) for r in want["rows"]]
    assert info.totals()["trainable"] == sum(_params(r["shape"]) for r in want["rows"] if r["trainable"])
    assert not any("not known" in w or "under no layer" in w for w in info.warnings)
    assert any("dtype policy" in w for w in info.warnings)  # what is missing, said
    assert f"step {max(want['steps'])} " in info.details[0]
    assert f"optimizer state: {len(want['optimizer_variables'])} variables" in info.details


def _params(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def test_the_fixtures_hold_what_the_tests_need():
    for name in [*WITH_CONFIG, "weights_only", "custom"]:
        assert expected(name)["steps"] == [0, 1]  # two saved steps each
    frozen = expected("frozen_bn")["rows"]
    assert any(not r["trainable"] for r in frozen) and any(r["trainable"] for r in frozen)
    assert any(r["path"].startswith("base/") for r in expected("nested")["rows"])


def test_a_class_varctl_does_not_know_takes_the_checkpoints_split():
    """Names, shapes, dtypes and trainable state still match the writer; only the order of the
    unknown layer's own variables is the state tree's (sorted), and a warning says so."""
    want = expected("custom")["rows"]
    info = open_model(str(ORBAX / "custom"))
    got = {v.path: (list(v.shape), v.dtype, v.trainable) for v in info.variables}
    assert got == {r["path"]: (r["shape"], r["dtype"], r["trainable"]) for r in want}
    assert [v.layer for v in info.variables] == [r["path"].rpartition("/")[0] for r in want]  # layer order
    assert any("`Scale` is not known" in w and "order" in w for w in info.warnings)
    assert not any("is unknown" in w for w in info.warnings)  # settled by the split


def test_the_trainable_split_is_the_checkpoints():
    """Without a config (save_weights_only=True): the state tree's own names and split."""
    want = expected("weights_only")["state_tree"]
    info = open_model(str(ORBAX / "weights_only"))
    assert {v.path for v in info.variables if v.trainable} == set(want["trainable_variables"])
    assert {v.path for v in info.variables if v.trainable is None} == set(want["non_trainable_variables"])
    assert all(v.dtype == "unknown" for v in info.variables)
    assert any("no model config" in w and "dtypes are unknown" in w for w in info.warnings)


def test_latest_step_by_default_and_step_picks_one(tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(ORBAX / "dense", ckpt)
    (ckpt / "0" / "pytree" / "_METADATA").write_text("{")  # only step 0 is broken
    assert "step 1 " in open_model(str(ckpt)).details[0]
    assert rows(open_model(str(ckpt), step=1)) == rows(open_model(str(ORBAX / "dense")))
    with pytest.raises(Exception) as e:
        read_model(str(ckpt), step=0)
    assert e.value.exit_code == 3


def test_step_on_the_cli(cli):
    out = cli("list", ORBAX / "dense", "--step", "0", "-f", "json").stdout
    assert [v["path"] for v in json.loads(out)["variables"]] == [r["path"] for r in expected("dense")["rows"]]
    assert "step 0 " in cli("list", ORBAX / "dense", "--step", "0").stdout


def test_a_step_folder_itself(cli):
    info = open_model(str(ORBAX / "frozen_bn" / "0"))
    assert rows(info) == rows(open_model(str(ORBAX / "frozen_bn")))
    cli("list", ORBAX / "frozen_bn" / "0", "--step", "1", code=2)


def test_missing_step_is_a_usage_error_naming_the_steps(cli):
    r = cli("list", ORBAX / "nested", "--step", "7", code=2)
    assert "step 7" in r.stderr and "0, 1" in r.stderr
    assert r.stdout == ""


def test_step_on_another_input_is_a_usage_error(cli):
    sample = Path(__file__).resolve().parent.parent / "sample_models" / "transfer_learning.keras"
    r = cli("list", sample, "--step", "1", code=2)
    assert "Orbax" in r.stderr


@pytest.mark.parametrize(
    "member, content",
    [
        ("pytree/_METADATA", b'{"tree_metadata": {"(\'trainable'),  # truncated
        ("pytree/_METADATA", b'{"tree_metadata": []}'),
        ("pytree/_METADATA", b"\xff\xfe not utf-8"),
        ("model_config/_strings.json", b'{"config": "{\\"class_name\\": '),  # config string cut
        ("model_config/_strings.json", b"[1, 2"),
    ],
)
def test_corrupt_metadata_is_exit_3_in_one_line(cli, tmp_path, member, content):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(ORBAX / "frozen_bn", ckpt)
    (ckpt / "1" / member).write_bytes(content)
    r = cli("list", ckpt, code=3)
    lines = [line for line in r.stderr.splitlines() if line.startswith("varctl: error")]
    assert len(lines) == 1 and str(ckpt) in lines[0]
    assert r.stdout == ""


def test_variables_under_no_layer_of_the_config_are_listed_and_named(tmp_path):
    """A config that does not match the state tree (a layer renamed in it): nothing is dropped."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(ORBAX / "dense", ckpt)
    strings = ckpt / "1" / "model_config" / "_strings.json"
    doc = json.loads(strings.read_text())
    config = json.loads(doc["config"])
    config["config"]["layers"][2]["config"]["name"] = "renamed"  # the `head` Dense
    strings.write_text(json.dumps({"config": json.dumps(config)}))
    info = open_model(str(ckpt))
    got = {v.path: (list(v.shape), v.trainable) for v in info.variables}
    assert got == {r["path"]: (r["shape"], r["trainable"]) for r in expected("dense")["rows"]}
    assert any("2 variables of the checkpoint sit under no layer" in w for w in info.warnings)


def test_a_fifo_for_metadata_is_refused_not_waited_on(cli, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(ORBAX / "dense", ckpt)
    (ckpt / "1" / "model_config" / "_strings.json").unlink()
    os.mkfifo(ckpt / "1" / "model_config" / "_strings.json")
    assert "not a regular file" in cli("list", ckpt, code=3).stderr


def test_odd_step_folder_names_are_not_steps(tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(ORBAX / "dense", ckpt)
    shutil.copytree(ckpt / "1", ckpt / "\u00b2")  # isdigit() but not a step
    shutil.copytree(ckpt / "1", ckpt / "1.orbax-checkpoint-tmp-3")  # an unfinished save
    assert "(steps: 0, 1)" in open_model(str(ckpt)).details[0]


def test_edits_are_refused_with_a_hint(cli, tmp_path):
    r = cli("freeze", ORBAX / "dense", "-p", "head", "-o", tmp_path / "out.keras", code=3)
    assert "Orbax" in r.stderr and "load_model" in r.stderr
    assert not (tmp_path / "out.keras").exists()


def test_reading_imports_neither_jax_nor_tensorflow():
    code = (
        "import sys; from varctl.formats import orbax, read_model\n"
        f"orbax.read({str(ORBAX / 'nested')!r}, 'x')\n"
        f"read_model({str(ORBAX / 'nested')!r})\n"
        "bad = [m for m in ('jax', 'orbax', 'tensorstore', 'tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
