"""Custom Keras layers used by the varctl sample models.

Importing this module registers the classes with Keras (package
"varctl_samples"), which is required to load ``seed_explicit`` and
``seed_custom_layer`` (.keras and .h5).  Put ``sample_models/`` on
``sys.path`` and ``import varctl_samples`` before calling
``keras.saving.load_model``.
"""

import keras


@keras.saving.register_keras_serializable(package="varctl_samples")
class ExplicitVariables(keras.layers.Layer):
    """y = x @ custom_weights + custom_bias, with a NON-trainable bias.

    Shows a layer owning both a trainable and a non-trainable variable
    created explicitly with ``add_weight``.
    """

    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.custom_weights = self.add_weight(
            name="custom_weights",
            shape=(input_shape[-1], self.units),
            initializer="glorot_uniform",
            trainable=True,
        )
        self.custom_bias = self.add_weight(
            name="custom_bias",
            shape=(self.units,),
            initializer="zeros",
            trainable=False,
        )

    def call(self, inputs):
        return keras.ops.matmul(inputs, self.custom_weights) + self.custom_bias

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config


@keras.saving.register_keras_serializable(package="varctl_samples")
class MyCustomLayer(keras.layers.Layer):
    """y = x @ w + b with w of shape (units, 1) and b of shape (1,).

    As in the seed article, ``w``'s first dimension is ``units`` (so the
    layer expects inputs whose last dimension equals ``units``).
    """

    def __init__(self, units=16, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(
            name="w",
            shape=(self.units, 1),
            initializer="random_normal",
            trainable=True,
        )
        self.b = self.add_weight(
            name="b",
            shape=(1,),
            initializer="zeros",
            trainable=True,
        )

    def call(self, inputs):
        return keras.ops.matmul(inputs, self.w) + self.b

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1,)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config
