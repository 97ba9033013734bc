"""ModelInfo for inputs without a Keras architecture (SavedModel, checkpoints): layers from paths."""

from __future__ import annotations

from collections.abc import Sequence

from varctl.formats import _layout
from varctl.model import NOT_STORED, Cause, Layer, ModelFormat, ModelInfo, Variable

# Objects that hold training state, not model variables: a tf.train.Checkpoint's `optimizer` and
# `save_counter`, and what a compiled Keras model tracks besides its layers (as the static reader).
NOT_MODEL_STATE = _layout.NOT_MODEL_STATE | {"save_counter"}


def left_out_note(n: int) -> str:
    """The warning for variables that only training state holds."""
    many = n != 1
    return (
        f"{n} variable{'s' if many else ''} held only by the optimizer (or by metrics) "
        f"{'are' if many else 'is'} not listed: {'they are' if many else 'it is'} not model variables"
    )


def layers_from_variables(variables: Sequence[Variable]) -> tuple[Layer, ...]:
    """One Layer per path prefix (`base`, `base/d1`, ...), in first-seen order, so that patterns,
    `--by-layer` and selection work on these inputs too."""
    seen: dict[str, Layer] = {}
    for v in variables:
        parts = v.layer.split("/") if v.layer else []
        for i in range(len(parts)):
            path = "/".join(parts[: i + 1])
            if path not in seen:
                seen[path] = Layer(
                    path=path,
                    name=parts[i],
                    class_name=NOT_STORED,
                    flag=True,
                    config_flag=None,
                    editable=False,
                    depth=i,
                    parent="/".join(parts[:i]) or None,
                    known=False,
                )
    return tuple(seen.values())


def unique_paths(named: Sequence[tuple[str, str]]) -> list[str]:
    """Pick each variable's path: its recorded name when that is set and unique, else its
    object path (`[(recorded_name, object_path), ...]`); TF names unnamed variables `Variable`."""
    counts: dict[str, int] = {}
    for name, _ in named:
        counts[name] = counts.get(name, 0) + 1
    return [name if name and counts[name] == 1 else obj for name, obj in named]


def info(
    *,
    source: str,
    fmt: str,
    name: str,
    class_name: str,
    variables: Sequence[Variable],
    warnings: Sequence[str],
    keras_version: str | None = None,
) -> ModelInfo:
    return ModelInfo(
        source=source,
        format=ModelFormat(fmt),
        keras_version=keras_version,
        name=name,
        class_name=class_name,
        trainable=True,
        layers=layers_from_variables(variables),
        variables=tuple(variables),
        warnings=tuple(dict.fromkeys(warnings)),
    )


def variable(
    path: str,
    shape: tuple[int, ...],
    dtype: str,
    itemsize: int,
    cause: Cause,
    detail: str | None,
    storage: str,
) -> Variable:
    layer, _, name = path.rpartition("/")
    return Variable(
        path=path,
        layer=layer,
        name=name,
        shape=shape,
        dtype=dtype,
        cause=cause,
        detail=detail,
        storage=storage,
        itemsize=itemsize,
    )
