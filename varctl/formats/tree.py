"""The layer tree of a saved Keras config, and what Keras makes of its `trainable` flags on load.

Both readers build this tree from the architecture (`config.json` or the legacy `model_config`
attribute), attach the variables they find in the weights, and call `Tree.finish()` to get a
ModelInfo. Effective trainability is decided here, once, for every format:

- nothing is trainable if the top model is frozen (a top Sequential's own flag is dropped on load);
- otherwise a variable is trainable iff its own flag is: the variable was created trainable
  (BatchNormalization's moving statistics never are) and its layer's flag is true after loading.
  Flags of enclosing containers do not gate their children.
"""

from __future__ import annotations

import functools
import re
from operator import attrgetter
from typing import Any

from varctl.errors import UnreadableModel
from varctl.formats.catalog import (
    CODE_LAYER_CLASSES,
    CONFIG,
    CONTAINER_CLASSES,
    INHERIT,
    KERAS_LAYER_CLASSES,
    TRACKING_ORDER,
    ChildSpec,
    LayerSpec,
    VarSpec,
    class_and_config,
    is_builtin,
    keras_major,
    keras_module,
    spec_for,
)
from varctl.model import NOT_STORED, Cause, Layer, ModelFormat, ModelInfo, Risk, Variable

Config = dict[str, Any]


@functools.lru_cache(maxsize=4096)  # per layer, twice, of a few class names: 3 regex subs each
def to_snake_case(name: str) -> str:
    """Keras's `naming.to_snake_case`: the weights file names groups with it (`PReLU` -> `p_re_lu`)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# Keys under which a layer's config holds other layers (containers, wrappers, RNN cells).
_LAYER_KEYS = frozenset({"layers", "layer", "backward_layer", "forward_layer", "cell", "cells"})
_MAX_SCAN = 5_000_000  # config nodes; json.loads already bounds the depth


def find_risks(top: Config) -> list[Risk]:
    """Every reference to code in a saved config: Lambda layers and serialized lambdas at any depth,
    layers that wrap code, and classes or functions from outside Keras (custom objects).

    Keras 3 records each object's `module` (`keras.*`, `keras.src.*`, and `tf_keras.*` in Keras 2
    archives are all Keras's own); legacy `.h5` configs do not, so there a layer class is
    Keras's own iff keras.layers exports it, and a registered name (`pkg>Name`) is always custom.
    Nothing is imported or evaluated: this only reads names.
    """
    # Most configs hold no risk: a quicker pass proves it (_plain_size), and only a config where
    # it finds an object that may be one is scanned in full, for the risks and their `where`.
    # First call in a fresh process (best of 9): 4,000 layers 46 -> 14 ms, NASNetMobile 7.8 -> 3.9.
    try:
        size = _plain_size(top, True, {})
    except RecursionError:  # nested past the recursion limit: the full scan is iterative
        size = -1
    if 0 <= size < _MAX_SCAN:
        return []
    return _scan_risks(top)


def _plain_size(obj: Any, is_layer: bool, repeats: dict[str, tuple[Any, int]]) -> int:
    """How many values `obj` holds at any depth (never fewer than _scan_risks counts), when no
    object in it can be a risk; -1 when one may be (a serialized lambda is one here: only the full
    scan knows whether it is inside a Lambda layer). `is_layer`: `obj` is a layer entry, or a list
    of them. Walks what _scan_risks walks, by the same exact-type rule.

    A layer config repeats the same objects in every layer (dtype policy, initializers,
    build_config, empty kwargs): `repeats` keeps, per config key, the last value found plain and
    its size, and an equal value (one `==`, in C) is not walked again. Equal JSON values hold the
    same objects: the verdict and the size are the same."""
    if type(obj) is list:
        size = len(obj)
        for v in obj:
            if type(v) in _NESTED:
                n = _plain_size(v, is_layer, repeats)
                if n < 0:
                    return -1
                size += n
        return size
    cls = obj.get("class_name")
    if cls == "__keras_tensor__" and (size := _tensor_size(obj)) >= 0:
        return size
    size = len(obj)
    object_keys: frozenset[str] = _NO_KEYS
    if type(cls) is str:
        if _risk_of(obj, cls, is_layer, False) is not None:
            return -1
        object_keys = _OBJECT_KEYS  # not walked, as in _scan_risks
        cfg = obj.get("config")
        if type(cfg) is dict:
            object_keys = _OBJECT_KEYS_AND_CONFIG
            size += len(cfg)
            for k, v in cfg.items():
                if type(v) in _NESTED:
                    n = _plain_size(v, True, repeats) if k in _LAYER_KEYS else _repeat_size(k, v, repeats)
                    if n < 0:
                        return -1
                    size += n
    for k, v in obj.items():
        if type(v) in _NESTED and k not in object_keys:
            n = _repeat_size(k, v, repeats)
            if n < 0:
                return -1
            size += n
    return size


def _tensor_size(obj: Config) -> int:
    """_plain_size of a Keras 3 tensor reference as Keras writes it, the config's most common object
    (a layer's inputs in `inbound_nodes`), in one step: `{"class_name": "__keras_tensor__",
    "config": {"shape": [...], "dtype": "...", "keras_history": [...]}}`, lists of scalars only.
    -1 when it is anything else (then walked as any object). NASNetMobile: 4.2 -> 3.8 ms."""
    cfg = obj.get("config")
    if len(obj) != 2 or type(cfg) is not dict or len(cfg) != 3 or type(cfg.get("dtype")) is not str:
        return -1
    shape, history = cfg.get("shape"), cfg.get("keras_history")
    if type(shape) is not list or type(history) is not list:
        return -1
    if not (_NESTED.isdisjoint(map(type, shape)) and _NESTED.isdisjoint(map(type, history))):
        return -1
    return 5 + len(shape) + len(history)


def _repeat_size(key: str, value: Any, repeats: dict[str, tuple[Any, int]]) -> int:
    """_plain_size of a value that is not a layer entry, held under `key`."""
    last = repeats.get(key)
    if last is not None and last[0] == value:
        return last[1]
    size = _plain_size(value, False, repeats)
    if size >= 0:
        repeats[key] = (value, size)
    return size


def _scan_risks(top: Config) -> list[Risk]:
    """find_risks, in full: every object visited, each risk with its `where`."""
    # Every dict and list of the config is visited (a custom class can hide at any depth), depth
    # first in config order. Only containers are pushed (scalar leaves are counted, not visited);
    # a risk's `where` is spelled out only when one is found, from linked tuples (`(name, parent)`)
    # of layer names and config keys; containers are told apart by exact type (the config comes
    # from json.loads). This took the scan of a 4,000-layer config (4.5 MB: 92,000 containers,
    # 184,000 scalars) from 117 ms to ~45 ms.
    risks: list[Risk] = []
    # (container, enclosing layer path, config keys below that layer, is a layer entry, in a Lambda)
    stack: list[tuple[Any, _Chain, _Chain, bool, bool]] = [(top, None, None, True, False)]
    pop, push = stack.pop, stack.append
    seen = 1  # config nodes, the top one included
    while stack and seen <= _MAX_SCAN:
        obj, path, keys, is_layer, in_lambda = pop()
        if type(obj) is list:
            seen += len(obj)
            for v in reversed(obj):
                if type(v) in _NESTED:
                    push((v, path, keys, is_layer, in_lambda))
            continue
        cls = obj.get("class_name")
        if type(cls) is not str:
            seen += len(obj)
            for k, v in reversed(obj.items()):
                if type(v) in _NESTED:
                    push((v, path, (k, keys), False, in_lambda))
            continue
        if is_layer and (path is not None or keys is not None or obj is not top):
            path, keys = (_layer_name(obj, cls), path), None
        found = _risk_of(obj, cls, is_layer, in_lambda)
        if found is not None:
            risks.append(Risk(found[0], _where(path, keys), found[1]))
        in_lambda = in_lambda or (is_layer and cls in CODE_LAYER_CLASSES)
        # `module`, `class_name` and `registered_name` are read above, not walked into; the
        # entries of a dict `config` are the object's own (its layers' keys add no config key)
        seen += len(obj) - 1 - ("module" in obj) - ("registered_name" in obj)
        for key, value in reversed(obj.items()):
            if type(value) not in _NESTED or key in _OBJECT_KEYS:
                continue
            if key == "config" and type(value) is dict:
                seen += len(value) - 1
                for k, v in reversed(value.items()):
                    if type(v) in _NESTED:  # the keys that hold layers are left out of `where`
                        layer = k in _LAYER_KEYS
                        push((v, path, keys if layer else (k, keys), layer, in_lambda))
            else:
                push((value, path, (key, keys), False, in_lambda))
    if seen > _MAX_SCAN:
        raise UnreadableModel("the model config is too large to scan (refused)")
    return risks


def _layer_name(entry: Config, cls: str) -> str:
    cfg = entry.get("config")
    name = cfg.get("name") if isinstance(cfg, dict) else None
    return str(name if name is not None else cls)


# A path kept as linked tuples, `(last part, the path before it)` (None: empty): a step is one
# small tuple, not a copy of the whole path.
_Chain = tuple[Any, "_Chain"] | None
_NESTED = frozenset({dict, list})
_NAME = attrgetter("name")
_OBJECT_KEYS = frozenset({"module", "class_name", "registered_name"})
_OBJECT_KEYS_AND_CONFIG = _OBJECT_KEYS | {"config"}
_NO_KEYS: frozenset[str] = frozenset()


def _unchain(chain: _Chain) -> list[Any]:
    parts = []
    while chain is not None:
        part, chain = chain
        parts.append(part)
    return parts[::-1]


def _where(path: _Chain, keys: _Chain) -> str:
    """`layer/sublayer: key/key`, or `(the model)` for the top model's own entry."""
    parts = ("/".join(map(str, _unchain(path))), "/".join(map(str, _unchain(keys))))
    return ": ".join(p for p in parts if p) or "(the model)"


def _risk_of(obj: Config, cls: str, is_layer: bool, in_lambda: bool) -> tuple[str, str] | None:
    """(kind, what) when the object with this `class_name` is a risk (None: Keras's own)."""
    if cls == "__lambda__":
        return None if in_lambda else ("lambda", "Python lambda")
    if cls.startswith("__") and cls.endswith("__"):
        return None  # Keras's own markers: __keras_tensor__, __tuple__, __numpy__, ...
    registered = obj.get("registered_name")
    if "module" in obj:  # Keras 3: the module is recorded
        module = obj.get("module")
        keras_own = keras_module(module) and registered in (None, cls) and ">" not in cls
    else:  # legacy .h5: no module; a registered custom class is saved as `pkg>Name`
        module = None
        keras_own = ">" not in cls and (not is_layer or cls in KERAS_LAYER_CLASSES)
    if keras_own:
        if is_layer and cls in CODE_LAYER_CLASSES:
            return "lambda", f"{cls} layer"
        return None
    if cls == "function":
        fn = obj.get("config")
        what = f"function `{fn if isinstance(fn, str) else '?'}`"
    else:
        what = f"{'layer class' if is_layer else 'class'} `{registered if isinstance(registered, str) and registered else cls}`"
    if isinstance(module, str) and module:
        what += f" (module `{module}`)"
    return "custom", what


def risk_warnings(risks: list[Risk] | tuple[Risk, ...]) -> list[str]:
    """The `list` warnings for risky content: one line per kind, naming up to five places."""
    out = []
    for kind, text in (
        ("lambda", "stores or wraps code (Keras runs it only with safe_mode off; varctl never runs it)"),
        ("custom", "uses classes or functions from outside Keras (loading it with Keras needs that "
         "code; varctl never imports it)"),
    ):  # fmt: skip
        found = [r for r in risks if r.kind == kind]
        if found:
            shown = ", ".join(f"{r.what} at `{r.where}`" for r in found[:5])
            more = f" and {len(found) - 5} more" if len(found) > 5 else ""
            out.append(f"the model {text}: {shown}{more}")
    return out


def _unknown_detail(node: Node) -> str:
    """The guess kept beside an UNKNOWN cause (information, never the value)."""
    if node.pointer is None and node.attr is not None:
        return "probably trainable: a sublayer the layer's code rebuilds (trainable unless it freezes it)"
    return "probably trainable: add_weight's default"


def _expected_shapes(cls: str, cfg: Config) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Variable shapes a few common layers' configs pin down: (number of dimensions, the sizes
    the config fixes, which are the last ones; the others can be anything)."""
    if cls == "Dense" and (units := _size(cfg, "units")) is not None:
        return {"kernel": (2, (units,)), "bias": (1, (units,))}
    if cls in ("Conv1D", "Conv2D", "Conv3D") and (filters := _size(cfg, "filters")) is not None:
        return {"kernel": (int(cls[4]) + 2, (filters,)), "bias": (1, (filters,))}
    if (
        cls == "Embedding"
        and (n := _size(cfg, "input_dim")) is not None
        and (d := _size(cfg, "output_dim")) is not None
    ):
        return {"embeddings": (2, (n, d))}
    return {}


def _size(cfg: Config, key: str) -> int | None:
    value = cfg.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_SHAPED = frozenset({"Dense", "Conv1D", "Conv2D", "Conv3D", "Embedding"})  # _expected_shapes knows them


def _flag(cfg: Config) -> bool | None:
    value = cfg.get("trainable")
    return None if value is None else bool(value)


class Node:
    """One layer in the tree. `pointer` locates its config entry, for editors.

    Compared by identity (comparing trees field by field made `in`/`index` quadratic). A plain
    class with slots and a `name` property (a rename drops cached paths): 4,000 nodes are built in
    ~2 ms, where a dataclass whose __setattr__ watched every field for renames took ~12 ms.
    """

    __slots__ = (
        "_name",
        "class_name",
        "config",
        "spec",
        "parent",
        "flag",
        "config_flag",
        "pointer",
        "attr",
        "list_children",
        "attr_children",
        "variables",
        "known",
        "_path",
        "_renamed",
    )

    def __init__(
        self,
        name: str,
        class_name: str,
        config: Config,
        spec: LayerSpec | None,
        parent: Node | None,
        flag: bool,  # own flag after Keras loads the file
        config_flag: bool | None,  # what the config says (None: no entry of its own)
        pointer: tuple[str | int, ...] | None,  # path of keys from the config root to this entry
        attr: str | None = None,  # set for sublayers held in an attribute
        known: bool = True,
    ) -> None:
        self._name = name
        self.class_name = class_name
        self.config = config
        self.spec = spec
        self.parent = parent
        self.flag = flag
        self.config_flag = config_flag
        self.pointer = pointer
        self.attr = attr
        self.list_children: list[Node] = []  # a container's `layers`, in order
        self.attr_children: dict[str, Node] = {}
        self.variables: list[Variable] = []
        self.known = known
        # The path is cached (a 4,000-layer model asked for it O(n^2) times); renaming a node
        # (readers name attribute sublayers from the file) drops the cache of its whole subtree,
        # and marks the root so that Tree.find() rebuilds its index.
        self._path: str | None = None
        self._renamed = False

    def __repr__(self) -> str:
        return f"Node({self.path or self.name!r}, {self.class_name!r})"

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        if value == self._name:
            return
        self._name = value
        for n in self.walk():
            n._path = None
        root = self
        while root.parent is not None:
            root = root.parent
        root._renamed = True

    @property
    def is_container(self) -> bool:
        return self.class_name in CONTAINER_CLASSES and self.spec is None

    @property
    def path(self) -> str:
        if self._path is None:
            if self.parent is None:
                self._path = ""
            else:
                above = self.parent.path
                self._path = f"{above}/{self._name}" if above else self._name
        return self._path

    @property
    def depth(self) -> int:
        d, node = 0, self.parent
        while node is not None and node.parent is not None:
            d, node = d + 1, node.parent
        return d

    def children(self) -> list[Node]:
        return self.list_children + list(self.attr_children.values())

    def walk(self) -> list[Node]:
        """This node and every node below it, depth first (iterative: no recursion limit)."""
        out: list[Node] = []
        stack = [self]
        while stack:
            node = stack.pop()
            out.append(node)
            if node.attr_children:
                stack.extend(reversed(node.attr_children.values()))
            stack.extend(reversed(node.list_children))
        return out

    def var_spec(self, name: str) -> VarSpec | None:
        if self.spec is not None:
            for v in self.spec.variables:
                if v.name == name:
                    return v
        return None


class Tree:
    """The layer tree of one model plus the variables its reader attached, in file order."""

    def __init__(self, top_entry: Config, keras_version: str | None = None) -> None:
        if not isinstance(top_entry, dict) or "class_name" not in top_entry:
            raise UnreadableModel("model config has no 'class_name': not a Keras model config")
        # Names, flags and order follow the Keras that wrote the file (catalog.keras_major).
        self.major = keras_major(keras_version)
        cls, cfg = class_and_config(top_entry)
        # Keras drops a Sequential's own flag on load (a frozen top Sequential trains the children
        # that are themselves trainable); a Functional or subclassed model keeps its flag.
        # Keras 2 (tf_keras) drops every model's own flag on load, the top one's included.
        dropped = cls == "Sequential" or (self.major == 2 and cls in CONTAINER_CLASSES)
        top_flag = True if dropped else (_flag(cfg) is not False)
        self.root = Node(
            name=str(cfg.get("name", "model")),
            class_name=cls,
            config=cfg,
            spec=self._spec(top_entry, cls, cfg),
            parent=None,
            flag=top_flag,
            config_flag=_flag(cfg),
            pointer=(),
            known=True,
        )
        self.order: list[Variable] = []
        self.warnings: list[str] = []
        self.risks = find_risks(top_entry)
        self._by_path: dict[str, Node] | None = None  # find()'s index, dropped on every change
        self._expand(self.root, top_entry)

    # -- building ------------------------------------------------------------------------------

    def _spec(self, entry: Config, cls: str, cfg: Config) -> LayerSpec | None:
        return spec_for(cls, cfg, builtin=is_builtin(entry), major=self.major)

    def _expand(self, node: Node, entry: Config) -> None:
        layers = node.config.get("layers")
        if node.class_name in CONTAINER_CLASSES and isinstance(layers, list):
            node.spec = None
            sequential = node.class_name == "Sequential"
            above = (*node.pointer, "config", "layers") if node.pointer is not None else None
            for i, child_entry in enumerate(layers):
                if not isinstance(child_entry, dict):
                    raise UnreadableModel(f"layer {i} of '{node.name}' is not a config object")
                cls, cfg = class_and_config(child_entry)
                # A Sequential's `layers` property (what Keras saves) leaves out its InputLayer.
                if sequential and cls == "InputLayer":
                    continue
                # A nested Sequential's own flag is dropped on load, like the top one's; Keras 2
                # drops every nested model's (tf_keras Functional.from_config ignores it).
                own = _flag(cfg)
                dropped = cls == "Sequential" or (self.major == 2 and cls in CONTAINER_CLASSES)
                child = Node(
                    name=str(cfg["name"]) if "name" in cfg else f"layer_{i}",
                    class_name=cls,
                    config=cfg,
                    spec=spec_for(cls, cfg, builtin=is_builtin(child_entry), major=self.major),
                    parent=node,
                    flag=True if dropped else own is not False,
                    config_flag=own,
                    pointer=(*above, i) if above is not None else None,
                )
                node.list_children.append(child)
                if child.spec is None or child.spec.children:  # else nothing below it
                    self._expand(child, child_entry)
            return
        if node.spec is None:
            node.known = False
            return
        for cs in node.spec.children:
            self._add_child(node, cs)

    def _add_child(self, node: Node, cs: ChildSpec) -> None:
        if cs.flag_from == CONFIG:
            own = _flag(cs.config)
            flag = own is not False
            pointer = (
                (*node.pointer, "config", cs.config_key)
                if node.pointer is not None and cs.config_key
                else None
            )
            config_flag = own
        else:
            flag = node.flag if cs.flag_from == INHERIT else True
            pointer, config_flag = None, None
        child = Node(
            name=cs.name,
            class_name=cs.class_name,
            config=cs.config,
            spec=spec_for(cs.class_name, cs.config, major=self.major),
            parent=node,
            flag=flag,
            config_flag=config_flag,
            pointer=pointer,
            attr=cs.attr,
        )
        node.attr_children[cs.attr] = child
        if child.spec is None:
            child.known = False
        else:
            for sub in child.spec.children:
                self._add_child(child, sub)

    def add_generic_child(self, parent: Node, attr: str, name: str) -> Node:
        """A sublayer found in the weights that the config and catalog do not describe."""
        child = Node(
            name=name,
            class_name=NOT_STORED,
            config={},
            spec=None,
            parent=parent,
            # Keras 3 rebuilds a sublayer without a config entry from the layer's code: its own
            # flag is the code's (trainable unless the code freezes it), whatever its parent's
            # flag; Keras 2 gates it by the parent's (_effective walks up for that).
            flag=True if self.major >= 3 else parent.flag,
            config_flag=None,
            pointer=None,
            attr=attr,
            known=False,
        )
        parent.attr_children[attr] = child
        self._by_path = None
        return child

    # -- variables -----------------------------------------------------------------------------

    def add_variable(
        self,
        node: Node,
        name: str,
        shape: tuple[int, ...],
        dtype: str,
        itemsize: int,
        storage: str,
        spec: VarSpec | None,
    ) -> None:
        """Attach one variable found in the weights; its trainability is decided in finish()."""
        layer = node.path
        # The provisional cause (resolved in finish()): how the variable was created. Without a
        # spec, the file does not record add_weight(trainable=...) of a custom layer.
        if spec is None:
            cause, detail = Cause.UNKNOWN, None
        elif spec.trainable:
            cause, detail = Cause.TRAINABLE, None
        else:
            cause, detail = Cause.NATURE, spec.nature
        path = f"{layer}/{name}" if layer else name
        var = Variable(path, layer, name, shape, dtype, cause, detail, storage, itemsize)
        node.variables.append(var)
        self.order.append(var)

    def find(self, path: str) -> Node | None:
        """The node at `path` ("" is the top model), from an index built once per tree change."""
        if self._by_path is None or self.root._renamed:
            self.root._renamed = False
            self._by_path = {}
            for node in self.root.walk():
                self._by_path.setdefault(node.path, node)
        return self._by_path.get(path)

    # -- resolution ----------------------------------------------------------------------------

    def _frozen_by(self, node: Node) -> str:
        """The outermost layer whose frozen flag covers `node` (for the reason text)."""
        culprit = node
        cur: Node | None = node
        while cur is not None and cur.parent is not None:
            if cur.config_flag is False:
                culprit = cur
            elif cur.config_flag is True:
                break
            cur = cur.parent
        return culprit.path or culprit.name

    def _effective(self, node: Node, var: Variable) -> tuple[Cause, str | None]:
        if not self.root.flag:
            return Cause.MODEL, self.root.name
        if var.cause is Cause.NATURE:  # provisional cause = how it was created
            return Cause.NATURE, var.detail
        # Keras 3 Layer._track_variable: a variable created while its layer is frozen is frozen,
        # whatever add_weight was told (the flag comes from the config, before build())
        if not node.flag:
            return Cause.LAYER, self._frozen_by(node)
        if self.major == 2:
            # Keras 2: a layer's trainable_weights is empty when it is frozen, so a frozen layer
            # freezes the sublayers it holds (a nested model's flag is dropped on load instead)
            cur = node.parent
            while cur is not None and cur.parent is not None and not cur.is_container:
                if not cur.flag:
                    return Cause.LAYER, self._frozen_by(cur)
                cur = cur.parent
        if var.cause is Cause.UNKNOWN:
            return Cause.UNKNOWN, _unknown_detail(node)
        return Cause.TRAINABLE, None

    def _inconsistencies(self, nodes: list[Node]) -> list[str]:
        """`nodes`: the tree in walk() order. Linear: each node's trained descendants are
        aggregated bottom-up (count, how many are fresh sublayers, the first six in walk order)."""
        out: list[str] = []
        if not self.root.flag:
            return out
        if self.root.config_flag is False and any(v.trainable for v in self.order):
            if self.root.class_name == "Sequential":
                out.append(
                    f"the top Sequential `{self.root.name}` is saved frozen, but Keras drops a "
                    "Sequential's own flag on load: its trainable layers are trained"
                )
            else:  # Keras 2 drops every model's flag
                out.append(
                    f"the top model `{self.root.name}` is saved frozen, but Keras 2 drops a model's "
                    "own flag on load: its trainable layers are trained"
                )
        if not any(n.config_flag is False for n in nodes if n.parent is not None):
            return out  # no layer is saved frozen: nothing below needs counting
        # below[id(n)]: trained nodes strictly below n = (count, fresh count, first six)
        below: dict[int, tuple[int, int, list[Node]]] = {}
        for node in reversed(nodes):  # children before parents
            count, fresh = 0, 0
            first: list[Node] = []
            for c in node.children():
                c_count, c_fresh, c_first = below[id(c)]
                if c.flag and any(v.trainable for v in c.variables):
                    c_count, c_first = c_count + 1, [c, *c_first]
                    c_fresh += c.attr is not None and c.pointer is None
                count, fresh = count + c_count, fresh + c_fresh
                if len(first) < 6:
                    first.extend(c_first[: 6 - len(first)])
            below[id(node)] = (count, fresh, first)
        for node in nodes:
            if node.parent is None or node.config_flag is not False:
                continue
            count, fresh, trained = below[id(node)]
            if not count:
                continue
            names = ", ".join(f"`{c.path}`" for c in trained[:5]) + (" ..." if count > 5 else "")
            if fresh and fresh == count:
                out.append(
                    f"layer `{node.path}` is frozen in the config, but Keras rebuilds its sublayers "
                    f"{names} trainable when it loads the file, so they are trained (this freeze "
                    "cannot be saved in the file)"
                )
            else:
                out.append(
                    f"layer `{node.path}` is frozen but contains trainable layers {names}: "
                    "Keras trains them after loading (a container's flag does not gate its children)"
                )
        return out

    def _unknown_warnings(self, nodes: list[Node]) -> list[str]:
        """One warning per cause of unknown names or flags: per unknown class (naming its layers),
        and one for the sublayers whose class the file does not store."""
        by_class: dict[str, list[Node]] = {}
        unstored: list[Node] = []
        for n in nodes:
            if n.known or not n.variables:
                continue
            if n.class_name == NOT_STORED:
                unstored.append(n)
            else:
                by_class.setdefault(n.class_name, []).append(n)
        out = []
        remedy = (
            "To settle it, load the model with Keras, giving the Python file that defines the "
            "classes (varctl list --load --custom-objects layers.py MODEL), or save the model "
            "compiled after training, with its optimizer state"
        )

        def places(found: list[Node]) -> str:
            shown = ", ".join(f"`{n.path}`" for n in found[:5])
            return shown + (f" and {len(found) - 5} more" if len(found) > 5 else "")

        def unknown_state(found: list[Node], why: str) -> str:
            count = sum(1 for n in found for v in n.variables if v.cause is Cause.UNKNOWN)
            if not count:
                return ""
            return f"; the trainable state of {count} variable{'s' if count != 1 else ''} is unknown{why}"

        def generic(found: list[Node]) -> bool:
            return any(v.name.startswith("vars/") for n in found for v in n.variables)

        for cls, found in sorted(by_class.items()):
            state = unknown_state(found, " (add_weight(trainable=...) is not recorded)")
            if not state and not generic(found):
                continue  # names from the file, flags from the config: nothing is missing
            names = " nor their names (listed as vars/0, ...)" if generic(found) else ""
            out.append(
                f"layer class `{cls}` is not known to varctl ({places(found)}): the file does not "
                f"store how its variables were created{names}{state}. {remedy}"
            )
        if unstored:
            names = " nor their variables' names (listed as vars/0, ...)" if generic(unstored) else ""
            state = unknown_state(unstored, " (the layer's code may freeze them)")
            out.append(
                f"sublayers held in attributes of custom layers or models ({places(unstored)}): the "
                f"file stores their variables but not their class{names}{state}. {remedy}"
            )
        return out

    def _shape_mismatches(self, nodes: list[Node]) -> list[str]:
        """Config and weights that cannot belong together (Keras would refuse to load them): the
        file's shapes are listed as they are, with a warning. Checked where the config fixes a size."""
        out = []
        for node in nodes:
            if not node.variables or node.class_name not in _SHAPED or not node.known:
                continue
            # quantized layers store packed or int8 shapes (formats/quantization.py knows them)
            if getattr(node.spec, "mode", None) is not None:
                continue
            want = _expected_shapes(node.class_name, node.config)
            for v in node.variables:
                expect = want.get(v.name)
                if expect is None:
                    continue
                ndim, fixed = expect  # compared as slices (no per-dimension Python loop)
                if len(v.shape) != ndim or tuple(v.shape[ndim - len(fixed) :]) != fixed:
                    shown = ("?",) * (ndim - len(fixed)) + fixed
                    out.append(
                        f"`{v.path}` has shape {v.shape} in the file, but the config of `{node.path}` "
                        f"({node.class_name}) implies {shown}: the config and the weights do not "
                        "belong together (Keras would refuse to load them)"
                    )
        return out

    # -- order -----------------------------------------------------------------------------------

    def _own_in_creation_order(self, node: Node) -> list[Variable]:
        """A layer's own variables in creation order: `_trainable_variables + _non_trainable_variables`
        (`.keras` stores them so; legacy `.h5` lists them by the trainable state at save time, so a
        known class is put back in its catalog order)."""
        if node.spec is None or not node.known or not node.variables:
            return node.variables
        specs = node.spec.variables
        if tuple(map(_NAME, node.variables)) == node.spec.names:
            return node.variables  # already in catalog order (as the .keras walker attaches them)
        rank = {v.name: i for i, v in enumerate(specs)}
        if any(v.name not in rank for v in node.variables):
            return node.variables
        return sorted(node.variables, key=lambda v: rank[v.name])

    @staticmethod
    def _tracked_children(node: Node) -> list[Node]:
        """Sublayers in the order the layer tracks them (`layer._layers`): a container's `layers`,
        then attribute sublayers in assignment order (TRACKING_ORDER), unknown ones last."""
        attrs = node.attr_children
        if not attrs:
            return node.list_children
        rank = {a: i for i, a in enumerate(TRACKING_ORDER.get(node.class_name, ()))}
        names = sorted(attrs, key=lambda a: rank.get(a, len(rank)))  # stable: file order for the rest
        return node.list_children + [attrs[a] for a in names]

    def _weights_order(self, attached: list[Variable]) -> list[Variable]:
        """`model.weights` order (Keras 3 `Layer.weights`): a layer's own variables, then each
        tracked sublayer's weights depth first, each variable once. Keras 2 differs (_keras2_weights)."""
        out: list[Variable] = []
        if self.major == 2:
            out = self._keras2_weights(self.root)
        else:
            stack = [self.root]
            while stack:
                node = stack.pop()
                if node.variables:
                    out.extend(self._own_in_creation_order(node))
                stack.extend(reversed(self._tracked_children(node)))
        seen = set(map(id, out))
        if len(seen) != len(attached) or not seen.issuperset(map(id, attached)):
            return attached  # not every variable hangs off the tree: keep the readers' order
        return out

    def _keras2_weights(self, node: Node) -> list[Variable]:
        """tf_keras `weights` of a layer: a model's is each layer's `variables` in `layers` order,
        then its own (training.Model._undeduplicated_weights); any other layer's is
        `trainable_weights + non_trainable_weights` (base_layer.Layer.weights), which gather the
        sublayers' and are gated by the layer's own flag."""
        if node.is_container:
            out = [v for c in self._tracked_children(node) for v in self._keras2_weights(c)]
            return out + self._own_in_creation_order(node)
        return self._keras2_part(node, True) + self._keras2_part(node, False)

    def _keras2_part(self, node: Node, trainable: bool) -> list[Variable]:
        """tf_keras `trainable_weights` (True) or `non_trainable_weights` (False) of a layer."""
        own = self._own_in_creation_order(node)
        made_trainable = [v for v in own if v.cause is not Cause.NATURE]  # `_trainable_weights`
        made_frozen = [v for v in own if v.cause is Cause.NATURE]
        children = self._tracked_children(node)
        if node.is_container:  # training.Model.trainable_weights / non_trainable_weights
            if trainable:
                if not node.flag:
                    return []
                return [v for c in children for v in self._keras2_part(c, True)] + made_trainable
            if node.flag:
                return [v for c in children for v in self._keras2_part(c, False)] + made_frozen
            return (
                [v for c in children for v in self._keras2_part(c, True)]
                + made_trainable
                + [v for c in children for v in self._keras2_part(c, False)]
                + made_frozen
            )
        if trainable:
            if not node.flag:
                return []
            return made_trainable + [v for c in children for v in self._keras2_part(c, True)]
        if node.flag:
            return made_frozen + [v for c in children for v in self._keras2_part(c, False)]
        return made_trainable + made_frozen + [v for c in children for v in self._keras2_weights(c)]

    def finish(self, *, source: str, fmt: str, keras_version: str | None) -> ModelInfo:
        """Resolve effective trainability and package everything as a ModelInfo."""
        resolved: dict[int, Variable] = {}  # the variables whose cause changed, by id of the old one
        everything = self.root.walk()  # the one walk of the tree: reused below
        for node in everything:
            own = node.variables
            for i, v in enumerate(own):
                cause, detail = self._effective(node, v)
                if cause is v.cause and detail == v.detail:
                    continue  # mostly: the (frozen) Variable is kept
                own[i] = Variable(
                    path=v.path,
                    layer=v.layer,
                    name=v.name,
                    shape=v.shape,
                    dtype=v.dtype,
                    cause=cause,
                    detail=detail,
                    storage=v.storage,
                    itemsize=v.itemsize,
                )
                resolved[id(v)] = own[i]
        self.order = self._weights_order(
            [resolved.get(id(v), v) for v in self.order] if resolved else self.order
        )
        nodes = everything[1:]
        self.warnings.extend(self._unknown_warnings(nodes))
        self.warnings.extend(self._shape_mismatches(nodes))
        self.warnings.extend(self._inconsistencies(everything))
        self.warnings.extend(risk_warnings(self.risks))
        # walk() lists parents before their children: positions and depths in one pass
        # (nodes are hashed by identity)
        position: dict[Node | None, int] = {}  # a node's index in its parent's `layers`
        depth: dict[Node | None, int] = {self.root: -1}
        for n in everything:
            for i, c in enumerate(n.list_children):
                if c.parent is n:
                    position.setdefault(c, i)
        layers = []
        for n in nodes:
            parent = n.parent
            d = depth.get(parent)
            depth[n] = d = d + 1 if d is not None else n.depth
            # Layer(path, name, class_name, flag, config_flag, editable, depth, parent, known,
            # pointer, index, attr): positional (4,000 layers: 3.5 -> 2.2 ms)
            layers.append(
                Layer(
                    n.path,
                    n.name,
                    n.class_name,
                    n.flag,
                    n.config_flag,
                    n.pointer is not None,
                    d,
                    parent.path or None if parent is not None else None,
                    n.known,
                    n.pointer,
                    position.get(n),
                    n.attr,
                )
            )
        info = ModelInfo(
            source=source,
            format=ModelFormat(fmt),
            keras_version=keras_version,
            name=self.root.name,
            class_name=self.root.class_name,
            trainable=self.root.flag,
            layers=tuple(layers),
            variables=tuple(self.order),
            warnings=tuple(dict.fromkeys(self.warnings)),
            risks=tuple(self.risks),
        )
        if not any(n.spec is not None and n.spec.variant for n in everything):
            return info  # no quantized or LoRA layer (their specs come from formats/quantization.py)
        from varctl.formats import quantization  # model.weights order, LoRA adapters made on load

        return quantization.apply(self, info, everything)
