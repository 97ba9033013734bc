"""Reader that loads a model with Keras (`varctl list --load`): exact names for custom layers' variables.

Keras and TensorFlow are imported here only, inside functions, so the static paths never pay for
them. The result is the same ModelInfo the static readers build: hierarchical paths (enclosing
layer names from the top model down via each layer's tracked sublayers, then `variable.name`), in
`model.weights` order, effective trainable = in `model.trainable_variables`. Loading also lets varctl see the
seed article's pitfall: raw `tf.Variable`s held by a layer, which Keras neither trains nor saves.

`verify` (freeze/unfreeze --verify) loads a written file the same way and checks that Keras trains
exactly the predicted variables, with no warning.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from varctl.errors import OutputError, UnreadableModel, UsageError
from varctl.formats import quantization
from varctl.formats._tf import import_keras
from varctl.model import Cause, Layer, ModelFormat, ModelInfo, Variable

UNSAFE_WARNING = (
    "--unsafe turns Keras safe_mode OFF: loading may run arbitrary code stored in the model file "
    "(Lambda layers, pickled functions). Use it only on files you trust."
)


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model through Keras (`--load`, `--custom-objects`, `--unsafe`)."""

    custom_objects: tuple[str, ...] = ()
    unsafe: bool = False


def import_custom_objects(files: Sequence[str]) -> dict[str, Any]:
    """Import each user module by path and return the classes and functions it defines, by name.

    Importing runs the module's `register_keras_serializable` decorators; the returned mapping also
    covers classes that are serializable but not registered (Keras then finds them by class name).
    """
    found: dict[str, Any] = {}
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise UsageError(f"--custom-objects: no such file '{file}'")
        key = str(path.resolve())
        if key not in _IMPORTED:  # once per process, however many models are listed
            _IMPORTED[key] = _import_file(file, path)
        found.update(_IMPORTED[key])
    return found


_IMPORTED: dict[str, dict[str, Any]] = {}


def _import_file(file: str, path: Path) -> dict[str, Any]:
    """Run one user module (by path, under its own name) and collect what it defines."""
    found: dict[str, Any] = {}
    name = path.stem if path.stem.isidentifier() else "varctl_custom_objects"
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) != str(path.resolve()):
        name = f"_varctl_custom_{len(sys.modules)}_{name}"
    spec = importlib.util.spec_from_file_location(name, path.resolve())
    if spec is None or spec.loader is None:
        raise UsageError(f"--custom-objects: cannot import '{file}' (not a Python module)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # so the module can import its siblings
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # a read-only tool leaves no __pycache__ next to user code
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise UsageError(f"--custom-objects: importing '{file}' failed: {type(e).__name__}: {e}") from e
    finally:
        sys.dont_write_bytecode = dont_write
        if folder in sys.path:
            sys.path.remove(folder)
    for attr, obj in vars(module).items():
        if getattr(obj, "__module__", None) == name and callable(obj) and not attr.startswith("_"):
            found[attr] = obj
    return found


@contextmanager
def _quiet_keras() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _load(keras: Any, path: str, options: LoadOptions, custom: dict[str, Any]) -> tuple[Any, list[str]]:
    with _quiet_keras() as caught:
        try:
            model = keras.saving.load_model(
                path, compile=False, safe_mode=not options.unsafe, custom_objects=custom or None
            )
        except Exception as e:
            raise _load_error(e) from e
    notes = []
    for w in caught:
        text = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
        if text and issubclass(w.category, UserWarning):
            notes.append(f"Keras: {text}")
    return model, notes


def _load_error(e: Exception) -> UnreadableModel:
    text = " ".join(str(e).split())
    innermost = text.rsplit("Exception encountered:", 1)[-1].strip()
    innermost = innermost.split(" Full object config:")[0].split(" config={")[0][:300]
    if m := re.search(r"Could not locate (class|function) '([^']+)'", text):
        return UnreadableModel(
            f"Keras does not know the {m[1]} `{m[2]}` used in the file",
            hint="pass the Python file that defines it: varctl list --load --custom-objects layers.py MODEL",
        )
    if "safe_mode" in text:
        return UnreadableModel(
            f"Keras refuses to load it in safe mode: {innermost}",
            hint="if you trust the file, add --unsafe (it runs code stored in the file)",
        )
    if "unexpected keyword argument" in text:
        return UnreadableModel(
            f"Keras cannot rebuild a layer from its config: {innermost}",
            hint="a custom layer's __init__ must accept **kwargs and pass them to super().__init__()",
        )
    return UnreadableModel(f"Keras cannot load it: {type(e).__name__}: {innermost}")


def read(path: str, source: str, kind: str, options: LoadOptions) -> ModelInfo:
    """Load `path` with Keras and describe it like the static readers do.

    Args:
        path: a `.keras` archive or legacy `.h5` model.
        source: the path as the user gave it.
        kind: "keras" or "h5" (from open_model's sniffing): the format reported.
        options: custom-object modules and safe mode.

    Raises:
        UnreadableModel: Keras (or TensorFlow) is missing, or Keras cannot load the file.
        UsageError: a --custom-objects module is missing or fails to import.
    """
    keras = import_keras("--load")
    custom = import_custom_objects(options.custom_objects)
    model, notes = _load(keras, path, options, custom)
    paths, owners, layers = _hierarchy(model)
    order = list(model.weights)  # every reader lists in model.weights order (docs/json.md)
    trainable = {id(v) for v in model.trainable_variables}
    variables = []
    for v in order:
        layer = owners.get(id(v))
        vpath = paths.get(id(v)) or str(getattr(v, "path", v.name))
        cause, detail = _effective(model, layer, v, trainable)
        variables.append(
            Variable(
                path=vpath,
                layer=vpath.rsplit("/", 1)[0] if "/" in vpath else "",
                name=str(v.name),
                shape=tuple(int(d) for d in v.shape),
                dtype=str(v.dtype),
                cause=cause,
                detail=detail,
                storage=str(getattr(v, "path", v.name)),
                itemsize=_itemsize(str(v.dtype)),
                quantization=quantization.loaded_label(layer) if layer is not None else None,
            )
        )
    warnings_ = [*untracked_variables(model, layers), *notes, *_unsaved(model, kind, variables)]
    if dead := quantization.loaded_dead_adapters(layers, trainable):
        warnings_.append(quantization.lora_warning(dead))
    return ModelInfo(
        source=source,
        format=ModelFormat(kind),
        keras_version=_saved_keras_version(path, kind),
        name=str(model.name),
        class_name=type(model).__name__,
        trainable=bool(model.trainable),
        layers=tuple(_layer_rows(model, layers)),
        variables=tuple(variables),
        warnings=tuple(dict.fromkeys(warnings_)),
    )


def _hierarchy(model: Any) -> tuple[dict[int, str], dict[int, Any], list[tuple[str, Any, Any]]]:
    """Variable paths, each variable's owning layer, and (path, layer, parent) for every sublayer."""
    paths: dict[int, str] = {}
    owners: dict[int, Any] = {}
    layers: list[tuple[str, Any, Any]] = []
    seen: set[int] = set()

    def walk(layer: Any, prefix: str, parent: Any) -> None:
        for v in list(layer._trainable_variables) + list(layer._non_trainable_variables):
            if id(v) not in paths:
                paths[id(v)] = prefix + str(v.name)
                owners[id(v)] = layer
        for sub in layer._layers:
            if id(sub) in seen:  # a shared layer is listed where Keras first meets it
                continue
            seen.add(id(sub))
            layers.append((prefix + str(sub.name), sub, layer))
            walk(sub, prefix + str(sub.name) + "/", layer)

    walk(model, "", None)
    return paths, owners, layers


class _Recorder(dict):
    """One `vars` entry of the recording store: remembers what Keras would write, writes nothing."""

    def __init__(self, log: list[Any]) -> None:
        super().__init__()
        self.log = log

    def __setitem__(self, key: str, value: Any) -> None:
        self.log.append(value)


def _save_order(model: Any, notes: list[str]) -> list[Any]:
    """The variables in the order Keras writes model.weights.h5 (saving_lib's own walk)."""
    try:
        from keras.src.saving import saving_lib

        class RecordingStore(saving_lib.H5IOStore):
            def __init__(self) -> None:  # deliberately opens no file
                self.log: list[Any] = []
                self.mode = "w"

            def __bool__(self) -> bool:
                return True

            def make(self, path: str, metadata: Any = None) -> _Recorder:
                return _Recorder(self.log)

        if any(
            getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None)
            for layer in model._flatten_layers()
        ):  # they save merged or re-ordered tensors, not their variables: list what Keras holds
            return list(model.weights)
        store = RecordingStore()
        saving_lib._save_state(
            model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set()
        )
    except Exception as e:  # a private API: if a Keras release changes it, degrade, and say so
        notes.append(f"cannot replay Keras's save order ({type(e).__name__}): listed in model.weights order")
        return list(model.weights)
    variables = [v for v in store.log if hasattr(v, "path") and hasattr(v, "shape")]
    if len(variables) != len(store.log):
        n = len(store.log) - len(variables)
        notes.append(
            f"{n} saved value{'s' if n != 1 else ''} that {'are' if n != 1 else 'is'} not a variable "
            "(a layer's custom save_own_variables) not listed"
        )
    return variables


def _unsaved(model: Any, kind: str, variables: list[Variable]) -> list[str]:
    """Weights a `.keras` save does not write (a layer's custom save_own_variables skips them):
    listed like the others, and flagged, since loading leaves them as the layer's code made them."""
    if kind != "keras":
        return []
    replay: list[str] = []
    saved = _save_order(model, replay)
    if replay:  # the replay degraded, or saved values that are not variables: not certain
        return []
    written = {id(v) for v in saved}
    missing = [row.path for v, row in zip(model.weights, variables, strict=True) if id(v) not in written]
    if not missing:
        return []
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    names = ", ".join(f"`{p}`" for p in missing[:5]) + more
    return [
        f"weights not written when this model is saved: {names} (a layer's save_own_variables "
        "skips them): after loading they hold what the layer's code creates, not saved values"
    ]


def _legacy_order(model: Any) -> list[Any]:
    # Keras writes a legacy .h5 per top-level layer: trainable weights, then non-trainable ones.
    out: list[Any] = []
    seen: set[int] = set()
    for layer in model.layers:
        for v in list(layer.trainable_weights) + list(layer.non_trainable_weights):
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


def _effective(model: Any, layer: Any, v: Any, trainable: set[int]) -> tuple[Cause, str | None]:
    """Why Keras trains it or not, with the same causes as the static readers."""
    if id(v) in trainable:
        return Cause.TRAINABLE, None
    if not model.trainable:
        return Cause.MODEL, str(model.name)
    # created non-trainable, or frozen on its own while its layer is trainable (LoRA's kernel)
    if layer is not None and (
        not any(v is w for w in layer._trainable_variables) or (layer.trainable and not v.trainable)
    ):
        return Cause.NATURE, _nature(layer, v)
    return Cause.LAYER, _frozen_by(model, layer) or None


def _nature(layer: Any, v: Any) -> str | None:
    from varctl.formats.catalog import spec_for

    try:
        spec = spec_for(type(layer).__name__, layer.get_config())
    except Exception:  # a custom layer's get_config may fail; the nature is only a nicety
        return None
    if spec is None:
        return None
    return next((s.nature for s in spec.variables if s.name == v.name), None)


def _frozen_by(model: Any, layer: Any) -> str | None:
    """Path of the outermost frozen layer in the chain of frozen layers that holds `layer`."""
    chain: list[Any] = []

    def find(cur: Any, trail: list[Any]) -> bool:
        if cur is layer:
            chain.extend(trail)
            return True
        return any(find(sub, [*trail, sub]) for sub in cur._layers)

    if layer is None or not find(model, []):
        return None
    culprit = None
    for i in range(len(chain) - 1, -1, -1):
        if chain[i].trainable:
            break
        culprit = "/".join(str(c.name) for c in chain[: i + 1])
    return culprit


def _layer_rows(model: Any, layers: list[tuple[str, Any, Any]]) -> Iterator[Layer]:
    parents = {id(layer): path for path, layer, _ in layers}
    for path, layer, parent in layers:
        siblings = list(getattr(parent, "layers", []) or [])
        index = next((i for i, s in enumerate(siblings) if s is layer), None)
        yield Layer(
            path=path,
            name=str(layer.name),
            class_name=type(layer).__name__,
            flag=bool(layer.trainable),
            config_flag=None,
            editable=False,  # a loaded model is not edited through its config
            depth=path.count("/"),
            parent=parents.get(id(parent)),
            known=True,
            pointer=None,
            index=index,
            quantization=quantization.loaded_label(layer),
        )


def untracked_variables(model: Any, layers: list[tuple[str, Any, Any]]) -> list[str]:
    """The seed article's pitfall: variables a layer holds in attributes but Keras does not track.

    Keras 3 tracks only its own Variables (created with `add_weight`, or `keras.Variable`); a raw
    `tf.Variable` stored on a layer is in no weight list: never trained, never saved.
    """
    out = []
    for path, layer in [(str(model.name), model)] + [(p, layer) for p, layer, _ in layers]:
        tracked: set[int] = set()
        for v in layer.variables:
            tracked.add(id(v))
            inner = getattr(v, "_value", None)
            if inner is not None:
                tracked.add(id(inner))
        found: dict[int, tuple[str, Any]] = {}
        for attr, v in _variable_attributes(layer):
            if id(v) not in tracked and id(v) not in found:
                found[id(v)] = (attr, v)
        if not found:
            continue
        listed = ", ".join(f"`{attr}` {_shape_text(v)} {_dtype_text(v)}" for attr, v in found.values())
        attr0, v0 = next(iter(found.values()))
        example = f"self.{attr0}" if attr0.isidentifier() else "self.w"
        out.append(
            f"layer `{path}` ({type(layer).__name__}) holds variables that Keras does not track: "
            f"{listed}. Keras neither trains nor saves them: they are not in "
            "model.trainable_variables, and the file holds no values for them. Fix: create them "
            f"with self.add_weight, e.g. {example} = self.add_weight(shape={_shape_text(v0)}, "
            f"initializer=..., trainable={bool(getattr(v0, 'trainable', True))})"
        )
    return out


def _is_variable(obj: Any) -> bool:
    if type(obj).__name__ in ("int", "float", "str", "bool", "NoneType"):
        return False
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(obj, keras.Variable):
        return True
    tf = sys.modules.get("tensorflow")
    return bool(tf is not None and isinstance(obj, tf.Variable))


def _variable_attributes(layer: Any) -> Iterator[tuple[str, Any]]:
    for attr, value in vars(layer).items():
        if attr.startswith("_self_"):  # TensorFlow's own Trackable bookkeeping
            continue
        if _is_variable(value):
            yield attr, value
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if _is_variable(item):
                    yield f"{attr}[{i}]", item
        elif isinstance(value, dict):
            for key, item in value.items():
                if _is_variable(item):
                    yield f"{attr}[{key!r}]", item


def _shape_text(v: Any) -> str:
    try:
        dims = tuple(int(d) for d in v.shape)
    except (TypeError, ValueError):
        return "(?)"
    return "(" + ", ".join(map(str, dims)) + (",)" if len(dims) == 1 else ")")


def _dtype_text(v: Any) -> str:
    dtype = getattr(v, "dtype", "?")
    return str(getattr(dtype, "name", dtype))


def _itemsize(dtype: str) -> int:
    import numpy as np

    try:
        return int(np.dtype(dtype).itemsize)
    except TypeError:
        return 2 if dtype == "bfloat16" else 4


def _saved_keras_version(path: str, kind: str) -> str | None:
    """The Keras version recorded in the file (not the one that loaded it)."""
    try:
        if kind == "keras":
            import zipfile

            from varctl.formats.keras_zip import check_members, read_json_member

            with zipfile.ZipFile(path) as zf:
                members = check_members(zf)
                if "metadata.json" in members:
                    meta = read_json_member(zf, members["metadata.json"])
                    if isinstance(meta, dict) and meta.get("keras_version") is not None:
                        return str(meta["keras_version"])
            return None
        import h5py

        from varctl.formats import _h5safe

        with h5py.File(path, "r", locking=False) as h5:
            return _h5safe.str_attr(h5, "keras_version")
    except Exception:  # the model loaded; a missing version is not worth failing for
        return None


class VerificationFailed(OutputError):
    """Keras disagrees with the written file (exit 4: the output is not what was asked)."""


def verify(path: str, trainable: list[str], shown_as: str | None = None) -> str:
    """Load a written file with Keras and check it trains exactly the `trainable` variable paths.

    Returns a one-line confirmation; raises VerificationFailed otherwise (any UserWarning Keras
    gives while loading counts as a failure). Imports Keras (and its backend) lazily.
    """
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras
    except ImportError as e:
        raise UsageError(
            "--verify needs Keras with a backend", hint="pip install 'varctl[tensorflow]'"
        ) from e
    shown = shown_as or path
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = keras.saving.load_model(path)
        except Exception as e:  # noqa: BLE001 - any load failure is a failed verification
            raise VerificationFailed(f"Keras cannot load '{shown}': {e}") from e
    problems = [str(w.message).splitlines()[0] for w in caught if issubclass(w.category, UserWarning)]
    names, _, _ = _hierarchy(model)
    got = sorted(names.get(id(v), v.path) for v in model.trainable_variables)
    want = sorted(trainable)
    if got != want:
        extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
        problems.append(f"Keras trains {extra[:3]} not predicted, and not {missing[:3]}")
    if problems:
        raise VerificationFailed(
            f"verification of '{shown}' failed, nothing written: {'; '.join(problems)}",
            hint="--optimizer-state remap (the default) or drop avoids the optimizer warning",
        )
    return f"verified with Keras {keras.__version__}: {len(got)} trainable variables, no warnings"
