"""Files written by older Keras 3 releases (tests/legacy_files/<version>/, made by make.py there)
list exactly as Keras 3.15 reports after loading them.

Their layouts differ from today's: no `name` attribute on `vars` groups before 3.6, extra empty
groups (MultiHeadAttention's `_dropout_layer`/`_softmax`, a Bidirectional's `layer` in 3.0).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from varctl.formats import open_model

LEGACY = Path(__file__).resolve().parent / "legacy_files"
FILES = sorted(LEGACY.glob("*/*.keras"))
VERSIONS = sorted({p.parent.name for p in FILES})


def test_several_releases_are_covered():
    assert len(VERSIONS) >= 5
    assert any(tuple(map(int, v.split("."))) < (3, 6) for v in VERSIONS)  # before the `name` attribute


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
def test_old_release_lists_as_keras_loads_it(path):
    keras_oracle = pytest.importorskip("tests.keras_oracle")
    info = open_model(str(path))
    assert info.keras_version == path.parent.name
    got = [(v.path, v.shape, v.dtype, v.trainable) for v in info.variables]
    assert got == keras_oracle.expected(str(path))
    assert not any("not known" in w or "no group" in w or "not described" in w for w in info.warnings)


EXPECTED = sorted(LEGACY.glob("*/*.expected.json"))


def test_recent_releases_are_covered():
    have = {tuple(map(int, p.parent.name.split("."))) for p in EXPECTED}
    assert {(3, 12, 0), (3, 13, 0)} <= have


@pytest.mark.parametrize("expected", EXPECTED, ids=[f"{p.parent.name}/{p.stem}" for p in EXPECTED])
def test_release_lists_as_the_release_itself_loads_it(expected):
    """The expectations were written by the release that wrote the file (make.py,
    VARCTL_EXPECTATIONS=1): its model.weights after loading, in order. No Keras needed here."""
    path = expected.with_name(expected.name.replace(".expected.json", ".keras"))
    info = open_model(str(path))
    got = [[v.path, list(v.shape), v.dtype, v.trainable] for v in info.variables]
    assert got == json.loads(expected.read_text())
