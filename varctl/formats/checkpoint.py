"""Reader for TensorFlow checkpoints (`tf.train.Checkpoint`: PREFIX.index + PREFIX.data-*-of-*).

Names, shapes and dtypes come from TensorFlow's checkpoint reader (imported lazily). An
object-based checkpoint also stores its object graph: varctl walks it from the root to list the
model's variables in the order their objects hold them, named by each variable's own name (Keras
writes `variable.path`), and leaves out what only the optimizer or the checkpoint's own
`save_counter` reaches. A checkpoint records no trainable flag: `trainable` is None (unknown).
"""

from __future__ import annotations

import os
import re
from typing import Any

from varctl.errors import UnreadableModel
from varctl.formats import generic
from varctl.formats._tf import import_tensorflow
from varctl.formats.parsed import Parsed
from varctl.model import Cause, Variable

# The last 8 bytes of a tensor-bundle index (a LevelDB-style table): kTableMagicNumber.
INDEX_MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")
_OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_DATA_FILE = re.compile(r"^(?P<prefix>.+)\.data-\d{5}-of-\d{5}$")
UNKNOWN_DETAIL = "a TF checkpoint records no trainable flags"


def is_index(path: str) -> bool:
    """Does `path` end like a tensor-bundle index file?"""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < 48:  # a table footer is 48 bytes
                return False
            f.seek(-8, os.SEEK_END)
            return f.read(8) == INDEX_MAGIC
    except OSError:
        return False


def prefix_of(path: str) -> str | None:
    """The checkpoint prefix for a path that is a prefix, its .index or one of its data files."""
    if path.endswith(".index") and is_index(path):
        return path[: -len(".index")]
    m = _DATA_FILE.match(path)
    if m and is_index(m["prefix"] + ".index"):
        return m["prefix"]
    if not os.path.exists(path) and is_index(path + ".index"):
        return path
    return None


def prefix_in_directory(directory: str) -> str | None:
    """The latest checkpoint of a directory, from TensorFlow's `checkpoint` state file."""
    state = os.path.join(directory, "checkpoint")
    if not os.path.isfile(state):
        return None
    return prefix_from_state(state)


def prefix_from_state(state: str) -> str | None:
    """`model_checkpoint_path: "ckpt-3"` in a `checkpoint` state file, resolved next to it."""
    try:
        with open(state, encoding="utf-8") as f:
            text = f.read(64 * 1024)
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', text, re.M)
    if not m:
        return None
    prefix = os.path.join(os.path.dirname(state), m[1])
    return prefix if is_index(prefix + ".index") else None


def read(prefix: str, source: str) -> Parsed:
    """List a TensorFlow checkpoint (needs TensorFlow)."""
    tf = import_tensorflow("reading a TensorFlow checkpoint")
    notes = [
        "a TF checkpoint records no trainable flags: trainable is unknown (and counted as "
        "non-trainable in the totals)"
    ]
    variables = list_variables(tf, prefix, notes)
    return Parsed(
        generic.info(
            source=source,
            fmt="checkpoint",
            name=os.path.basename(prefix),
            class_name="Checkpoint",
            variables=variables,
            warnings=notes,
        ),
        prefix,
    )


def list_variables(tf: Any, prefix: str, notes: list[str]) -> list[Variable]:
    """The checkpoint's variables, trainable unknown."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
    except Exception as e:  # tf raises NotFoundError/DataLossError/... with a long message
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnreadableModel(f"TensorFlow cannot read the checkpoint: {first[:300]}") from e
    if _OBJECT_GRAPH in shapes:
        entries = _object_based(reader, shapes, notes)
    else:  # a name-based (TF1 Saver) checkpoint: keys are the variable names
        entries = [(key, key) for key in sorted(shapes)]
    out = []
    for path, key in entries:
        dtype = dtypes[key]
        shape = tuple(int(d) for d in shapes[key])
        out.append(generic.variable(path, shape, dtype.name, dtype.size, Cause.UNKNOWN, UNKNOWN_DETAIL, key))
    return out


def _object_based(reader: Any, shapes: dict[str, Any], notes: list[str]) -> list[tuple[str, str]]:
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    try:
        graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH))
    except Exception as e:
        raise UnreadableModel(f"the checkpoint's object graph is corrupt ({e})") from e
    nodes = graph.nodes
    if not nodes:
        return [(k.removesuffix(_VALUE_SUFFIX), k) for k in sorted(shapes) if k != _OBJECT_GRAPH]
    # Depth first from the root, in child order, skipping the optimizer and the save counter:
    # a model variable is reached through the model even when the optimizer also holds it.
    found: list[tuple[str, str, str]] = []  # (full_name, object path, checkpoint key)
    seen: set[int] = set()
    stack = [
        (c.node_id, c.local_name)
        for c in reversed(nodes[0].children)
        if c.local_name not in generic.NOT_MODEL_STATE
    ]
    while stack:
        node_id, path = stack.pop()
        if node_id in seen or node_id >= len(nodes):
            continue
        seen.add(node_id)
        for attr in nodes[node_id].attributes:
            if attr.name == "VARIABLE_VALUE" and attr.checkpoint_key in shapes:
                found.append((attr.full_name, path, attr.checkpoint_key))
        for c in reversed(nodes[node_id].children):
            if c.local_name not in generic.NOT_MODEL_STATE:
                stack.append((c.node_id, f"{path}/{c.local_name}"))
    listed = {key for _, _, key in found}
    left_out = [
        k for k in shapes if k not in listed and k != _OBJECT_GRAPH and not k.startswith("save_counter/")
    ]
    if left_out:
        notes.append(generic.left_out_note(len(left_out)))
    chosen = generic.unique_paths([(full, obj) for full, obj, _ in found])
    return [(path, key) for path, (_, _, key) in zip(chosen, found, strict=True)]
