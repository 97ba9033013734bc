"""Command modules: each registers its commands on varctl.cli.app. Bodies stay thin.

`run_each` is the loop every many-model command shares: open each model, work, render, exit with
the worst outcome, without letting one bad file hide the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from varctl import out
from varctl.errors import VarctlError
from varctl.render import Format, Report

if TYPE_CHECKING:
    from varctl.model import ModelInfo


def _error(e: VarctlError) -> None:
    out.message("error", e.message)
    if e.hint:
        out.message("hint", e.hint)


def run_each(
    paths: list[str],
    fmt: Format,
    schema: str,
    work: Callable[[ModelInfo], tuple[Report | None, int]],
    *,
    selector: object | None = None,
    warnings: bool = True,
    load: object | None = None,
    config: object | None = None,
) -> None:
    """Run `work` on every model and render the reports in argument order.

    One model that cannot be read (or read further) is reported on stderr, and as an `error`
    document in JSON, without hiding the others; the exit code is the worst of all models.
    A `selector` whose patterns match no layer in any readable model is a usage error (exit 2).
    """
    from varctl.cli import open_or_fail
    from varctl.model import ModelInfo
    from varctl.render import render
    from varctl.select import Selector, no_match_error
    from varctl.views import error_report

    opened: list[ModelInfo | VarctlError] = []
    for p in paths:
        try:
            opened.append(open_or_fail(p, load, config))
        except VarctlError as e:
            opened.append(e)
    infos = [i for i in opened if isinstance(i, ModelInfo)]
    if isinstance(selector, Selector) and selector.patterns and infos:
        if missing := selector.unmatched(infos):
            raise no_match_error(missing, infos)
    reports: list[Report] = []
    worst = 0
    for path, item in zip(paths, opened, strict=True):
        if isinstance(item, ModelInfo):
            if warnings:
                for w in item.warnings:
                    out.message("warning", f"{item.source}: {w}")
            try:
                report, code = work(item)
            except VarctlError as e:
                item = e
            else:
                reports += [report] if report is not None else []
                worst = max(worst, code)
                continue
        _error(item)
        worst = max(worst, item.exit_code)
        if fmt is Format.json and len(paths) > 1:  # keep the array aligned with the arguments
            reports.append(error_report(schema, path, item.message))
    render(reports, fmt)
    if worst:
        raise typer.Exit(worst)
