"""select.within: THE "is this layer inside that one" rule (patterns, freeze/unfreeze, checks)."""

from __future__ import annotations

import pytest

from varctl.select import within


@pytest.mark.parametrize(
    ("path", "roots", "inside"),
    [
        ("base", {"base"}, True),
        ("base/conv", {"base"}, True),
        ("base/block/conv", {"base/block"}, True),
        ("base_2", {"base"}, False),  # a name prefix is not nesting
        ("base_2/conv", {"base"}, False),
        ("base", {"base/conv"}, False),  # the parent is not inside its child
        ("head", set(), False),
        ("a/b/c", ["x", "a/b"], True),  # any collection of roots
    ],
)
def test_within(path, roots, inside):
    assert within(path, roots) is inside
