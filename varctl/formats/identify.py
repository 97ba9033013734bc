"""What an input is, from its bytes (never its name): the kind of model and the path its reader
opens, or, for what varctl does not read, what it looks like (ONNX, PyTorch, SafeTensors, ...).

| kind       | recognised by                                              | reader        |
|------------|------------------------------------------------------------|---------------|
| keras      | a zip with config.json                                     | keras_zip     |
| h5         | HDF5 with a `model_config` attribute                       | legacy_h5     |
| weights    | HDF5 with `layers`/`vars` groups, or `layer_names` only    | weights_h5    |
| savedmodel | a directory with saved_model.pb (or the .pb itself)        | savedmodel    |
| checkpoint | a tensor-bundle index (magic number at its end), its data  | checkpoint    |
|            | files, the prefix, a `checkpoint` state file or its folder |               |
| folder     | a directory with config.json + model.weights.h5 (or .json) | folder        |
| preset     | the same + metadata.json naming keras_hub_version          | folder        |
| sharded    | a JSON index whose `weight_map` names `.h5` shards         | sharded       |
| lora       | HDF5 whose root holds only `lora` (keras-hub adapters)     | lora          |
| orbax      | a directory of numbered step folders with Orbax metadata   | orbax         |
|            | (`_CHECKPOINT_METADATA`, `pytree/_METADATA`), or one step  |               |
"""

from __future__ import annotations

import os
import stat
from typing import IO

from varctl.errors import UnreadableModel, UnsupportedFormat
from varctl.formats._layout import CONFIG_MEMBER

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# HDF5 may sit after a user block of 512, 1024, 2048, ... bytes.
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)

SUPPORTED = (
    "Keras .keras archives and model folders, keras-hub presets, legacy Keras .h5 models, "
    "weights-only .weights.h5 files (sharded too), keras-hub .lora.h5 files, Orbax checkpoint folders, "
    "TensorFlow SavedModel directories and TensorFlow checkpoints"
)
_HINT = f"varctl reads {SUPPORTED}"
DESCRIPTION = {
    "keras": "a Keras .keras archive",
    "h5": "a legacy Keras .h5 model",
    "weights": "a weights-only file",
    "savedmodel": "a TensorFlow SavedModel",
    "checkpoint": "a TensorFlow checkpoint",
    "folder": "a Keras model folder",
    "preset": "a keras-hub preset folder",
    "sharded": "sharded weights (an index and its shards)",
    "lora": "keras-hub LoRA adapter weights",
    "orbax": "an Orbax checkpoint folder",
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


def _head(path: str, fileobj: IO[bytes] | None = None) -> bytes:
    if fileobj is not None:
        return os.pread(fileobj.fileno(), max(_HDF5_OFFSETS) + 8, 0)
    try:
        with open(path, "rb") as f:
            return f.read(max(_HDF5_OFFSETS) + 8)
    except PermissionError:
        raise UnreadableModel("permission denied") from None
    except OSError as e:
        raise UnreadableModel(e.strerror or str(e)) from None


def sniff(path: str, fileobj: IO[bytes] | None = None) -> str:
    """'zip' | 'hdf5' | 'unknown', from the file's first bytes, not its name."""
    head = _head(path, fileobj)
    if head.startswith(_ZIP_MAGIC) or head.startswith(_EMPTY_ZIP_MAGIC):
        return "zip"
    if any(head[o : o + 8] == _HDF5_MAGIC for o in _HDF5_OFFSETS):
        return "hdf5"
    return "unknown"


def identify(path: str, fileobj: IO[bytes] | None = None) -> tuple[str, str]:  # noqa: C901 - one test per input kind, in order
    """(kind, target): what the input is, and the path its reader opens.

    `fileobj`: `path`, already open (it is sniffed through it, not opened again).

    Raises:
        UnreadableModel: missing or unreadable; UnsupportedFormat: a known kind varctl does not read.
    """
    # The TensorFlow formats' sniffers are imported where they are asked (a `.keras` needs neither).
    st = _stat(path)
    if st is None:
        from varctl.formats import checkpoint

        if os.path.islink(path):
            raise UnreadableModel("broken symbolic link")
        prefix = checkpoint.prefix_of(path)
        if prefix is not None:
            return "checkpoint", prefix
        raise UnreadableModel("no such file")
    if stat.S_ISDIR(st.st_mode):
        from varctl.formats import checkpoint, savedmodel

        if savedmodel.is_savedmodel(path):
            return "savedmodel", path
        prefix = checkpoint.prefix_in_directory(path)
        if prefix is not None:
            return "checkpoint", prefix
        from varctl.formats import folder

        if folder.is_model_folder(path):
            return ("preset" if folder.is_preset(path) else "folder"), path
        from varctl.formats import orbax

        if orbax.is_orbax_folder(path):
            return "orbax", path
        raise UnreadableModel(
            "is a directory, not a model file (nor a SavedModel, checkpoint or Orbax checkpoint directory)"
        )
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableModel("not a regular file (FIFO, device or socket)")
    if os.path.basename(path) == "saved_model.pb":
        from varctl.formats import savedmodel

        if savedmodel.is_savedmodel(os.path.dirname(path) or "."):
            return "savedmodel", os.path.dirname(path) or "."
    kind = sniff(path, fileobj)
    if kind == "zip":
        return _zip_kind(path, fileobj), path
    if kind == "hdf5":
        from varctl.formats import weights_h5

        h5kind = weights_h5.classify(path)
        if h5kind == "h5":
            return "h5", path
        if h5kind in ("weights", "legacy_weights"):
            return "weights", path
        from varctl.formats import lora

        if lora.is_lora(path):
            return "lora", path
        raise UnsupportedFormat(
            "HDF5 file without 'model_config': not a saved Keras model, nor a Keras weights file",
            hint=_HINT,
        )
    from varctl.formats import checkpoint

    prefix = checkpoint.prefix_of(path)
    if prefix is not None:
        return "checkpoint", prefix
    if _head(path, fileobj).lstrip()[:1] == b"{":
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
    from varctl.formats._layout import parse_json

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


def _zip_kind(path: str, fileobj: IO[bytes] | None = None) -> str:
    # Imported here, for zip archives only: with what it imports (bz2, lzma, shutil, threading) it
    # costs ~4 ms, which every `varctl` command paid, a .h5 file's too (median of 6 runs: 4.4 ms).
    import zipfile

    try:
        with zipfile.ZipFile(fileobj if fileobj is not None else path) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile as e:
        raise UnreadableModel(f"corrupt zip archive ({e})") from None
    except NotImplementedError as e:  # zipfile: "zip file version 10.0", unknown compression, ...
        raise UnsupportedFormat(f"zip archive uses an unsupported feature ({e})") from None
    except OSError as e:
        raise UnreadableModel(e.strerror or str(e)) from None
    if CONFIG_MEMBER in names:
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
