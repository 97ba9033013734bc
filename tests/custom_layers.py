"""Custom layers and subclassed models for tests/test_custom.py (issue 17).

Also the `--custom-objects` file that `varctl list --load` is given for the files they make.
Everything is registered, so Keras finds the classes by name when it loads the files.
"""

from __future__ import annotations

import keras

PKG = "varctl_custom"


@keras.saving.register_keras_serializable(PKG)
class Scale(keras.layers.Layer):
    """Weights made in build(): a trainable kernel and an add_weight(trainable=False) counter."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 3), name="kernel")
        self.count = self.add_weight(shape=(), name="count", trainable=False, initializer="zeros")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) + self.count


@keras.saving.register_keras_serializable(PKG)
class InitWeights(keras.layers.Layer):
    """Weights made in __init__ (one trainable, one not)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.w = self.add_weight(shape=(4,), name="w")
        self.stat = self.add_weight(shape=(4,), name="stat", trainable=False, initializer="zeros")

    def call(self, x):
        return x * self.w + self.stat


@keras.saving.register_keras_serializable(PKG)
class Holder(keras.layers.Layer):
    """Sublayers in an attribute, a list and a dict (made in __init__), one made frozen by code."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.proj = keras.layers.Dense(4)
        self.stack = [keras.layers.Dense(4), keras.layers.Dense(4)]
        self.heads = {"a": keras.layers.Dense(2), "b": keras.layers.Dense(2, trainable=False)}

    def call(self, x):
        for layer in [self.proj, *self.stack]:
            x = layer(x)
        return self.heads["a"](x) + self.heads["b"](x)


@keras.saving.register_keras_serializable(PKG)
class BuildSub(keras.layers.Layer):
    """A sublayer made in build() (no config entry), beside an own weight."""

    def build(self, input_shape):
        self.inner = keras.layers.Dense(4)
        self.inner.build(input_shape)
        self.gain = self.add_weight(shape=(4,), name="gain")

    def call(self, x):
        return self.inner(x) * self.gain


@keras.saving.register_keras_serializable(PKG)
class CustomSave(keras.layers.Layer):
    """Saves its variables under its own key (as in Keras's saving tests): `vars/variables`."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 4), name="kernel")
        self.bias = self.add_weight(shape=(4,), name="bias")
        self.extra = self.add_weight(shape=(2,), name="extra", trainable=False)

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) + self.bias

    def save_own_variables(self, store):
        store["variables"] = self.kernel

    def load_own_variables(self, store):
        self.kernel.assign(store["variables"])


@keras.saving.register_keras_serializable(PKG)
class Inner(keras.Model):
    """A subclassed model nested in another."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.d = keras.layers.Dense(3)

    def call(self, x):
        return self.d(x)


@keras.saving.register_keras_serializable(PKG)
class Outer(keras.Model):
    """A subclassed model: a plain Dense frozen by code, a trainable Dense, a nested model."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.frozen = keras.layers.Dense(4, trainable=False)
        self.live = keras.layers.Dense(4)
        self.inner = Inner()

    def call(self, x):
        return self.inner(self.live(self.frozen(x)))
