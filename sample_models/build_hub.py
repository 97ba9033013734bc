"""Build the keras-hub sample: a tiny BERT text classifier preset with a frozen backbone.

Run from the repository root (needs keras-hub; no downloads: random init, a made-up vocabulary):

    python sample_models/build_hub.py

Writes ``sample_models/hub_bert_classifier/`` with ``save_to_preset``: config.json (the
backbone), task.json, metadata.json, model.weights.h5, task.weights.h5 (with the Adam state of
one training step), tokenizer.json, preprocessor.json and assets/. Keras trains only the 2
head variables (``logits``) of this task; ``varctl list sample_models/hub_bert_classifier``
says so without importing TensorFlow.
"""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # must be set before importing keras

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "hub_bert_classifier"
sys.dont_write_bytecode = True

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "good", "bad", "movie", "film", "is"]


def build() -> keras_hub.models.BertTextClassifier:
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB),
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=16,
        name="bert_backbone",
    )
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=16)
    task = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=preprocessor)
    backbone.trainable = False  # the transfer-learning recipe: train the head only
    task.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = ["the movie is good", "a bad film", "a good film", "the film is bad"]
    y = np.array([1, 0, 1, 0])
    task.fit(x, y, batch_size=4, epochs=1, verbose=0)
    return task


def main() -> None:
    task = build()
    if OUT.exists():
        shutil.rmtree(OUT)
    task.save_to_preset(str(OUT))
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(
        f"wrote {OUT.relative_to(HERE.parent)} ({size:,} bytes): trainable variables "
        f"{len(task.trainable_variables)} of {len(task.weights)}"
    )


if __name__ == "__main__":
    main()
