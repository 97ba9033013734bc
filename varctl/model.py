"""Plain data shared by readers, selectors, renderers and editors: Variable, Layer, ModelInfo."""

from __future__ import annotations

import math
from collections.abc import Collection
from enum import Enum
from operator import attrgetter
from typing import Any, ClassVar, NamedTuple, TypeVar

R = TypeVar("R", bound="Record")

# JSON schema id of `varctl list -f json`. Renaming or removing a key, or changing what a key or
# the order means, bumps it (docs/json.md). /2: variables in `model.weights` order, with `index`
# (the position in `model.weights`) and `cause`.
LIST_SCHEMA = "varctl.list/2"


class _Word(str, Enum):
    """A str enum that prints as its value (in f-strings and JSON alike)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


# The class shown for a layer whose class the input does not store (a sublayer held in an attribute
# of a custom layer or subclassed model, a weights-only file's groups): never a placeholder `?`.
NOT_STORED = "(not stored)"


class ModelFormat(_Word):
    """What kind of input a ModelInfo was read from."""

    KERAS = "keras"  # a .keras archive
    H5 = "h5"  # a legacy Keras .h5 model
    WEIGHTS = "weights"  # a weights-only file
    SAVEDMODEL = "savedmodel"  # a TensorFlow SavedModel
    CHECKPOINT = "checkpoint"  # a TensorFlow checkpoint
    FOLDER = "folder"  # a model folder: model.save(dir, zipped=False)
    PRESET = "preset"  # a keras-hub preset folder (save_to_preset)
    SHARDED = "sharded"  # sharded weights: *.weights.json + shards
    LORA = "lora"  # keras-hub LoRA adapter weights (.lora.h5)
    ORBAX = "orbax"  # an Orbax checkpoint folder (keras.callbacks.OrbaxCheckpoint)


class Cause(_Word):
    """Why a variable is (not) in `model.trainable_variables` after Keras loads the file."""

    TRAINABLE = "trainable"  # its own flag is true and the top model is not frozen
    MODEL = "model"  # the top model is frozen: Keras trains nothing
    LAYER = "layer"  # its layer's own flag is false after loading
    NATURE = "nature"  # created non-trainable (BatchNormalization statistics, add_weight(trainable=False))
    UNKNOWN = "unknown"  # the file does not say


class FrozenError(AttributeError):
    """A Record's field was assigned or deleted (as dataclasses.FrozenInstanceError)."""


class Record:
    """An immutable record: the fields its class annotates, in order (`_fields`), compared,
    hashed and shown by them; `replace(**changes)` for a changed copy; no assignment after
    __init__ (each class writes its own, filling __dict__).

    What @dataclass(frozen=True) gave Variable, Layer and ModelInfo, written once: importing
    dataclasses costs ~7 ms (it imports inspect, ast, dis and tokenize), and each frozen
    dataclass ~1 ms more to create (it compiles six methods), ~11 ms in all of every varctl
    command (a tenth of `varctl list` of NASNetMobile)."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = [
            k for k, v in cls.__dict__.get("__annotations__", {}).items() if not str(v).startswith("ClassVar")
        ]
        cls._fields = (*cls._fields, *(k for k in own if k not in cls._fields))

    def _init(self, values: dict[str, Any]) -> None:
        """Set the fields from `values`: an __init__'s `locals()`, its parameters the fields."""
        d = self.__dict__
        for name in self._fields:
            d[name] = values[name]

    def _values(self) -> tuple[Any, ...]:
        d = self.__dict__
        return tuple([d[name] for name in self._fields])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined, no-any-return]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={value!r}" for name, value in zip(self._fields, self._values(), strict=True)
        )
        return f"{type(self).__qualname__}({shown})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenError(f"cannot assign to field '{name}'")

    def __delattr__(self, name: str) -> None:
        raise FrozenError(f"cannot delete field '{name}'")

    def replace(self: R, **changes: Any) -> R:
        """A copy with `changes` (made by __init__, as dataclasses.replace makes it)."""
        unknown = changes.keys() - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        return type(self)(**{**dict(zip(self._fields, self._values(), strict=True)), **changes})


class Variable(Record):
    """One saved variable, named like Keras's layer hierarchy: `base/conv1/kernel`."""

    path: str  # enclosing layer names from the top model down (top name left out) + name
    layer: str  # path of the owning layer
    name: str  # `kernel`, or `vars/0` when the layer class is not known
    shape: tuple[int, ...]
    dtype: str
    cause: Cause  # why it is (not) trainable; `trainable` and `reason` derive from it
    detail: str | None  # MODEL/LAYER: the frozen model's or layer's name; NATURE/UNKNOWN: what is known
    storage: str  # HDF5 dataset path inside the weights file ("" : created by Keras on load)
    itemsize: int = 4
    quantization: str | None = None  # its layer's mode: int8, int4, float8, gptq, awq, lora, int8+lora
    logical_params: int | None = None  # packed int4: the weights it holds (params counts stored elements)

    # __dict__ filled in directly: a frozen dataclass's generated __init__ set each field through
    # object.__setattr__, and the 8,000 variables of layers_4000 took 13.6 ms to make, 6.3 ms so
    # (14.3 ms with Record._init(locals()), which the Records made a few at a time use).
    # Its parameters are the fields, in order (tests/test_fast_paths.py checks it).
    def __init__(
        self,
        path: str,
        layer: str,
        name: str,
        shape: tuple[int, ...],
        dtype: str,
        cause: Cause,
        detail: str | None,
        storage: str,
        itemsize: int = 4,
        quantization: str | None = None,
        logical_params: int | None = None,
    ) -> None:
        d = self.__dict__  # item by item: the instances keep sharing one key table
        d["path"] = path
        d["layer"] = layer
        d["name"] = name
        d["shape"] = shape
        d["dtype"] = dtype
        d["cause"] = cause
        d["detail"] = detail
        d["storage"] = storage
        d["itemsize"] = itemsize
        d["quantization"] = quantization
        d["logical_params"] = logical_params

    @property
    def trainable(self) -> bool | None:
        """Effective: in model.trainable_variables after Keras loads the file (None: unknown)."""
        if self.cause is Cause.UNKNOWN:
            return None
        return self.cause is Cause.TRAINABLE

    @property
    def reason(self) -> str | None:
        """Why it is not trainable, in words (None when trainable)."""
        return reason_text(self.cause, self.detail)

    @property
    def params(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.params * self.itemsize

    def to_dict(self) -> dict[str, Any]:
        record = self._row(None)
        del record["index"]
        return record

    def _row(self, index: int | None) -> dict[str, Any]:
        """The variable's row in `varctl list -f json`: to_dict() with `index` first (one dict per
        variable, built once, not merged from a second one)."""
        record = {
            "index": index,
            "path": self.path,
            "layer": self.layer,
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "params": self.params,
            "trainable": self.trainable,
            "cause": self.cause.value,
            "reason": self.reason,
        }
        if self.quantization:
            record["quantization"] = self.quantization
        if self.logical_params is not None:
            record["logical_params"] = self.logical_params
        return record


def reason_text(cause: Cause, detail: str | None) -> str | None:
    """The words shown for a cause (the `reason` column and JSON key)."""
    if cause is Cause.TRAINABLE:
        return None
    if cause is Cause.MODEL:
        return f"model `{detail}` is frozen"
    if cause is Cause.LAYER:
        return f"layer `{detail}` is frozen" if detail else "frozen by a layer"
    if cause is Cause.NATURE:
        return f"never trainable: {detail or 'created non-trainable'}"
    return f"unknown: {detail}" if detail else "unknown"


class Layer(Record):
    """One layer of the saved model (including nested models and sublayers without config)."""

    path: str  # `base/block_1/conv`; the top model is not a Layer
    name: str
    class_name: str
    flag: bool  # its own `trainable` flag as Keras holds it after loading the file
    config_flag: bool | None  # the flag written in the config (None: no config entry of its own)
    editable: bool  # has a config entry whose `trainable` varctl can change
    depth: int
    parent: str | None  # path of the enclosing layer (None at top level)
    known: bool = True  # varctl knows the variable names of this class
    pointer: tuple[str | int, ...] | None = None  # keys from the config root to its entry
    index: int | None = None  # position in its container's `layers` (model.layers order)
    attr: str | None = None  # for a sublayer held in an attribute: the attribute's name
    quantization: str | None = None  # int8, int4, float8, gptq, awq, lora, int8+lora (None: plain)

    # As Variable's: 4,000 layers took 7.6 ms to make with a dataclass's __init__, 3.5 ms so.
    def __init__(
        self,
        path: str,
        name: str,
        class_name: str,
        flag: bool,
        config_flag: bool | None,
        editable: bool,
        depth: int,
        parent: str | None,
        known: bool = True,
        pointer: tuple[str | int, ...] | None = None,
        index: int | None = None,
        attr: str | None = None,
        quantization: str | None = None,
    ) -> None:
        d = self.__dict__  # item by item: the instances keep sharing one key table
        d["path"] = path
        d["name"] = name
        d["class_name"] = class_name
        d["flag"] = flag
        d["config_flag"] = config_flag
        d["editable"] = editable
        d["depth"] = depth
        d["parent"] = parent
        d["known"] = known
        d["pointer"] = pointer
        d["index"] = index
        d["attr"] = attr
        d["quantization"] = quantization


class Risk(NamedTuple):  # not a frozen dataclass: the same record, ~0.4 ms less at import
    """Something in the saved config that refers to code (varctl never imports or runs it)."""

    kind: str  # "lambda": code stored in the file, or a layer that wraps code; "custom": from outside Keras
    where: str  # the layer's path, plus the config key for objects that are not layers
    what: str  # "Lambda layer", "layer class `mypkg>Reg`", "function `my_act` (module builtins)", ...

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "where": self.where, "what": self.what}


class ModelInfo(Record):
    """What a reader learned about one model file."""

    source: str  # the path as the user gave it
    format: ModelFormat
    keras_version: str | None
    name: str
    class_name: str
    trainable: bool  # the top model's effective flag
    layers: tuple[Layer, ...]
    variables: tuple[Variable, ...]
    warnings: tuple[str, ...] = ()
    risks: tuple[Risk, ...] = ()  # Lambda layers, custom classes (config formats only)
    details: tuple[str, ...] = ()  # header facts (keras-hub preset, tokenizer, ...)

    def __init__(
        self,
        source: str,
        format: ModelFormat,
        keras_version: str | None,
        name: str,
        class_name: str,
        trainable: bool,
        layers: tuple[Layer, ...],
        variables: tuple[Variable, ...],
        warnings: tuple[str, ...] = (),
        risks: tuple[Risk, ...] = (),
        details: tuple[str, ...] = (),
    ) -> None:
        self._init(locals())

    def totals(self, variables: tuple[Variable, ...] | list[Variable] | None = None) -> dict[str, int]:
        vs = self.variables if variables is None else variables
        params = trainable = unknown = nbytes = logical = 0
        packed = False
        for v in vs:  # one pass, `params` computed once per variable
            n = math.prod(v.shape)
            params += n
            nbytes += n * v.itemsize
            if v.cause is Cause.TRAINABLE:
                trainable += n
            elif v.cause is Cause.UNKNOWN:
                unknown += n
            if v.logical_params is not None:
                packed = True
            logical += v.logical_params or n
        return {
            "params": params,
            "trainable": trainable,
            "non_trainable": params - trainable,
            # variables whose trainable state the input does not record (custom layers,
            # checkpoints): counted apart in `unknown` (present only when non-zero; additive:
            # `non_trainable` keeps its list/2 meaning, params - trainable, and so includes them)
            **({"unknown": unknown} if unknown else {}),
            "bytes": nbytes,
            # packed int4 variables: the weights they hold, beside `params` (stored elements)
            **({"logical_params": logical} if packed else {}),
        }

    # How it shows itself in Python (varctl/api.py builds each view from the `list` report).
    def summary(self) -> str:
        """A few lines: file, format, Keras version, class and name, counts and totals, warnings."""
        from varctl.api import summary_text

        return summary_text(self)

    def _repr_html_(self) -> str:
        """Jupyter: a compact HTML table of the variables (escaped, no script)."""
        from varctl.api import html_table

        return html_table(self)

    def __rich__(self) -> Any:
        """rich (a terminal, `rich.print(info)`): the table `varctl list` draws."""
        from varctl.api import rich_renderable

        return rich_renderable(self)

    # Pickled (the sandbox's reader process sends it back), its variables and layers go as one
    # tuple per field: plain values, not an object each to reduce (layers_4000's 12,000 objects:
    # 1.45 -> 0.85 MB, pickle.dumps 18 -> 13 ms; rebuilding them costs what unpickling them did).
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key, kind in (("variables", Variable), ("layers", Layer)):
            if set(map(type, state[key])) <= {kind}:  # not subclasses: their own fields would be lost
                state[key + ":columns"] = _columns(state.pop(key), kind)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if type(state) is not dict:
            raise TypeError("ModelInfo state is not a dict")
        state = dict(state)
        for key, kind in (("variables", Variable), ("layers", Layer)):
            if key + ":columns" in state:
                state[key] = _rows(state.pop(key + ":columns"), kind)
        object.__setattr__(self, "__dict__", state)  # frozen: set as pickle sets a plain instance's

    def to_dict(self, variables: tuple[Variable, ...] | list[Variable] | None = None) -> dict[str, Any]:
        vs = self.variables if variables is None else variables
        # `index`: the row's position in the whole listing (= model.weights for the Keras formats),
        # kept when a selection (-p, --trainable) shows only some rows
        position = {id(v): i for i, v in enumerate(self.variables)}
        return {
            "schema": LIST_SCHEMA,
            "model": self.source,
            "format": self.format,
            "keras_version": self.keras_version,
            "variables": [v._row(position.get(id(v))) for v in vs],
            "totals": self.totals(vs),
            "warnings": list(self.warnings),
        }


def _columns(items: tuple[Any, ...], kind: type[Record]) -> tuple[tuple[Any, ...], ...]:
    """`items` (instances of the Record `kind`) as one tuple per field."""
    return tuple(zip(*map(attrgetter(*kind._fields), items), strict=True))


def _rows(columns: tuple[tuple[Any, ...], ...], kind: type[Record]) -> tuple[Any, ...]:
    """The instances `_columns` took apart, set as pickle sets them (no __init__: frozen)."""
    names = kind._fields
    if columns and len(columns) != len(names):  # () for no items
        raise ValueError(f"{len(columns)} columns for the {len(names)} fields of {kind.__name__}")
    made = []
    for values in zip(*columns, strict=True):
        item: Any = object.__new__(kind)
        item.__dict__.update(zip(names, values, strict=False))  # lengths checked above
        made.append(item)
    return tuple(made)


def within(layer_path: str, roots: Collection[str]) -> bool:
    """Is the layer at `layer_path` one of `roots` or inside one of them? (THE "is inside" rule:
    `base/conv` is inside `base`; `base_2` is not.) Pass a set for many roots: one lookup per level."""
    if not isinstance(roots, (set, frozenset, dict)):
        roots = set(roots)
    if layer_path in roots:
        return True
    cut = layer_path.find("/")
    while cut != -1:
        if layer_path[:cut] in roots:
            return True
        cut = layer_path.find("/", cut + 1)
    return False
