"""The commands: plain functions, one module per family, registered on the app by varctl.cli.

Shared options and helpers live in `_options` (below the commands); no module here imports `varctl.cli`.
"""
