"""Optimizer state after an edit (edit side): the new `optimizer/vars` list for a new trainable set.

Keras saves `optimizer.variables` as `optimizer/vars/0..n`; formats/slot_inference.py knows which
entry belongs to which variable. Here an old state is remapped onto a new trainable set:
still-trainable variables keep their slots, newly trainable ones get fresh slots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from varctl.formats.catalog import keras_major
from varctl.formats.slot_inference import Layout, layout_for, trainable_order
from varctl.model import ModelInfo, Variable


@dataclass(frozen=True)
class Slot:
    """One entry of the new optimizer state: a copy of old entry `source`, or a fresh array."""

    source: int | None  # index in the old `optimizer/vars`; None = fresh
    shape: tuple[int, ...] = ()
    dtype: str = "float32"
    fill: float = 0.0


def remap(
    saved: Sequence[tuple[tuple[int, ...], str]],
    layout: Layout,
    old: Sequence[Variable],
    new: Sequence[Variable],
) -> list[Slot] | None:
    """The new optimizer state for trainable set `new`, from the state saved for trainable set `old`.

    Args:
        saved: (shape, dtype) of each saved `optimizer/vars/<i>`, in index order (metadata only).
        layout: the optimizer's slot layout.
        old, new: trainable variables in `model.trainable_variables` order, before and after.

    Returns:
        One Slot per new state entry: still-trainable variables keep their slots, newly trainable
        ones get fresh slots, and the step counter, learning rate and extras are kept. None when
        `saved` does not have exactly the layout's shape for `old`: nothing is certain then.
    """
    per_var = sum(len(c) for c in layout.calls)
    expected = 2 + (len(old) if layout.accumulate else 0) + per_var * len(old) + layout.extras
    if len(saved) != expected:
        return None
    blocks: list[tuple[str, ...]] = [("gradient_accumulator",)] if layout.accumulate else []
    blocks += list(layout.calls)
    index: dict[tuple[str, str], int] = {}
    pos = 2
    for names in blocks:
        for v in old:
            for name in names:
                if tuple(saved[pos][0]) != tuple(v.shape):
                    return None
                index[(v.path, name)] = pos
                pos += 1
    out = [Slot(0), Slot(1)]
    for names in blocks:
        for v in new:
            for name in names:
                source = index.get((v.path, name))
                if source is None:
                    if v.dtype == "bfloat16":
                        return None  # numpy cannot write it; Keras stores it as an opaque type
                    out.append(Slot(None, tuple(v.shape), v.dtype, layout.fresh.get(name, 0.0)))
                else:
                    out.append(Slot(source))
    out += [Slot(i) for i in range(pos, len(saved))]
    return out


class OptimizerState(str, Enum):
    """What an edit does to the saved optimizer state (the `optimizer_state` key of plan JSON)."""

    UNCHANGED = "unchanged"  # the trainable set did not change, or nothing was saved
    REMAPPED = "remapped"  # slots moved to the new trainable set, fresh ones for new variables
    DROPPED = "dropped"  # removed with the compile settings
    KEPT_STALE = "kept-stale"  # kept as it was (Keras skips it on load and starts afresh)

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class Outcome:
    """The one record of what happens to the optimizer state: the state, and the slots when remapped."""

    state: OptimizerState = OptimizerState.UNCHANGED
    slots: tuple[Slot, ...] | None = None  # REMAPPED only
    why_not_remapped: str | None = None  # DROPPED in remap mode: why remapping was not certain


def decide(
    mode: str,
    *,
    remappable: bool,
    entry: Any,
    saved: Sequence[tuple[tuple[int, ...], str]] | None,
    before: ModelInfo,
    after: ModelInfo,
) -> Outcome:
    """What to do with optimizer state saved for `before`'s trainable set, now that it is `after`'s.

    Args:
        mode: "remap" (falls back to drop when not certain), "drop" or "keep".
        remappable: the format keeps slots by position (.keras); legacy .h5 is dropped.
        entry: the serialized optimizer (compile_config["optimizer"]).
        saved: (shape, dtype) of each saved slot, in order (None: not readable).
    """
    if mode == "keep":
        return Outcome(OptimizerState.KEPT_STALE)
    why = None
    if mode == "remap":
        layout = layout_for(entry)
        old, new = trainable_order(before), trainable_order(after)
        if not remappable:
            why = "remapping is done for .keras files only"
        elif keras_major(before.keras_version) == 2:
            # tf-keras saves `iteration` and then the slots, with no `learning_rate` entry, and builds
            # each optimizer its own way: varctl knows Keras 3's layouts only.
            why = "the file was written by Keras 2 (tf-keras), whose optimizer layout varctl does not remap"
        elif layout is None:
            name = entry.get("class_name") if isinstance(entry, dict) else entry
            why = f"the slot layout of optimizer {name!r} is not known to varctl"
        elif old is None or new is None:
            why = "the order of the model's trainable variables is not certain"
        elif saved is None:
            why = "the file has no readable optimizer state"
        else:
            slots = remap(saved, layout, old, new)
            if slots is not None:
                return Outcome(OptimizerState.REMAPPED, tuple(slots))
            why = "the saved optimizer state does not match the model's trainable variables"
    return Outcome(OptimizerState.DROPPED, why_not_remapped=why)
