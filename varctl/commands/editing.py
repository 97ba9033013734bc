"""`varctl freeze` / `varctl unfreeze`: change trainable flags by pattern and re-save."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from varctl import out
from varctl.commands._run import handle_errors
from varctl.render import Format

if TYPE_CHECKING:  # the declarations, for annotations only: varctl.cli resolves them
    from varctl.commands._options import (
        AllOpt,
        DryRunOpt,
        EditPatternOpt,
        FirstOpt,
        FormatOpt,
        InPlaceOpt,
        KeepBnOpt,
        ModelArg,
        OptStateOpt,
        OutputOpt,
        RegexOpt,
        UptoOpt,
        VerifyOpt,
        WithinOpt,
    )


def _edit(
    *,
    action: str,
    trainable: bool,
    model: str,
    pattern: list[str] | None,
    regex: bool,
    all_layers: bool,
    first: int | None,
    upto: str | None,
    within: str | None,
    output: str | None,
    in_place: bool,
    dry_run: bool,
    keep_batchnorm_frozen: bool,
    optimizer_state: str,
    verify: bool,
    fmt: Format,
) -> None:
    """The shared core of freeze and unfreeze: read once, plan, write (unless --dry-run)."""
    from varctl import edit, formats, safe_write, views
    from varctl.errors import UsageError
    from varctl.render import render

    if output and in_place:
        raise UsageError("give either -o/--output or --in-place, not both")
    if not (output or in_place or dry_run):
        raise UsageError(
            f"{action} needs -o OUT or --in-place (or --dry-run to preview)",
            hint=f"varctl {action} {model} --pattern '...' -o edited.keras",
        )
    request = edit.EditRequest(
        action=action, trainable=trainable, patterns=tuple(pattern or ()), regex=regex,
        all_layers=all_layers, first=first, upto=upto, within=within,
        keep_batchnorm_frozen=keep_batchnorm_frozen, optimizer_state=optimizer_state,
    )  # fmt: skip
    target = model if in_place else output
    folder_input = os.path.isdir(model)  # a model folder or keras-hub preset: written as a folder
    if target and not dry_run and not folder_input:
        safe_write.check_target(target)  # a device, FIFO or directory: refused before any work
    verified: list[str] = []
    with contextlib.nullcontext() if dry_run else safe_write.locked(model, shared=not in_place) as guard:
        plan = edit.plan(formats.read_named(model, for_edit=True), request)
        if verify and not dry_run:  # refused before any write (a preset is not loaded by load_model)
            getattr(formats.editor(plan.parsed), "check_verify", lambda parsed: None)(plan.parsed)
        if guard is not None and target:
            held = guard

            def check(tmp: str) -> None:  # runs on the finished temp file, before the rename
                held.check_unchanged()
                if verify:
                    verified.append(edit.verify_plan(plan, tmp, shown_as=target))

            edit.apply(plan, target, check=check)
    for note in plan.notes:
        out.message("note", note)
    render([views.plan_report(plan, action=action, output=None if dry_run else target, dry_run=dry_run)], fmt)
    if not dry_run:
        if plan.changes:
            out.message("info", f"wrote {target}")
        else:  # never claim a change that was not made
            same = f"; {target} is an unchanged copy" if target != model else ""
            out.message("info", f"nothing to change{same}")
    for line in verified:
        out.message("info", line)


@handle_errors
def freeze(
    model: ModelArg,
    pattern: EditPatternOpt = None,
    regex: RegexOpt = False,
    all_layers: AllOpt = False,
    first: FirstOpt = None,
    upto: UptoOpt = None,
    within: WithinOpt = None,
    output: OutputOpt = None,
    in_place: InPlaceOpt = False,
    dry_run: DryRunOpt = False,
    optimizer_state: OptStateOpt = "remap",
    verify: VerifyOpt = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Freeze layers (and everything inside them) and re-save.  Example: varctl freeze m.keras -p 'dense_*' -o frozen.keras"""
    _edit(
        action="freeze",
        trainable=False,
        model=model,
        pattern=pattern,
        regex=regex,
        all_layers=all_layers,
        first=first,
        upto=upto,
        within=within,
        output=output,
        in_place=in_place,
        dry_run=dry_run,
        keep_batchnorm_frozen=False,
        optimizer_state=optimizer_state,
        verify=verify,
        fmt=fmt,
    )


@handle_errors
def unfreeze(
    model: ModelArg,
    pattern: EditPatternOpt = None,
    regex: RegexOpt = False,
    all_layers: AllOpt = False,
    first: FirstOpt = None,
    upto: UptoOpt = None,
    within: WithinOpt = None,
    output: OutputOpt = None,
    in_place: InPlaceOpt = False,
    dry_run: DryRunOpt = False,
    keep_batchnorm_frozen: KeepBnOpt = False,
    optimizer_state: OptStateOpt = "remap",
    verify: VerifyOpt = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Make layers trainable (and their enclosing models) and re-save.  Example: varctl unfreeze tl.keras -p 'block_16*' --in-place"""
    _edit(
        action="unfreeze",
        trainable=True,
        model=model,
        pattern=pattern,
        regex=regex,
        all_layers=all_layers,
        first=first,
        upto=upto,
        within=within,
        output=output,
        in_place=in_place,
        dry_run=dry_run,
        keep_batchnorm_frozen=keep_batchnorm_frozen,
        optimizer_state=optimizer_state,
        verify=verify,
        fmt=fmt,
    )
