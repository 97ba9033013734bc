"""Lazy imports of TensorFlow and Keras for the readers that need them, with the install hint."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from varctl.errors import UnreadableModel

INSTALL_HINT = "pip install 'varctl[tensorflow]'"


@contextmanager
def _quiet() -> Iterator[None]:
    """Keep TensorFlow's C++ start-up banner (absl, oneDNN, CUDA probes) off stderr.

    TF 2.21 logs through absl before TF_CPP_MIN_LOG_LEVEL is read, so the file descriptor itself
    is pointed at /dev/null while the import runs; Python exceptions still surface normally.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or os.environ.get("VARCTL_DEBUG"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded, some test runners)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow(what: str) -> Any:
    """TensorFlow, or a one-line error naming what needs it and how to install it."""
    try:
        with _quiet():
            import tensorflow as tf
    except ImportError as e:
        raise UnreadableModel(
            f"{what} needs TensorFlow, which is not installed ({e}): {INSTALL_HINT}"
        ) from None
    return tf


def import_keras(what: str) -> Any:
    """Keras (with its backend), or a one-line error naming what needs it and how to install it."""
    from varctl.formats import _h5safe

    _h5safe.lib()  # h5py with HDF5's plugin path emptied before Keras reads any file with it
    try:
        with _quiet():
            import keras
    except ImportError as e:  # keras absent, or its backend (TensorFlow by default) absent
        raise UnreadableModel(
            f"{what} needs TensorFlow and Keras, which are not installed ({e}): {INSTALL_HINT}"
        ) from None
    return keras
