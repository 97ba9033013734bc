"""What a format reader hands back: the ModelInfo plus what an editor needs to work without
reading the file again (the raw config and the raw weights manifest). What an editor hands a
format's `write` is formats/rewrite.py (not imported by a read)."""

from __future__ import annotations

from typing import Any, NamedTuple

from varctl.model import ModelFormat, ModelInfo


class Parsed(NamedTuple):  # not a frozen dataclass: the same record, ~0.4 ms less at import (Risk)
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
