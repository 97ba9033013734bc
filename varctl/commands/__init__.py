"""The commands: plain functions, one module per family, registered on the app by varctl.cli.

Their options are declared with the Typer aliases of `_options` (named in annotations only); what
they share at run time lives in `_run`; `_argv` runs a plain command line without Typer. No
module here imports `varctl.cli`.
"""
