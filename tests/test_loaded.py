"""`varctl list --load`: the Keras-loaded view agrees with the static one wherever both know the
answer, gives real names to custom layers' variables, and catches the seed article's pitfall."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tests.zoo import ZOO
from varctl.cli import app
from varctl.errors import EXIT_UNREADABLE, EXIT_USAGE
from varctl.formats import LoadOptions, open_model

keras = pytest.importorskip("keras")

ENV = {"NO_COLOR": "1", "COLUMNS": "120", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}
runner = CliRunner()
CUSTOM = str(SAMPLES / "varctl_samples.py")
BROKEN = str(SAMPLES / "varctl_samples_broken.py")
SAMPLE_NAMES = ["seed_dense", "seed_explicit", "seed_custom_layer", "transfer_learning", "batchnorm"]


def varctl(*args: str):
    result = runner.invoke(app, list(args), env=ENV, prog_name="varctl")
    assert "Traceback" not in result.output
    return result


def assert_agree(static, loaded):
    """Same variables in the same order; names and trainable state compared where the static
    reader knows them (a custom layer's names are generic there, its flags assumed)."""
    known = {layer.path for layer in static.layers if layer.known}
    assert len(static.variables) == len(loaded.variables)
    for s, l in zip(static.variables, loaded.variables, strict=True):
        assert (s.layer, s.shape, s.dtype) == (l.layer, l.shape, l.dtype), (s, l)
        if s.name.startswith("vars/"):
            assert not l.name.startswith("vars/"), l  # loading gives the real name
        else:
            assert s.path == l.path
        if s.layer in known or "inferred" in (s.reason or ""):
            assert s.trainable == l.trainable, (s, l)
        assert (l.reason is None) == bool(l.trainable), l
        if s.reason and s.reason.startswith("never trainable") and s.layer in known:
            assert l.reason and l.reason.startswith("never trainable"), (s, l)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_static_and_loaded_views_agree(zoo_dir, name, fmt):
    path = zoo_dir / f"{name}.{fmt}"
    if not path.exists():
        pytest.skip("Keras cannot round-trip this model through legacy .h5")
    static = open_model(str(path))
    loaded = open_model(str(path), load=LoadOptions())
    assert_agree(static, loaded)
    assert loaded.format == static.format and loaded.keras_version == static.keras_version
    assert loaded.warnings == ()  # stock layers: nothing untracked, nothing for Keras to warn about


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_static_and_loaded_views_agree(name, fmt):
    path = str(SAMPLES / f"{name}.{fmt}")
    loaded = open_model(path, load=LoadOptions((CUSTOM,)))
    assert_agree(open_model(path), loaded)


def test_custom_layer_gets_exact_names_and_flags_when_loaded():
    result = varctl(
        "list", str(SAMPLES / "seed_explicit.keras"), "--load", "--custom-objects", CUSTOM, "-f", "json"
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    rows = [(v["path"], v["shape"], v["trainable"]) for v in json.loads(result.stdout)["variables"]]
    assert rows == [
        ("explicit_variables/custom_weights", [5, 3], True),
        ("explicit_variables/custom_bias", [3], False),
    ]


def test_static_warning_names_the_load_remedy():
    info = open_model(str(SAMPLES / "seed_custom_layer.keras"))
    assert any(
        "MyCustomLayer" in w and "varctl list --load --custom-objects layers.py" in w for w in info.warnings
    )


def test_untracked_tf_variables_are_reported_with_the_fix():
    result = varctl(
        "list", str(SAMPLES / "seed_broken_layer.keras"), "--load", "--custom-objects", BROKEN, "-f", "json"
    )
    assert result.exit_code == 0, result.output
    warning = result.stderr.strip()
    assert warning.count("\n") == 0 and warning.startswith("varctl: warning: ")
    for part in (
        "`my_custom_layer`",
        "MyCustomLayer",
        "`w` (16, 1) float32",
        "`b` (1,) float32",
        "self.add_weight",
    ):
        assert part in warning, part
    doc = json.loads(result.stdout)
    assert [v["path"] for v in doc["variables"]] == ["dense/kernel", "dense/bias"]  # w and b were never saved
    assert len(doc["warnings"]) == 1


def test_unknown_class_without_custom_objects_says_which_file_to_pass(tmp_path):
    # A class that is not registered, from a module this process has not imported under its name.
    module = tmp_path / "unregistered_layers.py"
    module.write_text(
        textwrap.dedent(
            """
            import keras

            class Scale(keras.layers.Layer):
                def build(self, input_shape):
                    self.factor = self.add_weight(name="factor", shape=(input_shape[-1],), initializer="ones")

                def call(self, x):
                    return x * self.factor
            """
        )
    )
    from varctl.formats.loaded import import_custom_objects

    scale = import_custom_objects([str(module)])["Scale"]
    path = str(tmp_path / "scaled.keras")
    keras.Sequential([keras.Input((3,)), scale(name="scale")]).save(path)
    result = varctl("list", path, "--load")
    assert result.exit_code == EXIT_UNREADABLE, result.output
    lines = result.stderr.splitlines()
    assert lines[0].endswith("Keras does not know the class `Scale` used in the file"), lines
    assert lines[1] == (
        "varctl: hint: pass the Python file that defines it: varctl list --load --custom-objects layers.py MODEL"
    )
    fixed = varctl("list", path, "--load", "--custom-objects", str(module), "-f", "csv")
    assert fixed.exit_code == 0, fixed.output
    assert fixed.stdout.splitlines()[1].startswith(f'{path},scale/factor,scale,factor,"(3,)",float32,3,true,')


def test_the_article_verbatim_class_cannot_be_rebuilt_and_says_why(tmp_path):
    """The article's __init__ takes no **kwargs: Keras saves the model but cannot load it."""
    pytest.importorskip("tensorflow")
    module = tmp_path / "article_layers.py"
    module.write_text(
        textwrap.dedent(
            """
            import tensorflow as tf

            class MyCustomLayer(tf.keras.layers.Layer):
                def __init__(self, units=32):
                    super(MyCustomLayer, self).__init__()
                    self.w = tf.Variable(tf.random.normal([units, 1]), trainable=True)
                    self.b = tf.Variable(tf.zeros([1]), trainable=True)

                def call(self, inputs):
                    return tf.matmul(inputs, self.w) + self.b
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import article_layers
    finally:
        sys.path.remove(str(tmp_path))
    model = keras.Sequential(
        [keras.Input((16,)), article_layers.MyCustomLayer(units=16), keras.layers.Dense(1)]
    )
    model.save(tmp_path / "article.keras")
    result = varctl("list", str(tmp_path / "article.keras"), "--load", "--custom-objects", str(module))
    assert result.exit_code == EXIT_UNREADABLE, result.output
    assert "unexpected keyword argument 'trainable'" in result.stderr
    assert "must accept **kwargs" in result.stderr


def test_safe_mode_stays_on_and_unsafe_warns_loudly(tmp_path):
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(1, name="head")]
    )
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    refused = varctl("list", path, "--load")
    assert refused.exit_code == EXIT_UNREADABLE, refused.output
    assert "safe mode" in refused.stderr and "--unsafe" in refused.stderr
    allowed = varctl("list", path, "--load", "--unsafe", "-f", "json")
    assert allowed.exit_code == 0, allowed.output
    assert allowed.stderr.startswith("varctl: warning: --unsafe turns Keras safe_mode OFF")
    assert '"head/kernel"' in allowed.stdout
    static, loaded = open_model(path), open_model(path, load=LoadOptions(unsafe=True))
    assert_agree(static, loaded)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--custom-objects", CUSTOM], "--custom-objects only applies with --load"),
        (["--unsafe"], "--unsafe only applies with --load"),
        (
            ["--load", "--custom-objects", "no_such_layers.py"],
            "--custom-objects: no such file 'no_such_layers.py'",
        ),
    ],
)
def test_load_usage_errors_exit_2(args, message):
    result = varctl("list", str(SAMPLES / "seed_dense.keras"), *args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == f"varctl: error: {message}"


def test_a_custom_objects_file_that_fails_to_import_exits_2(tmp_path):
    bad = tmp_path / "bad_layers.py"
    bad.write_text("raise RuntimeError('boom')\n")
    result = varctl("list", str(SAMPLES / "seed_dense.keras"), "--load", "--custom-objects", str(bad))
    assert result.exit_code == EXIT_USAGE, result.output
    assert "importing" in result.stderr and "RuntimeError: boom" in result.stderr
    assert "bad_layers" not in sys.modules


def test_custom_objects_import_writes_no_bytecode_next_to_the_file(tmp_path):
    module = tmp_path / "quiet_layers.py"
    module.write_text((SAMPLES / "varctl_samples.py").read_text())
    result = varctl(
        "list", str(SAMPLES / "seed_custom_layer.keras"), "--load", "--custom-objects", str(module)
    )
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "__pycache__").exists()


@pytest.mark.parametrize("blocked", ["keras", "tensorflow"])
def test_load_without_tensorflow_says_how_to_install_it(monkeypatch, blocked):
    # A None entry makes `import keras` raise ImportError, as on a machine without the extra.
    monkeypatch.setitem(sys.modules, "keras", None)
    if blocked == "tensorflow":
        monkeypatch.setitem(sys.modules, "tensorflow", None)
    result = varctl("list", str(SAMPLES / "seed_dense.keras"), "--load")
    assert result.exit_code == EXIT_UNREADABLE, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("varctl: error: cannot open ")
    assert lines[0].endswith("pip install 'varctl[tensorflow]'")
