"""`varctl list`: every variable (or layer) of one or more models."""

from __future__ import annotations

from typing import Annotated

import typer

from varctl.cli import (
    CustomObjectsOpt,
    FormatOpt,
    LoadOpt,
    PathsArg,
    PatternOpt,
    RegexOpt,
    UnsafeOpt,
    app,
    handle_errors,
    load_options,
)
from varctl.render import Format


@app.command("list")
@handle_errors
def list_(
    models: PathsArg,
    fmt: FormatOpt = Format.table,
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
    config_file: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="For weights-only files: the model's architecture (config.json, model.to_json() "
            "file, .keras, model folder or keras-hub preset) naming the variables and giving flags.",
        ),
    ] = None,
) -> None:
    """List variables with shape, dtype, params and effective trainable state.  Example: varctl list m.keras -f json"""
    from varctl import views
    from varctl.commands import run_each
    from varctl.select import Selector, filter_trainable

    selector = Selector(tuple(pattern or ()), regex)
    loading = load_options(load, custom_objects, unsafe)
    config = None
    if config_file is not None:
        from varctl.errors import UnreadableModel
        from varctl.formats import _sandbox, hub_files

        try:
            config = _sandbox.call(hub_files.config_from, config_file, label=f"'{config_file}'")
        except UnreadableModel as e:
            raise type(e)(f"--config '{config_file}': {e.message}", hint=e.hint) from e
    make = views.layers_report if by_layer else views.list_report
    schema = views.LAYERS_SCHEMA if by_layer else views.LIST_SCHEMA
    run_each(
        models,
        fmt,
        schema,
        lambda info: (make(info, filter_trainable(selector.variables(info), trainable)), 0),
        selector=selector,
        load=loading,
        config=config,
    )
