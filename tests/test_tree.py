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
