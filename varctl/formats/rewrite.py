"""What an editor hands a format's `write(parsed, rewrite, tmp)`.

Its own module, imported by edits only: a dataclass costs ~0.7 ms to create on Python 3.11 (its
methods are compiled from source), and `varctl list` never makes a Rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from varctl.model import ModelInfo


@dataclass(frozen=True)
class Rewrite:
    """What a format's `write` changes: the edited config, the expected result, the optimizer state.

    config: the edited architecture to save.
    after: the ModelInfo that config gives over the same weights (what Keras will load).
    slots: the remapped optimizer state (objects with source/shape/dtype/fill), or None to keep
        the saved state as it is.
    drop_optimizer: remove the optimizer state (and for .h5 the training config).
    """

    config: Any
    after: ModelInfo
    slots: tuple[Any, ...] | None = None
    drop_optimizer: bool = False
