"""open_model(path): sniff what a file is by its bytes, then hand it to the reader for that format."""

from __future__ import annotations

import os
import stat
import zipfile

from varctl.errors import UnreadableModel, UnsupportedFormat
from varctl.model import ModelInfo

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# HDF5 may sit after a user block of 512, 1024, 2048, ... bytes.
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)

SUPPORTED = "Keras 3 .keras archives and legacy Keras .h5 models"


def _check_path(path: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise UnreadableModel("broken symbolic link") from None
        raise UnreadableModel("no such file") from None
    except PermissionError:
        raise UnreadableModel("permission denied") from None
    except OSError as e:  # symlink loop, name too long, ...
        raise UnreadableModel(e.strerror or str(e)) from None
    if stat.S_ISDIR(st.st_mode):
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            raise UnsupportedFormat(
                "a TensorFlow SavedModel directory is not supported yet",
                hint=f"varctl reads {SUPPORTED}",
            )
        raise UnreadableModel("is a directory, not a model file")
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableModel("not a regular file (FIFO, device or socket)")
    return st


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(max(_HDF5_OFFSETS) + 8)
    except PermissionError:
        raise UnreadableModel("permission denied") from None
    except OSError as e:
        raise UnreadableModel(e.strerror or str(e)) from None


def sniff(path: str) -> str:
    """'keras' | 'h5' | 'zip' (another zip) | 'unknown', from the file's bytes, not its name."""
    head = _head(path)
    if head.startswith(_ZIP_MAGIC) or head.startswith(_EMPTY_ZIP_MAGIC):
        return "zip"
    if any(head[o : o + 8] == _HDF5_MAGIC for o in _HDF5_OFFSETS):
        return "hdf5"
    return "unknown"


def _describe_unknown(path: str) -> str:
    head = _head(path)
    if not head:
        return "empty file"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "looks like a SafeTensors file"
    if head[:2] == b"\x80\x02" or head[:1] == b"\x80":
        return "looks like a Python pickle (PyTorch?) file"
    if head.lstrip()[:1] in (b"{", b"["):
        return "looks like a JSON file"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:512]):
        return "looks like a text file"
    return "unrecognised binary file"


def _zip_kind(path: str) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile as e:
        raise UnreadableModel(f"corrupt zip archive ({e})") from None
    except OSError as e:
        raise UnreadableModel(e.strerror or str(e)) from None
    if "config.json" in names:
        return "keras"
    if any(n.endswith("data.pkl") for n in names):
        raise UnsupportedFormat(f"looks like a PyTorch checkpoint; varctl reads {SUPPORTED}")
    raise UnreadableModel("zip archive without config.json: not a Keras .keras file")


def open_model(path: str, *, config: dict | None = None) -> ModelInfo:
    """Read a saved model's variables without loading it (no TensorFlow).

    Args:
        path: a `.keras` archive or legacy `.h5` file; the format is taken from the bytes.
        config: interpret this (edited) architecture instead of the file's own.

    Returns:
        ModelInfo with every saved variable, in Keras's save order.

    Raises:
        UnreadableModel: missing, unreadable, corrupt, unsafe or unsupported input.
    """
    _check_path(path)
    kind = sniff(path)
    if kind == "zip" and _zip_kind(path) == "keras":
        from varctl.formats import keras_zip

        return keras_zip.read(path, path, config)
    if kind == "hdf5":
        from varctl.formats import legacy_h5

        return legacy_h5.read(path, path, config)
    raise UnsupportedFormat(f"not a Keras model: {_describe_unknown(path)}", hint=f"varctl reads {SUPPORTED}")
