"""`varctl list`: every variable (or layer) of one or more models."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated

from varctl.commands._run import config_option, handle_errors, load_options, run_each
from varctl.render import Format

if TYPE_CHECKING:  # the declarations, for annotations only: varctl.cli resolves them
    import typer

    from varctl.commands._options import (
        ConfigOpt,
        CustomObjectsOpt,
        LoadOpt,
        PathsArg,
        PatternOpt,
        RegexOpt,
        StepOpt,
        UnsafeOpt,
    )


class ListFormat(str, Enum):  # Format plus `html`, which only `list` writes
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    html = "html"


@handle_errors
def list_(
    models: PathsArg,
    fmt: Annotated[
        ListFormat, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)
    ] = ListFormat.table,
    pattern: PatternOpt = None,
    regex: RegexOpt = False,
    trainable: Annotated[
        bool | None,
        typer.Option(
            "--trainable/--frozen", help="Keep only trainable (or only frozen) variables.", show_default=False
        ),
    ] = None,
    by_layer: Annotated[
        bool, typer.Option("--by-layer", "--tree", help="One row per layer, nested layers as a tree.")
    ] = False,
    load: LoadOpt = False,
    custom_objects: CustomObjectsOpt = None,
    unsafe: UnsafeOpt = False,
    config_file: ConfigOpt = None,
    step: StepOpt = None,
) -> None:
    """List variables with shape, dtype, params and effective trainable state.  Example: varctl list m.keras -f json"""
    from varctl import views
    from varctl.select import Selector, filter_trainable

    selector = Selector(tuple(pattern or ()), regex)
    loading = load_options(load, custom_objects, unsafe)
    config = config_option(config_file)
    if fmt is ListFormat.html:  # one page for every model: varctl/commands/view.py
        if config is not None or step is not None:
            from varctl.errors import UsageError

            raise UsageError(
                "--config and --step are not supported with -f html yet", hint="use -f table or -f json"
            )
        from varctl.commands.view import list_html

        return list_html(models, selector, trainable, loading)
    make = views.layers_report if by_layer else views.list_report
    schema = views.LAYERS_SCHEMA if by_layer else views.LIST_SCHEMA
    run_each(
        models,
        Format(fmt.value),
        schema,
        lambda info: (make(info, filter_trainable(selector.variables(info), trainable)), 0),
        selector=selector,
        load=loading,
        config=config,
        step=step,
    )
