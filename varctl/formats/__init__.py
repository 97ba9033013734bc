"""The one door to the input formats: identify an input by its bytes (formats/identify.py), then
hand it to its format module, each of which speaks the same small protocol:

- `read(target, source, ...) -> Parsed`: one pass over the file (static formats in the sandbox);
- `interpret(config, manifest, source) -> ModelInfo`: pure, for config formats (.keras, .h5): the
  editor re-runs it on an edited config instead of reading the file again;
- `open_values(path)`: the HDF5 group the variables' `storage` paths start from (value commands);
- `write(parsed, rewrite, tmp)`: for editable formats (.keras, .h5); model folders and keras-hub
  presets (formats/folder.py) write their whole output folder (`write_folder`).

Read-only formats besides: weights-only files, sharded weights (formats/sharded.py), keras-hub
LoRA adapters (formats/lora.py), SavedModels, checkpoints.

`--load` (LoadOptions) sends .keras and .h5 models to `loaded` (Keras itself) instead.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from varctl.errors import InternalError, UnreadableModel, UnsupportedFormat, UsageError, VarctlError
from varctl.formats.identify import DESCRIPTION, SUPPORTED, describe, identify, sniff
from varctl.formats.parsed import Parsed
from varctl.model import ModelFormat, ModelInfo

if TYPE_CHECKING:
    import h5py

    from varctl.formats.loaded import LoadOptions
    from varctl.formats.rewrite import Rewrite

__all__ = [
    "SUPPORTED",
    "LoadOptions",
    "Parsed",
    "Rewrite",
    "describe",
    "editor",
    "identify",
    "interpret",
    "open_model",
    "open_values",
    "read_model",
    "require_editable",
    "sniff",
    "write",
]

EDITABLE = (ModelFormat.KERAS, ModelFormat.H5, ModelFormat.FOLDER, ModelFormat.PRESET)
LOADABLE = (ModelFormat.KERAS, ModelFormat.H5)  # what --load hands to Keras (formats/loaded.py)
# `--config FILE` (the model's architecture) names the variables of these (weights only)
TAKES_CONFIG = ("weights", "sharded", "folder", "preset")


def __getattr__(name: str) -> Any:
    """`LoadOptions` and `Rewrite` on first use: formats/loaded.py imports what only --load
    needs, formats/rewrite.py is for edits."""
    if name == "LoadOptions":
        from varctl.formats.loaded import LoadOptions

        return LoadOptions
    if name == "Rewrite":
        from varctl.formats.rewrite import Rewrite

        return Rewrite
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read_named(
    path: str,
    *,
    load: LoadOptions | None = None,
    for_edit: bool = False,
    config: Any = None,
    step: int | None = None,
) -> Parsed:
    """read_model() with the input's name in front of any error, as the CLI and the API say it:
    "cannot open 'm.keras': ...", and a bug while reading it an InternalError naming it (exit 70)."""
    try:
        return read_model(path, load=load, for_edit=for_edit, config=config, step=step)
    except UnreadableModel as e:
        raise type(e)(f"cannot open '{path}': {e.message}", hint=e.hint) from e
    except (VarctlError, KeyboardInterrupt, MemoryError, BrokenPipeError):
        raise
    except Exception as e:
        raise InternalError(f"internal error while reading '{path}': {type(e).__name__}: {e}") from e


def read_config_file(path: str, named_as: str) -> Any:
    """The architecture a `--config FILE` holds (config.json, model.to_json(), .keras, preset),
    read in the sandbox; errors start with `named_as 'FILE'`."""
    from varctl.formats import _sandbox, hub_files

    try:
        return _sandbox.call(hub_files.config_from, path, label=f"'{path}'")
    except UnreadableModel as e:
        raise type(e)(f"{named_as} '{path}': {e.message}", hint=e.hint) from e


def open_model(
    path: str, *, load: LoadOptions | None = None, config: Any = None, step: int | None = None
) -> ModelInfo:
    """Read a saved model's variables (read_model(path).info)."""
    return read_model(path, load=load, config=config, step=step).info


def read_model(
    path: str,
    *,
    load: LoadOptions | None = None,
    for_edit: bool = False,
    config: Any = None,
    step: int | None = None,
) -> Parsed:
    """Read a saved model once.

    Args:
        path: any supported input; the format is taken from the bytes, not the name.
        load: load .keras/.h5 models with Keras (exact names for custom layers) instead of reading
            them statically; TensorFlow is imported only then, and for SavedModels and checkpoints.
        for_edit: keep the raw config and manifest (and scan the optimizer slots) for an editor.
        config: the model's architecture (`list --config FILE`) for a weights-only file or sharded
            weights (names and flags as in the full model), or instead of a folder's own.
        step: the step of an Orbax checkpoint folder (default: the latest); a usage error for
            any other input.

    Returns:
        Parsed, whose ModelInfo has every saved variable, in Keras's save order where the format
        has one.

    Raises:
        UnreadableModel: missing, unreadable, corrupt, unsafe or unsupported input.
        UsageError: `load` given for an input that is not a .keras or .h5 model.
    """
    from varctl.formats import _sandbox

    global _reads
    _reads += 1
    if _reads == 2:  # more than one input in this process (many files, diff, the Python API)
        preload()
    if load is not None and config is not None:
        raise UsageError("give either --load or --config, not both")
    if load is not None:
        kind, target = _sandbox.call(identify, path)
        if kind not in LOADABLE:
            raise UsageError(
                f"--load loads .keras and .h5 models; '{path}' is {DESCRIPTION[kind]}",
                hint="list it without --load",
            )
        from varctl.formats import loaded

        return Parsed(loaded.read(target, path, kind, load), target)
    # The HDF5 C library parses the file in a child process: a crash or a hang there is one
    # clean error here. TensorFlow formats are only identified there and read here (TF is never
    # forked into).
    found = _sandbox.call(_read_static, path, for_edit, config, step)
    if isinstance(found, Parsed):
        return found
    kind, target = found
    if config is not None:
        _no_config(kind)
    if kind == "savedmodel":
        from varctl.formats import savedmodel

        return savedmodel.read(target, path)
    from varctl.formats import checkpoint

    return checkpoint.read(target, path)


def interpret(parsed: Parsed, config: Any) -> ModelInfo:
    """What `config` (an edited copy of parsed.config) gives over the same weights, without the file."""
    if parsed.config is None or parsed.manifest is None:
        raise RuntimeError("interpret() needs a Parsed read with for_edit=True")
    module = _module(parsed.format)
    info: ModelInfo = module.interpret(config, parsed.manifest, parsed.info.source)
    return info


def write(parsed: Parsed, rewrite: Rewrite, tmp: str) -> None:
    """Write the edited model to `tmp` (see safe_write.atomic_output for the rest)."""
    _module(parsed.format).write(parsed, rewrite, tmp)


def editor(parsed: Parsed) -> Any:
    """The format module of an editable input: its `compiled`, `saved_slots`, `optimizer_entry`,
    `check_rewrite` (the writer's refusals, made while planning) and what Keras does with an
    uncompiled output (`UNCOMPILED_OUTPUT`, `WARNS_WHEN_UNCOMPILED`, `REMAPS_OPTIMIZER`)."""
    require_editable(parsed.info)
    return _module(parsed.format)


@contextlib.contextmanager
def open_values(info: ModelInfo) -> Iterator[h5py.Group]:
    """The HDF5 group each variable's `storage` path starts from, open for value reads.

    Raises:
        UnreadableModel: the file cannot be opened; UnsupportedFormat: a format without HDF5 values.
    """
    if info.format not in (ModelFormat.KERAS, ModelFormat.H5, ModelFormat.WEIGHTS):
        raise UnsupportedFormat(
            f"{info.source}: varctl cannot read the values of a '{info.format}' model yet",
            hint="values (stats, check --finite, diff --values) are read from .keras and .h5 files",
        )
    try:
        with _module(info.format).open_values(info.source) as root:
            yield root
    except UnreadableModel as e:
        raise UnreadableModel(f"cannot open '{info.source}': {e.message}", hint=e.hint) from None


def _module(fmt: ModelFormat) -> Any:
    from varctl.formats import folder, keras_zip, legacy_h5, weights_h5

    modules = {
        ModelFormat.KERAS: keras_zip,
        ModelFormat.H5: legacy_h5,
        ModelFormat.WEIGHTS: weights_h5,
        ModelFormat.FOLDER: folder,
        ModelFormat.PRESET: folder,
    }
    return modules[fmt]


def _no_config(kind: str) -> None:
    raise UsageError(
        f"--config names the variables of weights-only files, sharded weights and model folders; "
        f"this is {DESCRIPTION.get(kind, kind)}, which holds its own architecture",
        hint="list it without --config",
    )


_reads = 0  # read_model calls in this process


def preload() -> None:
    """Import every static reader now, so that each sandboxed child (forked from this process)
    does not import its own again: read_model does it from its second read on. The first input
    imports only its own reader, in its child: a `.keras` ~9 ms, every reader ~15 ms (best of 21)."""
    import codecs

    for codec in ("cp437", "ascii"):  # zipfile (member names) and h5py (ASCII attributes) use them
        codecs.lookup(codec)  # imported on first use: here, not in every sandboxed child
    from varctl.formats import (  # noqa: F401
        checkpoint,
        folder,
        hub,  # imported by keras_zip for a model that holds keras-hub objects
        keras_zip,
        legacy_h5,
        lora,
        orbax,
        quantization,  # imported by catalog on the first quantized or LoRA layer
        savedmodel,
        sharded,
        slot_inference,  # imported by the readers for unknown layers with saved slots
        weights_h5,
    )


def _read_static(
    path: str, for_edit: bool, config: Any = None, step: int | None = None
) -> Parsed | tuple[str, str]:
    """Runs in the sandbox: the Parsed of a static format, or (kind, target) for TensorFlow's."""
    try:
        with _open_regular(path) as fileobj:
            return _read_static_unguarded(path, fileobj, for_edit, config, step)
    except RecursionError:  # groups or configs nested thousands deep: not a model, a trap
        from varctl.errors import UnsafeFile

        raise UnsafeFile("nested too deeply (refused)") from None


@contextlib.contextmanager
def _open_regular(path: str) -> Iterator[IO[bytes] | None]:
    """`path` opened once for sniffing and reading, when it is a regular file we may read
    (anything else: None, and identify() says what is wrong with it)."""
    try:
        f = open(path, "rb") if os.path.isfile(path) else None  # noqa: SIM115 - closed below
    except OSError:
        f = None
    try:
        yield f
    finally:
        if f is not None:
            f.close()


def _read_static_unguarded(
    path: str, fileobj: IO[bytes] | None, for_edit: bool, config: Any = None, step: int | None = None
) -> Parsed | tuple[str, str]:
    kind, target = identify(path, fileobj)
    if step is not None and kind != "orbax":
        raise UsageError(
            f"--step picks a step of an Orbax checkpoint folder; this is {DESCRIPTION.get(kind, kind)}",
            hint="list it without --step",
        )
    if kind == "orbax":
        from varctl.formats import orbax

        return orbax.read(target, path, step)
    if config is not None and kind not in TAKES_CONFIG:
        _no_config(kind)
    if kind == "keras":
        from varctl.formats import keras_zip

        return keras_zip.read(target, path, fileobj if target == path else None, for_edit)
    if kind == "h5":
        from varctl.formats import legacy_h5

        return legacy_h5.read(target, path, for_edit)
    if kind == "weights":
        from varctl.formats import hub_files, weights_h5

        if config is not None:
            if weights_h5.classify(target) != "weights":
                raise UsageError("--config names the variables of Keras 3 weights files (.weights.h5)")
            return Parsed(hub_files.read_weights_with_config(target, path, config, fmt="weights"), target)
        return weights_h5.read(target, path)
    if kind in ("folder", "preset"):
        from varctl.formats import folder

        return folder.read(target, path, for_edit, config)
    if kind == "sharded":
        from varctl.formats import sharded

        return sharded.read(target, path, config)
    if kind == "lora":
        from varctl.formats import lora

        return lora.read(target, path)
    return kind, target


def require_editable(info: ModelInfo) -> None:
    """Refuse to edit an input varctl can only read (SavedModel, checkpoint, weights-only file).

    Raises:
        UnsupportedFormat (exit 3): with how to get a `.keras` file instead.
    """
    if info.format in EDITABLE:
        return
    hints = {
        "savedmodel": "a SavedModel is read-only: load the original Keras model (or rebuild it), "
        "then model.save('model.keras') and edit that",
        "checkpoint": "a checkpoint holds values, not layer flags: restore it into the Keras model "
        "(tf.train.Checkpoint(model=model).restore(...)), model.save('model.keras'), and edit that",
        "weights": "a weights-only file has no layer flags: model.load_weights(...) into the model, "
        "model.save('model.keras'), and edit that",
        "sharded": "sharded weights have no layer flags: model.load_weights(...) into the model, "
        "model.save('model.keras'), and edit that",
        "lora": "LoRA adapters have no layer flags: backbone.load_lora_weights(...) and save the model",
        "orbax": "an Orbax checkpoint is read-only here: keras.saving.load_model(folder), "
        "model.save('model.keras'), and edit that",
    }
    raise UnsupportedFormat(
        f"'{info.source}' is {DESCRIPTION.get(info.format, info.format)}, which varctl can list but "
        "not edit: freeze/unfreeze change .keras and .h5 models, model folders and keras-hub presets",
        hint=hints.get(info.format),
    )
