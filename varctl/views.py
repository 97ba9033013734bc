"""What each command shows: ModelInfo (and friends) turned into Reports for render.py."""

from __future__ import annotations

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
    Column("tree", "layer"),
    Column("path", "path", in_table=False),
    Column("class_name", "class"),
    Column("variables", "vars", numeric=True),
    Column("params", "params", numeric=True),
    Column("trainable_params", "trainable params", numeric=True),
    Column("state", "trainable"),
    Column("depth", "depth", in_table=False),
]


def title(info: ModelInfo) -> str:
    version = f"Keras {info.keras_version}" if info.keras_version else "Keras version unknown"
    return f"{info.source} · {info.format} · {version} · {info.class_name} `{info.name}`"


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
        state = (
            "—"
            if not inside
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
