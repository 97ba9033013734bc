"""`varctl check` / `varctl diff` / `varctl stats`: assertions and comparisons for pipelines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from varctl import out
from varctl.commands._run import handle_errors, open_or_fail, run_each
from varctl.errors import EXIT_FOUND
from varctl.render import CIFormat, Format, Report

if TYPE_CHECKING:  # the declarations, for annotations only: varctl.cli resolves them
    from varctl.commands._options import (
        ArgA,
        ArgB,
        AtolOpt,
        CIFormatOpt,
        FiniteOpt,
        FormatOpt,
        FrozenOpt,
        MaxParamsOpt,
        MinParamsOpt,
        NoLambdaOpt,
        OnlyKerasOpt,
        PathsArg,
        PatternOpt,
        RegexOpt,
        TrainableFilterOpt,
        TrainableOpt,
        ValuesOpt,
        VerboseOpt,
    )
    from varctl.model import ModelInfo


@handle_errors
def check(
    models: PathsArg,
    frozen: FrozenOpt = None,
    trainable: TrainableOpt = None,
    max_trainable_params: MaxParamsOpt = None,
    min_trainable_params: MinParamsOpt = None,
    finite: FiniteOpt = False,
    no_lambda: NoLambdaOpt = False,
    only_keras_layers: OnlyKerasOpt = False,
    pattern: PatternOpt = None,
    regex: RegexOpt = False,
    verbose: VerboseOpt = False,
    fmt: CIFormatOpt = CIFormat.table,
) -> None:
    """Assert trainable state, parameter budgets, finite values and no code in the config; exit 1 if any fails. Each model is named with its result: a line if it passes, the failures if not, then a count.  Example: varctl check m.keras --frozen base --max-trainable-params 10000 --finite --no-lambda"""
    from varctl import checks, views
    from varctl.render import append_step_summary

    assertions = checks.Assertions(
        tuple(frozen or ()), tuple(trainable or ()), max_trainable_params, min_trainable_params, finite,
        tuple(pattern or ()), regex, no_lambda, only_keras_layers,
    )  # fmt: skip
    table = fmt is CIFormat.table

    def work(info: ModelInfo) -> tuple[Report | None, int]:
        with out.progress(checks.bytes_to_read(info, assertions), f"check {info.source}") as advance:
            result = checks.check(info, assertions, advance)
        brief = result.ok and not verbose and fmt in (CIFormat.table, CIFormat.github)
        report = views.check_report(result, failures_only=table and not verbose, brief=brief)
        return report, 0 if result.ok else EXIT_FOUND

    def count(outcomes: list[tuple[str, int]]) -> None:
        if fmt not in (CIFormat.table, CIFormat.github):
            return
        passed = sum(1 for _, code in outcomes if code == 0)
        failed = sum(1 for _, code in outcomes if code == EXIT_FOUND)
        unreadable = len(outcomes) - passed - failed
        line = f"{len(outcomes)} model{'s' if len(outcomes) != 1 else ''} checked: {passed} passed, {failed} failed"
        line += f", {unreadable} unreadable" if unreadable else ""
        print(out.clean(line), flush=True)
        if fmt is CIFormat.github:
            append_step_summary(f"\n**{line}**\n")

    run_each(models, fmt, views.CHECK_SCHEMA, work, warnings=verbose, after=count)


@handle_errors
def diff(
    a: ArgA,
    b: ArgB,
    values: ValuesOpt = False,
    atol: AtolOpt = 0.0,
    fmt: CIFormatOpt = CIFormat.table,
) -> None:
    """Show variables added, removed or changed (shape, dtype, trainable, values) from A to B; exit 1 if any.  Example: varctl diff old.keras new.h5 --values"""
    from varctl import diffs as diff_core
    from varctl import views
    from varctl.render import render

    info_a, info_b = open_or_fail(a), open_or_fail(b)
    with out.progress(diff_core.diff_bytes(info_a, info_b) if values else 0, "comparing values") as advance:
        result = diff_core.diff(info_a, info_b, values=values, atol=atol, progress=advance)
    if result.identical and fmt is CIFormat.table:
        compared = "values compared" if values else "values not compared: add --values"
        out.message("info", f"{a} and {b}: no differences in {len(result.entries):,} variables ({compared})")
    else:
        render([views.diff_report(result)], fmt)
    if not result.identical:
        raise SystemExit(EXIT_FOUND)


@handle_errors
def stats(
    models: PathsArg,
    pattern: PatternOpt = None,
    regex: RegexOpt = False,
    trainable: TrainableFilterOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Per-variable min, max, mean, std, fraction of zeros, NaN and Inf counts, read in bounded chunks.  Example: varctl stats m.keras -p 'dense*' -f json"""
    from varctl import valuestats as stats_core
    from varctl import views
    from varctl.select import Selector, filter_trainable

    selector = Selector(tuple(pattern or ()), regex)

    def work(info: ModelInfo) -> tuple[Report | None, int]:
        chosen = filter_trainable(selector.variables(info), trainable)
        with out.progress(sum(v.nbytes for v in chosen), f"stats {info.source}") as advance:
            return views.stats_report(info, stats_core.stats(info, chosen, advance)), 0

    run_each(models, fmt, views.STATS_SCHEMA, work, selector=selector)
