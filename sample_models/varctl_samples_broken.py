"""The seed article's custom layer, as written there: variables created with raw `tf.Variable`.

In Keras 3 this is a trap. Keras tracks only variables made with `self.add_weight(...)` (or
`keras.Variable`): `self.w` and `self.b` below are in no weight list, so `fit()` never trains them,
`model.save()` does not write them, and `model.trainable_variables` does not contain them.
`varctl list --load --custom-objects sample_models/varctl_samples_broken.py
sample_models/seed_broken_layer.keras` warns about exactly this.

Two changes from the article, both needed for a saved model to load at all: `__init__` accepts
`**kwargs` and passes them on (Keras rebuilds a layer with `name=`, `trainable=`, `dtype=`), and
the class is registered (package "varctl_samples_broken") so `keras.saving.load_model` finds it
after `import varctl_samples_broken`. The fix is in varctl_samples.py's `MyCustomLayer`.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="varctl_samples_broken")
class MyCustomLayer(tf.keras.layers.Layer):
    def __init__(self, units=32, **kwargs):
        super(MyCustomLayer, self).__init__(**kwargs)  # noqa: UP008 - as in the article
        self.w = tf.Variable(tf.random.normal([units, 1]), trainable=True)
        self.b = tf.Variable(tf.zeros([1]), trainable=True)

    def call(self, inputs):
        return tf.matmul(inputs, self.w) + self.b
