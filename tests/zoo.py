"""Models built with real Keras for the oracle tests: every layer class varctl claims, with the
options that change its variable set, frozen in the ways that matter. Random init, no downloads."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers as L


def _seq(*layers, shape, name=None):
    return keras.Sequential([keras.Input(shape), *layers], name=name)


def dense_embedding():
    i = keras.Input((4,), dtype="int32")
    x = L.Embedding(10, 3)(i)
    x = L.EinsumDense("abc,cd->abd", output_shape=(4, 5), bias_axes="d")(x)
    x = L.EinsumDense("abc,cd->abd", output_shape=(4, 2))(x)
    x = L.Flatten()(x)
    x = L.Dense(3, use_bias=False)(x)
    x = L.Dense(2)(x)
    return keras.Model(i, x)


def convolutions():
    i1 = keras.Input((8, 3))
    a = L.Conv1D(2, 3)(i1)
    a = L.Conv1DTranspose(2, 3, use_bias=False)(a)
    a = L.DepthwiseConv1D(2)(a)
    a = L.SeparableConv1D(2, 2, use_bias=False)(a)
    a = L.SeparableConv1D(2, 2)(a)
    a = L.GlobalAveragePooling1D()(a)
    i2 = keras.Input((8, 8, 3))
    b = L.Conv2D(2, 3, use_bias=False)(i2)
    b = L.Conv2DTranspose(2, 3)(b)
    b = L.DepthwiseConv2D(3, use_bias=False)(b)
    b = L.SeparableConv2D(2, 3)(b)
    b = L.GlobalAveragePooling2D()(b)
    i3 = keras.Input((4, 4, 4, 1))
    c = L.Conv3D(2, 2)(i3)
    c = L.Conv3DTranspose(2, 2, use_bias=False)(c)
    c = L.GlobalAveragePooling3D()(c)
    return keras.Model([i1, i2, i3], L.Concatenate()([a, b, c]))


def normalizations():
    i = keras.Input((6, 4))
    x = L.BatchNormalization()(i)
    x = L.BatchNormalization(center=False)(x)
    x = L.BatchNormalization(scale=False)(x)
    x = L.LayerNormalization()(x)
    x = L.LayerNormalization(center=False)(x)
    x = L.LayerNormalization(scale=False)(x)
    x = L.GroupNormalization(groups=2)(x)
    x = L.GroupNormalization(groups=2, center=False, scale=False)(x)
    x = L.RMSNormalization()(x)
    n = L.Normalization()
    n.adapt(np.random.default_rng(0).random((10, 6, 4)).astype("float32"))
    x = n(x)
    x = L.Normalization(mean=0.5, variance=2.0)(x)
    x = L.PReLU()(x)
    return keras.Model(i, x)


def recurrent():
    i = keras.Input((5, 3))
    x = L.SimpleRNN(4, return_sequences=True)(i)
    x = L.LSTM(4, return_sequences=True, use_bias=False)(x)
    x = L.GRU(4, return_sequences=True)(x)
    x = L.GRU(4, return_sequences=True, reset_after=False)(x)
    x = L.RNN(L.LSTMCell(3), return_sequences=True)(x)
    x = L.RNN(L.SimpleRNNCell(3, use_bias=False), return_sequences=True)(x)
    x = L.RNN(L.GRUCell(3), return_sequences=True)(x)
    x = L.Bidirectional(L.LSTM(2, return_sequences=True))(x)
    x = L.Bidirectional(
        L.GRU(2, return_sequences=True), backward_layer=L.GRU(3, return_sequences=True, go_backwards=True)
    )(x)
    x = L.TimeDistributed(L.Dense(2))(x)
    y = L.Reshape((5, 2, 1))(x)
    y = L.ConvLSTM1D(2, 2)(y)
    return keras.Model(i, [x, L.Flatten()(y)])


def attention():
    q = keras.Input((4, 6))
    v = keras.Input((5, 6))
    a = L.MultiHeadAttention(2, 3)(q, v)
    b = L.MultiHeadAttention(2, 3, use_bias=False, name="mha_nobias")(q, v)
    g = L.MultiHeadAttention(2, 3, use_gate=True, name="mha_gated")(q, v)
    c = L.Attention(use_scale=True)([q, v])
    d = L.Attention(score_mode="concat")([q, v])
    e = L.AdditiveAttention()([q, v])
    f = L.AdditiveAttention(use_scale=False)([q, v])
    return keras.Model([q, v], [a, b, c, d, e, f, g])


def frozen_quirks():
    """Frozen layers whose sublayers come back trainable (or not) when Keras loads them."""
    i = keras.Input((6, 4))
    x = L.MultiHeadAttention(2, 3, name="mha")(i, i)
    x = L.LSTM(3, return_sequences=True, name="lstm")(x)
    x = L.Bidirectional(L.GRU(2, return_sequences=True), name="bidi")(x)
    x = L.TimeDistributed(L.Dense(2), name="td")(x)
    x = L.BatchNormalization(name="bn")(x)
    y = L.ConvLSTM1D(2, 2, name="clstm")(L.Reshape((6, 2, 1))(x))
    m = keras.Model(i, [x, L.Flatten()(y)])
    for name in ("mha", "lstm", "bidi", "td", "bn", "clstm"):
        m.get_layer(name).trainable = False
    return m


def nested():
    """A frozen nested Sequential with one child unfrozen, a nested Functional, and a frozen inner
    model two levels down."""
    base = _seq(
        L.Dense(3, name="d1"), L.BatchNormalization(name="bn"), L.Dense(3, name="d2"), shape=(4,), name="base"
    )
    base.trainable = False
    base.get_layer("d1").trainable = True
    fi = keras.Input((3,))
    inner = _seq(L.Dense(3, name="deep"), shape=(3,), name="inner")
    inner.trainable = False
    func = keras.Model(fi, L.Dense(2, name="fd")(inner(fi)), name="func")
    i = keras.Input((4,))
    return keras.Model(i, L.Dense(1, name="head")(func(base(i))), name="top")


def top_functional_frozen():
    i = keras.Input((3,))
    m = keras.Model(i, L.Dense(1, name="c")(L.Dense(2, name="a")(i)), name="fun")
    m.trainable = False
    m.get_layer("c").trainable = True
    return m


def top_sequential_frozen():
    m = _seq(
        L.Dense(2, name="a"), L.BatchNormalization(name="bn"), L.Dense(1, name="b"), shape=(3,), name="seq"
    )
    m.trainable = False
    m.get_layer("b").trainable = True
    return m


def dtypes():
    i = keras.Input((4,))
    x = L.Dense(3, dtype="float16", name="half")(i)
    x = L.Dense(3, dtype="bfloat16", name="bf16")(x)
    x = L.Dense(2, dtype="float64", name="double")(x)
    return keras.Model(i, x)


def same_class_many():
    """Ten Dense layers: group names dense, dense_1 ... dense_9 sort as strings in HDF5."""
    return _seq(*[L.Dense(2, name=f"layer_{k}") for k in range(11)], shape=(2,))


ZOO = {
    f.__name__: f
    for f in (
        dense_embedding,
        convolutions,
        normalizations,
        recurrent,
        attention,
        frozen_quirks,
        nested,
        top_functional_frozen,
        top_sequential_frozen,
        dtypes,
        same_class_many,
    )
}
