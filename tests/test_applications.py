"""Every keras.applications architecture (weights=None, random init, the smallest input each allows,
no top) lists exactly as Keras loads it: names, shapes, dtypes, trainable state, model.weights order.

Classes Keras ships outside keras.layers (ConvNeXt's LayerScale) are Keras classes with known
variable names. The default run builds four small models; VARCTL_TEST_ALL_APPLICATIONS=1 adds 18.
"""

from __future__ import annotations

import os
import re
import time
import warnings

import pytest

keras_oracle = pytest.importorskip("tests.keras_oracle")

from varctl.formats import open_model  # noqa: E402

# The smallest input each family accepts without a top (keras.applications' own minimums).
_MIN = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71, "NASNetMobile": 32, "NASNetLarge": 32}
# The default run: four small models, one ConvNeXt (LayerScale) among them: 33 s on the 2-core
# machine (fixture 9 s, Keras loading each file most of the rest). VARCTL_TEST_ALL_APPLICATIONS=1 adds 18
# (6 min when measured; ConvNeXtTiny alone writes 110 MB).
FAST = ["ConvNeXtMini", "EfficientNetB0", "MobileNet", "MobileNetV3Small"]
SLOW = [
    "ConvNeXtTiny",
    "DenseNet121",
    "EfficientNetV2B0",
    "MobileNetV2",
    "ResNet50",
    "ResNet50V2",
    "VGG16",
    "ConvNeXtSmall",
    "DenseNet169",
    "EfficientNetB3",
    "EfficientNetV2S",
    "InceptionResNetV2",
    "InceptionV3",
    "MobileNetV3Large",
    "NASNetMobile",
    "ResNet101V2",
    "VGG19",
    "Xception",
]
# Not built even under `slow`: the same layer classes as a smaller family member, at 85 M to
# 350 M parameters (gigabytes of random init to write and load):
# ConvNeXtBase/Large/XLarge, DenseNet201, EfficientNetB1-B2/B4-B7, EfficientNetV2B1-B3/M/L,
# NASNetLarge, ResNet101, ResNet152, ResNet152V2.


def _build(name: str):
    import keras

    size = _MIN.get(name, 32)
    kwargs = {"weights": None, "include_top": False, "input_shape": (size, size, 3)}
    if name == "ConvNeXtMini":  # ConvNeXtTiny's builder at a tenth of its width and depth
        from keras.src.applications.convnext import ConvNeXt

        return ConvNeXt(
            depths=[1, 1, 2, 1],
            projection_dims=[8, 16, 32, 64],
            drop_path_rate=0.1,
            name="convnext_mini",
            **kwargs,
        )
    if name.startswith("MobileNet") and name != "MobileNetV3Small":
        kwargs["alpha"] = 0.35 if name == "MobileNetV2" else 0.25
        if name == "MobileNetV3Large":
            kwargs["alpha"] = 0.75
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(keras.applications, name)(**kwargs)


def _save(names, folder):
    import keras

    times = {}
    for name in names:
        start = time.perf_counter()
        keras.utils.set_random_seed(0)
        model = _build(name)
        model.layers[len(model.layers) // 2].trainable = False  # a mix of states
        model.save(folder / f"{name}.keras")
        times[name] = time.perf_counter() - start
    return times


@pytest.fixture(scope="session")
def app_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("apps")
    _save(FAST, folder)
    return folder


@pytest.fixture(scope="session")
def slow_app_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("apps_slow")
    _save(SLOW, folder)
    return folder


def _unnamed(rows):
    # add_weight without a name: Keras calls it `variable`, made unique per process on load
    # (`variable_18` after 17 others); the file records no name, varctl shows `variable`.
    return [(re.sub(r"/variable_\d+$", "/variable", p), *rest) for p, *rest in rows]


def _check(path):
    info = open_model(str(path))
    got = [(v.path, v.shape, v.dtype, v.trainable) for v in info.variables]
    assert got == _unnamed(keras_oracle.expected(str(path)))
    assert not any("not known" in w or "generic" in w or "outside Keras" in w for w in info.warnings)
    return info


@pytest.mark.parametrize("name", FAST)
def test_application_lists_as_keras_loads_it(app_dir, name):
    info = _check(app_dir / f"{name}.keras")
    if name.startswith("ConvNeXt"):  # keras.applications.convnext.LayerScale: `variable`
        assert any(v.path.endswith("layer_scale/variable") for v in info.variables)


@pytest.mark.skipif(
    not os.environ.get("VARCTL_TEST_ALL_APPLICATIONS"),
    reason="18 more architectures, ~6 min: set VARCTL_TEST_ALL_APPLICATIONS=1 (same layer classes as the default four)",
)
@pytest.mark.parametrize("name", SLOW)
def test_more_applications_list_as_keras_loads_them(slow_app_dir, name):
    _check(slow_app_dir / f"{name}.keras")
