"""keras-hub models in a layer Tree: their layers from the weights file, `model.weights` order.

`expand(tree, config, h5)` runs after `Tree(config)` and before the weights walk: it gives every
keras-hub Backbone or Task in the tree (whose config lists no layers) its layers, read from the
weights file's groups, with names, classes and variable names from catalog_hub. `reorder(tree)`
runs after the walk: it puts keras-hub layers' sublayers in tracking order, so that Tree.finish
lists the variables in `model.weights` order (the file holds attributes alphabetically). Both
work on the weights manifest (formats/_manifest.py), never on the file: `interpret()` of an edited
config gives the same answer without reading the file again.
"""

from __future__ import annotations

import re
from typing import Any

from varctl.errors import UnsafeFile
from varctl.formats import _h5safe, _manifest
from varctl.formats.catalog import LayerSpec, class_and_config, is_hub_entry
from varctl.formats.catalog import spec_for as keras_spec_for
from varctl.formats.catalog_hub import (
    HUB_LAYERS,
    class_from_group,
    flag_reaches_layers,
    is_backbone_entry,
    is_hub_model,
    layer_order_key,
    variables_for,
)
from varctl.formats.tree import Node, Tree, to_snake_case

Config = dict[str, Any]
_SUFFIX = re.compile(r"^(.*?)(?:_(\d+))?$")


def _flag(cfg: Config) -> bool | None:
    value = cfg.get("trainable")
    return None if value is None else bool(value)


def _split(group_name: str) -> tuple[str, int]:
    m = _SUFFIX.match(group_name)
    assert m is not None
    return m.group(1), int(m.group(2) or 0)


class _Expander:
    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.hub_nodes: list[Node] = []

    # -- which nodes are keras-hub models, and where their groups are ---------------------------

    def visit(self, node: Node, entry: Config, group: _manifest.Group | None) -> None:
        if group is None:
            return
        if is_hub_model(entry):
            self.model(node, entry, group)
            return
        if not node.list_children:
            return
        layers = _manifest.get_group(group, "layers")
        if layers is None:
            return
        used: dict[str, int] = {}
        listed = node.config.get("layers")
        entries: list[Any] = listed if isinstance(listed, list) else []
        if not any(child.list_children for child in node.list_children) and not any(
            map(is_hub_entry, entries)
        ):
            return  # plain layers only (most models): nothing below (4,000 layers: 3.5 -> 1 ms)
        by_name = {str(class_and_config(e)[1].get("name")): e for e in entries if isinstance(e, dict)}
        for child in node.list_children:
            base = to_snake_case(child.class_name)
            used[base] = used.get(base, -1) + 1
            child_entry = by_name.get(child.name)
            if child_entry is None:
                continue
            from_hub = is_hub_entry(child_entry)
            if not from_hub and not child.list_children:
                continue  # a plain layer: nothing here (the weights walk reads its group)
            sub = _manifest.get_group(layers, base if used[base] == 0 else f"{base}_{used[base]}")
            if sub is None:
                continue
            if from_hub and child.class_name in HUB_LAYERS:
                self.hub_layer(child, sub)
            else:
                self.visit(child, child_entry, sub)

    # -- a Backbone or Task ---------------------------------------------------------------------

    def model(self, node: Node, entry: Config, group: _manifest.Group, *, weights_only: bool = False) -> None:
        cls, cfg = class_and_config(entry)
        found_backbone = cfg.get("backbone")
        backbone: Config = (
            found_backbone if isinstance(found_backbone, dict) and is_backbone_entry(found_backbone) else {}
        )
        extra: dict[str, str] = {}
        if backbone:
            extra[to_snake_case(str(backbone["class_name"]))] = str(backbone["class_name"])
        is_backbone = is_backbone_entry(entry)
        node.spec, node.known = None, True
        self.hub_nodes.append(node)
        layers = _manifest.get_group(group, "layers")
        if layers is None:
            return
        # Layers inside a backbone get its flag when Keras loads it; a task's head layers are
        # built anew, trainable (a task saves no flags).
        inner = True
        if is_backbone:
            reaches = flag_reaches_layers(cls)
            inner = node.flag if reaches is not False else True
            if reaches is None and not node.flag:
                self.tree.warnings.append(
                    f"varctl does not know whether the frozen flag of `{node.path or node.name}` "
                    f"({cls}) reaches its layers when Keras loads the file (it does for backbones "
                    "that hold their layers in attributes): listed as frozen"
                )
        found: list[tuple[str, str, int, str, _manifest.Group]] = []  # (name, class, index, group, g)
        for gname in _manifest.member_names(layers):
            sub = _manifest.get_group(layers, gname)
            if sub is None:
                continue
            cls_name = class_from_group(gname, extra)
            index = 0
            if cls_name is None:
                base, index = _split(gname)
                cls_name = class_from_group(base, extra)
                if cls_name is None:
                    # Keeps the group naming: snake_case of a snake_case name is itself.
                    cls_name = base
            vars_group = _manifest.get_group(sub, "vars")
            name = (vars_group.attr_name if vars_group is not None else None) or gname
            found.append((name, cls_name, index, gname, sub))
        key = layer_order_key(cls, is_backbone or weights_only)
        unplaced = [f[0] for f in found if key(f[0], f[1]) is None and self._has_variables(f[4])]
        found.sort(key=lambda f: (key(f[0], f[1]) or (99,), _h5safe.natural_key(f[3])))
        # The walk names groups by counting each class in list order: keep each class's own order.
        by_class: dict[str, list[int]] = {}
        for f in found:
            by_class.setdefault(to_snake_case(f[1]), []).append(f[2])
        if any(idx != sorted(idx) or idx != list(range(len(idx))) for idx in by_class.values()):
            found.sort(key=lambda f: (to_snake_case(f[1]), f[2]))
            unplaced = unplaced or [f[0] for f in found]
        if unplaced and not weights_only:
            self.tree.warnings.append(
                f"the order of the layers of `{node.path or node.name}` ({cls}) is not recorded in "
                "the file and varctl does not know it for "
                + ", ".join(f"`{n}`" for n in unplaced[:5])
                + (" ..." if len(unplaced) > 5 else "")
                + ": those variables may be listed out of model.weights order"
            )
        for name, cls_name, _index, _gname, sub in found:
            if cls_name in extra.values():
                bcls, bcfg = class_and_config(backbone)
                child = Node(
                    name=str(bcfg.get("name", name)),
                    class_name=bcls,
                    config=bcfg,
                    spec=None,
                    parent=node,
                    flag=_flag(bcfg) is not False,
                    config_flag=_flag(bcfg),
                    pointer=(*node.pointer, "config", "backbone") if node.pointer is not None else None,
                )
                node.list_children.append(child)
                self.model(child, backbone, sub)
                continue
            child = self.layer(node, name, cls_name, sub, inner, attr=None)
            node.list_children.append(child)

    def _has_variables(self, group: _manifest.Group, depth: int = 0) -> bool:
        if depth > _h5safe.MAX_DEPTH:
            return True
        for n in _manifest.member_names(group):
            obj = _manifest.get_member(group, n)
            if isinstance(obj, _manifest.Dataset):
                return True
            if isinstance(obj, _manifest.Group) and self._has_variables(obj, depth + 1):
                return True
        return False

    # -- one layer, from its group --------------------------------------------------------------

    def layer(
        self, parent: Node, name: str, cls: str, group: _manifest.Group, flag: bool, attr: str | None
    ) -> Node:
        vars_group = _manifest.get_group(group, "vars")
        count = len(_manifest.member_names(vars_group)) if vars_group is not None else 0
        variables = variables_for(cls, count)
        node = Node(
            name=name,
            class_name=cls,
            config={},
            spec=LayerSpec(variables) if variables is not None else None,
            parent=parent,
            flag=flag,
            config_flag=None,
            pointer=None,
            attr=attr,
            known=variables is not None,
        )
        self.sublayers(node, group, flag)
        return node

    def sublayers(self, node: Node, group: _manifest.Group, flag: bool) -> None:
        """`node`'s sublayers, from its group's members, each with the flag `flag`."""
        if node.depth > _h5safe.MAX_DEPTH:
            raise UnsafeFile("HDF5 groups nested too deeply (refused)")
        cls = node.class_name
        hub = HUB_LAYERS.get(cls)
        members = _manifest.member_names(group)
        if hub is None and "layers" in members and _manifest.get_group(group, "layers") is not None:
            # A model nested in a weights-only file (a task's backbone, a Functional): its layers
            # are listed by the file like the top model's.
            node.spec, node.known = None, True
            self.model(node, {"class_name": cls, "config": {}}, group, weights_only=True)
            self.hub_nodes.remove(node)
            members = [m for m in members if m != "layers"]
        table: dict[str, str] = {}
        if hub is not None:
            for a, c in hub.children:
                table[a.removesuffix("[]")] = c
        elif (keras_spec := keras_spec_for(cls, {})) is not None:  # LSTM's cell, ...
            table = {c.attr: c.class_name for c in keras_spec.children}
        for member in members:
            if member == "vars":
                continue
            sub = _manifest.get_group(group, member)
            if sub is None:
                continue
            child_cls = table.get(member)
            if _manifest.get_group(sub, "vars") is None:  # a list of layers held in an attribute
                for item in _manifest.member_names(sub):
                    item_group = _manifest.get_group(sub, item)
                    if item_group is None:
                        continue
                    base, _ = _split(item)
                    item_cls = child_cls or class_from_group(base) or base
                    self._attr_child(node, f"{member}/{item}", item_cls, item_group, flag)
                continue
            if child_cls is None:  # for the "not known" warning: the unknown class it belongs to
                node.known = False
                child_cls = f"{cls}.{member}" if table else cls
            self._attr_child(node, member, child_cls, sub, flag)

    def hub_layer(self, node: Node, group: _manifest.Group) -> None:
        """A keras-hub layer with a config entry of its own (in a user's Functional model): its own
        variables follow its flag; the sublayers it builds in build() are created anew, trainable
        even when it is frozen (confirmed against Keras in tests/test_hub.py)."""
        vars_group = _manifest.get_group(group, "vars")
        count = len(_manifest.member_names(vars_group)) if vars_group is not None else 0
        variables = variables_for(node.class_name, count)
        node.spec = LayerSpec(variables) if variables is not None else None
        node.known = variables is not None
        node.attr_children.clear()
        self.sublayers(node, group, True)
        self.hub_nodes.append(node)

    def _attr_child(self, node: Node, attr: str, cls: str, group: _manifest.Group, flag: bool) -> None:
        vars_group = _manifest.get_group(group, "vars")
        name = (vars_group.attr_name if vars_group is not None else None) or attr
        child = self.layer(node, name, cls, group, flag, attr=attr)
        node.attr_children[attr] = child


def expand_weights_only(tree: Tree, h5: _manifest.Group) -> list[Node]:
    """A weights-only file: the top model's layers from the file (names, classes, variables)."""
    ex = _Expander(tree)
    ex.model(tree.root, {"class_name": tree.root.class_name, "config": {}}, h5, weights_only=True)
    return ex.hub_nodes


def expand(tree: Tree, config: Any, h5: _manifest.Group) -> list[Node]:
    """Give the keras-hub models in `tree` their layers from the weights file `h5` (its root).

    Returns the keras-hub model nodes (for `reorder`)."""
    if not isinstance(config, dict):
        return []
    ex = _Expander(tree)
    ex.visit(tree.root, config, h5)
    return ex.hub_nodes


# -- model.weights order -----------------------------------------------------------------------


def reorder(tree: Tree, hub_nodes: list[Node]) -> None:
    """Put the attribute sublayers of keras-hub layers in the order each sets them (`_layers`
    order), so that Tree.finish's `model.weights` order is Keras's (the file lists attributes
    alphabetically). A list attribute's items keep their natural order (`..._2` before `..._10`)."""
    del tree
    for top in hub_nodes:
        for node in top.walk():
            hub = HUB_LAYERS.get(node.class_name)
            if hub is None or not node.attr_children:
                continue
            rank = {a.removesuffix("[]"): i for i, (a, _) in enumerate(hub.children)}
            items = sorted(
                node.attr_children.items(),
                key=lambda kv: (rank.get(kv[0].split("/")[0], len(rank)), _h5safe.natural_key(kv[0])),
            )
            node.attr_children = dict(items)
