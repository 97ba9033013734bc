"""What a format reader hands back: the ModelInfo plus what an editor needs to work without
reading the file again (the raw config and the raw weights manifest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from varctl.model import ModelFormat, ModelInfo


@dataclass(frozen=True)
class Parsed:
    """One read of one input.

    info: what `varctl list` shows.
    target: the path the reader opened (a SavedModel folder, a checkpoint prefix, ...).
    config: the architecture as parsed from the file (config formats only; never edited in place).
    manifest: the format's raw scan of the weights (groups, datasets with shape and dtype, the
        saved optimizer slots): the format's `interpret(config, manifest)` rebuilds `info` from it
        with another config, without the file. None for formats without one.
    """

    info: ModelInfo
    target: str
    config: Any = None
    manifest: Any = None

    @property
    def format(self) -> ModelFormat:
        return self.info.format


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
