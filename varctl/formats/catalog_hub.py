"""What varctl knows about keras-hub models: layer classes, backbones and tasks, read statically.

A keras-hub Backbone or Task saves only its constructor arguments: its config has no layer list.
Its weights file still holds every layer: `layers/<snake_case(class)>[_n]/vars` groups in
`model.layers` order (each `vars` group's `name` attribute is the layer's real name) and, inside
keras-hub layers, groups named after the Python attributes that hold sublayers. So the layer tree of
a keras-hub model is built from the weights file (`expand`), with the variable names and sublayer
classes taken from this table, which was derived from keras-hub 0.32's sources and is checked
against keras-hub objects in tests/test_hub.py.

Trainability (confirmed in tests against Keras after `load_model`):
- per-layer flags inside a backbone are not saved; the backbone's own flag is (its config's
  `trainable`, in a task at `config.backbone.config.trainable`), and Keras applies it to every layer
  of the backbone after building it, so each layer of a backbone has the backbone's flag;
- a task saves no flag of its own, nor of its head layers: after loading they are all trainable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from varctl.formats.catalog import KERAS_LAYER_CLASSES, VarSpec, is_hub_entry
from varctl.formats.catalog import spec_for as keras_spec_for

Config = dict[str, Any]


@dataclass(frozen=True)
class HubClass:
    """A keras-hub layer class: its own variables and the sublayers held in its attributes.

    `children` is in tracking order (`layer._layers`, which decides `model.weights` order); an attr
    ending in `[]` holds a list of layers (saved as `attr/<snake_case(class)>[_n]`).
    """

    variables: tuple[str, ...]
    children: tuple[tuple[str, str], ...] = ()  # (attribute, class name)


def _decoder(attention: str, norm: str) -> HubClass:
    """The Llama-style decoder block (Llama, Mistral, Qwen, ...)."""
    return HubClass(
        (),
        (
            ("_self_attention_layer", attention),
            ("_self_attention_layernorm", norm),
            ("_self_attention_dropout", "Dropout"),
            ("_feedforward_intermediate_dense", "Dense"),
            ("_feedforward_gate_dense", "Dense"),
            ("_feedforward_output_dense", "Dense"),
            ("_feedforward_layernorm", norm),
        ),
    )


def _private_attention(rope: str) -> HubClass:
    return HubClass(
        (),
        (
            ("_query_dense", "EinsumDense"),
            ("_key_dense", "EinsumDense"),
            ("_value_dense", "EinsumDense"),
            ("_softmax", "Softmax"),
            ("_dropout_layer", "Dropout"),
            ("_output_dense", "EinsumDense"),
            ("rotary_embedding_layer", rope),
        ),
    )


def _gemma_attention(norms: bool) -> HubClass:
    qk = (("query_norm", "RMSNormalization"), ("key_norm", "RMSNormalization")) if norms else ()
    return HubClass(
        (),
        (
            ("query_dense", "EinsumDense"),
            ("key_dense", "EinsumDense"),
            ("value_dense", "EinsumDense"),
            *qk,
            ("dropout_layer", "Dropout"),
            ("output_dense", "EinsumDense"),
            ("softmax", "Softmax"),
            ("rope_layer", "RotaryEmbedding"),
        ),
    )


def _gemma_block(attention: str) -> HubClass:
    return HubClass(
        (),
        (
            ("pre_attention_norm", "RMSNormalization"),
            ("attention", attention),
            ("post_attention_norm", "RMSNormalization"),
            ("pre_ffw_norm", "RMSNormalization"),
            ("gating_ffw", "EinsumDense"),
            ("gating_ffw_2", "EinsumDense"),
            ("ffw_linear", "EinsumDense"),
            ("post_ffw_norm", "RMSNormalization"),
        ),
    )


_MHA_CHILDREN = (
    ("query_dense", "EinsumDense"),
    ("key_dense", "EinsumDense"),
    ("value_dense", "EinsumDense"),
    ("_softmax", "Softmax"),
    ("_dropout_layer", "Dropout"),
    ("output_dense", "EinsumDense"),
)

HUB_LAYERS: dict[str, HubClass] = {
    # keras_hub.layers
    "ReversibleEmbedding": HubClass(("embeddings", "reverse_embeddings")),
    "PositionEmbedding": HubClass(("embeddings",)),
    "TokenAndPositionEmbedding": HubClass(
        (), (("token_embedding", "ReversibleEmbedding"), ("position_embedding", "PositionEmbedding"))
    ),
    "RotaryEmbedding": HubClass(()),
    "SinePositionEncoding": HubClass(()),
    "CachedMultiHeadAttention": HubClass((), _MHA_CHILDREN),
    "MultiHeadAttention": HubClass((), _MHA_CHILDREN),
    "TransformerEncoder": HubClass(
        (),
        (
            ("_self_attention_layer", "MultiHeadAttention"),
            ("_self_attention_layer_norm", "LayerNormalization"),
            ("_self_attention_dropout", "Dropout"),
            ("_feedforward_layer_norm", "LayerNormalization"),
            ("_feedforward_intermediate_dense", "Dense"),
            ("_feedforward_output_dense", "Dense"),
            ("_feedforward_dropout", "Dropout"),
        ),
    ),
    "TransformerDecoder": HubClass(
        (),
        (
            ("_self_attention_layer", "CachedMultiHeadAttention"),
            ("_self_attention_layer_norm", "LayerNormalization"),
            ("_self_attention_dropout", "Dropout"),
            ("_cross_attention_layer", "CachedMultiHeadAttention"),
            ("_cross_attention_layer_norm", "LayerNormalization"),
            ("_cross_attention_dropout", "Dropout"),
            ("_feedforward_intermediate_dense", "Dense"),
            ("_feedforward_output_dense", "Dense"),
            ("_feedforward_layer_norm", "LayerNormalization"),
            ("_feedforward_dropout", "Dropout"),
        ),
    ),
    # Gemma, Gemma 3
    "GemmaDecoderBlock": _gemma_block("CachedGemmaAttention"),
    "CachedGemmaAttention": _gemma_attention(False),
    "Gemma3DecoderBlock": _gemma_block("CachedGemma3Attention"),
    "CachedGemma3Attention": _gemma_attention(True),
    "RMSNormalization": HubClass(("scale",)),
    # Llama, Mistral, Qwen
    "LlamaTransformerDecoder": _decoder("LlamaAttention", "LlamaLayerNorm"),
    "LlamaAttention": _private_attention("LlamaRotaryEmbedding"),
    "LlamaLayerNorm": HubClass(("scale",)),
    "LlamaRotaryEmbedding": HubClass(()),
    "MistralTransformerDecoder": _decoder("CachedMistralAttention", "MistralLayerNormalization"),
    "CachedMistralAttention": _private_attention("RotaryEmbedding"),
    "MistralLayerNormalization": HubClass(("scale",)),
    "QwenTransformerDecoder": _decoder("QwenAttention", "QwenLayerNorm"),
    "QwenAttention": _private_attention("RotaryEmbedding"),
    "QwenLayerNorm": HubClass(("scale",)),
    # ViT
    "ViTPatchingAndEmbedding": HubClass(
        ("class_token",), (("patch_embedding", "Conv2D"), ("position_embedding", "Embedding"))
    ),
    "ViTEncoder": HubClass(
        (),
        (
            ("encoder_layers[]", "ViTEncoderBlock"),
            ("dropout", "Dropout"),
            ("layer_norm", "LayerNormalization"),
        ),
    ),
    "ViTEncoderBlock": HubClass(
        (),
        (
            ("layer_norm_1", "LayerNormalization"),
            ("mha", "MultiHeadAttention"),
            ("dropout", "Dropout"),
            ("layer_norm_2", "LayerNormalization"),
            ("mlp", "MLP"),
        ),
    ),
    "MLP": HubClass((), (("dense_1", "Dense"), ("dense_2", "Dense"), ("dropout", "Dropout"))),
    # Masked-LM heads (BertMaskedLM, ...): token_embedding is the backbone's (saved there)
    "MaskedLMHead": HubClass(
        ("output_bias",),
        (
            ("token_embedding", "ReversibleEmbedding"),
            ("_intermediate_dense", "Dense"),
            ("_intermediate_layer_norm", "LayerNormalization"),
        ),
    ),
}

# Keras built-ins found inside keras-hub models, without a config of their own: which variables
# each may hold, longest first (the file's variable count picks one).
_KERAS_VARIANTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "Dense": (("kernel", "bias"), ("kernel",)),
    "EinsumDense": (("kernel", "bias"), ("kernel",)),
    "Conv1D": (("kernel", "bias"), ("kernel",)),
    "Conv2D": (("kernel", "bias"), ("kernel",)),
    "Conv3D": (("kernel", "bias"), ("kernel",)),
    "DepthwiseConv2D": (("kernel", "bias"), ("kernel",)),
    "LayerNormalization": (("gamma", "beta"), ("gamma",)),
    "GroupNormalization": (("gamma", "beta"), ("gamma",)),
    "BatchNormalization": (
        ("gamma", "beta", "moving_mean", "moving_variance"),
        ("gamma", "moving_mean", "moving_variance"),
        ("moving_mean", "moving_variance"),
    ),
    "Embedding": (("embeddings",),),
    "RMSNormalization": (("scale",),),
}
_NEVER_TRAINABLE = {"moving_mean": "moving statistic", "moving_variance": "moving statistic"}


def variables_for(class_name: str, count: int) -> tuple[VarSpec, ...] | None:
    """Names of a layer's `count` saved variables (creation order), or None when not known."""
    hub = HUB_LAYERS.get(class_name)
    if hub is not None:
        names = hub.variables[:count] if count <= len(hub.variables) else None
        if names is None:
            return None
        return tuple(VarSpec(n) for n in names)
    for names in _KERAS_VARIANTS.get(class_name, ()):
        if len(names) == count:
            return tuple(VarSpec(n, n not in _NEVER_TRAINABLE, _NEVER_TRAINABLE.get(n)) for n in names)
    spec = keras_spec_for(class_name, {})
    if spec is not None and not spec.children and len(spec.variables) == count:
        return spec.variables
    return None


def hub_classes() -> list[str]:
    """Every keras-hub layer class described here (for docs and tests)."""
    return sorted(HUB_LAYERS)


# -- keras-hub models (Backbone / Task subclasses) --------------------------------------------------


def is_hub_model(entry: Any) -> bool:
    """A keras-hub Backbone or Task: a keras-hub class whose config lists no layers."""
    if not is_hub_entry(entry):
        return False
    cfg = entry.get("config")
    cls = entry.get("class_name")
    return isinstance(cfg, dict) and "layers" not in cfg and cls not in HUB_LAYERS


def is_backbone_entry(entry: Any) -> bool:
    return is_hub_model(entry) and str(entry.get("class_name", "")).endswith("Backbone")


# The order of a model's layers (`model.layers`, topological) is not in the file: group names only
# give it within one class (`dense`, `dense_1`, ...). For the families varctl knows, the layer names
# decide it; the keys below are checked against keras-hub in tests/test_hub.py.
_TEXT_ORDER = (
    "token_ids",
    "token_embedding",
    "segment_ids",
    "token_and_position_embedding",
    "embeddings",
    "position_embedding",
    "segment_embedding",
    "embeddings_add",
    "embeddings_layer_norm",
    "embeddings_dropout",
    "padding_mask",
    "transformer_layer_#",
    "decoder_block_#",
    "layer_norm",
    "sequence_output_layernorm",
    "final_normalization",
    "pooled_dense",
)
_IMAGE_ORDER = ("images", "vit_patching_and_embedding", "vit_encoder")


def _resnet_key(name: str) -> tuple[Any, ...] | None:
    """ResNet/ResNetV2 layer names: conv1_*, pool1_*, stack{s}_block{b}_{i}_{kind}, post_*."""
    stem = ("input_layer", "conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu", "pool1_pad", "pool1_pool")
    if name in stem:
        return (0, stem.index(name))
    m = re.fullmatch(r"stack(\d+)_block(\d+)_(.+)", name)
    if m:
        # In a block: conv 1 (and its bn/relu), then the shortcut conv 0 and conv 2, then the bns...
        within = [
            "preact_bn",
            "1_pad",
            "1_conv",
            "1_bn",
            "1_relu",
            "0_conv",
            "2_pad",
            "2_conv",
            "0_bn",
            "2_bn",
            "2_relu",
            "3_conv",
            "3_bn",
            "add",
            "out",
        ]
        part = m.group(3)
        return (1, int(m.group(1)), int(m.group(2)), within.index(part) if part in within else 99)
    if name.startswith("post_"):
        return (2, name)
    return None


_TASK_ORDER = (
    "padding_mask",
    "segment_ids",
    "token_ids",
    "images",
    "input_layer#",
    "backbone",
    "mask_positions",
    "mlm_head",
    "pooler",
    "pooled_dense",
    "classifier_dropout",
    "output_dropout",
    "logits",
    "predictions",
    "token_embedding",
)


def _pattern_key(patterns: tuple[str, ...]) -> Callable[[str, str], tuple[Any, ...] | None]:
    compiled = [re.compile("^" + re.escape(p).replace("\\#", "(?:_?(\\d+))?") + "$") for p in patterns]

    def key(name: str, cls: str) -> tuple[Any, ...] | None:
        for i, rx in enumerate(compiled):
            m = rx.match(name)
            if m:
                n = m.group(1) if m.groups() and m.group(1) else "0"
                return (i, int(n))
        return None

    return key


_text_key = _pattern_key(_TEXT_ORDER)
_image_key = _pattern_key(_IMAGE_ORDER)
_task_key = _pattern_key(_TASK_ORDER)


def layer_order_key(model_class: str, is_backbone: bool) -> Callable[[str, str], tuple[Any, ...] | None]:
    """A sort key over (layer name, class) giving `model.layers` order, None for an unknown name."""
    if not is_backbone:

        def task(name: str, cls: str) -> tuple[Any, ...] | None:
            return _task_key("backbone" if cls.endswith("Backbone") else name, cls)

        return task
    if model_class.startswith("ResNet"):
        return lambda name, cls: _resnet_key(name)
    if model_class.startswith("ViT"):
        return _image_key
    return _text_key


def class_from_group(base: str, extra: dict[str, str] | None = None) -> str | None:
    """The class whose snake_case is the weights group name `base` (Keras layers, keras-hub layers,
    and `extra`: e.g. the task's backbone class), or None."""
    if extra and base in extra:
        return extra[base]
    return _snake_table().get(base)


_SNAKE: dict[str, str] = {}


def _snake_table() -> dict[str, str]:
    if not _SNAKE:
        from varctl.formats.tree import to_snake_case

        for cls in sorted(KERAS_LAYER_CLASSES) + sorted(HUB_LAYERS):
            _SNAKE.setdefault(to_snake_case(cls), cls)
    return _SNAKE


# Whether a backbone's saved `trainable` flag reaches its layers when Keras loads it. Keras applies
# the flag in Functional.__init__ before it tracks `model.layers`, so it reaches only the layers the
# backbone's __init__ assigned to attributes before calling super().__init__() (token_embedding,
# transformer_layers, ...). Backbones that build their layers inline (most image models) reload
# with every layer trainable: a frozen ViT or ResNet backbone in a task is trained after loading.
# Verified for the zoo in tests/test_hub.py; the rest from reading keras-hub 0.32's __init__s.
FLAG_REACHES_LAYERS = frozenset(
    [
        "BertBackbone",
        "GPT2Backbone",
        "GemmaBackbone",
        "Gemma3Backbone",
        "LlamaBackbone",
        "Llama3Backbone",
        "MistralBackbone",
        "MixtralBackbone",
        "QwenBackbone",
        "Qwen3Backbone",
        "QwenMoeBackbone",
        "Qwen3MoeBackbone",
        "DistilBertBackbone",
        "RobertaBackbone",
        "XLMRobertaBackbone",
        "Phi3Backbone",
        "FalconBackbone",
        "GptOssBackbone",
        "SmolLM3Backbone",
    ]
)
FLAG_STAYS_ON_BACKBONE = frozenset(
    [
        "ViTBackbone",
        "ResNetBackbone",
        "BASNetBackbone",
        "CSPNetBackbone",
        "DeepLabV3Backbone",
        "DeiTBackbone",
        "DenseNetBackbone",
        "EfficientNetBackbone",
        "MiTBackbone",
        "MobileNetBackbone",
        "MobileNetV5Backbone",
        "RetinaNetBackbone",
        "SwinTransformerBackbone",
        "VGGBackbone",
        "XceptionBackbone",
    ]
)


def flag_reaches_layers(backbone_class: str) -> bool | None:
    """True/False when known, None when varctl does not know this backbone class."""
    if backbone_class in FLAG_REACHES_LAYERS:
        return True
    if backbone_class in FLAG_STAYS_ON_BACKBONE:
        return False
    return None
