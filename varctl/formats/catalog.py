"""What varctl knows about built-in Keras layer classes: variable names, natures and sublayers.

The weights file stores variables as `vars/0, vars/1, ...` with no names. This table gives them
names, in a layer's save order (`_trainable_variables + _non_trainable_variables`, fixed when the
variables were created). Every entry is checked against Keras itself in tests/test_catalog.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

from varctl.model import NOT_STORED, Record

Config = dict[str, Any]

# Where a sublayer without a config entry of its own gets its `trainable` flag when Keras loads it.
INHERIT = "inherit"  # the parent passes its own flag down when it builds the sublayer
FRESH = "fresh"  # built anew with the default: trainable even when the parent is frozen
CONFIG = "config"  # deserialised from a config entry held by the parent (its own flag)


# VarSpec and ChildSpec are NamedTuples, not frozen dataclasses: the same immutable records, made
# ~0.9 ms cheaper to create at import (every read's child imports this module), and hashed in C.
class VarSpec(NamedTuple):
    name: str
    trainable: bool = True  # created trainable (add_weight's `trainable=`)
    nature: str | None = None  # why it is never trainable ("moving statistic", ...)


class ChildSpec(NamedTuple):
    """A sublayer held in an attribute: saved under a group named after the attribute."""

    attr: str  # group name in the weights file (the Python attribute name)
    name: str  # the sublayer's default name, used when the file does not record it
    class_name: str
    config: Config
    flag_from: str  # INHERIT | FRESH | CONFIG
    config_key: str | None = None  # with CONFIG: key of the parent config that holds it


class LayerSpec(Record):
    """What a layer class creates: its own variables, in creation order, and its child layers."""

    variables: tuple[VarSpec, ...]
    children: tuple[ChildSpec, ...] = ()
    # quantization.QuantSpec (a quantized or LoRA layer): Keras reorders or adds variables on load
    variant: ClassVar[bool] = False

    def __init__(self, variables: tuple[VarSpec, ...], children: tuple[ChildSpec, ...] = ()) -> None:
        self._init(locals())

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        """The variables' names, in order (computed once per spec: most are shared)."""
        return tuple(v.name for v in self.variables)


CONTAINER_CLASSES = frozenset({"Functional", "Sequential", "Model"})
# Classes with quantized and LoRA variants (formats/quantization.py describes them).
QUANTIZABLE = frozenset({"Dense", "EinsumDense", "Embedding", "ReversibleEmbedding"})
MODES = ("int8", "int4", "float8", "gptq", "awq")


def mode_of(config: Config) -> str | None:
    """The quantization mode recorded in a layer config's dtype policy (None: not quantized)."""
    dtype = config.get("dtype")
    name: Any = None
    if isinstance(dtype, dict):
        inner = dtype.get("config")
        if isinstance(inner, dict):
            name = inner.get("mode") or inner.get("name")
    elif isinstance(dtype, str):
        name = dtype
    if not isinstance(name, str) or not name.startswith(MODES):  # `float32`, `mixed_float16`, ...
        return None
    mode = name.split("_from_")[0].split("/")[0]
    return mode if mode in MODES else None


def is_variant(class_name: str, config: Config) -> bool:
    """A layer formats/quantization.py describes: a quantizable class whose config records a
    quantization mode or a LoRA rank, and every ReversibleEmbedding."""
    return class_name in QUANTIZABLE and (
        class_name == "ReversibleEmbedding" or mode_of(config) is not None or lora_rank(config) is not None
    )


def lora_rank(config: Config) -> int | None:
    """The LoRA rank a layer config enables (None: no LoRA)."""
    rank = config.get("lora_rank")
    return rank if isinstance(rank, int) and not isinstance(rank, bool) and rank > 0 else None


def _vars(*items: str | tuple[str, Any], untrainable: tuple[VarSpec, ...] = ()) -> LayerSpec:
    """The spec of a layer with these variables and no sublayers: a name, or (name, present in
    the config), then the `untrainable` ones. One shared (immutable) spec per list of names: a
    spec built per layer cost a 4,000-layer model ~8 ms."""
    names = tuple(i if isinstance(i, str) else i[0] for i in items if isinstance(i, str) or i[1])
    spec = _PLAIN.get((names, untrainable))
    if spec is None:
        spec = _PLAIN[names, untrainable] = LayerSpec(tuple(VarSpec(n) for n in names) + untrainable)
    return spec


_PLAIN: dict[tuple[tuple[str, ...], tuple[VarSpec, ...]], LayerSpec] = {}  # bounded: names are the catalog's
_NO_VARS = LayerSpec(())
_MOVING = (
    VarSpec("moving_mean", False, "moving statistic"),
    VarSpec("moving_variance", False, "moving statistic"),
)
_ADAPTED = tuple(VarSpec(n, False, "adapted statistic") for n in ("mean", "variance", "count"))
_KERNEL_BIAS, _KERNEL = _vars("kernel", "bias"), _vars("kernel")


def _kernel_bias(c: Config) -> LayerSpec:
    return _KERNEL_BIAS if c.get("use_bias", True) else _KERNEL  # Dense, Conv*: the most common


def _separable(c: Config) -> LayerSpec:
    return _vars("depthwise_kernel", "pointwise_kernel", ("bias", c.get("use_bias", True)))


def _batchnorm(c: Config) -> LayerSpec:
    return _vars(("gamma", c.get("scale", True)), ("beta", c.get("center", True)), untrainable=_MOVING)


def _layernorm(c: Config) -> LayerSpec:
    rms = bool(c.get("rms_scaling", False))
    return _vars(("gamma", c.get("scale", True) or rms), ("beta", c.get("center", True) and not rms))


def _groupnorm(c: Config) -> LayerSpec:
    return _vars(("gamma", c.get("scale", True)), ("beta", c.get("center", True)))


def _normalization(c: Config) -> LayerSpec:
    if c.get("mean") is not None:  # constants given to the constructor: no variables
        return _NO_VARS
    return _vars(untrainable=_ADAPTED)


def _rnn_cell(c: Config) -> LayerSpec:
    return _vars("kernel", "recurrent_kernel", ("bias", c.get("use_bias", True)))


def _rnn(cell_class: str, cell_name: str, flag_from: str) -> Callable[[Config], LayerSpec]:
    def spec(c: Config) -> LayerSpec:
        return LayerSpec((), (ChildSpec("cell", cell_name, cell_class, c, flag_from),))

    return spec


def _generic_rnn(c: Config) -> LayerSpec:
    cell = c.get("cell")
    if not isinstance(cell, dict):
        return LayerSpec(())
    cls, cfg = class_and_config(cell)
    return LayerSpec((), (ChildSpec("cell", str(cfg.get("name", "cell")), cls, cfg, CONFIG, "cell"),))


def _bidirectional(c: Config) -> LayerSpec:
    fwd = c.get("layer")
    if not isinstance(fwd, dict):
        return LayerSpec(())
    fcls, fcfg = class_and_config(fwd)
    bwd = c.get("backward_layer")
    if isinstance(bwd, dict):
        bcls, bcfg = class_and_config(bwd)
        bkey: str | None = "backward_layer"
    else:  # Keras builds the backward layer from the forward config
        bcls, bcfg, bkey = fcls, fcfg, "layer"
    fname = str(fcfg.get("name", "layer"))
    bname = str(bcfg.get("name", fname))
    return LayerSpec(
        (),
        (
            ChildSpec("backward_layer", bname, bcls, bcfg, CONFIG, bkey),
            ChildSpec("forward_layer", fname, fcls, fcfg, CONFIG, "layer"),
        ),
    )


def _time_distributed(c: Config) -> LayerSpec:
    inner = c.get("layer")
    if not isinstance(inner, dict):
        return LayerSpec(())
    cls, cfg = class_and_config(inner)
    return LayerSpec((), (ChildSpec("layer", str(cfg.get("name", "layer")), cls, cfg, CONFIG, "layer"),))


def _mha(c: Config) -> LayerSpec:
    # MultiHeadAttention builds its projections in build(): they have no config entry and are
    # created trainable even when the layer is frozen (see keras-format-notes, confirmed in tests).
    bias = "bias_axes_present" if c.get("use_bias", True) else None
    sub = {"bias_axes": bias}
    children = [
        ChildSpec("key_dense", "key", "EinsumDense", sub, FRESH),
        ChildSpec("output_dense", "attention_output", "EinsumDense", sub, FRESH),
        ChildSpec("query_dense", "query", "EinsumDense", sub, FRESH),
        ChildSpec("value_dense", "value", "EinsumDense", sub, FRESH),
    ]
    if c.get("use_gate"):
        children.append(ChildSpec("_gate_dense", "gate", "EinsumDense", sub, FRESH))
    return LayerSpec((), tuple(children))


# -- Keras 2 (tf-keras) ---------------------------------------------------------------------------
# What differs in files written by Keras 2 (keras_version 2.x), from tf_keras/src/layers/...:
# variable names, the attributes sublayers are saved under, and how sublayers get their flag (in
# Keras 2 a layer's `trainable_weights` is empty when the layer itself is frozen, so a frozen
# layer's sublayers never train, however they were built: INHERIT says exactly that).


def _depthwise_k2(c: Config) -> LayerSpec:
    # tf_keras DepthwiseConv*D: add_weight(name="depthwise_kernel"); Keras 3 calls it `kernel`
    return _vars("depthwise_kernel", ("bias", c.get("use_bias", True)))


def _mha_k2(c: Config) -> LayerSpec:
    # tf_keras MultiHeadAttention._build_from_signature: self._query_dense, _key_dense,
    # _value_dense, then _output_dense (no gate in Keras 2); saved under those attribute names.
    bias = "bias_axes_present" if c.get("use_bias", True) else None
    sub = {"bias_axes": bias}
    return LayerSpec(
        (),
        (
            ChildSpec("_query_dense", "query", "EinsumDense", sub, INHERIT),
            ChildSpec("_key_dense", "key", "EinsumDense", sub, INHERIT),
            ChildSpec("_value_dense", "value", "EinsumDense", sub, INHERIT),
            ChildSpec("_output_dense", "attention_output", "EinsumDense", sub, INHERIT),
        ),
    )


def _bidirectional_k2(c: Config) -> LayerSpec:
    # tf_keras Bidirectional renames its copies `forward_<name>` and `backward_<name>`; the config
    # keeps the wrapped layer's own name (and its `layer` attribute is saved, without variables).
    spec = _bidirectional(c)
    out = []
    for child in spec.children:
        prefix = "forward_" if child.attr == "forward_layer" else "backward_"
        out.append(
            ChildSpec(
                child.attr, prefix + child.name, child.class_name, child.config, CONFIG, child.config_key
            )
        )
    return LayerSpec((), tuple(reversed(out)))  # forward first, as tf-keras tracks them


_SPECS_K2: dict[str, Callable[[Config], LayerSpec]] = {
    "DepthwiseConv1D": _depthwise_k2,
    "DepthwiseConv2D": _depthwise_k2,
    "MultiHeadAttention": _mha_k2,
    "Bidirectional": _bidirectional_k2,
}


def keras_major(version: str | None) -> int:
    """3 for Keras 3 files and files that do not say; 2 for Keras 2 (tf-keras, `2.x`, `2.x-tf`) and
    older. Rules for names, flags and order follow the Keras that wrote the file."""
    if not version:
        return 3
    head = str(version).strip().split(".", 1)[0]
    return 2 if head.isdigit() and int(head) < 3 else 3


def _attention(c: Config) -> LayerSpec:
    return _vars(
        ("scale", bool(c.get("use_scale"))), ("concat_score_weight", c.get("score_mode") == "concat")
    )


def _const(*names: str) -> Callable[[Config], LayerSpec]:
    spec = _vars(*names)
    return lambda c: spec


_NO_VARIABLES = [
    "InputLayer",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Softmax",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianDropout",
    "GaussianNoise",
    "AlphaDropout",
    "Flatten",
    "Reshape",
    "Permute",
    "RepeatVector",
    "Concatenate",
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Dot",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "Masking",
    "Identity",
    "UnitNormalization",
    "Rescaling",
    "Resizing",
    "CenterCrop",
    "ActivityRegularization",
]

_SPECS: dict[str, Callable[[Config], LayerSpec]] = {
    "Dense": _kernel_bias,
    "EinsumDense": lambda c: _vars("kernel", ("bias", c.get("bias_axes") is not None)),
    "Embedding": _const("embeddings"),
    **{
        cls: _kernel_bias
        for cls in [
            "Conv1D",
            "Conv2D",
            "Conv3D",
            "Conv1DTranspose",
            "Conv2DTranspose",
            "Conv3DTranspose",
            "DepthwiseConv1D",
            "DepthwiseConv2D",
        ]
    },
    "SeparableConv1D": _separable,
    "SeparableConv2D": _separable,
    "BatchNormalization": _batchnorm,
    "LayerNormalization": _layernorm,
    "GroupNormalization": _groupnorm,
    "RMSNormalization": _const("scale"),
    "Normalization": _normalization,
    "PReLU": _const("alpha"),
    "SimpleRNNCell": _rnn_cell,
    "LSTMCell": _rnn_cell,
    "GRUCell": _rnn_cell,
    "ConvLSTMCell": _rnn_cell,
    "SimpleRNN": _rnn("SimpleRNNCell", "simple_rnn_cell", INHERIT),
    "LSTM": _rnn("LSTMCell", "lstm_cell", INHERIT),
    "GRU": _rnn("GRUCell", "gru_cell", INHERIT),
    # ConvLSTM builds its cell without passing `trainable`: a frozen ConvLSTM trains after loading.
    "ConvLSTM1D": _rnn("ConvLSTMCell", "conv_lstm_cell", FRESH),
    "ConvLSTM2D": _rnn("ConvLSTMCell", "conv_lstm_cell", FRESH),
    "ConvLSTM3D": _rnn("ConvLSTMCell", "conv_lstm_cell", FRESH),
    "RNN": _generic_rnn,
    "Bidirectional": _bidirectional,
    "TimeDistributed": _time_distributed,
    "MultiHeadAttention": _mha,
    "Attention": _attention,
    "AdditiveAttention": lambda c: _vars(("scale", c.get("use_scale", True))),
    # Keras classes defined outside keras.layers (module keras.src.applications.*): ConvNeXt's
    # LayerScale calls add_weight without a name, and Keras names such a variable `variable`
    # (loading makes it unique per process: `variable_18`; the file has no name to keep).
    "LayerScale": _const("variable"),
    "StochasticDepth": lambda c: _NO_VARS,
    **{cls: (lambda c: _NO_VARS) for cls in _NO_VARIABLES},
}


# The order in which a layer tracks its attribute sublayers (`layer._layers`), which decides
# `model.variables` order and so the optimizer's slot order. Classes with one sublayer need no
# entry; a class with several that is missing here makes optimizer remapping fall back to drop.
TRACKING_ORDER: dict[str, tuple[str, ...]] = {
    "MultiHeadAttention": (
        *("query_dense", "key_dense", "_gate_dense", "value_dense", "output_dense"),
        *("_query_dense", "_key_dense", "_value_dense", "_output_dense"),  # Keras 2 attributes
    ),
    "Bidirectional": ("forward_layer", "backward_layer"),
}


# Every layer class keras.layers exports (plus the model classes), for configs that do not record
# a class's module (legacy .h5). tests/test_hostile.py checks it against Keras itself.
KERAS_LAYER_CLASSES = frozenset(
    [
        "Activation",
        "ActivityRegularization",
        "AdaptiveAveragePooling1D",
        "AdaptiveAveragePooling2D",
        "AdaptiveAveragePooling3D",
        "AdaptiveMaxPooling1D",
        "AdaptiveMaxPooling2D",
        "AdaptiveMaxPooling3D",
        "Add",
        "AdditiveAttention",
        "AlphaDropout",
        "Attention",
        "AugMix",
        "AutoContrast",
        "Average",
        "AveragePooling1D",
        "AveragePooling2D",
        "AveragePooling3D",
        "BatchNormalization",
        "Bidirectional",
        "CategoryEncoding",
        "CenterCrop",
        "Concatenate",
        "ContrastLimitedAdaptiveHistogramEqualization",
        "Conv1D",
        "Conv1DTranspose",
        "Conv2D",
        "Conv2DTranspose",
        "Conv3D",
        "Conv3DTranspose",
        "ConvLSTM1D",
        "ConvLSTM2D",
        "ConvLSTM3D",
        "Cropping1D",
        "Cropping2D",
        "Cropping3D",
        "CutMix",
        "Dense",
        "DepthwiseConv1D",
        "DepthwiseConv2D",
        "Discretization",
        "Dot",
        "Dropout",
        "ELU",
        "EinsumDense",
        "Embedding",
        "Equalization",
        "Flatten",
        "FlaxLayer",
        "Functional",
        "GRU",
        "GRUCell",
        "GaussianDropout",
        "GaussianNoise",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalAveragePooling3D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "GlobalMaxPooling3D",
        "GroupNormalization",
        "GroupedQueryAttention",
        "HashedCrossing",
        "Hashing",
        "Identity",
        "InputLayer",
        "IntegerLookup",
        "JaxLayer",
        "LSTM",
        "LSTMCell",
        "Lambda",
        "Layer",
        "LayerNormalization",
        "LeakyReLU",
        "Masking",
        "MaxNumBoundingBoxes",
        "MaxPooling1D",
        "MaxPooling2D",
        "MaxPooling3D",
        "Maximum",
        "MelSpectrogram",
        "Minimum",
        "MixUp",
        "Model",
        "MultiHeadAttention",
        "Multiply",
        "Normalization",
        "PReLU",
        "Permute",
        "Pipeline",
        "RMSNormalization",
        "RNN",
        "RandAugment",
        "RandomBrightness",
        "RandomColorDegeneration",
        "RandomColorJitter",
        "RandomContrast",
        "RandomCrop",
        "RandomElasticTransform",
        "RandomErasing",
        "RandomFlip",
        "RandomGaussianBlur",
        "RandomGrayscale",
        "RandomHue",
        "RandomInvert",
        "RandomPerspective",
        "RandomPosterization",
        "RandomRotation",
        "RandomSaturation",
        "RandomSharpness",
        "RandomShear",
        "RandomTranslation",
        "RandomZoom",
        "ReLU",
        "RepeatVector",
        "Rescaling",
        "Reshape",
        "Resizing",
        "ReversibleEmbedding",
        "STFTSpectrogram",
        "SeparableConv1D",
        "SeparableConv2D",
        "Sequential",
        "SimpleRNN",
        "SimpleRNNCell",
        "Softmax",
        "Solarization",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "SpectralNormalization",
        "StackedRNNCells",
        "StringLookup",
        "Subtract",
        "TFSMLayer",
        "TextVectorization",
        "TimeDistributed",
        "TorchModuleWrapper",
        "UnitNormalization",
        "UpSampling1D",
        "UpSampling2D",
        "UpSampling3D",
        "Wrapper",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "ZeroPadding3D",
    ]
)
# Keras layers whose config carries or points at code: a Python function (Lambda's bytecode, JAX
# functions), a pickled torch module, a SavedModel on disk. `check --no-lambda` refuses them.
CODE_LAYER_CLASSES = frozenset({"Lambda", "TorchModuleWrapper", "JaxLayer", "FlaxLayer", "TFSMLayer"})


def class_and_config(entry: Config) -> tuple[str, Config]:
    """(class_name, config) of a serialized Keras object, tolerating odd shapes."""
    cls = entry.get("class_name")
    cfg = entry.get("config")
    return (str(cls) if cls is not None else NOT_STORED, cfg if isinstance(cfg, dict) else {})


def is_builtin(entry: Config) -> bool:
    """True for a class that Keras itself ships (module `keras...`, no registered name)."""
    module = entry.get("module")
    registered = entry.get("registered_name")
    if registered and registered != entry.get("class_name"):
        return False
    return module is None or keras_module(module)


# What a keras-hub object looks like in a config lives here, not in catalog_hub.py: a read asks it
# of every model (keras_zip.walk), and only a model that holds one needs catalog_hub's tables
# (importing them costs ~1.5 ms).


def is_hub_entry(entry: Any) -> bool:
    """A serialized object from keras-hub (its module or registered name says so)."""
    if not isinstance(entry, dict):
        return False
    module, registered = entry.get("module"), entry.get("registered_name")
    return (isinstance(module, str) and module.startswith("keras_hub")) or (
        isinstance(registered, str) and registered.startswith("keras_hub>")
    )


def holds_hub_entry(entry: Any) -> bool:
    """Whether `entry` or a layer in its (nested) layer lists is a keras-hub object: every entry
    hub.expand may look at (so False means it would change nothing)."""
    stack = [entry]
    while stack:
        entry = stack.pop()
        if not isinstance(entry, dict):
            continue
        if is_hub_entry(entry):
            return True
        cfg = entry.get("config")
        layers = cfg.get("layers") if isinstance(cfg, dict) else None
        if isinstance(layers, list):
            stack.extend(layers)
    return False


def keras_module(module: object) -> bool:
    """A module of Keras itself: `keras`, `keras.*` (`keras.src.*` included) or Keras 2's `tf_keras.*`."""
    return isinstance(module, str) and (
        module in ("keras", "tf_keras") or module.startswith(("keras.", "tf_keras."))
    )


def spec_for(class_name: str, config: Config, *, builtin: bool = True, major: int = 3) -> LayerSpec | None:
    """The LayerSpec of a built-in layer class (as the Keras `major` version wrote it), or None
    when varctl does not know the class."""
    if not builtin:
        return None
    # the class first: most layers are not quantizable (is_variant would say no after a lookup)
    if (
        class_name in QUANTIZABLE
        and ("lora_rank" in config or isinstance(config.get("dtype"), (dict, str)))
        and is_variant(class_name, config)
    ):
        from varctl.formats import quantization  # imported only for such a layer

        if (quantized := quantization.spec_for(class_name, config)) is not None:
            return quantized
    make = (_SPECS_K2.get(class_name) if major == 2 else None) or _SPECS.get(class_name)
    return make(config) if make else None


def known_classes() -> list[str]:
    """Every class name the catalog describes (for docs and tests)."""
    return sorted(_SPECS)
