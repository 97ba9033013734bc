"""Reader for weights-only HDF5 files (`model.save_weights("m.weights.h5")`): no architecture inside.

Without the model's config, Keras 3 files (`layers/<group>/vars/<i>`) give layer names (each `vars`
group's `name` attribute), shapes and dtypes but no variable names (given where the layer class,
known from the group name, decides them: hub_files.weights_listing), and the order Keras saved them
in cannot be rebuilt exactly (groups are listed in natural order: `dense_2` before `dense_10`). Legacy weights files (Keras 2's
`save_weights("m.h5")`: `layer_names` + `weight_names` attributes) do record names. Neither records
trainable flags, so `trainable` is None (unknown).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from varctl.errors import UnreadableModel
from varctl.formats import _h5safe, _manifest
from varctl.formats._layout import (
    KERAS_VERSION,
    LAYER_NAMES,
    LAYERS,
    MODEL_CONFIG,
    NOT_MODEL_STATE,
    VARS,
    WEIGHT_NAMES,
)
from varctl.formats.parsed import Parsed
from varctl.model import NOT_STORED, Cause, Layer, ModelFormat, ModelInfo, Variable

if TYPE_CHECKING:
    import h5py

UNKNOWN_DETAIL = "a weights-only file records no trainable flags"


def classify(path: str) -> str:
    """'h5' (a legacy model), 'weights' (Keras 3 layout), 'legacy_weights', or 'unknown'."""
    return _manifest.with_fallback(lambda h5s: _classify(h5s, path), "the HDF5 file")


def _classify(h5s: Any, path: str) -> str:
    with _manifest.open_hdf5(h5s, path) as h5:
        if h5s.str_attr(h5, MODEL_CONFIG) is not None:
            return "h5"
        if h5s.list_attr(h5, LAYER_NAMES) is not None:
            return "legacy_weights"
        budget = h5s.Budget()
        names = set(h5s.member_names(h5, budget))
        if names & {LAYERS, VARS} and h5s.get_group(h5, LAYERS) is not None:
            return "weights"
        if VARS in names and h5s.get_group(h5, VARS) is not None:
            return "weights"
        return "unknown"


def read(path: str, source: str) -> Parsed:
    """List a weights-only file (either layout); names need the model, trainable is unknown."""
    found = _manifest.with_fallback(lambda h5s: _read(h5s, path), "the HDF5 file")
    if isinstance(
        found, _manifest.Group
    ):  # Keras 3 layout: layer names from the file, variable names from their class
        from varctl.formats import hub_files

        return Parsed(hub_files.weights_listing(found, source, "weights"), path)
    variables, layers, keras_version, note = found
    name = source.rstrip("/").rsplit("/", 1)[-1]
    info = ModelInfo(
        source=source,
        format=ModelFormat.WEIGHTS,
        keras_version=keras_version,
        name=name,
        class_name="weights",
        trainable=True,
        layers=tuple(layers),
        variables=tuple(variables),
        warnings=(note,),
    )
    return Parsed(info, path)


def _read(h5s: Any, path: str) -> _manifest.Group | tuple[list[Variable], list[Layer], str | None, str]:
    """The whole metadata read with one backend (`hdf5meta.h5safe` or `_h5safe`): the legacy
    layout's variables, or the Keras 3 layout's scanned manifest."""
    with _manifest.open_hdf5(h5s, path) as h5:
        if h5s.list_attr(h5, LAYER_NAMES) is None:
            return _manifest.scan(h5s, h5, h5s.Budget(), NOT_MODEL_STATE)
        variables, layers = _legacy(h5s, h5)
        note = (
            "weights-only file (legacy layout): it stores variable names but no architecture and "
            "no trainable flags; list the saved model (.keras) for those"
        )
        return variables, layers, h5s.str_attr(h5, KERAS_VERSION), note


def _open(path: str) -> h5py.File:
    try:
        return _h5safe.lib().File(path, "r", locking=False)
    except Exception as e:
        raise UnreadableModel(f"not a readable HDF5 file ({e})") from e


@contextmanager
def open_values(path: str) -> Iterator[h5py.Group]:
    """The file's root group, open for value reads (variables' `storage` is a path from it)."""
    with _open(path) as h5:
        yield h5


def _variable(path: str, layer: str, name: str, dataset: tuple[str, tuple[int, ...], str, int]) -> Variable:
    """A variable of a legacy weights file; `dataset`: its (path, shape, dtype name, item size)."""
    storage, shape, dtype, itemsize = dataset
    return Variable(
        path=path,
        layer=layer,
        name=name,
        shape=shape,
        dtype=dtype,
        cause=Cause.UNKNOWN,
        detail=UNKNOWN_DETAIL,
        storage=storage,
        itemsize=itemsize,
    )


def _legacy(h5s: Any, h5: Any) -> tuple[list[Variable], list[Layer]]:
    budget = h5s.Budget()
    variables: list[Variable] = []
    layers: list[Layer] = []
    layer_names = h5s.list_attr(h5, LAYER_NAMES) or []
    budget.spend(len(layer_names))
    for lname in layer_names:
        got = h5s.layer_weights(h5, lname, WEIGHT_NAMES, budget)
        if got is None:
            raise UnreadableModel(f"weights file has no group for layer '{lname}'")
        layers.append(Layer(lname, lname, NOT_STORED, True, None, False, 0, None, known=False))
        names, found = got
        if len(found) < len(names):
            raise UnreadableModel(f"weights file lists weight '{names[len(found)]}' but has no such dataset")
        for wname, dataset in found:
            clean = wname.split(":")[0]  # Keras 2 appends `:0`
            # Keras 2 writes `dense/kernel`; Keras 3's legacy writer the full `model/dense/kernel`.
            if clean.startswith(lname + "/"):
                vpath = clean
            elif f"/{lname}/" in clean:
                vpath = lname + "/" + clean.split(f"/{lname}/", 1)[1]
            else:
                vpath = f"{lname}/{clean}"
            layer, _, vname = vpath.rpartition("/")
            variables.append(_variable(vpath, layer, vname, dataset))
    return variables, layers
