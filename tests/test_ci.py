"""check, diff and stats on real Keras-built files, with Keras (and numpy on the weights it loads) as
the oracle; the chunked value reader; the pre-commit hook from a scratch git repository."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.conftest import ROOT, SAMPLES
from varctl.cli import app

keras_oracle = pytest.importorskip("tests.keras_oracle")
import keras  # noqa: E402

from tests.zoo import ZOO  # noqa: E402

ENV = {"NO_COLOR": "1", "COLUMNS": "120"}
SAMPLE_NAMES = ["seed_dense", "seed_explicit", "seed_custom_layer", "transfer_learning", "batchnorm"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env=ENV)


def as_json(result):
    assert result.stdout, result.output
    return json.loads(result.stdout)


def _base(d1=4, extra=False, d2_dtype="float32", name="m"):
    layers = [
        keras.Input((8,)),
        keras.layers.Dense(d1, name="d1"),
        keras.layers.Dense(2, name="d2", dtype=d2_dtype),
    ]
    if extra:
        layers.append(keras.layers.Dense(3, name="d3"))
    return keras.Sequential(layers, name=name)


def _save(model, folder, stem):
    model.save(folder / f"{stem}.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(folder / f"{stem}.h5")


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """base and variants differing from it in exactly one way, each as .keras and .h5."""
    out = tmp_path_factory.mktemp("ci_models")
    keras.utils.set_random_seed(1)
    base = _base()
    _save(base, out, "base")
    weights = base.get_weights()

    bad = _base()
    k = weights[0].copy()
    k[0, 0] = np.nan
    k[3, 2] = np.nan
    k[5, 1] = -np.inf
    bad.set_weights([k, *weights[1:]])
    _save(bad, out, "nan")

    moved = _base()
    moved.set_weights([weights[0], weights[1], weights[2], weights[3] + 0.5])
    _save(moved, out, "values")

    _save(_base(extra=True), out, "added")
    _save(_base(d1=5), out, "shape")
    double = _base(d2_dtype="float64")
    double.set_weights(weights)
    _save(double, out, "dtype")

    i = keras.Input((4,))
    x = keras.layers.Dense(3, dtype="float16", name="half")(i)
    x = keras.layers.Dense(3, dtype="bfloat16", name="bf16")(x)
    x = keras.layers.Dense(2, dtype="float64", name="double")(x)
    x = keras.layers.Dense(64, name="zeros", kernel_initializer="zeros")(x)
    keras.Model(i, x, name="dtypes").save(out / "dtypes.keras")

    frozen = run("freeze", out / "base.keras", "-p", "d1", "-o", out / "frozen.keras")
    assert frozen.exit_code == 0, frozen.output
    return out


def keras_values(path):
    """{varctl path: numpy array} for every variable Keras loads from `path`."""
    model = keras_oracle.load(str(path), compile=False)
    names = keras_oracle.hierarchical_paths(model)
    return {names[id(v)]: np.asarray(keras.ops.convert_to_numpy(v)).astype(np.float64) for v in model.weights}


# -- check --------------------------------------------------------------------------------------


CHECK_CASES = {
    # name: (file, args, exit code, variables that break it)
    "frozen_holds": (SAMPLES / "transfer_learning.keras", ["--frozen", "mobilenetv2_0.35_96"], 0, []),
    "frozen_fails": (SAMPLES / "seed_dense.keras", ["--frozen", "dense"], 1, ["dense/kernel", "dense/bias"]),
    "trainable_holds": (SAMPLES / "seed_dense.h5", ["--trainable", "dense*"], 0, []),
    "trainable_ignores_moving_stats": (
        SAMPLES / "batchnorm.keras",
        ["--trainable", "batch_normalization"],
        0,
        [],
    ),
    "trainable_fails": (
        SAMPLES / "transfer_learning.keras",
        ["--trainable", "block_16_project"],
        1,
        ["mobilenetv2_0.35_96/block_16_project/kernel"],
    ),
    "max_holds": (SAMPLES / "transfer_learning.keras", ["--max-trainable-params", "1281"], 0, []),
    "max_fails": (
        SAMPLES / "transfer_learning.h5",
        ["--max-trainable-params", "1280"],
        1,
        ["dense/kernel", "dense/bias"],
    ),
    "min_holds": (SAMPLES / "transfer_learning.keras", ["--min-trainable-params", "1281"], 0, []),
    "min_fails": (SAMPLES / "transfer_learning.keras", ["--min-trainable-params", "1282"], 1, []),
    "finite_holds": (SAMPLES / "batchnorm.h5", ["--finite"], 0, []),
    "pattern_restricts": (SAMPLES / "seed_dense.keras", ["--frozen", "dense", "--pattern", "dense_1"], 1, []),
}


@pytest.mark.parametrize("case", sorted(CHECK_CASES))
def test_check_assertion(case):
    path, args, code, breaking = CHECK_CASES[case]
    quiet = run("check", path, *args)
    assert quiet.exit_code == code, quiet.output
    assert quiet.stderr == ""
    if code == 0:  # one line naming the model, then the count
        assert quiet.stdout == f"pass {path}: {quiet.stdout.split(': ', 1)[1].splitlines()[0]}\n" + (
            "1 model checked: 1 passed, 0 failed\n"
        )
    else:
        assert "FAIL" in quiet.stdout
    doc = as_json(run("check", path, *args, "-f", "json"))
    assert doc["ok"] is (code == 0)
    failing = [v["path"] for a in doc["assertions"] if not a["ok"] for v in a["variables"]]
    assert failing == breaking


def test_check_pattern_restricts_to_no_frozen_overlap():
    """--pattern dense_1 leaves `dense` out of scope: --frozen dense then selects nothing: a failure."""
    doc = as_json(
        run("check", SAMPLES / "seed_dense.keras", "--frozen", "dense", "-p", "dense_1", "-f", "json")
    )
    assert doc["assertions"][0]["message"] == "pattern 'dense' selects no variable that can be frozen"


def test_check_frozen_after_varctl_freeze(models):
    assert run("check", models / "frozen.keras", "--frozen", "d1", "--trainable", "d2").exit_code == 0
    result = run("check", models / "frozen.keras", "--trainable", "d1")
    assert result.exit_code == 1
    assert "d1/kernel" in result.stdout and "layer `d1` is frozen" in result.stdout


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_check_finite_finds_injected_nan(models, fmt):
    path = models / f"nan.{fmt}"
    result = run("check", path, "--finite")
    assert result.exit_code == 1, result.output
    assert "d1/kernel" in result.stdout and "2 NaN, 1 Inf" in result.stdout
    doc = as_json(run("check", path, "--finite", "-f", "json"))
    [finite] = doc["assertions"]
    assert finite["variables"] == [
        {"path": "d1/kernel", "detail": "2 NaN, 1 Inf", "trainable": True, "reason": None, "nan": 2, "inf": 1}
    ]
    # the other variables are clean: restricting to them passes
    assert run("check", path, "--finite", "-p", "d2").exit_code == 0


def test_check_verbose_shows_passing_assertions(models):
    result = run("check", models / "base.keras", "--finite", "--trainable", "d1", "-v")
    assert result.exit_code == 0
    assert result.stdout.count("pass ") == 2
    assert "all 2 assertions hold" in result.stdout and "1 model checked: 1 passed, 0 failed" in result.stdout


def test_check_without_assertions_checks_readability(models, tmp_path):
    assert run("check", models / "base.keras", models / "base.h5").stdout == (
        f"pass {models / 'base.keras'}: readable (no assertions given)\n"
        f"pass {models / 'base.h5'}: readable (no assertions given)\n"
        "2 models checked: 2 passed, 0 failed\n"
    )
    junk = tmp_path / "junk.keras"
    junk.write_text("not a model")
    result = run("check", models / "base.keras", junk)
    assert result.exit_code == 3
    assert "junk.keras" in result.stderr


def test_check_pattern_that_matches_nothing_fails_that_model_only(models):
    result = run("check", models / "base.keras", models / "added.keras", "--frozen", "d3", "-f", "json")
    assert result.exit_code == 1
    base, added = as_json(result)
    assert not base["ok"] and "matches no layer" in base["assertions"][0]["message"]
    assert added["ok"] is False and added["assertions"][0]["variables"][0]["path"] == "d3/kernel"
    hint = run("check", models / "base.keras", "--frozen", "d_1")
    assert "did you mean" in hint.stdout


def test_check_many_models_worst_exit_and_json_array(models):
    missing = models / "missing.keras"
    result = run("check", models / "base.keras", missing, models / "nan.keras", "--finite", "-f", "json")
    assert result.exit_code == 3  # unreadable beats a failed check
    docs = as_json(result)
    assert [d["model"] for d in docs] == [str(models / "base.keras"), str(missing), str(models / "nan.keras")]
    assert docs[0]["ok"] and not docs[2]["ok"]
    assert docs[1]["error"].endswith("no such file") and "ok" not in docs[1]
    assert "missing.keras" in result.stderr
    table = run("check", models / "base.keras", missing, models / "nan.keras", "--finite")
    assert "d1/kernel" in table.stdout and "missing" not in table.stdout
    assert run("check", models / "base.keras", models / "nan.keras", "--finite").exit_code == 1


def test_check_bad_regex_is_usage_error():
    result = run("check", SAMPLES / "seed_dense.keras", "--frozen", "(", "--regex")
    assert result.exit_code == 2
    assert "invalid regular expression" in result.stderr


# -- diff ---------------------------------------------------------------------------------------

DIFF_CASES = {
    # name: (a, b, extra args, {path: (change, fields)})
    "added_layer": ("base", "added", [], {"d3/kernel": ("added", []), "d3/bias": ("added", [])}),
    "removed_layer": ("added", "base", [], {"d3/kernel": ("removed", []), "d3/bias": ("removed", [])}),
    "shape": (
        "base",
        "shape",
        [],
        {
            "d1/kernel": ("changed", ["shape"]),
            "d1/bias": ("changed", ["shape"]),
            "d2/kernel": ("changed", ["shape"]),
        },
    ),
    "dtype": (
        "base",
        "dtype",
        ["--values"],
        {"d2/kernel": ("changed", ["dtype"]), "d2/bias": ("changed", ["dtype"])},
    ),
    "trainable": (
        "base",
        "frozen",
        [],
        {"d1/kernel": ("changed", ["trainable"]), "d1/bias": ("changed", ["trainable"])},
    ),
    "values": ("base", "values", ["--values"], {"d2/bias": ("changed", ["values"])}),
    "values_not_compared": ("base", "values", [], {}),
}


@pytest.mark.parametrize("case", sorted(DIFF_CASES))
def test_diff_finds_each_kind_of_change(models, case):
    a, b, args, want = DIFF_CASES[case]
    suffix_b = "keras" if b == "frozen" else "h5"  # mix formats where both exist
    result = run("diff", models / f"{a}.keras", models / f"{b}.{suffix_b}", *args, "-f", "json")
    assert result.exit_code == (1 if want else 0), result.output
    doc = json.loads(result.stdout)
    assert {c["path"]: (c["change"], c["fields"]) for c in doc["changes"]} == want
    assert doc["identical"] is (not want)


def test_diff_values_counts(models):
    doc = as_json(run("diff", models / "base.keras", models / "values.keras", "--values", "-f", "json"))
    [change] = doc["changes"]
    assert change["values"]["elements"] == 2 and change["values"]["differing"] == 2
    assert change["values"]["max_abs_diff"] == pytest.approx(0.5)
    assert (
        run("diff", models / "base.keras", models / "values.keras", "--values", "--atol", "0.6").exit_code
        == 0
    )
    nan = as_json(run("diff", models / "base.keras", models / "nan.h5", "--values", "-f", "json"))
    [change] = nan["changes"]
    assert change["path"] == "d1/kernel" and change["values"]["differing"] == 3
    assert change["values"]["max_abs_diff"] == 0.0  # every finite pair is equal


def test_diff_table_and_identical_message(models):
    result = run("diff", models / "base.keras", models / "added.keras")
    assert result.exit_code == 1
    assert "d3/kernel" in result.stdout and "added" in result.stdout
    same = run("diff", models / "base.keras", models / "base.h5", "--values")
    assert same.exit_code == 0, same.output
    assert same.stdout == "" and "no differences in 4 variables (values compared)" in same.stderr


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_diff_keras_against_its_h5_is_identical(name):
    result = run("diff", SAMPLES / f"{name}.keras", SAMPLES / f"{name}.h5", "--values", "-f", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["identical"] and doc["summary"]["changed"] == 0


def test_diff_unreadable_side_is_exit_3(models):
    result = run("diff", models / "base.keras", models / "nope.keras")
    assert result.exit_code == 3
    assert "nope.keras" in result.stderr and result.stdout == ""


# -- stats --------------------------------------------------------------------------------------


def assert_stats_match_numpy(doc, values):
    assert {v["path"] for v in doc["variables"]} <= set(values)
    for row in doc["variables"]:
        x = values[row["path"]].reshape(-1)
        finite = x[np.isfinite(x)]
        assert row["params"] == x.size
        assert row["nan_count"] == int(np.isnan(x).sum())
        assert row["inf_count"] == int(np.isinf(x).sum())
        assert row["zero_fraction"] == pytest.approx(float((x == 0).mean()))
        assert row["min"] == pytest.approx(finite.min(), rel=1e-6)
        assert row["max"] == pytest.approx(finite.max(), rel=1e-6)
        assert row["mean"] == pytest.approx(finite.mean(), rel=1e-6, abs=1e-12)
        assert row["std"] == pytest.approx(finite.std(), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("path", ["transfer_learning.keras", "batchnorm.h5", "dtypes.keras", "nan.h5"])
def test_stats_match_numpy_on_keras_weights(models, path):
    full = SAMPLES / path if (SAMPLES / path).exists() else models / path
    result = run("stats", full, "-f", "json")
    assert result.exit_code == 0, result.output
    doc, values = json.loads(result.stdout), keras_values(full)
    assert {v["path"] for v in doc["variables"]} == set(values)
    assert_stats_match_numpy(doc, values)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_stats_match_keras_and_keras_equals_h5(zoo_dir, name):
    """Every layer kind varctl reads: stats equal numpy on what Keras loads; the .h5 copy has no
    difference, values included."""
    path = zoo_dir / f"{name}.keras"
    doc = as_json(run("stats", path, "-f", "json"))
    values = keras_values(path)
    assert {v["path"] for v in doc["variables"]} <= set(values)
    assert_stats_match_numpy(doc, values)
    if (zoo_dir / f"{name}.h5").exists():
        result = run("diff", path, zoo_dir / f"{name}.h5", "--values")
        assert result.exit_code == 0, result.output


def test_stats_many_small_chunks_match_one_pass(models, monkeypatch):
    """Chunks of 64 bytes: the streaming merge of thousands of chunks equals numpy's one pass."""
    from varctl import values, valuestats

    monkeypatch.setattr(values, "CHUNK_BYTES", 64)
    monkeypatch.setattr(valuestats, "_BLOCK", 5)
    doc = as_json(
        run("stats", SAMPLES / "transfer_learning.keras", "-p", "Conv1", "-p", "dense", "-f", "json")
    )
    assert [v["path"] for v in doc["variables"]] == [
        "mobilenetv2_0.35_96/Conv1/kernel",
        "dense/kernel",
        "dense/bias",
    ]
    assert_stats_match_numpy(doc, keras_values(SAMPLES / "transfer_learning.keras"))


def test_stats_bfloat16_and_zeros(models):
    doc = as_json(run("stats", models / "dtypes.keras", "-f", "json"))
    rows = {v["path"]: v for v in doc["variables"]}
    assert rows["bf16/kernel"]["dtype"] == "bfloat16"
    assert rows["zeros/kernel"]["zero_fraction"] == 1.0 and rows["zeros/kernel"]["std"] == 0.0


def test_stats_filters_and_table(models):
    result = run("stats", models / "frozen.keras", "--frozen")
    assert result.exit_code == 0, result.output
    assert "d1/kernel" in result.stdout and "d2/kernel" not in result.stdout
    assert result.stderr == ""  # no progress bar off a TTY
    assert run("stats", models / "base.keras", "-p", "d9").exit_code == 2


def test_stats_many_models_one_missing(models):
    result = run("stats", models / "base.keras", models / "gone.h5", models / "base.h5", "-f", "csv")
    assert result.exit_code == 3
    lines = result.stdout.splitlines()
    assert lines[0].startswith("model,path,") and len(lines) == 1 + 4 + 4
    assert "gone.h5" in result.stderr


# -- JSON contracts -----------------------------------------------------------------------------


def test_json_schemas(models):
    check = as_json(run("check", models / "base.keras", "--finite", "-f", "json"))
    assert set(check) == {
        "schema",
        "model",
        "format",
        "keras_version",
        "error",
        "ok",
        "failed",
        "assertions",
        "warnings",
    }
    assert check["schema"] == "varctl.check/1"
    assert set(check["assertions"][0]) == {
        "assertion",
        "argument",
        "ok",
        "message",
        "hint",
        "checked",
        "variables",
    }

    diff = as_json(run("diff", models / "base.keras", models / "shape.h5", "--values", "-f", "json"))
    assert set(diff) == {"schema", "a", "b", "values_compared", "identical", "summary", "changes"}
    assert diff["schema"] == "varctl.diff/1"
    assert set(diff["a"]) == {"model", "format", "keras_version"} and diff["b"]["format"] == "h5"
    assert set(diff["summary"]) == {"added", "removed", "changed", "unchanged"}
    assert set(diff["changes"][0]) == {"path", "change", "fields", "a", "b", "values", "matched_by"}
    assert set(diff["changes"][0]["a"]) == {"path", "shape", "dtype", "trainable"}

    stats = as_json(run("stats", models / "base.keras", "-f", "json"))
    assert set(stats) == {
        "schema",
        "model",
        "format",
        "keras_version",
        "error",
        "variables",
        "totals",
        "warnings",
    }
    assert stats["schema"] == "varctl.stats/1"
    assert set(stats["variables"][0]) == {
        "path", "layer", "name", "shape", "dtype", "params", "trainable", "cause",
        "min", "max", "mean", "std", "zero_fraction", "nan_count", "inf_count",
    }  # fmt: skip


# -- the chunked reader -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    shape=st.lists(st.integers(0, 7), min_size=0, max_size=4).map(tuple),
    itemsize=st.sampled_from([1, 2, 4, 8]),
    max_bytes=st.integers(1, 200),
)
def test_slices_cover_every_element_once_in_order_within_budget(shape, itemsize, max_bytes):
    from varctl.values import slices

    full = np.arange(math.prod(shape)).reshape(shape)
    parts = [np.asarray(full[i]).reshape(-1) for i in slices(shape, itemsize, max_bytes)]
    joined = np.concatenate(parts) if parts else np.array([], dtype=full.dtype)
    assert joined.tolist() == full.reshape(-1).tolist()
    assert all(p.size * itemsize <= max_bytes or p.size == 1 for p in parts)


@settings(max_examples=200, deadline=None)
@given(
    shape_chunks=st.lists(
        st.integers(1, 7).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, 9))), max_size=4
    ),
    itemsize=st.sampled_from([1, 2, 4, 8]),
    max_bytes=st.integers(1, 400),
)
def test_blocks_cover_every_element_once_in_whole_chunks_within_budget(shape_chunks, itemsize, max_bytes):
    """On a chunked dataset every block is a union of whole chunks (clipped at the edges), so no
    chunk is inflated twice; each block is within the budget or is one chunk."""
    from varctl.values import blocks

    shape = tuple(s for s, _ in shape_chunks)
    chunks = tuple(c for _, c in shape_chunks)
    seen = np.zeros(shape, dtype=int)
    chunk_elems = math.prod(min(c, s) for s, c in shape_chunks)
    for index in blocks(shape, itemsize, chunks or None, max_bytes):
        seen[index] += 1
        size = np.asarray(seen[index]).size
        assert size * itemsize <= max_bytes or size <= chunk_elems
        for axis, part in enumerate(index):
            start = part.start if isinstance(part, slice) else part
            stop = part.stop if isinstance(part, slice) else part + 1
            assert start % chunks[axis] == 0
            assert stop % chunks[axis] == 0 or stop == shape[axis]
    assert (seen == 1).all()


def test_reader_refuses_a_dataset_that_is_a_soft_link(tmp_path):
    import h5py

    from varctl.errors import UnsafeFile
    from varctl.formats import open_model
    from varctl.values import ValueReader

    path = tmp_path / "m.h5"
    shutil.copy(SAMPLES / "seed_dense.h5", path)
    info = open_model(str(path))
    with h5py.File(path, "r+") as f:
        kernel = info.variables[0].storage
        data = f[kernel][()]
        del f[kernel]
        f["elsewhere"] = data
        f[kernel] = h5py.SoftLink("/elsewhere")
    with ValueReader(info) as reader, pytest.raises(UnsafeFile, match="soft link"):
        next(reader.chunks(info.variables[0]))


def test_progress_bar_only_on_a_tty(monkeypatch):
    import io

    from varctl import out

    class Tty(io.StringIO):
        def isatty(self):
            return True

    for stream, drawn in ((Tty(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        monkeypatch.delenv("NO_COLOR", raising=False)
        with out.progress(out.PROGRESS_MIN_BYTES, "stats big.keras") as advance:
            advance(out.PROGRESS_MIN_BYTES)
        assert bool(stream.getvalue()) is drawn
    small = Tty()
    monkeypatch.setattr(sys, "stderr", small)
    with out.progress(out.PROGRESS_MIN_BYTES - 1, "small") as advance:
        advance(1)
    assert small.getvalue() == ""


# -- pre-commit -----------------------------------------------------------------------------------


@pytest.mark.slow  # pre-commit pip-installs varctl into a fresh environment (about a minute)
def test_pre_commit_hook_from_a_scratch_repository(tmp_path):
    """A scratch repository uses the hook the way a user's would: `repo:` this repository at its
    HEAD commit (so the committed hook is tested), installed once by pre-commit, run three times."""
    pytest.importorskip("pre_commit")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not running from a git checkout")
    repo = tmp_path / "scratch"
    repo.mkdir()
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    shutil.copy(SAMPLES / "transfer_learning.keras", repo / "m.keras")
    (repo / "bad.h5").write_bytes(b"not a model")
    (repo / "notes.txt").write_text("not matched by the hook's files pattern")

    def pre_commit(args, *files):
        config = (
            f"repos:\n- repo: {ROOT}\n  rev: {head.stdout.strip()}\n"
            f"  hooks:\n  - id: varctl-check\n    args: {json.dumps(args)}\n"
        )
        (repo / ".pre-commit-config.yaml").write_text(config)
        cmd = [sys.executable, "-m", "pre_commit", "run", "--files", *files]
        return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)

    good = pre_commit(["--frozen", "mobilenet*"], "m.keras", "notes.txt")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "varctl check" in good.stdout and "Passed" in good.stdout
    over = pre_commit(["--max-trainable-params", "1000"], "m.keras")
    assert over.returncode == 1, over.stdout + over.stderr
    assert "1,281 trainable params > max 1,000" in over.stdout
    bad = pre_commit([], "m.keras", "bad.h5")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Failed" in bad.stdout and "cannot open 'bad.h5'" in bad.stdout and "exit code: 3" in bad.stdout


def test_pre_commit_hooks_file_declares_the_hook():
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert "id: varctl-check" in text and "entry: varctl check" in text
    assert r"files: \.(keras|h5)$" in text


@pytest.fixture(scope="module")
def savedmodel(tmp_path_factory):
    """A real SavedModel, exported by Keras (as tests/test_tf_formats.py builds them)."""
    pytest.importorskip("tensorflow")
    path = tmp_path_factory.mktemp("savedmodel") / "exported"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _base().export(str(path), verbose=False)
    return path


def test_values_of_a_savedmodel_are_refused_clearly(savedmodel, models):
    """A SavedModel lists, checks and diffs without values; every value command refuses it with exit 3
    and says where values can be read, before starting any reader."""
    assert run("check", savedmodel).exit_code == 0
    assert run("diff", savedmodel, savedmodel).exit_code == 0
    for args in (
        ("stats", savedmodel),
        ("check", savedmodel, "--finite"),
        ("diff", savedmodel, models / "base.keras", "--values"),
        ("diff", models / "base.keras", savedmodel, "--values"),
    ):
        result = run(*args)
        assert result.exit_code == 3, result.output
        assert "cannot read the values of a 'savedmodel' model" in result.stderr
        assert "read from .keras and .h5 files" in result.stderr


# -- sound numbers ----------------------------------------------------------------------------------


def _reference(values: np.ndarray) -> tuple[float, float]:
    """Mean and population std of float64 values, exactly rounded where it counts (math.fsum on
    values scaled into range)."""
    x = values.astype(np.float64).reshape(-1)
    e = math.frexp(float(np.max(np.abs(x))) or 1.0)[1]
    xs = [math.ldexp(float(v), -e) for v in x]
    mean = math.fsum(xs) / len(xs)
    var = math.fsum((v - mean) ** 2 for v in xs) / len(xs)
    return math.ldexp(mean, e), math.ldexp(math.sqrt(var), e)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from([1e308, -1e308, 1.7976931348623157e308, 5e-324, 0.0]),
        ),
        min_size=1,
        max_size=300,
    ),
    st.integers(1, 64),
)
def test_accumulator_is_sound_over_the_whole_float64_range(values, block):
    """Streaming in blocks of any size, the mean and std equal an fsum reference (relative to the
    largest magnitude), finite, and numpy never warns."""
    from varctl import valuestats

    x = np.array(values, dtype=np.float64)
    acc = valuestats.Accumulator()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for start in range(0, x.size, block):
            acc.add(x[start : start + block])
    got = acc.result()
    mean, std = _reference(x)
    top = float(np.max(np.abs(x)))
    assert math.isfinite(got["mean"]) and math.isfinite(got["std"])
    assert got["min"] == x.min() and got["max"] == x.max()
    assert abs(got["mean"] - mean) <= 1e-12 * top
    assert abs(got["std"] - std) <= 1e-12 * top + 1e-12 * std


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    """Keras-saved float64 Dense layers holding ±1e308: A, and B with the kernel's signs flipped."""
    out = tmp_path_factory.mktemp("huge")
    for stem, sign in (("a", 1.0), ("b", -1.0)):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="d", dtype="float64")])
        kernel = np.full((4, 8), 1e308) * np.where(np.arange(32).reshape(4, 8) % 3, 1.0, -1.0)
        model.get_layer("d").set_weights([sign * kernel, np.full(8, 1.7e308)])
        model.save(out / f"{stem}.keras")
    return out


def test_stats_near_the_float64_limit_are_finite_strict_json_and_quiet(huge):
    result = run("stats", huge / "a.keras", "-f", "json")
    assert result.exit_code == 0 and result.stderr == "", result.output

    def refuse(token):
        raise AssertionError(f"{token} in stats JSON")

    rows = {v["path"]: v for v in json.loads(result.stdout, parse_constant=refuse)["variables"]}
    weights = keras_values(huge / "a.keras")
    for path, row in rows.items():
        mean, std = _reference(weights[path])
        assert row["mean"] == pytest.approx(mean, rel=1e-12)
        assert row["std"] == pytest.approx(std, rel=1e-12)
    assert rows["d/bias"]["mean"] == 1.7e308 and rows["d/bias"]["std"] == 0.0


def test_diff_beyond_float64_reports_an_infinite_max_abs_diff(huge):
    """1e308 against -1e308: the difference is beyond float64, so max_abs_diff is float('inf') (a plain
    float; the JSON renderer decides its strict representation); every element differs."""
    from varctl import diffs
    from varctl.formats import open_model

    a, b = open_model(str(huge / "a.keras")), open_model(str(huge / "b.keras"))
    entries = {e.path: e for e in diffs.diff(a, b, values=True).entries}
    kernel = entries["d/kernel"]
    assert kernel.kind == "changed" and kernel.values is not None
    assert kernel.values.differing == 32 and kernel.values.max_abs_diff == math.inf
    assert entries["d/bias"].kind == "same" and entries["d/bias"].values.max_abs_diff == 0.0
    result = run("diff", huge / "a.keras", huge / "b.keras", "--values")
    assert result.exit_code == 1 and "Warning" not in result.stderr, result.output
