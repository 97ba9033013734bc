"""Which saved optimizer slot belongs to which variable (read side: readers use it to settle the
trainability of custom layers; optimizer_state.py uses it to remap on edits).

Keras saves `optimizer.variables` as `optimizer/vars/0..n`: `iteration`, `learning_rate`, then,
when the optimizer accumulates gradients, one `gradient_accumulator` per trainable variable, then
the slots created by `add_optimizer_variables(trainable_variables, names)` — interleaved per
variable within one call (Adam: m1, v1, m2, v2, ...), one call after another — then a few
optimizer-wide extras (Nadam's `u_product`). Trainable variables are taken in
`model.trainable_variables` order. Each layout below was checked against Keras's own optimizers in
tests/test_optimizer_state.py; anything else is not remapped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from varctl.formats.catalog import TRACKING_ORDER
from varctl.model import Cause, Layer, ModelInfo, Variable


@dataclass(frozen=True)
class Layout:
    calls: tuple[tuple[str, ...], ...]  # slot names per add_optimizer_variables call
    fresh: dict[str, float] = field(default_factory=dict)  # initial value per slot (default 0)
    accumulate: bool = False  # a gradient_accumulator block precedes the slots
    extras: int = 0  # optimizer-wide scalars after the slots (kept as they are)


def layout_for(optimizer: Any) -> Layout | None:
    """The slot layout of a serialized Keras optimizer, or None when it is not known for certain."""
    if not isinstance(optimizer, dict) or optimizer.get("module") not in (None, "keras.optimizers"):
        return None
    cls = optimizer.get("class_name")
    cfg = optimizer.get("config") or {}
    if not isinstance(cfg, dict) or cfg.get("use_ema"):
        return None  # EMA averages are initialised from the variables: not remapped
    accumulate = bool(cfg.get("gradient_accumulation_steps"))
    init = float(cfg.get("initial_accumulator_value", 0.1) or 0.0)
    if cls == "SGD":
        calls: tuple[tuple[str, ...], ...] = (("momentum",),) if cfg.get("momentum") else ()
        return Layout(calls, accumulate=accumulate)
    if cls in ("Adam", "AdamW"):
        calls = (("momentum", "velocity"),) + ((("velocity_hat",),) if cfg.get("amsgrad") else ())
        return Layout(calls, accumulate=accumulate)
    if cls == "RMSprop":
        calls = (("velocity",),)
        if cfg.get("momentum"):
            calls += (("momentum",),)
        if cfg.get("centered"):
            calls += (("average_gradient",),)
        return Layout(calls, accumulate=accumulate)
    if cls == "Adagrad":
        return Layout((("accumulator",),), {"accumulator": init}, accumulate=accumulate)
    if cls == "Nadam":
        return Layout((("momentum", "velocity"),), accumulate=accumulate, extras=1)
    if cls == "Adamax":
        return Layout((("momentum", "norm"),), accumulate=accumulate)
    if cls == "Adadelta":
        return Layout((("accumulated_grad", "accumulated_delta_var"),), accumulate=accumulate)
    if cls == "Lion":
        return Layout((("momentum",),), accumulate=accumulate)
    if cls == "Ftrl":
        return Layout((("accumulator", "linear"),), {"accumulator": init}, accumulate=accumulate)
    return None


def trainable_order(info: ModelInfo) -> list[Variable] | None:
    """`model.trainable_variables` (after Keras loads the file) in order, or None if not certain."""
    order = model_order(info)
    if order is None or any(v.cause is Cause.UNKNOWN for v in order):
        return None  # a variable of unknown state may or may not have its slot
    return [v for v in order if v.trainable]


def model_order(info: ModelInfo) -> list[Variable] | None:
    """`model.variables` order (weights only), or None if not certain.

    Keras orders `model.variables` by each layer's own variables, then its tracked sublayers
    (`_layers`) recursively; for Functional and Sequential that is `model.layers`.
    """
    children: dict[str | None, list[Layer]] = {}
    for layer in info.layers:
        children.setdefault(layer.parent, []).append(layer)
    own: dict[str, list[Variable]] = {}
    for v in info.variables:
        own.setdefault(v.layer, []).append(v)
    by_path = {l.path: l for l in info.layers}
    out: list[Variable] = []

    def ordered(parent: str | None) -> list[Layer] | None:
        kids = children.get(parent, [])
        listed = sorted((k for k in kids if k.index is not None), key=lambda k: k.index or 0)
        attrs = [k for k in kids if k.index is None]
        if len(attrs) > 1:
            cls = by_path[parent].class_name if parent is not None else info.class_name
            order = TRACKING_ORDER.get(cls)
            if order is None or any(a.attr not in order for a in attrs):
                return None
            attrs.sort(key=lambda a: order.index(a.attr or ""))
        return listed + attrs

    def walk(path: str | None) -> bool:
        out.extend(own.get(path or "", []))
        kids = ordered(path)
        if kids is None:
            return False
        return all(walk(k.path) for k in kids)

    if not walk(None):
        return None
    return out


_UNKNOWN_STATE = re.compile(
    r"; the trainable state of \d+ variables? is unknown( \((?:[^()]|\([^()]*\))*\))?"
)
INFERRED = "created non-trainable (inferred from the saved optimizer state)"


def infer_unknown_by_name(
    info: ModelInfo, layout: Layout | None, slots: set[str], key: Callable[[Variable], str]
) -> ModelInfo | None:
    """Like infer_unknown, for files that name each slot after its variable (legacy `.h5`).

    `slots` holds the saved slot names without the optimizer prefix; `key(v)` gives the name
    Keras derives from variable `v`. Every variable known to be trainable must have its slot,
    or nothing is inferred (the state does not match the model).
    """
    if layout is None or not layout.calls or not info.trainable:
        return None
    first = layout.calls[0][0]

    def has_slot(v: Variable) -> bool:
        return f"{key(v)}_{first}" in slots

    if not all(has_slot(v) for v in info.variables if v.trainable):
        return None
    frozen = {v.path for v in info.variables if v.cause is Cause.UNKNOWN and not has_slot(v)}
    return _settle(info, frozen)


def infer_unknown(  # noqa: C901 - the assignment search; split when next touched
    info: ModelInfo, layout: Layout | None, saved: Sequence[tuple[tuple[int, ...], str]] | None
) -> ModelInfo | None:
    """Settle which variables of unknown (custom) layers are trainable, from the optimizer's slots.

    The file does not record `add_weight(trainable=False)`, but a trained model's optimizer has
    one slot per trainable variable, in `model.trainable_variables` order, with its shape. Within
    a layer the trainable variables come first (save order), so only how many of each unknown
    layer's variables are trainable is open. Returns the settled ModelInfo only when exactly one
    choice matches the slots; None when nothing changes or nothing is certain.
    """
    if layout is None or saved is None or not info.trainable:
        return None
    width = len(layout.calls[0]) if layout.calls else 0
    if width == 0:
        return None
    per_var = sum(len(c) for c in layout.calls) + (1 if layout.accumulate else 0)
    body = len(saved) - 2 - layout.extras
    if body < 0 or body % per_var:
        return None
    count = body // per_var
    start = 2 + (count if layout.accumulate else 0)
    shapes = [tuple(saved[start + j * width][0]) for j in range(count)]
    order = model_order(info)
    if order is None:
        return None
    # Units in model order: a known trainable variable must match the next slot; an unknown
    # layer contributes a trainable prefix of its variables of unknown state, of any length.
    units: list[tuple[str, list[Variable]]] = []
    for v in order:
        if v.trainable:
            units.append(("known", [v]))
        elif v.cause is Cause.UNKNOWN:
            if units and units[-1][0] == "unknown" and units[-1][1][0].layer == v.layer:
                units[-1][1].append(v)
            else:
                units.append(("unknown", [v]))
    if not any(kind == "unknown" for kind, _ in units):
        return None
    memo: dict[tuple[int, int], int] = {}

    def ways(u: int, k: int) -> int:
        if u == len(units):
            return 1 if k == len(shapes) else 0
        if (u, k) not in memo:
            kind, vs = units[u]
            if kind == "known":
                ok = k < len(shapes) and shapes[k] == tuple(vs[0].shape)
                memo[(u, k)] = ways(u + 1, k + 1) if ok else 0
            else:
                total, n = 0, 0
                while True:
                    total += ways(u + 1, k + n)
                    if n == len(vs) or k + n >= len(shapes) or shapes[k + n] != tuple(vs[n].shape):
                        break
                    n += 1
                memo[(u, k)] = min(total, 2)
        return memo[(u, k)]

    if ways(0, 0) != 1:
        return None
    frozen: set[str] = set()
    u, k = 0, 0
    while u < len(units):
        kind, vs = units[u]
        if kind == "known":
            u, k = u + 1, k + 1
            continue
        n = 0
        while ways(u + 1, k + n) == 0:
            n += 1
        frozen.update(v.path for v in vs[n:])
        u, k = u + 1, k + n
    return _settle(info, frozen)


def _settle(info: ModelInfo, frozen: set[str]) -> ModelInfo | None:
    """`info` with its variables of unknown state settled: those in `frozen` not trainable, the
    others trainable (each has its optimizer slot), and a warning naming the frozen ones."""
    if not any(v.cause is Cause.UNKNOWN for v in info.variables):
        return None

    def settled(v: Variable) -> Variable:
        if v.cause is not Cause.UNKNOWN:
            return v
        if v.path in frozen:
            return v.replace(cause=Cause.NATURE, detail=INFERRED)
        return v.replace(cause=Cause.TRAINABLE, detail=None)

    variables = tuple(settled(v) for v in info.variables)
    # settled: the warnings no longer say the state is unknown (tree.Tree._unknown_warnings), and
    # go when nothing else is missing (names, listed as vars/0, ...)
    notes: tuple[str, ...] = ()
    for w in info.warnings:
        stripped = _UNKNOWN_STATE.sub("", w)
        if stripped == w or "vars/0" in stripped:
            notes += (stripped,)
    if frozen:
        names = ", ".join(f"`{p}`" for p in sorted(frozen)[:5]) + (" ..." if len(frozen) > 5 else "")
        notes += (
            f"{names} not trainable: inferred from the saved optimizer state, which holds slots only "
            "for trainable variables (the file does not record add_weight(trainable=False))",
        )
    return info.replace(variables=variables, warnings=notes)
