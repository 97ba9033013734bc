"""varctl: inspect, freeze and check the variables of saved Keras models.

The Python API (docs/python.md)::

    import varctl

    info = varctl.read("model.keras")
    plan = varctl.freeze("model.keras", "base", output="frozen.keras")
    assert varctl.check("frozen.keras", frozen="base").ok

`import varctl` imports nothing: each name below is imported on first use (PEP 562), so
`varctl --version` stays a bare Python start, and h5py, numpy, rich and TensorFlow are imported
only when a file is read.
"""

__version__ = "0.1.0"

# Not `from typing import TYPE_CHECKING`: importing typing would cost `varctl --version` ~3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from varctl.api import check, diff, freeze, read, stats, unfreeze
    from varctl.errors import (
        InternalError,
        OutputError,
        UnreadableModel,
        UnsafeFile,
        UnsupportedFormat,
        UsageError,
        VarctlError,
    )
    from varctl.model import Layer, ModelInfo, Variable

# name -> the module that defines it
_LAZY = {
    **dict.fromkeys(("check", "diff", "freeze", "read", "stats", "unfreeze"), "varctl.api"),
    **dict.fromkeys(
        (
            "InternalError",
            "OutputError",
            "UnreadableModel",
            "UnsafeFile",
            "UnsupportedFormat",
            "UsageError",
            "VarctlError",
        ),
        "varctl.errors",
    ),
    **dict.fromkeys(("Layer", "ModelInfo", "Variable"), "varctl.model"),
}

__all__ = [
    "InternalError",
    "Layer",
    "ModelInfo",
    "OutputError",
    "UnreadableModel",
    "UnsafeFile",
    "UnsupportedFormat",
    "UsageError",
    "Variable",
    "VarctlError",
    "__version__",
    "check",
    "diff",
    "freeze",
    "read",
    "stats",
    "unfreeze",
]


def __getattr__(name: str) -> "Any":
    import importlib

    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'varctl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
