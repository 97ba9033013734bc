"""keras-hub models read statically equal what keras-hub holds after `keras.saving.load_model`.

Tiny random models built from config (tests/hub_zoo.py; no presets, no network), saved by Keras.
The oracle: load the file with Keras (keras_hub imported), take `model.weights` (order), each
variable's layer path from Keras's own save walk (the `name` of every enclosing saved layer), its
shape, dtype and membership in `model.trainable_variables`.
"""

from __future__ import annotations

import json
import os
import warnings

import pytest

keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402
from keras.src.saving import saving_lib  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from tests import hub_zoo  # noqa: E402
from varctl.cli import app  # noqa: E402
from varctl.formats import catalog_hub, open_model  # noqa: E402

ENV = {"NO_COLOR": "1", "COLUMNS": "200"}
runner = CliRunner()


class _Recorder(saving_lib.H5IOStore):
    """Keras's save walk calls make()/[]= on this; it records layer names and variable groups."""

    def __init__(self):
        self.names: dict[str, str] = {}
        self.owner: dict[int, str] = {}
        self.mode = "w"

    def __bool__(self):
        return True

    def make(self, path, metadata=None):
        if metadata and "name" in metadata:
            self.names[path] = metadata["name"]
        rec = self

        class _Entry(dict):
            def __setitem__(self, key, value):
                rec.owner.setdefault(id(value), path)

        return _Entry()


def _layer_path(rec: _Recorder, group: str) -> str:
    parts = group.split("/")
    names = [rec.names[p] for i in range(1, len(parts) + 1) if (p := "/".join(parts[:i])) in rec.names]
    return "/".join(n for n in names)


def oracle(path: str) -> list[tuple[str, tuple[int, ...], str, bool]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = keras.saving.load_model(path, compile=False)
    return oracle_of(model)


def oracle_of(model) -> list[tuple[str, tuple[int, ...], str, bool]]:
    rec = _Recorder()
    saving_lib._save_state(
        model, weights_store=rec, assets_store=None, inner_path="", visited_saveables=set()
    )
    trainable = {id(v) for v in model.trainable_variables}
    rows = []
    for v in model.weights:
        layer = _layer_path(rec, rec.owner[id(v)])
        rows.append((f"{layer}/{v.name}", tuple(int(d) for d in v.shape), str(v.dtype), id(v) in trainable))
    saved = {i for i, p in rec.owner.items() if not p.startswith("optimizer")}
    assert saved == {id(v) for v in model.weights}, "model.weights and the saved variables differ"
    return rows


def rows(info):
    return [(v.path, v.shape, v.dtype, v.trainable) for v in info.variables]


class _SavedZoo:
    """`hub_dir / "<name>.keras"`: the zoo model saved by Keras, built on first use (a backbone;
    a task, also as `<name>_frozen.keras` with its backbone frozen)."""

    def __init__(self, out):
        self.out = out

    def __truediv__(self, filename):
        path = self.out / filename
        if not path.exists():
            name = filename.removesuffix(".keras").removesuffix("_frozen")
            if name in hub_zoo.BACKBONES:
                hub_zoo.build_backbone(name).save(self.out / f"{name}.keras")
            else:
                task = hub_zoo.build_task(name)
                task.save(self.out / f"{name}.keras")
                task.backbone.trainable = False
                task.save(self.out / f"{name}_frozen.keras")
        return path


@pytest.fixture(scope="session")
def hub_dir(tmp_path_factory):
    return _SavedZoo(tmp_path_factory.mktemp("hub"))


# The families every run checks; the others run unless `-m "not slow"` (each costs a few seconds).
CORE = {"bert", "gpt2", "vit", "bert_classifier", "gpt2_causal_lm", "vit_classifier"}


def _families(names):
    return [n if n in CORE else pytest.param(n, marks=pytest.mark.slow) for n in sorted(names)]


@pytest.mark.parametrize("name", _families(hub_zoo.BACKBONES))
def test_backbone_matches_keras_hub(hub_dir, name):
    path = str(hub_dir / f"{name}.keras")
    info = open_model(path)
    assert rows(info) == oracle(path)
    assert not [w for w in info.warnings if "not known" in w or "order" in w], info.warnings


@pytest.mark.parametrize("name", _families(hub_zoo.TASKS))
@pytest.mark.parametrize("frozen", [False, True], ids=["trainable", "frozen_backbone"])
def test_task_matches_keras_hub(hub_dir, name, frozen):
    path = str(hub_dir / f"{name}{'_frozen' if frozen else ''}.keras")
    info = open_model(path)
    assert rows(info) == oracle(path)
    assert not [w for w in info.warnings if "not known" in w or "order" in w], info.warnings
    (backbone,) = [l for l in info.layers if l.class_name.endswith("Backbone")]
    inside = [v for v in info.variables if v.path.startswith(backbone.path + "/")]
    reaches = catalog_hub.flag_reaches_layers(backbone.class_name)
    assert inside
    if frozen and reaches:
        assert not any(v.trainable for v in inside)


def test_frozen_bert_task_trains_only_the_head(hub_dir):
    """The issue's case: Keras trains the 2 head variables only, and varctl says so."""
    info = open_model(str(hub_dir / "bert_classifier_frozen.keras"))
    assert [v.path for v in info.variables if v.trainable] == ["logits/kernel", "logits/bias"]
    backbone = [v for v in info.variables if v.path.startswith("bert_backbone/")]
    assert backbone and all(v.reason and "bert_backbone" in v.reason for v in backbone)


def _cli(*args, code=0):
    result = runner.invoke(app, list(args), env=ENV)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def test_list_json_of_a_task_equals_keras_hub(hub_dir):
    path = str(hub_dir / "gpt2_causal_lm_frozen.keras")
    doc = json.loads(_cli("list", path, "-f", "json").stdout)
    got = [(v["path"], tuple(v["shape"]), v["dtype"], v["trainable"]) for v in doc["variables"]]
    assert got == oracle(path)


def test_check_frozen_backbone_passes_and_unfreeze_flips_the_flag(hub_dir, tmp_path):
    path = str(hub_dir / "bert_classifier_frozen.keras")
    _cli("check", path, "--frozen", "bert_backbone*")
    out = str(tmp_path / "out.keras")
    result = _cli("unfreeze", path, "-p", "bert_backbone*", "-o", out)
    assert "bert_backbone" in result.output
    got = oracle(out)
    assert all(t for *_, t in got), "Keras should train the whole model after the unfreeze"
    assert rows(open_model(out)) == got
    _cli("check", out, "--trainable", "bert_backbone*")


def test_edit_that_changes_nothing_says_so(hub_dir, tmp_path):
    path = str(hub_dir / "bert_classifier_frozen.keras")
    out = str(tmp_path / "same.keras")
    result = _cli("freeze", path, "-p", "bert_backbone", "-o", out)
    assert "nothing to change" in result.output
    assert rows(open_model(out)) == oracle(out) == oracle(path)


def test_freezing_a_layer_inside_a_backbone_is_refused(hub_dir, tmp_path):
    path = str(hub_dir / "bert_classifier.keras")
    out = tmp_path / "no.keras"
    result = _cli("freeze", path, "-p", "bert_backbone/transformer_layer_0", "-o", str(out), code=2)
    assert "bert_backbone/transformer_layer_0" in result.output
    assert not out.exists()


def test_freezing_the_backbone_of_a_task_is_what_keras_loads(hub_dir, tmp_path):
    path = str(hub_dir / "bert_classifier.keras")
    out = str(tmp_path / "frozen.keras")
    _cli("freeze", path, "-p", "bert_backbone", "-o", out)
    got = oracle(out)
    assert [p for p, *_, t in got if t] == ["logits/kernel", "logits/bias"]
    assert rows(open_model(out)) == got


def test_frozen_vit_backbone_is_trained_after_loading_and_freezing_it_is_refused(hub_dir, tmp_path):
    """ViT builds its layers inline: Keras applies the saved flag to the backbone only."""
    info = open_model(str(hub_dir / "vit_classifier_frozen.keras"))
    assert all(v.trainable for v in info.variables)
    assert any("vi_t_backbone" in w and "trainable layers" in w for w in info.warnings)
    out = tmp_path / "vit.keras"
    result = _cli(
        "freeze", str(hub_dir / "vit_classifier.keras"), "-p", "vi_t_backbone", "-o", str(out), code=2
    )
    assert "cannot freeze" in result.output
    assert not out.exists()


def test_static_read_imports_no_tensorflow(hub_dir):
    import subprocess
    import sys

    code = (
        "import sys; from varctl.formats import keras_zip; "
        f"keras_zip.read({str(hub_dir / 'bert_classifier.keras')!r}, 'x'); "
        "print(any(m.split('.')[0] in ('tensorflow', 'keras', 'keras_hub') for m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


# -- model folders, presets, sharded weights ------------------------------------------------------


@pytest.fixture(scope="session")
def hub_files(tmp_path_factory):
    """A frozen-backbone BERT task saved as a folder, a preset, and sharded weights; a sharded
    GPT-2 backbone preset."""
    out = tmp_path_factory.mktemp("hubfiles")
    task = hub_zoo.build_task("bert_classifier")
    task.backbone.trainable = False
    task.save(out / "folder", zipped=False)
    task.save_to_preset(str(out / "preset"))
    (out / "shards").mkdir()
    task.backbone.save_weights(out / "shards" / "bb.weights.json", max_shard_size=0.0000015)
    gpt2 = hub_zoo.build_backbone("gpt2")
    gpt2.save_to_preset(str(out / "gpt2_preset"), max_shard_size=0.0000015)
    return out


def test_model_folder_equals_keras(hub_files):
    path = str(hub_files / "folder")
    info = open_model(path)
    assert info.format == "folder"
    assert rows(info) == oracle(path)


def test_task_preset_equals_keras_hub(hub_files):
    path = str(hub_files / "preset")
    info = open_model(path)
    assert info.format == "preset" and info.class_name == "BertTextClassifier"
    assert any("keras-hub 0.32" in d for d in info.details)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = keras_hub.models.BertTextClassifier.from_preset(path)
    assert rows(info) == oracle_of(model)
    assert [v.path for v in info.variables if v.trainable] == ["logits/kernel", "logits/bias"]
    assert not [w for w in info.warnings if "parameter_count" in w]


def test_sharded_backbone_preset_equals_keras_hub(hub_files):
    path = str(hub_files / "gpt2_preset")
    assert (hub_files / "gpt2_preset" / "model.weights.json").exists()
    assert len(list((hub_files / "gpt2_preset").glob("model_*.weights.h5"))) > 1
    info = open_model(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = keras_hub.models.Backbone.from_preset(path)
    assert rows(info) == oracle_of(model)


def test_preset_parameter_count_is_cross_checked(hub_files, tmp_path):
    import shutil

    copy = tmp_path / "preset"
    shutil.copytree(hub_files / "preset", copy)
    meta = json.loads((copy / "metadata.json").read_text())
    meta["parameter_count"] += 1
    (copy / "metadata.json").write_text(json.dumps(meta))
    info = open_model(str(copy))
    assert any("parameter_count" in w for w in info.warnings)


def test_sharded_weights_list_as_one_file_with_real_names(hub_files):
    index = hub_files / "shards" / "bb.weights.json"
    assert len(list(index.parent.glob("bb_*.weights.h5"))) > 1
    info = open_model(str(index))
    assert info.format == "sharded"
    want = oracle(str(hub_files / "folder"))
    backbone = [
        (p.removeprefix("bert_backbone/"), shape, dtype)
        for p, shape, dtype, _ in want
        if p.startswith("bert_backbone/")
    ]
    assert [(v.path, v.shape, v.dtype) for v in info.variables] == backbone
    assert all(v.trainable is None for v in info.variables)


def test_missing_or_foreign_shard_is_refused_by_name(hub_files, tmp_path):
    import shutil

    copy = tmp_path / "shards"
    shutil.copytree(hub_files / "shards", copy)
    (copy / "bb_00001.weights.h5").unlink()
    result = _cli("list", str(copy / "bb.weights.json"), code=3)
    assert "bb_00001.weights.h5" in result.output and "missing" in result.output
    shutil.copy(copy / "bb_00002.weights.h5", copy / "bb_00001.weights.h5")  # another shard's content
    result = _cli("list", str(copy / "bb.weights.json"), code=3)
    assert "bb_00001.weights.h5" in result.output


def test_lora_file_lists_rank_and_adapter_pairs(tmp_path):
    backbone = hub_zoo.build_backbone("gemma")
    backbone.enable_lora(rank=2)
    path = tmp_path / "adapters.lora.h5"
    backbone.save_lora_weights(str(path))
    info = open_model(str(path))
    assert info.format == "lora" and "LoRA rank 2" in info.details
    lora = [v for v in backbone.weights if "lora_kernel" in v.path]
    # Targets are recorded by index in backbone._flatten_layers() order, not model.weights order.
    assert sorted((v.name, v.shape) for v in info.variables) == sorted((v.name, tuple(v.shape)) for v in lora)
    assert len(info.layers) == len(lora) // 2
    assert all(v.trainable for v in info.variables)


@pytest.mark.slow
def test_load_imports_keras_hub_and_agrees_with_the_static_listing(hub_dir):
    path = str(hub_dir / "bert_classifier_frozen.keras")
    static = json.loads(_cli("list", path, "-f", "json").stdout)
    loaded = json.loads(_cli("list", "--load", path, "-f", "json").stdout)
    key = [(v["path"], v["shape"], v["dtype"], v["trainable"]) for v in static["variables"]]
    assert sorted(key) == sorted(
        (v["path"], v["shape"], v["dtype"], v["trainable"]) for v in loaded["variables"]
    )


SAMPLE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sample_models", "hub_bert_classifier"
)


def test_sample_preset_equals_keras_hub_and_passes_check():
    info = open_model(SAMPLE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = keras_hub.models.TextClassifier.from_preset(SAMPLE)
    assert rows(info) == oracle_of(model)
    assert [v.path for v in info.variables if v.trainable] == ["logits/kernel", "logits/bias"]
    assert "tokenizer BertTokenizer" in info.details
    assert not [w for w in info.warnings if "parameter_count" in w]
    _cli("check", SAMPLE, "--frozen", "bert_backbone*", "--trainable", "logits")


@pytest.mark.parametrize("frozen", [False, True], ids=["trainable", "frozen"])
def test_keras_hub_layers_in_a_functional_model_match_keras(tmp_path, frozen):
    """keras-hub layers with config entries of their own: their build()-made sublayers come back
    trainable even when the layer is saved frozen; their own variables follow its flag."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    i = keras.Input((4, 8))
    enc = keras_hub.layers.TransformerEncoder(intermediate_dim=16, num_heads=2, name="enc")
    pos = keras_hub.layers.PositionEmbedding(sequence_length=4, name="pos")
    dec = keras_hub.layers.TransformerDecoder(intermediate_dim=16, num_heads=2, name="dec")
    x = dec(enc(i + pos(i)))
    model = keras.Model(i, keras.layers.Dense(2, name="out")(x))
    enc.trainable = pos.trainable = not frozen
    path = str(tmp_path / "user.keras")
    model.save(path)
    info = open_model(path)
    assert rows(info) == oracle(path)
    assert not [w for w in info.warnings if "not known" in w]
    if frozen:
        assert any("enc" in w and "cannot be saved" in w for w in info.warnings)


# -- edits of presets and model folders ------------------------------------------------------------


def test_unfreeze_a_preset_backbone_gives_a_preset_keras_hub_trains_fully(hub_files, tmp_path):
    out = tmp_path / "tuned"
    result = _cli("unfreeze", str(hub_files / "preset"), "-p", "bert_backbone*", "-o", str(out))
    assert "bert_backbone" in result.output and "wrote" in result.output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = keras_hub.models.BertTextClassifier.from_preset(str(out))
    got = oracle_of(model)
    assert all(t for *_, t in got)
    assert rows(open_model(str(out))) == got
    again = _cli("unfreeze", str(out), "-p", "bert_backbone*", "--in-place")
    assert "nothing to change" in again.output


def test_freeze_a_model_folder_in_place_is_what_keras_loads(hub_files, tmp_path):
    import shutil

    folder = tmp_path / "folder"
    shutil.copytree(hub_files / "folder", folder)
    _cli("unfreeze", str(folder), "-p", "bert_backbone", "--in-place")
    assert all(t for *_, t in oracle(str(folder)))
    _cli("freeze", str(folder), "-p", "bert_backbone", "--in-place", "--verify")
    got = oracle(str(folder))
    assert [p for p, *_, t in got if t] == ["logits/kernel", "logits/bias"]
    assert rows(open_model(str(folder))) == got
    assert not list(tmp_path.glob(".varctl-*"))


def test_folder_edit_never_overwrites_an_existing_folder(hub_files, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    _cli("unfreeze", str(hub_files / "folder"), "-p", "bert_backbone", "-o", str(out), code=4)
    assert list(out.iterdir()) == []
    tuned = tmp_path / "tuned"
    _cli("unfreeze", str(hub_files / "preset"), "-p", "bert_backbone", "-o", str(tuned))
    # Keras does not save flags of layers inside a backbone: refused, nothing written.
    result = _cli("freeze", str(tuned), "-p", "bert_backbone/pooled_dense", "-o", str(tmp_path / "x"), code=2)
    assert "cannot freeze" in result.output
    assert not (tmp_path / "x").exists()


def test_weights_with_the_model_config_list_like_the_model(hub_files, tmp_path):
    """open_model(weights, config=...) (the library side of `--config FILE`)."""
    from varctl.formats import hub_files as files

    task = keras.saving.load_model(str(hub_files / "folder"), compile=False)
    task.save_weights(tmp_path / "task.weights.h5")
    (tmp_path / "task.json").write_text(task.to_json())
    want = rows(open_model(str(hub_files / "folder")))
    for config_source in (tmp_path / "task.json", hub_files / "folder" / "config.json", hub_files / "preset"):
        info = open_model(str(tmp_path / "task.weights.h5"), config=files.config_from(str(config_source)))
        assert rows(info) == want, config_source


def test_list_config_option_names_a_sharded_weights_listing(hub_files, tmp_path):
    index = str(hub_files / "shards" / "bb.weights.json")
    doc = json.loads(
        _cli("list", index, "--config", str(hub_files / "preset" / "config.json"), "-f", "json").stdout
    )
    want = [r for r in rows(open_model(str(hub_files / "folder"))) if r[0].startswith("bert_backbone/")]
    got = [
        ("bert_backbone/" + v["path"], tuple(v["shape"]), v["dtype"], v["trainable"])
        for v in doc["variables"]
    ]
    assert got == want
    result = _cli("list", index, "--config", str(tmp_path / "missing.json"), code=3)
    assert "missing.json" in result.output


def test_unknown_keras_hub_class_keeps_names_shapes_flags_and_is_named(tmp_path):
    """A family varctl has no table for (Phi-3): stored layer names, generic variable names,
    the backbone's flag, and a warning naming the classes."""
    keras.backend.clear_session()
    backbone = keras_hub.models.Phi3Backbone(
        vocabulary_size=40,
        num_layers=1,
        hidden_dim=8,
        intermediate_dim=16,
        num_query_heads=2,
        num_key_value_heads=1,
    )
    task = keras_hub.models.Phi3CausalLM(backbone=backbone, preprocessor=None)
    backbone.trainable = False
    path = str(tmp_path / "phi3.keras")
    task.save(path)
    info = open_model(path)

    def layer_part(rows_):
        return sorted(
            (p.rsplit("/", 1)[0] if "/vars/" not in p else p.split("/vars/")[0], s, d, t)
            for p, s, d, t in rows_
        )

    assert layer_part(rows(info)) == layer_part(oracle(path))
    assert any("phi3_decoder" in w and "not known" in w for w in info.warnings)


@pytest.mark.parametrize("frozen", [False, True], ids=["trainable", "frozen"])
def test_backbone_inside_a_users_functional_model(tmp_path, frozen):
    backbone = hub_zoo.build_backbone("gpt2")
    inputs = {n: keras.Input((None,), dtype="int32", name=n) for n in ("token_ids", "padding_mask")}
    x = backbone(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x[:, 0, :]))
    backbone.trainable = not frozen
    path = str(tmp_path / "wrapped.keras")
    model.save(path)
    info = open_model(path)
    assert rows(info) == oracle(path)
    if frozen:
        out = str(tmp_path / "thawed.keras")
        _cli("unfreeze", path, "-p", "gpt2_backbone", "-o", out)
        assert all(t for *_, t in oracle(out))


def test_verify_of_a_preset_edit_is_refused_clearly_and_writes_nothing(hub_files, tmp_path):
    out = tmp_path / "v"
    result = _cli(
        "unfreeze", str(hub_files / "preset"), "-p", "bert_backbone", "-o", str(out), "--verify", code=2
    )
    assert "from_preset" in result.output
    assert not out.exists() and not list(tmp_path.glob(".varctl-*"))


# -- the format protocol (read once, interpret without the file) ----------------------------------


@pytest.mark.parametrize("kind", ["folder", "preset"])
def test_interpret_of_an_edited_folder_config_is_what_keras_hub_loads(hub_files, tmp_path, kind):
    """formats.interpret() re-plans on the manifest read once: with the backbone's flag flipped in
    the config it gives what Keras loads from the edited folder, without reading it again."""
    import copy
    import shutil

    from varctl import formats

    parsed = formats.read_model(str(hub_files / kind), for_edit=True)
    assert rows(formats.interpret(parsed, parsed.config)) == rows(parsed.info)
    config = copy.deepcopy(parsed.config)
    config["config"]["backbone"]["config"]["trainable"] = True
    predicted = rows(formats.interpret(parsed, config))
    assert all(t for *_, t in predicted)
    edited = tmp_path / kind
    shutil.copytree(hub_files / kind, edited)
    (edited / ("task.json" if kind == "preset" else "config.json")).write_text(json.dumps(config))
    if kind == "folder":
        assert predicted == oracle(str(edited))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert predicted == oracle_of(keras_hub.models.BertTextClassifier.from_preset(str(edited)))


def test_config_option_is_refused_where_the_input_holds_its_architecture(hub_dir, hub_files):
    config = str(hub_files / "folder" / "config.json")
    result = _cli("list", str(hub_dir / "bert_classifier_frozen.keras"), "--config", config, code=2)
    assert "--config" in result.output and ".keras archive" in result.output
    index = str(hub_files / "shards" / "bb.weights.json")
    assert "html" in _cli("list", index, "--config", config, "-f", "html", code=2).output
    assert "--load" in _cli("list", index, "--config", config, "--load", code=2).output
    # --load hands .keras and .h5 files to Keras; a preset loads with from_preset
    assert "keras-hub preset" in _cli("list", SAMPLE, "--load", code=2).output


def test_lora_and_sharded_inputs_are_read_only(hub_files, tmp_path):
    index = str(hub_files / "shards" / "bb.weights.json")
    result = _cli("freeze", index, "--all", "-o", str(tmp_path / "x"), code=3)
    assert "sharded weights" in result.output and "load_weights" in result.output
    assert not (tmp_path / "x").exists()


def test_holds_hub_entry_finds_keras_hub_objects_at_any_depth_of_the_layer_lists():
    """keras_zip.walk skips formats/hub.py (and its tables) when this says no: it must see every
    entry hub.expand looks at, the top model and the layers of nested models."""
    from varctl.formats.catalog import holds_hub_entry

    def model(*layers, cls="Functional"):
        return {"class_name": cls, "module": "keras.src.models", "config": {"layers": list(layers)}}

    dense = {"class_name": "Dense", "module": "keras.layers", "config": {"name": "d"}}
    hub_layer = {"class_name": "PositionEmbedding", "module": "keras_hub.src.layers", "config": {}}
    registered = {"class_name": "BertBackbone", "registered_name": "keras_hub>BertBackbone", "config": {}}
    assert not holds_hub_entry(model(dense, model(dense, cls="Sequential")))
    assert holds_hub_entry(model(dense, model(dense, model(hub_layer), cls="Sequential")))
    assert holds_hub_entry(model(registered))
    assert holds_hub_entry({**hub_layer, "module": "keras_hub.src.models.bert"})
    assert not holds_hub_entry(["not", "a", "model"])
