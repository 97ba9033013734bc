"""Quantized (int8, int4, float8, gptq, awq) and LoRA layers: varctl lists and edits them exactly as
Keras 3.15 holds them after loading the file (Keras itself is the oracle, on files it wrote)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from varctl.cli import app

keras_oracle = pytest.importorskip("tests.keras_oracle")
import keras  # noqa: E402

ENV = {"NO_COLOR": "1", "COLUMNS": "200", "FORCE_COLOR": None}


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], env=ENV)
    return result


def listed(path, *extra):
    result = run("list", "-f", "json", *extra, path)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _functional(name="m"):
    inp = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(20, 8, name="emb")(inp)
    x = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 10), bias_axes="d", name="ein")(x)
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.Dense(7, name="fc")(x)
    x = keras.layers.Dense(5, use_bias=False, name="fc2")(x)
    return keras.Model(inp, x, name=name)


def _sequential(name="s"):
    return keras.Sequential(
        [
            keras.Input((6,), dtype="int32"),
            keras.layers.Embedding(20, 8, name="emb"),
            keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 10), bias_axes="d", name="ein"),
            keras.layers.Dense(7, name="fc"),
            keras.layers.Dense(5, use_bias=False, name="fc2"),
        ],
        name=name,
    )


def _reversible(tie=False):
    def build(name="r"):
        inp = keras.Input((6,), dtype="int32")
        rev = keras.layers.ReversibleEmbedding(20, 8, tie_weights=tie, name="rev")
        x = keras.layers.Dense(8, name="fc")(rev(inp))
        return keras.Model(inp, rev(x, reverse=True), name=name)

    return build


def _quantize(mode):
    def change(model):
        if mode == "int4-per-channel":
            model.quantize("int4", config=keras.quantizers.Int4QuantizationConfig(block_size=-1))
        else:
            model.quantize(mode)

    return change


def _lora(*names, rank=2):
    def change(model):
        for n in names:
            model.get_layer(n).enable_lora(rank)

    return change


def _int8_lora(model):
    model.quantize("int8")
    model.get_layer("fc").enable_lora(3)


def _lora_one_frozen(model):
    _lora("emb", "ein", "fc")(model)
    model.get_layer("ein").trainable = False


def _plain(model):
    pass


# name -> (builder, change, LoRA layers whose adapters come back as zeros and would be trained)
CASES = {
    "func_int8": (_functional, _quantize("int8"), []),
    "seq_int8": (_sequential, _quantize("int8"), []),
    "func_int4": (_functional, _quantize("int4"), []),
    "seq_int4": (_sequential, _quantize("int4"), []),
    "func_int4_pc": (_functional, _quantize("int4-per-channel"), []),
    "func_float8": (_functional, _quantize("float8"), []),
    "seq_float8": (_sequential, _quantize("float8"), []),
    "func_lora": (_functional, _lora("emb", "ein", "fc"), ["emb", "ein", "fc"]),
    "seq_lora": (_sequential, _lora("fc", rank=3), ["fc"]),
    "func_int8_lora": (_functional, _int8_lora, ["fc"]),
    "func_lora_frozen": (_functional, _lora_one_frozen, ["emb", "fc"]),
    "func_plain": (_functional, _plain, []),
    "rev_plain": (_reversible(), _plain, []),
    "rev_int8": (_reversible(), _quantize("int8"), []),
    "rev_int4": (_reversible(), _quantize("int4"), []),
    "rev_int4_pc": (_reversible(), _quantize("int4-per-channel"), []),
    "rev_tied_lora": (_reversible(tie=True), _lora("rev"), ["rev"]),
}


@pytest.fixture(scope="session")
def qdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("quant")
    keras.utils.set_random_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (build, change, _dead) in CASES.items():
            model = build()
            change(model)
            model.save(out / f"{name}.keras")
    return out


def keras_rows(path):
    """(path, shape, dtype, trainable) of every variable, in `model.weights` order, after loading."""
    model = keras_oracle.load(str(path), compile=False)
    names = keras_oracle.hierarchical_paths(model)
    trainable = {id(v) for v in model.trainable_variables}
    assert [id(v) for v in model.weights] == [id(w) for w in model.weights]
    return [
        (names[id(v)], tuple(int(d) for d in v.shape), str(v.dtype), id(v) in trainable)
        for v in model.weights
    ]


def varctl_rows(doc):
    return [(v["path"], tuple(v["shape"]), v["dtype"], v["trainable"]) for v in doc["variables"]]


@pytest.mark.parametrize("name", list(CASES))
def test_list_equals_keras_loaded_model(qdir, name):
    path = qdir / f"{name}.keras"
    doc = listed(path)
    assert varctl_rows(doc) == keras_rows(path)
    assert not [w for w in doc["warnings"] if "not known to varctl" in w or "do not belong" in w]


@pytest.mark.parametrize("name", list(CASES))
def test_dead_adapter_warning_exactly_when_it_applies(qdir, name):
    doc = listed(qdir / f"{name}.keras")
    lora = [w for w in doc["warnings"] if "LoRA adapters" in w]
    dead = CASES[name][2]
    if not dead:
        assert lora == []
        return
    assert len(lora) == 1
    named = sorted(
        p.strip("`") for p in lora[0].split("LoRA adapters of ")[1].split(" come back")[0].split(", ")
    )
    assert named == sorted(dead)
    assert "optimizer state" in lora[0] and "save_lora_weights" in lora[0]


def test_the_mode_is_shown_per_layer_and_per_variable(qdir):
    doc = listed(qdir / "func_int8_lora.keras", "--by-layer")
    modes = {layer["path"]: layer.get("quantization") for layer in doc["layers"]}
    assert modes["fc"] == "int8+lora"
    assert modes["emb"] == modes["ein"] == modes["fc2"] == "int8"
    assert modes["ln"] is None
    variables = listed(qdir / "func_int8_lora.keras")["variables"]
    assert {v["quantization"] for v in variables if v["layer"] == "fc"} == {"int8+lora"}
    assert all("quantization" not in v for v in variables if v["layer"] == "ln")
    plain = listed(qdir / "func_plain.keras", "--by-layer")
    assert all("quantization" not in layer for layer in plain["layers"])
    table = run("list", "--by-layer", qdir / "func_int8_lora.keras").stdout
    assert "int8+lora" in table
    assert "quantization" not in run("list", qdir / "func_plain.keras").stdout


def test_int4_totals_count_logical_weights_beside_stored_elements(qdir):
    path = qdir / "func_int4.keras"
    doc = listed(path)
    model = keras_oracle.load(str(path), compile=False)
    logical = 0
    for layer in model.layers:
        if layer.name in ("ein", "fc", "fc2"):
            logical += int(np.prod(layer.kernel.shape))  # Keras unpacks the kernel for us
            assert doc_var(doc, f"{layer.name}/kernel")["logical_params"] == int(np.prod(layer.kernel.shape))
        if layer.name == "emb":
            logical += int(np.prod(layer.embeddings.shape))
    others = sum(v["params"] for v in doc["variables"] if "logical_params" not in v)
    assert doc["totals"]["logical_params"] == logical + others
    assert doc["totals"]["bytes"] == sum(
        int(np.prod(v.shape)) * v.dtype_size for v in [_Sized(w) for w in model.weights]
    )
    assert "Logical weights:" in run("list", path).stdout
    assert "logical_params" not in listed(qdir / "func_int8.keras")["totals"]


class _Sized:
    def __init__(self, v):
        self.shape = tuple(v.shape)
        self.dtype_size = np.dtype(str(v.dtype)).itemsize


def doc_var(doc, path):
    return next(v for v in doc["variables"] if v["path"] == path)


def test_lora_adapters_come_back_as_zeros_and_never_train(qdir):
    """The fact behind the warning: load, compile, fit one step: the adapters stay exactly zero."""
    model = keras_oracle.load(str(qdir / "func_lora.keras"), compile=False)
    fc = model.get_layer("fc")
    assert not np.any(fc.lora_kernel_a.numpy()) and not np.any(fc.lora_kernel_b.numpy())
    before = model.get_layer("fc2").kernel.numpy().copy()
    model.compile(optimizer="adam", loss="mse")
    x = np.random.randint(0, 20, size=(8, 6)).astype("int32")
    y = np.random.rand(8, 6, 5).astype("float32")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for name in ("ein", "fc"):
        layer = model.get_layer(name)
        assert not np.any(layer.lora_kernel_a.numpy()) and not np.any(layer.lora_kernel_b.numpy())
    emb = model.get_layer("emb")
    assert not np.any(emb.lora_embeddings_a.numpy()) and not np.any(emb.lora_embeddings_b.numpy())
    assert np.any(model.get_layer("fc2").kernel.numpy() != before)  # training did happen


def test_restored_optimizer_state_is_the_exception(tmp_path):
    """Saved with optimizer state and resumed without recompiling: momentum moves the adapters."""
    keras.utils.set_random_seed(1)
    model = _functional()
    model.get_layer("fc").enable_lora(2)
    model.compile(optimizer="adam", loss="mse")
    x = np.random.randint(0, 20, size=(8, 6)).astype("int32")
    y = np.random.rand(8, 6, 5).astype("float32")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "trained.keras")
    resumed = keras_oracle.load(str(tmp_path / "trained.keras"))  # compiled, optimizer restored
    fc = resumed.get_layer("fc")
    assert not np.any(fc.lora_kernel_a.numpy())
    resumed.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.any(fc.lora_kernel_a.numpy()) and np.any(fc.lora_kernel_b.numpy())


def keras_trainable(path):
    model = keras_oracle.load(str(path), compile=False)
    names = keras_oracle.hierarchical_paths(model)
    return sorted(names[id(v)] for v in model.trainable_variables)


EDITS = [
    ("func_int8", "freeze", ["-p", "fc"]),
    ("func_int8", "freeze", ["--all"]),
    ("seq_int4", "freeze", ["-p", "e*"]),
    ("func_float8", "freeze", ["-p", "ein"]),
    ("func_lora", "freeze", ["-p", "ein"]),
    ("func_lora", "freeze", ["--all"]),
    ("func_lora_frozen", "unfreeze", ["-p", "ein"]),
    ("func_int8_lora", "freeze", ["-p", "fc"]),
]


@pytest.mark.parametrize(
    ("name", "action", "args"), EDITS, ids=[f"{n}-{a}-{'_'.join(x)}" for n, a, x in EDITS]
)
def test_edit_predictions_equal_what_keras_loads(qdir, tmp_path, name, action, args):
    src = qdir / f"{name}.keras"
    out = tmp_path / "out.keras"
    result = run(action, src, *args, "-o", out, "-f", "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    after = listed(out)
    trained = keras_trainable(out)
    assert sorted(v["path"] for v in after["variables"] if v["trainable"]) == trained
    assert varctl_rows(after) == keras_rows(out)
    model = keras_oracle.load(str(out), compile=False)
    assert plan["trainable_params"]["after"] == sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_unfreezing_only_quantized_weights_is_refused(qdir, tmp_path):
    """fc2 (int8, no bias) has nothing Keras can train: unfreezing it alone cannot do what is asked."""
    frozen = tmp_path / "frozen.keras"
    assert run("freeze", qdir / "func_int8.keras", "--all", "-o", frozen).exit_code == 0
    result = run("unfreeze", frozen, "-p", "fc2", "-o", tmp_path / "out.keras")
    assert result.exit_code == 2, result.output
    assert "int8" in result.stderr and "fc2" in result.stderr
    assert not (tmp_path / "out.keras").exists()
    ok = run("unfreeze", frozen, "-p", "fc", "-o", tmp_path / "ok.keras")  # its bias trains
    assert ok.exit_code == 0, ok.output


@pytest.fixture(scope="session")
def calibrated(tmp_path_factory):
    """gptq and awq models, calibrated here on a tiny token set (no downloads, ~5 s each)."""
    out = tmp_path_factory.mktemp("calibrated")
    keras.utils.set_random_seed(0)
    for mode in ("gptq", "awq"):
        inp = keras.Input((8,), dtype="int32")
        emb = keras.layers.Embedding(50, 16, name="emb")
        fc = keras.layers.Dense(16, name="fc")
        ein = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 16), bias_axes="d", name="ein")
        fc2 = keras.layers.Dense(16, use_bias=False, name="fc2")
        model = keras.Model(inp, fc2(ein(fc(emb(inp)))), name=mode)
        data = [np.arange(50, dtype="int32") for _ in range(2)]
        kw = {
            "num_samples": 2,
            "sequence_length": 8,
            "group_size": 8,
            "quantization_layer_structure": {"pre_block_layers": [emb], "sequential_blocks": [fc, ein, fc2]},
        }
        # token arrays need no tokenizer, but the config insists on one
        if mode == "gptq":
            config = keras.quantizers.GPTQConfig(data, tokenizer=object(), weight_bits=4, **kw)
        else:
            config = keras.quantizers.AWQConfig(data, tokenizer=object(), **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.quantize(mode, config=config)
        # what the layers keep of the config must serialise: drop the calibration-only parts
        config.quantization_layer_structure = config.dataset = config.tokenizer = None
        model.save(out / f"{mode}.keras")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["gptq", "awq"])
def test_gptq_awq_listed_as_keras_builds_them(calibrated, mode):
    """Keras 3.15 writes gptq/awq layers without `kernel_zero` and cannot load the file back; varctl
    names what is stored, lists what Keras builds from the config, and says why loading fails."""
    path = calibrated / f"{mode}.keras"
    with pytest.raises(ValueError, match="variables, but received"):
        keras_oracle.load(str(path), compile=False)
    import zipfile

    with zipfile.ZipFile(path) as zf:
        built = keras.saving.deserialize_keras_object(json.loads(zf.read("config.json")))
    names = keras_oracle.hierarchical_paths(built)
    trainable = {id(v) for v in built.trainable_variables}
    want = [(names[id(v)], tuple(v.shape), str(v.dtype), id(v) in trainable) for v in built.weights]
    doc = listed(path)
    assert varctl_rows(doc) == want
    assert any("saved without their zero point" in w for w in doc["warnings"])
    assert {v["quantization"] for v in doc["variables"] if v["layer"] != "emb"} == {mode}
    assert doc["totals"]["logical_params"] == 50 * 16 + 16 + 16 + 3 * (16 * 16 + 2 * 16 * 2 + 16) + (
        3 * 16 if mode == "awq" else 0
    )


@pytest.mark.parametrize(
    "name", ["func_lora", "func_int8_lora", "seq_int4", "func_float8", "func_lora_frozen"]
)
def test_list_load_lists_every_variable_like_the_static_reader(qdir, name):
    path = qdir / f"{name}.keras"
    static, loaded = listed(path), listed(path, "--load")
    assert varctl_rows(loaded) == varctl_rows(static)
    assert [v.get("quantization") for v in loaded["variables"]] == [
        v.get("quantization") for v in static["variables"]
    ]
    lora = [[w for w in d["warnings"] if "LoRA adapters" in w] for d in (static, loaded)]
    assert lora[0] == lora[1]


@pytest.mark.parametrize("name", ["quant_int8", "lora"])
def test_samples_list_as_keras_loads_them(name):
    from tests.conftest import SAMPLES

    path = SAMPLES / f"{name}.keras"
    doc = listed(path)
    assert varctl_rows(doc) == keras_rows(path)
    assert any("LoRA adapters" in w for w in doc["warnings"]) is (name == "lora")


def test_freeze_on_a_compiled_lora_model_remaps_its_optimizer_state(tmp_path):
    """The adapters Keras creates on load hold optimizer slots: remapping must count them."""
    from tests.conftest import SAMPLES

    out = tmp_path / "out.keras"
    result = run("freeze", SAMPLES / "lora.keras", "-p", "head", "-o", out, "--verify")
    assert result.exit_code == 0, result.output
    assert "remapped the optimizer state" in result.stderr
    assert "verified with Keras" in result.stderr


def test_unfreeze_notes_what_stays_frozen_and_the_dead_adapters(qdir, tmp_path):
    result = run("unfreeze", qdir / "func_lora_frozen.keras", "-p", "ein", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "`ein`: kernel" in result.stderr
    assert "LoRA adapters of `ein` will be trainable" in result.stderr
    frozen = tmp_path / "frozen.keras"
    assert run("freeze", qdir / "func_plain.keras", "-p", "fc", "-o", frozen).exit_code == 0
    plain = run("unfreeze", frozen, "-p", "fc", "--dry-run")
    assert plain.exit_code == 0, plain.output
    assert "stay frozen" not in plain.stderr and "LoRA" not in plain.stderr
