"""Reader for TensorFlow SavedModel directories (`tf.saved_model.save`, `model.export`): read-only.

The variables are read from the SavedModel's object graph (`saved_model.pb`), parsed with
TensorFlow's own protobuf classes (imported lazily); no graph is loaded and no function runs. Each
variable records its name, shape, dtype and its own `trainable` flag. Keras's `model.export` also
records the model's `trainable_variables` list: the effective state. `tf.saved_model.save` does
not: a Keras layer frozen with `layer.trainable = False` leaves its variables' own flags true.
"""

from __future__ import annotations

import os
from typing import Any

from varctl.errors import UnreadableModel
from varctl.formats import generic
from varctl.formats._tf import import_tensorflow
from varctl.formats.parsed import Parsed
from varctl.model import Cause, Variable

_PB = "saved_model.pb"
_PBTXT = "saved_model.pbtxt"
MAX_PB_BYTES = 2 * 1024 * 1024 * 1024  # protobuf's own limit for one message


def is_savedmodel(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, _PB)) or os.path.isfile(os.path.join(directory, _PBTXT))


def read(directory: str, source: str) -> Parsed:
    """List the variables of a SavedModel directory (needs TensorFlow)."""
    tf = import_tensorflow("reading a TensorFlow SavedModel")
    saved = _parse(directory)
    if not saved.meta_graphs:
        raise UnreadableModel("SavedModel without a MetaGraph: nothing to list")
    meta = saved.meta_graphs[0]
    notes: list[str] = []
    if len(saved.meta_graphs) > 1:
        notes.append(f"SavedModel has {len(saved.meta_graphs)} MetaGraphs: the first one is listed")
    if meta.object_graph_def.nodes:
        variables = _from_object_graph(tf, meta.object_graph_def, notes)
    else:
        variables = _from_tf1_checkpoint(tf, directory, meta, notes)
    name = os.path.basename(os.path.normpath(directory)) or "savedmodel"
    return Parsed(
        generic.info(
            source=source,
            fmt="savedmodel",
            name=name,
            class_name="SavedModel",
            variables=variables,
            warnings=notes,
        ),
        directory,
    )


def _parse(directory: str) -> Any:
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    pb, pbtxt = os.path.join(directory, _PB), os.path.join(directory, _PBTXT)
    try:
        if os.path.isfile(pb):
            if os.path.getsize(pb) > MAX_PB_BYTES:
                raise UnreadableModel(f"'{_PB}' is larger than protobuf's 2 GB limit")
            with open(pb, "rb") as f:
                saved.ParseFromString(f.read())
        else:
            with open(pbtxt, encoding="utf-8") as f:
                text_format.Parse(f.read(), saved)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError, ValueError) as e:
        raise UnreadableModel(f"'{_PB}' is not a valid SavedModel protobuf ({e})") from e
    except OSError as e:
        raise UnreadableModel(f"cannot read the SavedModel: {e.strerror or e}") from e
    return saved


def _kind(node: Any) -> str:
    return str(node.WhichOneof("kind"))


def _from_object_graph(tf: Any, graph: Any, notes: list[str]) -> list[Variable]:
    nodes = graph.nodes
    root = {c.local_name: c.node_id for c in nodes[0].children}

    def listed(child: str) -> list[int] | None:
        if child not in root:
            return None
        ids = [c.node_id for c in nodes[root[child]].children]
        return ids if ids and all(_kind(nodes[i]) == "variable" for i in ids) else None

    exported = listed("variables")
    trainable_ids = set(listed("trainable_variables") or []) if exported is not None else None
    paths = _object_paths(nodes)
    if exported is not None:
        ids = exported
    else:
        ids = [i for i in paths if _kind(nodes[i]) == "variable"]
        left_out = sum(1 for i, n in enumerate(nodes) if _kind(n) == "variable" and i not in paths)
        if left_out:
            notes.append(generic.left_out_note(left_out))
    chosen = generic.unique_paths([(nodes[i].variable.name, paths.get(i, f"node_{i}")) for i in ids])
    out = []
    for i, path in zip(ids, chosen, strict=True):
        saved = nodes[i].variable
        shape = _shape(saved.shape, path, notes)
        dtype = tf.dtypes.as_dtype(saved.dtype)
        if trainable_ids is not None and i in trainable_ids:
            cause = Cause.TRAINABLE
        elif not saved.trainable:
            cause = Cause.NATURE
        elif trainable_ids is not None:  # created trainable, left out of the exported trainable set
            cause = Cause.LAYER
        else:
            cause = Cause.TRAINABLE
        out.append(generic.variable(path, shape, dtype.name, dtype.size, cause, None, f"node {i}"))
    if trainable_ids is None and out:
        notes.append(
            "this SavedModel records only each variable's own trainable flag: a Keras layer frozen with "
            "`layer.trainable = False` is not recorded by tf.saved_model.save (model.export records the "
            "model's trainable_variables; the .keras file records the layer flags)"
        )
    return out


def _object_paths(nodes: Any) -> dict[int, str]:
    """Node id -> the first object path that reaches it, depth first in child order (the dict's
    order), so that variables come out in the order their model holds them. Training state
    (optimizer, metrics) is not walked into."""
    paths: dict[int, str] = {}
    stack = [(0, "")]
    while stack:
        node_id, path = stack.pop()
        if node_id in paths or node_id >= len(nodes):
            continue
        paths[node_id] = path
        for c in reversed(nodes[node_id].children):
            if c.local_name not in generic.NOT_MODEL_STATE:
                stack.append((c.node_id, f"{path}/{c.local_name}" if path else c.local_name))
    return paths


def _shape(proto: Any, path: str, notes: list[str]) -> tuple[int, ...]:
    if proto.unknown_rank:
        notes.append(f"variable `{path}` has no recorded shape (listed as a scalar)")
        return ()
    dims = tuple(int(d.size) for d in proto.dim)
    if any(d < 0 for d in dims):
        notes.append(f"variable `{path}` has a dynamic shape {dims} (unknown sizes listed as 0)")
        return tuple(max(d, 0) for d in dims)
    return dims


def _from_tf1_checkpoint(tf: Any, directory: str, meta: Any, notes: list[str]) -> list[Variable]:
    """A TF1 SavedModel has no object graph: read names from its variables checkpoint."""
    from varctl.formats import checkpoint

    prefix = os.path.join(directory, "variables", "variables")
    if not os.path.isfile(prefix + ".index"):
        return []
    trainable_names = None
    if "trainable_variables" in meta.collection_def:
        from tensorflow.core.framework import variable_pb2

        trainable_names = set()
        for raw in meta.collection_def["trainable_variables"].bytes_list.value:
            vdef = variable_pb2.VariableDef()
            vdef.ParseFromString(raw)
            trainable_names.add(vdef.variable_name.split(":")[0])
    out = []
    for v in checkpoint.list_variables(tf, prefix, notes):
        if trainable_names is None:
            out.append(v)
            continue
        flag = v.path in trainable_names
        out.append(
            generic.variable(
                v.path,
                v.shape,
                v.dtype,
                v.itemsize,
                Cause.TRAINABLE if flag else Cause.LAYER,
                None,
                v.storage,
            )
        )
    return out
