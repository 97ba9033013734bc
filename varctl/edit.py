"""Freeze/unfreeze planning: a parsed model + a selection -> a Plan (pure: no file is read).

plan() edits the `trainable` flags in a copy of the config the reader kept and asks the format
to interpret it over the same weights manifest (the same code `varctl list` runs on the output
file), so the prediction needs no second read. Every refusal the real run makes is made here, so
`--dry-run` refuses what the write would. apply() hands the plan to the format's writer inside
safe_write.atomic_output (temp file, fsync, rename).

Where the rest lives: selection (--pattern/--first/--upto/--all) in select.py, the optimizer
state in optimizer_state.py, crash-safe output in safe_write.py, the file layouts and writers in
formats/, verification with Keras in formats/loaded.py.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from varctl import formats, optimizer_state, safe_write
from varctl.errors import UsageError
from varctl.formats import Parsed, quantization
from varctl.formats.loaded import VerificationFailed, verify
from varctl.formats.rewrite import Rewrite
from varctl.model import Layer, ModelInfo
from varctl.optimizer_state import OptimizerState, Outcome
from varctl.select import Selector, choose_layers, within

__all__ = [
    "OPTIMIZER_STATE_MODES",
    "Change",
    "EditRequest",
    "Plan",
    "VerificationFailed",
    "apply",
    "plan",
    "plan_freeze",
    "verify_plan",
]

OPTIMIZER_STATE_MODES = ("remap", "drop", "keep")


@dataclass(frozen=True)
class Change:
    layer: str
    class_name: str
    before: bool | None  # the flag in the config (None: absent, which Keras reads as true)
    after: bool


@dataclass(frozen=True)
class EditRequest:
    """What the user asked freeze/unfreeze to do (the command line, as data)."""

    action: str  # "freeze" | "unfreeze"
    trainable: bool
    patterns: tuple[str, ...] = ()
    regex: bool = False
    all_layers: bool = False
    first: int | None = None
    upto: str | None = None
    within: str | None = None
    keep_batchnorm_frozen: bool = False
    optimizer_state: str = "remap"

    def __post_init__(self) -> None:
        if self.optimizer_state not in OPTIMIZER_STATE_MODES:
            raise UsageError(f"--optimizer-state must be one of {', '.join(OPTIMIZER_STATE_MODES)}")


@dataclass(frozen=True)
class Plan:
    parsed: Parsed  # the input as read (once)
    after: ModelInfo  # what Keras will load from the output
    config: Any  # the edited architecture
    changes: tuple[Change, ...]
    notes: tuple[str, ...] = ()  # things the user should know (stderr)
    outcome: Outcome = field(default_factory=Outcome)  # the optimizer state, one record

    @property
    def before(self) -> ModelInfo:
        return self.parsed.info

    def __repr__(self) -> str:  # the default would print the whole parsed file and its config
        tb, ta = self.before.totals(), self.after.totals()
        changes = ", ".join(f"{c.layer!r}: {c.before is not False} -> {c.after}" for c in self.changes[:3])
        changes += f", ... ({len(self.changes) - 3} more)" if len(self.changes) > 3 else ""
        return (
            f"<Plan {self.before.source!r}: {len(self.changes)} layer flag(s) changed [{changes}]; "
            f"trainable params {tb['trainable']:,} -> {ta['trainable']:,} of {tb['params']:,}; "
            f"optimizer state {self.optimizer}>"
        )

    @property
    def optimizer(self) -> str:
        """unchanged | remapped | dropped | kept-stale (the JSON `optimizer_state`)."""
        return self.outcome.state.value

    @property
    def trainable_set_changed(self) -> bool:
        a = [v.path for v in self.before.variables if v.trainable]
        b = [v.path for v in self.after.variables if v.trainable]
        return a != b

    def rewrite(self) -> Rewrite:
        return Rewrite(
            config=self.config,
            after=self.after,
            slots=self.outcome.slots,
            drop_optimizer=self.outcome.state is OptimizerState.DROPPED,
        )


def plan(parsed: Parsed, request: EditRequest) -> Plan:
    """Choose the layers the request names and plan the change (raises UsageError on refusals)."""
    formats.require_editable(parsed.info)
    selected = choose_layers(
        parsed.info,
        Selector(request.patterns, request.regex),
        first=request.first,
        upto=request.upto,
        within_layer=request.within,
        all_layers=request.all_layers,
        action=request.action,
    )
    return plan_freeze(
        parsed,
        selected,
        trainable=request.trainable,
        whole_model=request.all_layers,
        keep_batchnorm_frozen=request.keep_batchnorm_frozen,
        optimizer_state=request.optimizer_state,
    )


def _set_flag(config: Any, layer: Layer, value: bool, changes: dict[str, Change]) -> None:
    if layer.pointer is None:
        return
    entry = config
    for key in layer.pointer:
        entry = entry[key]
    cfg = entry.get("config")
    if not isinstance(cfg, dict) or entry.get("class_name") == "InputLayer":
        return
    before = cfg.get("trainable")
    if before is not None:
        before = bool(before)
    if before is value or (before is None and value):
        return
    cfg["trainable"] = value
    first = changes.get(layer.path)
    changes[layer.path] = Change(layer.path, layer.class_name, first.before if first else before, value)


def plan_freeze(
    parsed: Parsed,
    selected: list[Layer],
    *,
    trainable: bool,
    whole_model: bool = False,
    keep_batchnorm_frozen: bool = False,
    optimizer_state: str = "remap",
) -> Plan:
    """Plan freezing (trainable=False) or unfreezing (trainable=True) the selected layers.

    Args:
        parsed: the model as read once (formats.read_model(..., for_edit=True)).
        selected: layers chosen by the user (patterns, --first/--upto); descendants follow.
        trainable: the state to give them.
        whole_model: also set the top model's own flag (freeze/unfreeze everything).
        keep_batchnorm_frozen: when unfreezing, leave BatchNormalization layers frozen.
        optimizer_state: what to do with optimizer state that no longer matches the trainable
            set: "remap" (default; falls back to "drop" when not certain), "drop" or "keep".

    Returns:
        A Plan; raises UsageError when the change cannot be saved in the file (the same checks
        the write makes).
    """
    info = parsed.info
    formats.require_editable(info)
    config = copy.deepcopy(parsed.config)
    changes: dict[str, Change] = {}
    by_path = {l.path: l for l in info.layers}
    roots = {l.path for l in selected}
    for layer in info.layers:
        if not within(layer.path, roots):
            continue
        if trainable and keep_batchnorm_frozen and layer.class_name == "BatchNormalization":
            continue
        _set_flag(config, layer, trainable, changes)
    if trainable:  # enclosing containers must be trainable too; their other children keep theirs
        for root in selected:
            parent = root.parent
            while parent is not None:
                _set_flag(config, by_path[parent], True, changes)
                parent = by_path[parent].parent
    if whole_model or (trainable and selected):
        top = config.get("config") if isinstance(config, dict) else None
        if isinstance(top, dict) and (whole_model or top.get("trainable") is False):
            before = top.get("trainable")
            if before is not trainable and not (before is None and trainable):
                top["trainable"] = trainable
                changes[""] = Change(f"{info.name} (model)", info.class_name, before, trainable)
    after = formats.interpret(parsed, config)
    if trainable:
        quantization.check_unfreeze(after, sorted(roots))  # only quantized weights: nothing would train
    else:
        _check_frozen(after, roots)
    outcome, notes = _optimizer(parsed, info, after, config, optimizer_state)
    if trainable:
        notes.extend(quantization.unfreeze_notes(after, sorted(roots)))
    formats.editor(parsed).check_rewrite(parsed, after)  # the writer's refusals (.h5 reorder), now
    order = {l.path: i for i, l in enumerate(info.layers)}
    ordered = tuple(c for _, c in sorted(changes.items(), key=lambda kv: order.get(kv[0], -1)))
    if trainable:
        bns = [c.layer for c in ordered if c.class_name == "BatchNormalization" and c.after]
        if bns:
            notes.insert(0, _batchnorm_note(len(bns)))
    return Plan(parsed, after, config, ordered, tuple(notes), outcome)


def _batchnorm_note(n: int) -> str:
    return (
        f"this unfreezes {n} BatchNormalization layer(s): their gamma/beta will train. The Keras "
        "transfer-learning guide does the same (base_model.trainable = True) but calls the base "
        "model with training=False, so BatchNormalization keeps using its moving statistics and "
        "does not update them; if your model runs it in training mode, the statistics will drift "
        "while fine-tuning. Pass --keep-batchnorm-frozen to leave these layers frozen instead"
    )


def _check_frozen(after: ModelInfo, roots: set[str]) -> None:
    """Refuse a freeze Keras would not honour after loading the file (rather than pretend)."""
    stuck = [v for v in after.variables if v.trainable and within(v.layer, roots)]
    if stuck:
        names = ", ".join(v.path for v in stuck[:4]) + (" ..." if len(stuck) > 4 else "")
        raise UsageError(
            f"cannot freeze {len(stuck)} variable(s) in the file: {names}",
            hint="Keras rebuilds these sublayers trainable when it loads the file (they have no "
            "config entry of their own); freeze them in Python after loading instead",
        )


def _optimizer(
    parsed: Parsed, before: ModelInfo, after: ModelInfo, config: Any, mode: str
) -> tuple[Outcome, list[str]]:
    """The optimizer outcome and the notes that say what Keras will do with the output."""
    fmt = formats.editor(parsed)
    uncompiled = [fmt.UNCOMPILED_OUTPUT] if fmt.WARNS_WHEN_UNCOMPILED else []
    if not fmt.compiled(parsed):
        return Outcome(), uncompiled
    if [v.path for v in before.variables if v.trainable] == [v.path for v in after.variables if v.trainable]:
        return Outcome(), []
    outcome = optimizer_state.decide(
        mode,
        remappable=fmt.REMAPS_OPTIMIZER,
        entry=fmt.optimizer_entry(config),
        saved=fmt.saved_slots(parsed),
        before=before,
        after=after,
    )
    if outcome.state is OptimizerState.KEPT_STALE:
        return outcome, [
            "kept stale optimizer state: Keras will warn 'Skipping variable loading for optimizer' "
            "and start the optimizer afresh"
        ]
    if outcome.state is OptimizerState.REMAPPED:
        fresh = sum(1 for s in outcome.slots or () if s.source is None)
        return outcome, [
            "the trainable set changed: remapped the optimizer state (still-trainable variables "
            f"keep their slots; {fresh} fresh slot(s) for newly trainable ones)"
        ]
    if isinstance(config, dict):
        config.pop("compile_config", None)
    why = f" (could not remap: {outcome.why_not_remapped})" if outcome.why_not_remapped else ""
    return outcome, [
        "the trainable set changed, so the saved optimizer state no longer matches it: dropped it "
        f"with the compile settings{why}. {fmt.UNCOMPILED_OUTPUT}"
    ]


def apply(plan: Plan, dst: str, *, check: Callable[[str], None] | None = None) -> None:
    """Write the planned model to `dst` (may be the input itself) atomically.

    Args:
        plan: from plan().
        dst: where to write; the rename over it happens only once the new file is complete.
        check: called with the finished temp file before the rename (e.g. `verify_plan`);
            raising leaves `dst` untouched.
    """
    module = formats.editor(plan.parsed)
    if getattr(module, "WRITES_FOLDER", False):  # model folders, presets: the format writes it whole
        module.write_folder(plan.parsed, plan.rewrite(), dst, check=check)
        return
    with safe_write.atomic_output(dst, like=plan.parsed.target, check=check) as tmp:
        formats.write(plan.parsed, plan.rewrite(), tmp)


def verify_plan(plan: Plan, path: str, shown_as: str | None = None) -> str:
    """Load the written file with Keras and check it trains exactly the predicted variables."""
    return verify(path, [v.path for v in plan.after.variables if v.trainable], shown_as)
