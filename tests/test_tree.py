"""The layer tree scales linearly: a 3,000-layer model's tree is built, indexed and finished with
work proportional to its size (a legacy .h5 of 4,000 layers took 35 s when every lookup rescanned)."""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")

from varctl.formats.tree import Node, Tree  # noqa: E402


def _config(n: int) -> dict:
    # A real Keras config (Sequential.get_config of n Dense layers in a frozen nested Sequential);
    # not built, so no weights are created: the tree only needs the config.
    inner = keras.Sequential([keras.layers.Dense(2, name=f"d{i}") for i in range(n)], name="inner")
    inner.trainable = False
    inner.layers[-1].trainable = True
    top = keras.Sequential([inner, keras.layers.Dense(1, name="head")], name="top")
    return keras.saving.serialize_keras_object(top)


def _work(n: int, monkeypatch) -> tuple[int, int, int]:
    """(Node.children calls, Node.walk calls, variables) to build, index, attach and finish."""
    cfg = _config(n)
    counts = {"children": 0, "walk": 0}
    children, walk = Node.children, Node.walk

    def counting_children(self):
        counts["children"] += 1
        return children(self)

    def counting_walk(self):
        counts["walk"] += 1
        return walk(self)

    monkeypatch.setattr(Node, "children", counting_children)
    monkeypatch.setattr(Node, "walk", counting_walk)
    tree = Tree(cfg)
    paths = [f"inner/d{i}" for i in range(n)] + ["head"]
    for p in paths:  # what a reader does for every variable it finds
        node = tree.find(p)
        assert node is not None, p
        for name in ("kernel", "bias"):
            tree.add_variable(node, name, (2, 2), "float32", 4, f"/{p}/{name}", node.var_spec(name))
    info = tree.finish(source="m", fmt="h5", keras_version="3.15.0")
    monkeypatch.undo()
    assert len(info.variables) == 2 * len(paths)
    # the frozen container with a trainable child is reported once, naming the child
    assert any(f"`inner/d{n - 1}`" in w for w in info.warnings)
    return counts["children"], counts["walk"], len(info.variables)


def test_tree_work_is_linear_in_layers(monkeypatch):
    small = _work(1000, monkeypatch)
    large = _work(3000, monkeypatch)
    # walk() runs a fixed number of times whatever the size (it used to run once per lookup)
    assert large[1] == small[1] <= 4
    # node visits grow with the size, not its square (quadratic would be a ratio of ~9)
    assert large[0] / small[0] < 3.5


def test_renaming_a_node_moves_its_subtree_in_the_index():
    cfg = keras.saving.serialize_keras_object(
        keras.Sequential([keras.layers.Bidirectional(keras.layers.LSTM(2, name="rnn"), name="bi")], name="s")
    )
    tree = Tree(cfg)
    fwd = tree.find("bi/forward_rnn")
    cell = tree.find("bi/forward_rnn/lstm_cell")
    assert fwd is not None and cell is not None
    fwd.name = "renamed"
    assert tree.find("bi/forward_rnn") is None
    assert tree.find("bi/renamed/lstm_cell") is cell and cell.path == "bi/renamed/lstm_cell"


def test_shape_mismatches_name_the_sizes_the_config_fixes():
    # Dense and Conv2D fix their last dimension, Embedding both: any other size is free ('?')
    cfg = keras.saving.serialize_keras_object(
        keras.Sequential(
            [
                keras.layers.Dense(3, name="d"),
                keras.layers.Conv2D(4, 3, name="c"),
                keras.layers.Embedding(10, 5, name="e"),
            ],
            name="s",
        )
    )
    tree = Tree(cfg)
    shapes = {
        "d": {"kernel": (7, 3), "bias": (2,)},  # bias: wrong size
        "c": {"kernel": (3, 3, 4), "bias": (4,)},  # kernel: wrong rank
        "e": {"embeddings": (10, 6)},  # wrong last size
    }
    for layer, found in shapes.items():
        node = tree.find(layer)
        assert node is not None
        for name, shape in found.items():
            tree.add_variable(node, name, shape, "float32", 4, f"/{layer}/{name}", node.var_spec(name))
    warnings = [
        w for w in tree.finish(source="m", fmt="keras", keras_version="3.15.0").warnings if "implies" in w
    ]
    assert [w.split(": the config")[0] for w in warnings] == [
        "`d/bias` has shape (2,) in the file, but the config of `d` (Dense) implies (3,)",
        "`c/kernel` has shape (3, 3, 4) in the file, but the config of `c` (Conv2D) implies ('?', '?', '?', 4)",
        "`e/embeddings` has shape (10, 6) in the file, but the config of `e` (Embedding) implies (10, 5)",
    ]


def test_nodes_compare_by_identity_and_rename_only_on_change():
    cfg = keras.saving.serialize_keras_object(keras.Sequential([keras.layers.Dense(1, name="d")], name="s"))
    tree = Tree(cfg)
    node = tree.find("d")
    assert node is not None and node.path == "d" and "d" in repr(node)
    node.name = "d"  # the same name: nothing to drop
    assert not tree.root._renamed
    assert node != Tree(cfg).find("d") and node == node
