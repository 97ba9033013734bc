"""open_model(path): sniff what an input is by its bytes, then hand it to the reader for that format.

| kind       | recognised by                                              | reader        | TensorFlow |
|------------|------------------------------------------------------------|---------------|------------|
| keras      | a zip with config.json                                     | keras_zip     | no         |
| h5         | HDF5 with a `model_config` attribute                       | legacy_h5     | no         |
| weights    | HDF5 with `layers`/`vars` groups, or `layer_names` only    | weights_h5    | no         |
| savedmodel | a directory with saved_model.pb (or the .pb itself)        | savedmodel    | yes (lazy) |
| checkpoint | a tensor-bundle index (magic number at its end), its data  | checkpoint    | yes (lazy) |
|            | files, the prefix, a `checkpoint` state file or its folder |               |            |

`--load` (LoadOptions) sends .keras and .h5 models to `loaded` (Keras itself) instead.
Anything else is refused with what it looks like (ONNX, PyTorch, SafeTensors, ...).
"""

from __future__ import annotations

import os
import stat
import zipfile

from varctl.errors import UnreadableModel, UnsupportedFormat, UsageError
from varctl.formats.loaded import LoadOptions
from varctl.model import ModelInfo

__all__ = ["LoadOptions", "open_model", "require_editable", "identify", "SUPPORTED"]

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# HDF5 may sit after a user block of 512, 1024, 2048, ... bytes.
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)

SUPPORTED = (
    "Keras .keras archives, legacy Keras .h5 models, weights-only .weights.h5 files, "
    "TensorFlow SavedModel directories and TensorFlow checkpoints"
)
_HINT = f"varctl reads {SUPPORTED}"
EDITABLE = ("keras", "h5")
_DESCRIPTION = {
    "keras": "a Keras .keras archive",
    "h5": "a legacy Keras .h5 model",
    "weights": "a weights-only file",
    "savedmodel": "a TensorFlow SavedModel",
    "checkpoint": "a TensorFlow checkpoint",
    "folder": "a Keras model folder",
    "preset": "a keras-hub preset folder",
    "sharded": "sharded weights (an index and its shards)",
    "lora": "keras-hub LoRA adapter weights",
}


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise UnreadableModel("permission denied") from None
    except OSError as e:  # symlink loop, name too long, ...
        raise UnreadableModel(e.strerror or str(e)) from None


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(max(_HDF5_OFFSETS) + 8)
    except PermissionError:
        raise UnreadableModel("permission denied") from None
    except OSError as e:
        raise UnreadableModel(e.strerror or str(e)) from None


def sniff(path: str) -> str:
    """'zip' | 'hdf5' | 'unknown', from the file's first bytes, not its name."""
    head = _head(path)
    if head.startswith(_ZIP_MAGIC) or head.startswith(_EMPTY_ZIP_MAGIC):
        return "zip"
    if any(head[o : o + 8] == _HDF5_MAGIC for o in _HDF5_OFFSETS):
        return "hdf5"
    return "unknown"


def identify(path: str) -> tuple[str, str]:
    """(kind, target): what the input is, and the path its reader opens.

    Raises:
        UnreadableModel: missing or unreadable; UnsupportedFormat: a known kind varctl does not read.
    """
    from varctl.formats import checkpoint, savedmodel

    st = _stat(path)
    if st is None:
        if os.path.islink(path):
            raise UnreadableModel("broken symbolic link")
        prefix = checkpoint.prefix_of(path)
        if prefix is not None:
            return "checkpoint", prefix
        raise UnreadableModel("no such file")
    if stat.S_ISDIR(st.st_mode):
        if savedmodel.is_savedmodel(path):
            return "savedmodel", path
        prefix = checkpoint.prefix_in_directory(path)
        if prefix is not None:
            return "checkpoint", prefix
        from varctl.formats import hub_files

        if hub_files.is_model_folder(path):
            return ("preset" if hub_files.is_preset(path) else "folder"), path
        raise UnreadableModel("is a directory, not a model file (nor a SavedModel or checkpoint directory)")
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableModel("not a regular file (FIFO, device or socket)")
    if os.path.basename(path) == "saved_model.pb" and savedmodel.is_savedmodel(os.path.dirname(path) or "."):
        return "savedmodel", os.path.dirname(path) or "."
    kind = sniff(path)
    if kind == "zip":
        return _zip_kind(path), path
    if kind == "hdf5":
        from varctl.formats import weights_h5

        h5kind = weights_h5.classify(path)
        if h5kind == "h5":
            return "h5", path
        if h5kind in ("weights", "legacy_weights"):
            return "weights", path
        from varctl.formats import hub_files

        if hub_files.is_lora(path):
            return "lora", path
        raise UnsupportedFormat(
            "HDF5 file without 'model_config': not a saved Keras model, nor a Keras weights file",
            hint=_HINT,
        )
    prefix = checkpoint.prefix_of(path)
    if prefix is not None:
        return "checkpoint", prefix
    if _head(path).lstrip()[:1] == b"{":
        from varctl.formats import hub_files

        if hub_files.is_weights_index(hub_files.read_json(path)):
            return "sharded", path
    if checkpoint.is_index(path):
        raise UnreadableModel(
            "looks like a TensorFlow checkpoint index, but TensorFlow needs it named PREFIX.index",
            hint="rename it to end in .index, next to its PREFIX.data-* files",
        )
    if os.path.basename(path) == "checkpoint" and (state := checkpoint.prefix_from_state(path)):
        return "checkpoint", state
    raise UnsupportedFormat(f"not a model varctl reads: {describe(path)}", hint=_HINT)


def describe(path: str) -> str:
    """What an unsupported file looks like, from its bytes (the error message names it)."""
    head = _head(path)
    if not head:
        return "empty file"
    if head.startswith(b"GGUF"):
        return "looks like a GGUF model (llama.cpp)"
    if head.startswith(b"\x93NUMPY"):
        return "looks like a NumPy .npy array"
    if head[4:8] == b"TFL3":
        return "looks like a TensorFlow Lite model (.tflite)"
    if head[:2] == b"\x1f\x8b":
        return "a gzip-compressed file: decompress it first"
    if head[257:262] == b"ustar":
        return "a tar archive: extract it first"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "looks like a SafeTensors file"
    if head.startswith(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"):
        return "looks like a legacy PyTorch file (torch.save)"
    if head[:1] == b"\x80" and 2 <= head[1] <= 5:
        return "looks like a Python pickle (PyTorch? scikit-learn?); varctl never unpickles files"
    if _looks_like_onnx(path, head):
        return "looks like an ONNX model"
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        return _describe_json(path)
    if stripped.startswith(b"model_checkpoint_path"):
        return "a TensorFlow `checkpoint` state file whose checkpoint is missing"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:512]):
        return "looks like a text file"
    return "unrecognised binary file"


def _looks_like_onnx(path: str, head: bytes) -> bool:
    # ModelProto: field 1 (ir_version, a small varint), then another field (producer_name, graph,
    # ...). Protobuf has no magic number, so also ask for a producer's name or the extension.
    if (
        len(head) < 4
        or head[0] != 0x08
        or not 3 <= head[1] <= 12
        or head[2] not in b"\x12\x1a\x22\x28\x32\x3a\x42"
    ):
        return False
    lowered = head[:512].lower()
    return path.lower().endswith(".onnx") or any(p in lowered for p in (b"onnx", b"pytorch", b"keras2onnx"))


def _describe_json(path: str) -> str:
    from varctl.formats.keras_zip import parse_json

    try:
        with open(path, "rb") as f:
            data = f.read(8 * 1024 * 1024 + 1)
        doc = parse_json(data, os.path.basename(path)) if len(data) <= 8 * 1024 * 1024 else None
    except Exception:
        doc = None
    if isinstance(doc, dict):
        if "modelTopology" in doc or "weightsManifest" in doc:
            return "looks like a TensorFlow.js model (model.json)"
        if "weight_map" in doc:
            return "looks like the index of a sharded weights file (list the .h5 shards it names)"
        if "class_name" in doc and "config" in doc:
            return "looks like a Keras architecture (model.to_json()): it holds no variables"
        if "keras_version" in doc and "date_saved" in doc:
            return "looks like a .keras archive's metadata.json: list the .keras file itself"
    return "looks like a JSON file"


def _zip_kind(path: str) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile as e:
        raise UnreadableModel(f"corrupt zip archive ({e})") from None
    except NotImplementedError as e:  # zipfile: "zip file version 10.0", unknown compression, ...
        raise UnsupportedFormat(f"zip archive uses an unsupported feature ({e})") from None
    except OSError as e:
        raise UnreadableModel(e.strerror or str(e)) from None
    if "config.json" in names:
        return "keras"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        raise UnsupportedFormat("looks like a PyTorch checkpoint (torch.save zip)", hint=_HINT)
    if names and all(n.endswith(".npy") for n in names):
        raise UnsupportedFormat("looks like a NumPy .npz archive", hint=_HINT)
    if any(n == "saved_model.pb" or n.endswith("/saved_model.pb") for n in names):
        raise UnsupportedFormat(
            "a zipped TensorFlow SavedModel", hint="unzip it and pass the directory that holds saved_model.pb"
        )
    raise UnreadableModel("zip archive without config.json: not a Keras .keras file", hint=_HINT)


def open_model(path: str, *, config: dict | None = None, load: LoadOptions | None = None) -> ModelInfo:
    """Read a saved model's variables.

    Args:
        path: any supported input; the format is taken from the bytes, not the name.
        config: interpret this (edited) architecture instead of the file's own (.keras and .h5).
        load: load .keras/.h5 models with Keras (exact names for custom layers) instead of reading
            them statically; TensorFlow is imported only then, and for SavedModels and checkpoints.

    Returns:
        ModelInfo with every saved variable, in Keras's save order where the format has one.

    Raises:
        UnreadableModel: missing, unreadable, corrupt, unsafe or unsupported input.
        UsageError: `load` given for an input that is not a .keras or .h5 model.
    """
    from varctl.formats import _sandbox

    _preload()
    if load is not None:
        kind, target = _sandbox.call(identify, path)
        if kind not in EDITABLE:
            raise UsageError(
                f"--load loads .keras and .h5 models; '{path}' is {_DESCRIPTION[kind]}",
                hint="list it without --load",
            )
        from varctl.formats import loaded

        return loaded.read(target, path, kind, load)
    # The HDF5 C library parses the file in a child process: a crash or a hang there is one
    # clean error here. TensorFlow formats are only identified there and read here (TF is never
    # forked into).
    found = _sandbox.call(_read_static, path, config)
    if isinstance(found, ModelInfo):
        return found
    kind, target = found
    if kind == "savedmodel":
        from varctl.formats import savedmodel

        return savedmodel.read(target, path)
    from varctl.formats import checkpoint

    return checkpoint.read(target, path)


def _preload() -> None:
    """Import every static reader before forking, so each child does not import them again."""
    import codecs

    for codec in ("cp437", "ascii"):  # zipfile (member names) and h5py (ASCII attributes) use them
        codecs.lookup(codec)  # imported on first use: here, not in every sandboxed child
    from varctl import optimizer  # noqa: F401
    from varctl.formats import checkpoint, keras_zip, legacy_h5, savedmodel, weights_h5  # noqa: F401


def _read_static(path: str, config: dict | None) -> ModelInfo | tuple[str, str]:
    """Runs in the sandbox: the ModelInfo of a static format, or (kind, target) for TensorFlow's."""
    try:
        return _read_static_unguarded(path, config)
    except RecursionError:  # groups or configs nested thousands deep: not a model, a trap
        from varctl.errors import UnsafeFile

        raise UnsafeFile("nested too deeply (refused)") from None


def _read_static_unguarded(path: str, config: dict | None) -> ModelInfo | tuple[str, str]:
    kind, target = identify(path)
    if kind == "keras":
        from varctl.formats import keras_zip

        return keras_zip.read(target, path, config)
    if kind == "h5":
        from varctl.formats import legacy_h5

        return legacy_h5.read(target, path, config)
    if kind == "weights":
        from varctl.formats import hub_files, weights_h5

        if weights_h5.classify(target) == "weights":  # Keras 3 layout: real names from the file
            if config is not None:  # the model's config names the variables and gives the flags
                return hub_files.read_weights_with_config(target, path, config, sharded=False)
            return hub_files.read_weights(target, path)
        return weights_h5.read(target, path)
    if kind in ("folder", "preset", "sharded"):
        from varctl.formats import hub_files

        if kind == "sharded" and config is not None:
            return hub_files.read_weights_with_config(target, path, config, sharded=True)
        reader = {"folder": hub_files.read_folder, "preset": hub_files.read_preset}.get(kind)
        return reader(target, path, config) if reader else hub_files.read_sharded(target, path)
    if kind == "lora":
        from varctl.formats import hub_files

        return hub_files.read_lora(target, path)
    return kind, target


def require_editable(info: ModelInfo) -> None:
    """Refuse to edit an input varctl can only read (SavedModel, checkpoint, weights-only file).

    Raises:
        UnsupportedFormat (exit 3): with how to get a `.keras` file instead.
    """
    if info.format in EDITABLE or info.format in ("folder", "preset"):
        return
    hints = {
        "savedmodel": "a SavedModel is read-only: load the original Keras model (or rebuild it), "
        "then model.save('model.keras') and edit that",
        "checkpoint": "a checkpoint holds values, not layer flags: restore it into the Keras model "
        "(tf.train.Checkpoint(model=model).restore(...)), model.save('model.keras'), and edit that",
        "weights": "a weights-only file has no layer flags: model.load_weights(...) into the model, "
        "model.save('model.keras'), and edit that",
    }
    raise UnsupportedFormat(
        f"'{info.source}' is {_DESCRIPTION.get(info.format, info.format)}, which varctl can list but "
        "not edit: freeze/unfreeze change .keras and .h5 models",
        hint=hints.get(info.format),
    )
