"""What each command shows: ModelInfo (and friends) turned into Reports for render.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from varctl.model import LIST_SCHEMA, ModelInfo, Variable
from varctl.render import Column, Report, human_bytes

LAYERS_SCHEMA = "varctl.layers/1"

LIST_COLUMNS = [
    Column("path", "path"),
    Column("layer", "layer", in_table=False),
    Column("name", "name", in_table=False),
    Column("shape", "shape"),
    Column("dtype", "dtype"),
    Column("params", "params", numeric=True),
    Column("trainable", "trainable"),
    Column("reason", "why not trainable"),
]

LAYER_COLUMNS = [
    Column("tree", "layer", table_only=True),
    Column("path", "path", in_table=False),
    Column("name", "name", in_table=False),
    Column("class_name", "class"),
    Column("variables", "vars", numeric=True),
    Column("params", "params", numeric=True),
    Column("trainable_params", "trainable params", numeric=True),
    Column("state", "trainable"),
    Column("depth", "depth", in_table=False),
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
        f"Non-trainable params: {totals['non_trainable']:,}",
    ]


def list_report(info: ModelInfo, variables: list[Variable]) -> Report:
    rows = [v.to_dict() for v in variables]
    totals = info.totals(variables)
    return Report(
        title=title(info),
        columns=LIST_COLUMNS,
        rows=rows,
        summary=summary(totals),
        document=info.to_dict(variables),
        csv_prefix={"model": info.source},
    )


def layers_report(info: ModelInfo, variables: list[Variable]) -> Report:
    """One row per layer (nested layers indented as a tree), over the selected variables."""
    selected = {v.path for v in variables}
    rows = []
    for layer in info.layers:
        inside = [
            v
            for v in info.variables
            if v.path in selected and (v.layer == layer.path or v.layer.startswith(layer.path + "/"))
        ]
        if variables is not info.variables and not inside and len(selected) != len(info.variables):
            continue
        params = sum(v.params for v in inside)
        tparams = sum(v.params for v in inside if v.trainable)
        # None: the layer holds no variables (shown as a dash in the table)
        state = (
            None
            if not inside
            else "unknown"
            if any(v.trainable is None for v in inside)
            else "trainable"
            if tparams == params and params
            else "frozen"
            if tparams == 0
            else "partial"
        )
        rows.append(
            {
                "tree": ("  " * layer.depth) + ("└ " if layer.depth else "") + layer.name,
                "path": layer.path,
                "name": layer.name,
                "class_name": layer.class_name,
                "depth": layer.depth,
                "variables": len(inside),
                "params": params,
                "trainable_params": tparams,
                "state": state,
                "flag": layer.flag,
            }
        )
    totals = info.totals(variables)
    doc = {
        "schema": LAYERS_SCHEMA,
        "model": info.source,
        "format": info.format,
        "keras_version": info.keras_version,
        "layers": [{k: v for k, v in r.items() if k != "tree"} for r in rows],
        "totals": totals,
        "warnings": list(info.warnings),
    }
    return Report(
        title=title(info),
        columns=LAYER_COLUMNS,
        rows=rows,
        summary=summary(totals),
        document=doc,
        csv_prefix={"model": info.source},
    )


__all__ = ["LIST_SCHEMA", "LAYERS_SCHEMA", "list_report", "layers_report"]


PLAN_SCHEMA = "varctl.edit/1"

PLAN_COLUMNS = [
    Column("layer", "layer"),
    Column("class_name", "class"),
    Column("before", "before"),
    Column("after", "after"),
]


def plan_report(plan, *, action: str, output: str | None, dry_run: bool) -> Report:
    """The layers whose flag changes (before -> after) and the trainable totals before -> after."""

    def flag(v):
        return "trainable" if v is None or v else "frozen"

    rows = [
        {"layer": c.layer, "class_name": c.class_name, "before": flag(c.before), "after": flag(c.after)}
        for c in plan.changes
    ]
    tb, ta = plan.before.totals(), plan.after.totals()
    lines = [
        f"Trainable params: {tb['trainable']:,} -> {ta['trainable']:,} (of {tb['params']:,})",
        f"Trainable variables: {sum(1 for v in plan.before.variables if v.trainable)} -> "
        f"{sum(1 for v in plan.after.variables if v.trainable)}",
    ]
    doc = {
        "schema": PLAN_SCHEMA,
        "model": plan.before.source,
        "action": action,
        "output": output,
        "dry_run": dry_run,
        "changes": [
            {"layer": c.layer, "class_name": c.class_name, "before": c.before is not False, "after": c.after}
            for c in plan.changes
        ],
        "trainable_params": {"before": tb["trainable"], "after": ta["trainable"]},
        "optimizer_state": plan.optimizer,
        "notes": list(plan.notes),
    }
    title = (
        f"{action} {plan.before.source}"
        + (f" -> {output}" if output else "")
        + (" (dry run)" if dry_run else "")
    )
    return Report(
        title=title,
        columns=PLAN_COLUMNS,
        rows=rows,
        summary=lines,
        document=doc,
        csv_prefix={"model": plan.before.source},
    )


# -- check / diff / stats (the CI toolkit) -----------------------------------------------------

if TYPE_CHECKING:
    from varctl.ci import CheckResult, DiffResult, VariableStats

CHECK_SCHEMA = "varctl.check/1"
DIFF_SCHEMA = "varctl.diff/1"
STATS_SCHEMA = "varctl.stats/1"

CHECK_COLUMNS = [
    Column("assertion", "assertion"),
    Column("argument", "argument"),
    Column("ok", "ok", in_table=False),
    Column("status", "status"),
    Column("variable", "variable"),
    Column("detail", "detail"),
]

STATS_COLUMNS = [
    Column("path", "path"),
    Column("layer", "layer", in_table=False),
    Column("name", "name", in_table=False),
    Column("shape", "shape"),
    Column("dtype", "dtype"),
    Column("params", "params", numeric=True),
    Column("trainable", "trainable", in_table=False),
    Column("min", "min", numeric=True),
    Column("max", "max", numeric=True),
    Column("mean", "mean", numeric=True),
    Column("std", "std", numeric=True),
    Column("zero_fraction", "zeros", numeric=True),
    Column("nan_count", "NaN", numeric=True),
    Column("inf_count", "Inf", numeric=True),
]

DIFF_COLUMNS = [
    Column("change", "change"),
    Column("path", "path"),
    Column("fields", "what"),
    Column("a", "A"),
    Column("b", "B"),
    Column("max_abs_diff", "max |A-B|", numeric=True),
    Column("differing", "differing", numeric=True),
    Column("elements", "elements", numeric=True, in_table=False),
    Column("matched_by", "matched by", in_table=False),
]


def _model_head(info: ModelInfo) -> dict[str, Any]:
    return {"model": info.source, "format": info.format, "keras_version": info.keras_version}


def error_report(schema: str, source: str, message: str) -> Report:
    """A model that could not be read, for the JSON array of a many-model command (the other
    formats leave it out: the error is on stderr)."""
    doc = {"schema": schema, "model": source, "format": None, "keras_version": None, "error": message}
    return Report(title=source, columns=[], rows=[], document=doc, csv_prefix={"model": source})


def check_report(result: CheckResult, *, failures_only: bool) -> Report:
    """One row per failing variable (and per passing assertion unless `failures_only`)."""
    rows = []
    for o in result.outcomes:
        base = {"assertion": o.assertion, "argument": o.argument, "ok": o.ok}
        if o.ok:
            if not failures_only:
                rows.append({**base, "status": "pass", "variable": None, "detail": o.message})
            continue
        if o.offenders and o.assertion not in ("max_trainable_params", "min_trainable_params"):
            for off in o.offenders:
                rows.append({**base, "status": "FAIL", "variable": off.path, "detail": off.detail})
        else:  # a count, or nothing to point at: one row (the variables are in the JSON)
            detail = o.message + (f"; hint: {o.hint}" if o.hint else "")
            rows.append({**base, "status": "FAIL", "variable": None, "detail": detail})
    failed = sum(1 for o in result.outcomes if not o.ok)
    info = result.info
    doc = {
        "schema": CHECK_SCHEMA,
        **_model_head(info),
        "error": None,
        "ok": result.ok,
        "failed": failed,
        "assertions": [o.to_dict() for o in result.outcomes],
        "warnings": list(info.warnings),
    }
    if not result.outcomes:
        verdict = "readable (no assertions given)"
    elif failed:
        verdict = f"{failed} of {len(result.outcomes)} assertions failed"
    else:
        verdict = f"all {len(result.outcomes)} assertions hold"
    return Report(
        title=f"check {title(info)}",
        columns=CHECK_COLUMNS,
        rows=rows,
        summary=[verdict],
        document=doc,
        csv_prefix={"model": info.source},
    )


def stats_report(info: ModelInfo, stats: list[VariableStats]) -> Report:
    rows = [
        {
            **{k: v for k, v in s.variable.to_dict().items() if k != "reason"},
            **s.values,
        }
        for s in stats
    ]
    variables = [s.variable for s in stats]
    doc = {
        "schema": STATS_SCHEMA,
        **_model_head(info),
        "error": None,
        "variables": rows,
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
        rows=rows,
        summary=lines,
        document=doc,
        csv_prefix={"model": info.source},
    )


def _describe(v: Variable | None) -> str | None:
    if v is None:
        return None
    shape = "(" + ", ".join(str(d) for d in v.shape) + (",)" if len(v.shape) == 1 else ")")
    state = "trainable" if v.trainable else "frozen" if v.trainable is False else "unknown"
    return f"{shape} {v.dtype} {state}"


def _var_dict(v: Variable | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {"path": v.path, "shape": list(v.shape), "dtype": v.dtype, "trainable": v.trainable}


def diff_report(result: DiffResult) -> Report:
    """The variables that differ between A and B; unchanged ones are only counted."""
    rows = []
    changes = []
    for c in result.changes:
        vd = c.values.to_dict() if c.values is not None else None
        rows.append(
            {
                "change": c.kind,
                "path": c.path,
                "fields": ", ".join(c.fields) if c.fields else None,
                "a": _describe(c.a),
                "b": _describe(c.b),
                "max_abs_diff": vd["max_abs_diff"] if vd else None,
                "differing": vd["differing"] if vd else None,
                "elements": vd["elements"] if vd else None,
                "matched_by": c.matched_by,
            }
        )
        changes.append(
            {
                "path": c.path,
                "change": c.kind,
                "fields": list(c.fields),
                "a": _var_dict(c.a),
                "b": _var_dict(c.b),
                "values": vd,
                "matched_by": c.matched_by,
            }
        )
    counts = result.counts()
    doc = {
        "schema": DIFF_SCHEMA,
        "a": _model_head(result.a),
        "b": _model_head(result.b),
        "values_compared": result.values_compared,
        "identical": result.identical,
        "summary": counts,
        "changes": changes,
    }
    line = ", ".join(f"{k} {n:,}" for k, n in counts.items()) + (
        " (values compared)" if result.values_compared else " (values not compared: add --values)"
    )
    return Report(
        title=f"diff {result.a.source} ({result.a.format}) -> {result.b.source} ({result.b.format})",
        columns=DIFF_COLUMNS,
        rows=rows,
        summary=[line],
        document=doc,
        csv_prefix={"a": result.a.source, "b": result.b.source},
    )
