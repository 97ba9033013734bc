"""What each command shows: ModelInfo (and friends) turned into Reports for render.py.

Each report is one record list (the JSON rows) inside its JSON envelope, plus the columns that show
those records as a table, CSV or Markdown. Nothing here formats text for one output format only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from varctl.model import LIST_SCHEMA, Cause, ModelInfo, Variable
from varctl.render import Annotation, Column, Kind, Report, human_bytes

if TYPE_CHECKING:
    from varctl.checks import CheckResult
    from varctl.diffs import DiffResult
    from varctl.edit import Plan
    from varctl.valuestats import VariableStats

LAYERS_SCHEMA = "varctl.layers/1"
PLAN_SCHEMA = "varctl.edit/1"
CHECK_SCHEMA = "varctl.check/1"
DIFF_SCHEMA = "varctl.diff/1"
STATS_SCHEMA = "varctl.stats/1"

__all__ = [
    "CHECK_SCHEMA",
    "DIFF_SCHEMA",
    "LAYERS_SCHEMA",
    "LIST_SCHEMA",
    "PLAN_SCHEMA",
    "STATS_SCHEMA",
    "check_report",
    "diff_report",
    "error_report",
    "layers_report",
    "list_report",
    "plan_report",
    "stats_report",
]


def _tree(row: dict[str, Any]) -> str:
    depth = row["depth"]
    return ("  " * depth) + ("└ " if depth else "") + row["name"]


LIST_COLUMNS = [
    Column("path", "path"),
    Column("layer", "layer", in_table=False),
    Column("name", "name", in_table=False),
    Column("shape", "shape"),
    Column("dtype", "dtype"),
    Column("params", "params", Kind.numeric),
    Column("trainable", "trainable", Kind.flag),
    Column("reason", "why not trainable", Kind.note),
]

LAYER_COLUMNS = [
    Column("tree", "layer", getter=_tree, in_data=False),
    Column("path", "path", in_table=False),
    Column("name", "name", in_table=False),
    Column("class_name", "class"),
    Column("variables", "vars", Kind.numeric),
    Column("params", "params", Kind.numeric),
    Column("trainable_params", "trainable params", Kind.numeric),
    Column("state", "trainable", Kind.status),
    Column("depth", "depth", in_table=False),
]

PLAN_COLUMNS = [
    Column("layer", "layer"),
    Column("class_name", "class"),
    Column("before", "trainable before", Kind.flag),
    Column("after", "trainable after", Kind.flag),
]


def title(info: ModelInfo) -> str:
    version = f"Keras {info.keras_version}" if info.keras_version else "Keras version unknown"
    extra = "".join(f" · {d}" for d in info.details)
    return f"{info.source} · {info.format} · {version} · {info.class_name} `{info.name}`{extra}"


def summary(totals: dict[str, int]) -> list[str]:
    params, trainable = totals["params"], totals["trainable"]
    pct = f"{100 * trainable / params:.2f}%" if params else "0%"
    return [
        f"Total params: {params:,} ({human_bytes(totals['bytes'])})",
        f"Trainable params: {trainable:,} ({pct})",
        # the table separates what is known not to train from what the input does not say
        f"Non-trainable params: {totals['non_trainable'] - totals.get('unknown', 0):,}",
        *(
            [f"Unknown: {totals.get('unknown', 0):,} params (trainable state not in the file: see warnings)"]
            if totals.get("unknown")
            else []
        ),
        *(
            [
                f"Logical weights: {totals['logical_params']:,} (int4 packs two per stored byte; params counts stored elements)"
            ]
            if "logical_params" in totals
            else []
        ),
    ]


def _with_quantization(columns: list[Column], rows: list[dict[str, Any]]) -> list[Column]:
    """A `quantization` column, only for models with quantized or LoRA layers."""
    if any(r.get("quantization") for r in rows):
        return [*columns, Column("quantization", "quantization")]
    return columns


def list_report(info: ModelInfo, variables: list[Variable]) -> Report:
    envelope = info.to_dict(variables)
    return Report(
        title=title(info),
        columns=_with_quantization(LIST_COLUMNS, envelope["variables"]),
        envelope=envelope,
        records_key="variables",
        summary=summary(envelope["totals"]),
        csv_prefix={"model": info.source},
    )


def _layer_state(count: int, unknown: bool, params: int, trainable_params: int) -> str | None:
    """A layer's trainable state over its `count` variables; None when it holds none (a dash in
    the table). `unknown`: the file does not say for one of them."""
    if not count:
        return None
    if unknown:
        return "unknown"
    if trainable_params == params and params:
        return "trainable"
    return "frozen" if trainable_params == 0 else "partial"


def _enclosing(layer_path: str) -> Iterator[str]:
    """`a`, `a/b`, `a/b/c` for `a/b/c`: the layer and every layer it is inside."""
    cut = layer_path.find("/")
    while cut != -1:
        yield layer_path[:cut]
        cut = layer_path.find("/", cut + 1)
    yield layer_path


def layers_report(info: ModelInfo, variables: list[Variable]) -> Report:
    """One row per layer (nested layers indented as a tree), over the selected variables.

    With a selection narrower than the model, layers holding none of the selected variables are
    left out; the layers that enclose a selected variable stay.
    """
    selected = {v.path for v in variables}
    narrowed = len(selected) != len(info.variables)
    # layer path -> [variables, params, trainable params, any of unknown state] at or below it
    inside: dict[str, list[Any]] = {}
    for v in info.variables:
        if v.path not in selected:
            continue
        params = math.prod(v.shape)
        tparams = params if v.cause is Cause.TRAINABLE else 0
        unknown = v.cause is Cause.UNKNOWN
        for path in _enclosing(v.layer):
            sums = inside.get(path)
            if sums is None:
                inside[path] = [1, params, tparams, unknown]
            else:
                sums[0] += 1
                sums[1] += params
                sums[2] += tparams
                sums[3] = sums[3] or unknown
    records = []
    none = (0, 0, 0, False)
    for layer in info.layers:
        count, params, tparams, unknown = inside.get(layer.path, none)
        if narrowed and not count:
            continue
        record = {
            "path": layer.path,
            "name": layer.name,
            "class_name": layer.class_name,
            "depth": layer.depth,
            "variables": count,
            "params": params,
            "trainable_params": tparams,
            "state": _layer_state(count, unknown, params, tparams),
            "flag": layer.flag,
        }
        if layer.quantization:
            record["quantization"] = layer.quantization
        records.append(record)
    totals = info.totals(variables)
    envelope = {
        "schema": LAYERS_SCHEMA,
        "model": info.source,
        "format": info.format,
        "keras_version": info.keras_version,
        "layers": records,
        "totals": totals,
        "warnings": list(info.warnings),
    }
    return Report(
        title=title(info),
        columns=_with_quantization(LAYER_COLUMNS, records),
        envelope=envelope,
        records_key="layers",
        summary=summary(totals),
        csv_prefix={"model": info.source},
    )


def plan_report(plan: Plan, *, action: str, output: str | None, dry_run: bool) -> Report:
    """The layers whose flag changes (trainable before -> after) and the trainable totals before -> after."""
    tb, ta = plan.before.totals(), plan.after.totals()
    ub, ua = tb.get("unknown", 0), ta.get("unknown", 0)
    lines = [
        f"Trainable params: {tb['trainable']:,} -> {ta['trainable']:,} (of {tb['params']:,})"
        # a change varctl cannot know is not claimed: params of unknown state are counted apart
        + (f"; unknown: {ub:,} -> {ua:,} params (see `varctl list` warnings)" if ub or ua else ""),
        f"Trainable variables: {sum(1 for v in plan.before.variables if v.trainable)} -> "
        f"{sum(1 for v in plan.after.variables if v.trainable)}",
    ]
    envelope = {
        "schema": PLAN_SCHEMA,
        "model": plan.before.source,
        "action": action,
        "output": output,
        "dry_run": dry_run,
        "changes": [
            # a flag absent from the config (None) is one Keras reads as trainable
            {"layer": c.layer, "class_name": c.class_name, "before": c.before is not False, "after": c.after}
            for c in plan.changes
        ],
        "trainable_params": {
            "before": tb["trainable"],
            "after": ta["trainable"],
            # params whose trainable state the file does not record (present only when non-zero)
            **({"unknown_before": ub, "unknown_after": ua} if ub or ua else {}),
        },
        "optimizer_state": plan.optimizer,
        "notes": list(plan.notes),
    }
    heading = (
        f"{action} {plan.before.source}"
        + (f" -> {output}" if output else "")
        + (" (dry run)" if dry_run else "")
    )
    return Report(
        title=heading,
        columns=PLAN_COLUMNS,
        envelope=envelope,
        records_key="changes",
        summary=lines,
        csv_prefix={"model": plan.before.source},
    )


# -- check / diff / stats (the CI toolkit) -----------------------------------------------------

CHECK_COLUMNS = [
    Column("assertion", "assertion"),
    Column("argument", "argument"),
    Column("ok", "ok", Kind.flag, in_table=False),
    Column("status", "status", Kind.status),
    Column("variable", "variable"),
    Column("detail", "detail"),
]

STATS_COLUMNS = [
    Column("path", "path"),
    Column("layer", "layer", in_table=False),
    Column("name", "name", in_table=False),
    Column("shape", "shape"),
    Column("dtype", "dtype"),
    Column("params", "params", Kind.numeric),
    Column("trainable", "trainable", Kind.flag, in_table=False),
    Column("min", "min", Kind.numeric),
    Column("max", "max", Kind.numeric),
    Column("mean", "mean", Kind.numeric),
    Column("std", "std", Kind.numeric),
    Column("zero_fraction", "zeros", Kind.numeric),
    Column("nan_count", "NaN", Kind.numeric),
    Column("inf_count", "Inf", Kind.numeric),
]


def _describe(v: dict[str, Any] | None) -> str | None:
    """A variable of a diff record in one cell: `(10, 64) float32 trainable`."""
    if v is None:
        return None
    shape = v["shape"]
    dims = "(" + ", ".join(str(d) for d in shape) + (",)" if len(shape) == 1 else ")")
    state = {True: "trainable", False: "frozen"}.get(v["trainable"], "unknown")
    return f"{dims} {v['dtype']} {state}"


def _values(key: str) -> Column:
    return Column(key, key, Kind.numeric, getter=lambda r: r["values"][key] if r["values"] else None)


DIFF_COLUMNS = [
    Column("change", "change"),
    Column("path", "path"),
    Column("fields", "what", getter=lambda r: ", ".join(r["fields"]) or None),
    Column("a", "A", getter=lambda r: _describe(r["a"])),
    Column("b", "B", getter=lambda r: _describe(r["b"])),
    Column(
        "max_abs_diff",
        "max |A-B|",
        Kind.numeric,
        getter=lambda r: r["values"] and r["values"]["max_abs_diff"],
    ),
    Column("differing", "differing", Kind.numeric, getter=lambda r: r["values"] and r["values"]["differing"]),
    Column(
        "elements",
        "elements",
        Kind.numeric,
        getter=lambda r: r["values"] and r["values"]["elements"],
        in_table=False,
    ),
    Column("matched_by", "matched by", in_table=False),
]


def _model_head(info: ModelInfo) -> dict[str, Any]:
    return {"model": info.source, "format": info.format, "keras_version": info.keras_version}


def error_report(schema: str, source: str, message: str) -> Report:
    """A model that could not be read, for the JSON array of a many-model command (the other
    formats leave it out: the error is on stderr)."""
    envelope = {"schema": schema, "model": source, "format": None, "keras_version": None, "error": message}
    command = schema.removeprefix("varctl.").split("/")[0]
    return Report(
        title=source,
        columns=[],
        envelope=envelope,
        csv_prefix={"model": source},
        annotations=[Annotation("error", f"varctl {command} cannot read", message, source)],
    )


def _check_rows(failures_only: bool) -> Any:
    """An assertion record -> its table rows: one per failing variable, else one for the assertion."""

    def rows(a: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if a["ok"]:
            if not failures_only:
                yield {**a, "status": "pass", "variable": None, "detail": a["message"]}
            return
        if a["variables"] and a["assertion"] not in ("max_trainable_params", "min_trainable_params"):
            for off in a["variables"]:
                yield {**a, "status": "FAIL", "variable": off["path"], "detail": off["detail"]}
        else:  # a count, or nothing to point at: one row (the variables are in the JSON)
            detail = a["message"] + (f"; hint: {a['hint']}" if a["hint"] else "")
            yield {**a, "status": "FAIL", "variable": None, "detail": detail}

    return rows


def check_verdict(result: CheckResult) -> str:
    failed = sum(1 for o in result.outcomes if not o.ok)
    if not result.outcomes:
        return "readable (no assertions given)"
    if failed:
        return f"{failed} of {len(result.outcomes)} assertions failed"
    return (
        "the assertion holds" if len(result.outcomes) == 1 else f"all {len(result.outcomes)} assertions hold"
    )


def check_report(result: CheckResult, *, failures_only: bool, brief: bool = False) -> Report:
    """One row per failing variable (and per passing assertion unless `failures_only`).

    `brief`: the table is one line naming the model and its verdict (a model that passes in CI).
    """
    info = result.info
    envelope = {
        "schema": CHECK_SCHEMA,
        **_model_head(info),
        "error": None,
        "ok": result.ok,
        "failed": sum(1 for o in result.outcomes if not o.ok),
        "assertions": [o.to_dict() for o in result.outcomes],
        "warnings": list(info.warnings),
    }
    annotations = _check_annotations(result)
    if brief:
        line = f"{'pass' if result.ok else 'FAIL'} {info.source}: {check_verdict(result)}"
        return Report(
            title=line,
            columns=[],
            envelope=envelope,
            csv_prefix={"model": info.source},
            annotations=annotations,
        )
    return Report(
        title=f"check {title(info)}",
        columns=CHECK_COLUMNS,
        envelope=envelope,
        records_key="assertions",
        summary=[check_verdict(result)],
        csv_prefix={"model": info.source},
        rows=_check_rows(failures_only),
        annotations=annotations,
    )


# An annotation names at most this many variables (GitHub shows the first lines of a message).
_ANNOTATION_NAMES = 10


def _names(paths: list[str]) -> str:
    shown = ", ".join(paths[:_ANNOTATION_NAMES])
    more = len(paths) - _ANNOTATION_NAMES
    return shown + (f" and {more:,} more" if more > 0 else "")


def _check_annotations(result: CheckResult) -> list[Annotation]:
    """One error per failing assertion (naming its variables), or one notice for a passing model."""
    source = result.info.source
    if result.ok:
        return [Annotation("notice", "varctl check", f"{source}: {check_verdict(result)}", source)]
    found = []
    for o in result.outcomes:
        if o.ok:
            continue
        message = o.message
        if o.offenders and o.assertion not in ("max_trainable_params", "min_trainable_params"):
            message += ": " + _names([off.path for off in o.offenders])
        if o.hint:
            message += f" (hint: {o.hint})"
        argument = "" if o.argument is None else f" {o.argument}"
        found.append(Annotation("error", f"varctl check {o.assertion}{argument}", message, source))
    return found


def stats_report(info: ModelInfo, stats: list[VariableStats]) -> Report:
    records = [
        {**{k: v for k, v in s.variable.to_dict().items() if k != "reason"}, **s.values} for s in stats
    ]
    variables = [s.variable for s in stats]
    envelope = {
        "schema": STATS_SCHEMA,
        **_model_head(info),
        "error": None,
        "variables": records,
        "totals": info.totals(variables),
        "warnings": list(info.warnings),
    }
    nan = sum(s.values["nan_count"] or 0 for s in stats)
    inf = sum(s.values["inf_count"] or 0 for s in stats)
    lines = summary(info.totals(variables))[:1]
    lines.append(
        "min/max/mean/std over finite values; std is the population std"
        + (f"; {nan:,} NaN and {inf:,} Inf values in total" if nan or inf else "; every value is finite")
    )
    return Report(
        title=f"stats {title(info)}",
        columns=STATS_COLUMNS,
        envelope=envelope,
        records_key="variables",
        summary=lines,
        csv_prefix={"model": info.source},
    )


def _var_dict(v: Variable | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {"path": v.path, "shape": list(v.shape), "dtype": v.dtype, "trainable": v.trainable}


def diff_report(result: DiffResult) -> Report:
    """The variables that differ between A and B; unchanged ones are only counted."""
    records = [
        {
            "path": c.path,
            "change": c.kind,
            "fields": list(c.fields),
            "a": _var_dict(c.a),
            "b": _var_dict(c.b),
            "values": c.values.to_dict() if c.values is not None else None,
            "matched_by": c.matched_by,
        }
        for c in result.changes
    ]
    counts = result.counts()
    envelope = {
        "schema": DIFF_SCHEMA,
        "a": _model_head(result.a),
        "b": _model_head(result.b),
        "values_compared": result.values_compared,
        "identical": result.identical,
        "summary": counts,
        "changes": records,
    }
    line = ", ".join(f"{k} {n:,}" for k, n in counts.items()) + (
        " (values compared)" if result.values_compared else " (values not compared: add --values)"
    )
    return Report(
        title=f"diff {result.a.source} ({result.a.format}) -> {result.b.source} ({result.b.format})",
        columns=DIFF_COLUMNS,
        envelope=envelope,
        records_key="changes",
        summary=[line],
        csv_prefix={"a": result.a.source, "b": result.b.source},
        annotations=_diff_annotations(result, records),
    )


def _diff_annotations(result: DiffResult, records: list[dict[str, Any]]) -> list[Annotation]:
    """One error per variable that differs (on B, the newer file), or a notice that none does."""
    a, b = result.a.source, result.b.source
    if not records:
        compared = "values compared" if result.values_compared else "values not compared"
        return [Annotation("notice", "varctl diff", f"{a} and {b}: no differences ({compared})", b)]
    found = []
    for r in records:
        what = f" ({', '.join(r['fields'])})" if r["fields"] else ""
        message = f"{r['path']}: {_describe(r['a']) or 'absent'} -> {_describe(r['b']) or 'absent'}"
        if r["values"] and r["values"]["differing"]:
            message += (
                f"; {r['values']['differing']:,} values differ (max |A-B| {r['values']['max_abs_diff']})"
            )
        found.append(Annotation("error", f"varctl diff {r['change']}{what}", message, b))
    return found
