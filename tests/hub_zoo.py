"""Tiny random keras-hub models built from config (no presets, no network): the oracle zoo."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import keras_hub

M = keras_hub.models
_TEXT = dict(vocabulary_size=40, num_layers=2, hidden_dim=8, intermediate_dim=16)


def bert():
    return M.BertBackbone(num_heads=2, max_sequence_length=16, **_TEXT)


def gpt2():
    return M.GPT2Backbone(num_heads=2, max_sequence_length=16, **_TEXT)


def gemma():
    return M.GemmaBackbone(num_query_heads=2, num_key_value_heads=1, head_dim=4, **_TEXT)


def gemma3():
    return M.Gemma3Backbone(
        image_size=16, num_query_heads=2, num_key_value_heads=1, head_dim=4, vision_encoder=None, **_TEXT
    )


def llama():
    return M.LlamaBackbone(num_query_heads=2, num_key_value_heads=1, **_TEXT)


def mistral():
    return M.MistralBackbone(num_query_heads=2, num_key_value_heads=1, sliding_window=8, **_TEXT)


def qwen():
    return M.QwenBackbone(num_query_heads=2, num_key_value_heads=1, **_TEXT)


def distil_bert():
    return M.DistilBertBackbone(num_heads=2, max_sequence_length=16, **_TEXT)


def roberta():
    return M.RobertaBackbone(num_heads=2, max_sequence_length=16, **_TEXT)


def vit():
    return M.ViTBackbone(
        image_shape=(8, 8, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16
    )


def resnet():
    return M.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 8],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(16, 16, 3),
    )


BACKBONES = {
    "bert": bert,
    "gpt2": gpt2,
    "gemma": gemma,
    "gemma3": gemma3,
    "llama": llama,
    "mistral": mistral,
    "qwen": qwen,
    "distil_bert": distil_bert,
    "roberta": roberta,
    "vit": vit,
    "resnet": resnet,
}

# task name -> (backbone, task builder taking the backbone)
TASKS = {
    "bert_classifier": ("bert", lambda b: M.BertTextClassifier(backbone=b, num_classes=3, preprocessor=None)),
    "bert_masked_lm": ("bert", lambda b: M.BertMaskedLM(backbone=b, preprocessor=None)),
    "gpt2_causal_lm": ("gpt2", lambda b: M.GPT2CausalLM(backbone=b, preprocessor=None)),
    "gemma_causal_lm": ("gemma", lambda b: M.GemmaCausalLM(backbone=b, preprocessor=None)),
    "distil_bert_classifier": (
        "distil_bert",
        lambda b: M.DistilBertTextClassifier(backbone=b, num_classes=2, preprocessor=None),
    ),
    "vit_classifier": ("vit", lambda b: M.ViTImageClassifier(backbone=b, num_classes=2, preprocessor=None)),
    "resnet_classifier": (
        "resnet",
        lambda b: M.ResNetImageClassifier(backbone=b, num_classes=2, preprocessor=None),
    ),
}


def build_backbone(name):
    keras.backend.clear_session()  # default layer names without `_1` suffixes
    keras.utils.set_random_seed(0)
    return BACKBONES[name]()


def build_task(name):
    bb_name, make = TASKS[name]
    return make(build_backbone(bb_name))
