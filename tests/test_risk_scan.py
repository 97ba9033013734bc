"""tree.find_risks against the plain scan it replaced (the reference below, unchanged): the same
risks, in the same order, with the same `where`, and the same refusal past the node limit.

find_risks skips scalar leaves and spells out `where` only for a risk; the reference builds
everything for every node. find_risks first proves most configs plain (tree._plain_size, which
walks a value repeated under the same key once, and a Keras tensor reference in one step): the
tests below also check that proof against the reference, on configs whose layers repeat the same
values in every context, with tensor references as Keras writes them and not. Configs are generated (hypothesis) from the pieces that decide a risk:
layer entries under each key that holds layers, Lambda-like layers, serialized lambdas, custom
and registered classes, objects with and without a `module` (Keras 3 and legacy configs), odd
`class_name` and `config` values, lists and dicts at any depth.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import SAMPLES
from tests.conftest import fuzz_settings as conftest_fuzz_settings
from varctl.errors import UnreadableModel
from varctl.formats import tree
from varctl.formats.catalog import CODE_LAYER_CLASSES, KERAS_LAYER_CLASSES, keras_module
from varctl.model import Risk

_LAYER_KEYS = tree._LAYER_KEYS


def reference(top: Any, limit: int = tree._MAX_SCAN) -> list[Risk]:
    """The scan as it was before it was made faster (a tuple of keys and a `where` per node)."""
    risks: list[Risk] = []
    stack: list[tuple[Any, tuple[str, ...], tuple[str, ...], bool, bool]] = [(top, (), (), True, False)]
    seen = 0
    while stack:
        obj, path, keys, is_layer, in_lambda = stack.pop()
        seen += 1
        if seen > limit:
            raise UnreadableModel("the model config is too large to scan (refused)")
        if isinstance(obj, list):
            stack.extend((v, path, keys, is_layer, in_lambda) for v in reversed(obj))
            continue
        if not isinstance(obj, dict):
            continue
        cls = obj.get("class_name")
        cfg = obj.get("config")
        if isinstance(cls, str) and is_layer and (path or keys or obj is not top):
            name = cfg.get("name") if isinstance(cfg, dict) else None
            path, keys = (*path, str(name if name is not None else cls)), ()
        where = ": ".join(p for p in ("/".join(path), "/".join(keys)) if p) or "(the model)"
        if isinstance(cls, str):
            risk = _reference_risk(obj, cls, is_layer, in_lambda, where)
            if risk is not None:
                risks.append(risk)
            in_lambda = in_lambda or (is_layer and cls in CODE_LAYER_CLASSES)
        children = []
        for key, value in obj.items():
            if isinstance(cls, str) and key in ("module", "class_name", "registered_name"):
                continue
            if key == "config" and isinstance(cls, str) and isinstance(value, dict):
                for k, v in value.items():
                    children.append((v, path, (*keys, k) if k not in _LAYER_KEYS else keys, k in _LAYER_KEYS))
            else:
                children.append((value, path, (*keys, str(key)), False))
        stack.extend((v, p, k, lay, in_lambda) for v, p, k, lay in reversed(children))
    return risks


def _reference_risk(obj: dict, cls: str, is_layer: bool, in_lambda: bool, where: str) -> Risk | None:
    if cls == "__lambda__":
        return None if in_lambda else Risk("lambda", where, "Python lambda")
    if cls.startswith("__") and cls.endswith("__"):
        return None
    registered = obj.get("registered_name")
    if "module" in obj:
        module = obj.get("module")
        keras_own = keras_module(module) and registered in (None, cls) and ">" not in cls
    else:
        module = None
        keras_own = ">" not in cls and (not is_layer or cls in KERAS_LAYER_CLASSES)
    if keras_own:
        if is_layer and cls in CODE_LAYER_CLASSES:
            return Risk("lambda", where, f"{cls} layer")
        return None
    if cls == "function":
        fn = obj.get("config")
        what = f"function `{fn if isinstance(fn, str) else '?'}`"
    else:
        what = f"{'layer class' if is_layer else 'class'} `{registered if isinstance(registered, str) and registered else cls}`"
    if isinstance(module, str) and module:
        what += f" (module `{module}`)"
    return Risk("custom", where, what)


CLASSES = st.sampled_from(
    ["Dense", "Lambda", "TFSMLayer", "Functional", "Sequential", "__lambda__", "__keras_tensor__",
     "function", "MyLayer", "pkg>Reg", "GlorotUniform", "Bidirectional", "__", "_x_"]
)  # fmt: skip
MODULES = st.sampled_from(["keras.layers", "keras", "keras.src.ops", "tf_keras.layers", "mypkg", "", None, 3])
KEYS = st.sampled_from(["layers", "layer", "cell", "cells", "backward_layer", "forward_layer", "units",
                        "kernel_initializer", "inbound_nodes", "args", "name", "config", "module"])  # fmt: skip
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["a", "relu", "x/y"]))


def _objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    def build(cls: Any, module: Any, registered: Any, name: Any, cfg: dict, extra: dict, shape: int) -> dict:
        obj: dict[str, Any] = dict(extra)
        if shape != 1:
            obj["module"] = module
        obj["class_name"] = cls
        if shape == 2:
            obj["config"] = name  # a function's config is its name; odd values elsewhere
        else:
            obj["config"] = {**({"name": name} if name is not None else {}), **cfg}
        if registered is not None:
            obj["registered_name"] = registered
        return obj

    return st.builds(
        build,
        st.one_of(CLASSES, st.integers(0, 2)),
        MODULES,
        st.sampled_from([None, None, "pkg>Reg", "Dense", 7]),
        st.sampled_from([None, "d1", "my_fn", 5]),
        st.dictionaries(KEYS, children, max_size=4),
        st.dictionaries(KEYS, children, max_size=2),
        st.integers(0, 3),
    )


def _tensors(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Keras 3 tensor references (`__keras_tensor__`, which _plain_size reads in one step), as
    Keras writes them and not: other contents, other keys, objects hidden in their lists."""

    def build(shape: Any, dtype: Any, history: Any, more: dict, extra: dict) -> dict:
        config = {"shape": shape, "dtype": dtype, "keras_history": history, **more}
        return {"class_name": "__keras_tensor__", "config": config, **extra}

    part = st.one_of(st.lists(SCALARS, max_size=3), st.lists(children, max_size=3), children)
    return st.builds(
        build,
        part,
        st.one_of(st.just("float32"), children),
        part,
        st.dictionaries(KEYS, children, max_size=1),
        st.dictionaries(KEYS, children, max_size=1),
    )


CONFIGS = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(KEYS, children, max_size=4),
        _objects(children),
        _tensors(children),
    ),
    max_leaves=40,
)


@conftest_fuzz_settings(300)
@given(_objects(CONFIGS))
def test_same_risks_as_the_reference(top: dict) -> None:
    assert tree.find_risks(top) == reference(top)


def _same_outcome_with_limit(top: dict, limit: int) -> None:
    """find_risks and the reference agree with `limit` config nodes: the same risks or refusal."""
    expected: Any
    try:
        expected = reference(top, limit)
    except UnreadableModel as e:
        expected = str(e)
    saved = tree._MAX_SCAN
    tree._MAX_SCAN = limit
    try:
        got: Any = tree.find_risks(top)
    except UnreadableModel as e:
        got = str(e)
    finally:
        tree._MAX_SCAN = saved
    assert got == expected


@conftest_fuzz_settings(100)
@given(_objects(CONFIGS), st.integers(1, 60))
def test_same_refusal_past_the_node_limit(top: dict, limit: int) -> None:
    _same_outcome_with_limit(top, limit)


@pytest.mark.parametrize("name", ["transfer_learning.keras", "seed_custom_layer.keras", "lora.keras"])
def test_same_risks_on_sample_configs(name: str) -> None:
    import json
    import zipfile

    config = json.loads(zipfile.ZipFile(SAMPLES / name).read("config.json"))
    assert tree.find_risks(config) == reference(config)


def _refused(top: Any, limit: int) -> bool:
    try:
        reference(top, limit)
    except UnreadableModel:
        return True
    return False


@conftest_fuzz_settings(300)
@given(_objects(CONFIGS))
def test_a_plain_config_is_plain_for_the_reference(top: dict) -> None:
    """_plain_size says "plain" only for a config without risks, and bounds the nodes counted."""
    size = tree._plain_size(top, True, {})
    if size >= 0:
        assert reference(top) == []
        assert not _refused(top, size + 1)


def _repeating(piece: Any, places: list[tuple[str, str, bool]]) -> dict:
    """A model whose layers hold copies of `piece` under config keys and entry keys."""
    layers = []
    for i, (cls, key, in_entry) in enumerate(places):
        entry: dict[str, Any] = {"module": "keras.layers", "class_name": cls, "config": {"name": f"l{i}"}}
        (entry if in_entry else entry["config"])[key] = copy.deepcopy(piece)
        layers.append(entry)
    return {"module": "keras", "class_name": "Functional", "config": {"name": "m", "layers": layers}}


PLACES = st.lists(
    st.tuples(
        st.sampled_from(["Dense", "Lambda", "TFSMLayer", "MyLayer", "Sequential"]), KEYS, st.booleans()
    ),
    min_size=1,
    max_size=6,
)


@conftest_fuzz_settings(300)
@given(CONFIGS, PLACES)
def test_a_repeated_value_is_judged_where_it_is(piece: Any, places: list[tuple[str, str, bool]]) -> None:
    """The same value in a Lambda layer and outside it, as a layer and as an attribute."""
    top = _repeating(piece, places)
    assert tree.find_risks(top) == reference(top)
    size = tree._plain_size(top, True, {})
    if size >= 0:
        assert reference(top) == [] and not _refused(top, size + 1)


@conftest_fuzz_settings(100)
@given(CONFIGS, PLACES, st.integers(1, 80))
def test_a_repeated_value_is_refused_past_the_node_limit(
    piece: Any, places: list[tuple[str, str, bool]], limit: int
) -> None:
    top = _repeating(piece, places)
    _same_outcome_with_limit(top, limit)


@pytest.mark.parametrize("inner", [{"class_name": "MyLayer"}, {"class_name": "Dense", "module": "keras"}])
def test_nested_past_the_recursion_limit(inner: dict) -> None:
    """_plain_size recurses; a config nested deeper than Python's limit is scanned in full."""
    top: Any = inner
    for _ in range(sys.getrecursionlimit() + 100):
        top = {"units": [top]}
    top = {"module": "keras", "class_name": "Functional", "config": {"name": "m", "x": top}}
    assert tree.find_risks(top) == reference(top)


def test_an_object_inside_a_tensor_reference_is_found():
    """A tensor reference is read in one step only when its lists hold scalars alone."""

    def model(history: list) -> dict:
        tensor = {
            "class_name": "__keras_tensor__",
            "config": {"shape": [None, 4], "dtype": "float32", "keras_history": history},
        }
        dense = {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d"}}
        dense["inbound_nodes"] = [{"args": [tensor], "kwargs": {}}]
        return {"module": "keras", "class_name": "Functional", "config": {"name": "m", "layers": [dense]}}

    plain = model(["in", 0, 0])
    assert tree._tensor_size(plain["config"]["layers"][0]["inbound_nodes"][0]["args"][0]) == 10
    assert tree.find_risks(plain) == reference(plain) == []
    hostile = model(["in", 0, {"module": "evil", "class_name": "Evil", "config": {}}])
    assert tree._tensor_size(hostile["config"]["layers"][0]["inbound_nodes"][0]["args"][0]) == -1
    assert tree.find_risks(hostile) == reference(hostile) != []
