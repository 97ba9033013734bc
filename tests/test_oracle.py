"""varctl's static view of a file equals what Keras reports after loading the same file."""

from __future__ import annotations

import pytest

from tests.conftest import SAMPLES
from tests.zoo import ZOO

keras_oracle = pytest.importorskip("tests.keras_oracle")

from varctl.formats import open_model  # noqa: E402


def _rows(info, *, generic_ok=False):
    return [(v.path, v.shape, v.dtype, v.trainable) for v in info.variables]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_keras_archive_matches_keras(zoo_dir, name):
    info = open_model(str(zoo_dir / f"{name}.keras"))
    assert _rows(info) == keras_oracle.expected(str(zoo_dir / f"{name}.keras"))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_legacy_h5_matches_keras(zoo_dir, name):
    path = zoo_dir / f"{name}.h5"
    if not path.exists():
        pytest.skip("Keras cannot round-trip this model through legacy .h5")
    info = open_model(str(path))
    assert sorted(_rows(info)) == sorted(keras_oracle.expected_legacy(str(path)))


SAMPLE_NAMES = ["seed_dense", "seed_explicit", "seed_custom_layer", "transfer_learning", "batchnorm"]


def _without_generic_names(rows):
    # A custom layer's variables are listed as `layer/vars/N` by the static reader: compare the
    # layer part, shape, dtype and trainable state only.
    out = []
    for path, shape, dtype, trainable in rows:
        layer = path.split("/vars/")[0] if "/vars/" in path else path.rsplit("/", 1)[0]
        out.append((layer, shape, dtype, trainable))
    return out


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            n,
            marks=pytest.mark.xfail(
                strict=True,
                reason="known limit: a custom layer's "
                "add_weight(trainable=False) is not recorded in the file; the static reader "
                "assumes trainable and warns",
            ),
        )
        if n == "seed_explicit"
        else n
        for n in SAMPLE_NAMES
    ],
)
def test_sample_keras_matches_keras(samples_on_path, name):
    path = str(SAMPLES / f"{name}.keras")
    got, want = _rows(open_model(path)), keras_oracle.expected(path, compile=True)
    if name.startswith("seed_") and name != "seed_dense":
        got, want = _without_generic_names(got), _without_generic_names(want)
    assert got == want
