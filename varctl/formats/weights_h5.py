"""Reader for weights-only HDF5 files (`model.save_weights("m.weights.h5")`): no architecture inside.

Without the model's config, Keras 3 files (`layers/<group>/vars/<i>`) give HDF5 paths, shapes and
dtypes but no variable names, and the order Keras saved them in cannot be rebuilt exactly (groups
are listed in natural order: `dense_2` before `dense_10`). Legacy weights files (Keras 2's
`save_weights("m.h5")`: `layer_names` + `weight_names` attributes) do record names. Neither records
trainable flags, so `trainable` is None (unknown).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from varctl.errors import UnreadableModel, UnsafeFile
from varctl.formats import _h5safe, _manifest
from varctl.formats._layout import (
    KERAS_VERSION,
    LAYER_NAMES,
    LAYERS,
    MODEL_CONFIG,
    NOT_MODEL_STATE,
    VARS,
    WEIGHT_NAMES,
    name_key,
    weight_dataset,
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
    variables, layers, keras_version, note = _manifest.with_fallback(
        lambda h5s: _read(h5s, path), "the HDF5 file"
    )
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


def _read(h5s: Any, path: str) -> tuple[list[Variable], list[Layer], str | None, str]:
    """The whole metadata read with one backend (`hdf5meta.h5safe` or `_h5safe`)."""
    with _manifest.open_hdf5(h5s, path) as h5:
        if h5s.list_attr(h5, LAYER_NAMES) is not None:
            variables, layers = _legacy(h5s, h5)
            note = (
                "weights-only file (legacy layout): it stores variable names but no architecture and "
                "no trainable flags; list the saved model (.keras) for those"
            )
            keras_version = h5s.str_attr(h5, KERAS_VERSION)
        else:
            walker = _Walker(h5s)
            walker.walk(h5, "")
            variables, layers = walker.variables, walker.layers
            note = (
                "weights-only file: variable names (kernel, bias, ...) and trainable flags are not stored "
                "in it, only HDF5 paths, shapes and dtypes; list the saved model (.keras) for names, or "
                "load these weights into the model (model.load_weights) and save that"
            )
            keras_version = None
    return variables, layers, keras_version, note


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


def _variable(h5s: Any, path: str, layer: str, name: str, ds: Any) -> Variable:
    shape, dtype, itemsize = h5s.dataset_meta(ds)
    return Variable(
        path=path,
        layer=layer,
        name=name,
        shape=shape,
        dtype=dtype,
        cause=Cause.UNKNOWN,
        detail=UNKNOWN_DETAIL,
        storage=ds.name,
        itemsize=itemsize,
    )


class _Walker:
    """Keras 3 layout: a group's own `vars`, then its `layers` list, then attribute groups."""

    def __init__(self, h5s: Any) -> None:
        self.h5s = h5s
        self.budget = h5s.Budget()
        self.variables: list[Variable] = []
        self.layers: list[Layer] = []

    def walk(self, group: Any, prefix: str, depth: int = 0) -> None:
        h5s = self.h5s
        if depth > h5s.MAX_DEPTH:
            raise UnsafeFile("HDF5 groups nested too deeply (refused)")
        names = h5s.member_names(group, self.budget)
        if VARS in names and (vars_group := h5s.get_group(group, VARS)) is not None:
            keys = h5s.member_names(vars_group, self.budget)
            for k in sorted(keys, key=h5s.natural_key):
                ds = h5s.get_dataset(vars_group, k)
                if ds is not None:
                    vpath = f"{prefix}vars/{k}"
                    self.variables.append(_variable(h5s, vpath, prefix.rstrip("/"), f"vars/{k}", ds))
        skip = {"vars"} | (NOT_MODEL_STATE if not prefix else set())
        subs = [n for n in names if n not in skip]
        ordered = (["layers"] if "layers" in subs else []) + sorted(
            (n for n in subs if n != "layers"), key=name_key
        )
        for attr in ordered:
            sub = h5s.get_group(group, attr)
            if sub is None:
                continue
            if attr == "layers":
                for child in sorted(h5s.member_names(sub, self.budget), key=h5s.natural_key):
                    child_group = h5s.get_group(sub, child)
                    if child_group is not None:
                        self._layer(child_group, f"{prefix}layers/{child}", prefix, depth)
            else:
                self._layer(sub, f"{prefix}{attr}", prefix, depth)

    def _layer(self, group: Any, path: str, parent_prefix: str, depth: int) -> None:
        # Named after the group, not the layer name some releases record on `vars`: patterns
        # match path components, and these paths are the file's own.
        self.layers.append(
            Layer(
                path=path,
                name=path.rsplit("/", 1)[-1],
                class_name=NOT_STORED,
                flag=True,
                config_flag=None,
                editable=False,
                depth=depth,
                parent=parent_prefix.rstrip("/") or None,
                known=False,
            )
        )
        self.walk(group, path + "/", depth + 1)


def _legacy(h5s: Any, h5: Any) -> tuple[list[Variable], list[Layer]]:
    budget = h5s.Budget()
    variables: list[Variable] = []
    layers: list[Layer] = []
    layer_names = h5s.list_attr(h5, LAYER_NAMES) or []
    budget.spend(len(layer_names))
    for lname in layer_names:
        group = h5s.get_group(h5, lname)
        if group is None:
            raise UnreadableModel(f"weights file has no group for layer '{lname}'")
        layers.append(Layer(lname, lname, NOT_STORED, True, None, False, 0, None, known=False))
        names = h5s.list_attr(group, WEIGHT_NAMES) or []
        budget.spend(len(names))
        for wname in names:
            ds = weight_dataset(group, wname, h5s)
            if ds is None:
                raise UnreadableModel(f"weights file lists weight '{wname}' but has no such dataset")
            clean = wname.split(":")[0]  # Keras 2 appends `:0`
            # Keras 2 writes `dense/kernel`; Keras 3's legacy writer the full `model/dense/kernel`.
            if clean.startswith(lname + "/"):
                vpath = clean
            elif f"/{lname}/" in clean:
                vpath = lname + "/" + clean.split(f"/{lname}/", 1)[1]
            else:
                vpath = f"{lname}/{clean}"
            layer, _, vname = vpath.rpartition("/")
            variables.append(_variable(h5s, vpath, layer, vname, ds))
    return variables, layers
