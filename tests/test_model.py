"""The model format: spec round trip, P(fake) orientation, LiteRT equals Keras on export."""

import json

import numpy as np
import pytest
from PIL import Image

from shared.errors import ModelUnavailable
from shared.model import Model, ModelSpec, to_input


def test_spec_round_trips():
    spec = ModelSpec(
        name="vgg10",
        version="1.2",
        size=128,
        color="rgb",
        positive_class="real",
        threshold=0.4,
        trained_on="x",
        extra={"metrics": {"acc": 0.9}},
    )
    assert ModelSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def test_bad_spec_is_refused(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(ModelUnavailable, match="cannot be loaded"):
        Model(tmp_path)


def test_to_input_gray_and_rgb():
    img = Image.new("RGB", (256, 256), (255, 0, 0))
    gray = to_input(img, ModelSpec(name="a", version="1", size=32, color="gray"))
    rgb = to_input(
        img, ModelSpec(name="a", version="1", size=32, color="rgb", scale=2 / 255, offset=-1)
    )
    assert gray.shape == (32, 32, 1) and np.allclose(gray, 76 / 255)  # ITU-R 601 luma of red
    assert rgb.shape == (32, 32, 3) and np.allclose(rgb[0, 0], [1, -1, -1])


def test_positive_class_real_is_inverted(tiny_model_dir, tmp_path):
    spec = json.loads((tiny_model_dir / "model.json").read_text())
    spec["output"]["positive_class"] = "real"
    (tmp_path / "model.json").write_text(json.dumps(spec))
    (tmp_path / "model.tflite").write_bytes((tiny_model_dir / "model.tflite").read_bytes())
    x = np.random.default_rng(0).random((3, 64, 64, 1), dtype=np.float32)
    assert np.allclose(Model(tmp_path).predict(x), 1 - Model(tiny_model_dir).predict(x))


def test_batch_sizes_can_change(tiny_model_dir):
    model = Model(tiny_model_dir)
    x = np.random.default_rng(1).random((5, 64, 64, 1), dtype=np.float32)
    together = model.predict(x)
    one_by_one = np.concatenate([model.predict(x[i : i + 1]) for i in range(5)])
    assert np.allclose(together, one_by_one, atol=1e-6)
    assert model.predict(x[:0]).shape == (0,)


def test_temperature_round_trips_and_old_specs_mean_one(tiny_model_dir):
    spec = ModelSpec(name="a", version="1", temperature=2.5)
    doc = json.loads(json.dumps(spec.to_json()))
    assert doc["output"]["temperature"] == 2.5
    assert ModelSpec.from_json(doc) == spec
    old = json.loads((tiny_model_dir / "model.json").read_text())
    old["output"].pop("temperature", None)  # a model.json written before calibration existed
    assert ModelSpec.from_json(old).temperature == 1.0


def test_served_p_fake_is_calibrated_by_the_temperature(tiny_model_dir, tmp_path):
    """model.json's temperature changes what serving says (predict and explain alike) to
    sigmoid(logit(p) / T), and leaves the order of faces alone."""
    from shared.model import calibrate

    doc = json.loads((tiny_model_dir / "model.json").read_text())
    doc["output"]["temperature"] = 0.25  # sharpen, so the change is large
    (tmp_path / "model.json").write_text(json.dumps(doc))
    (tmp_path / "model.tflite").write_bytes((tiny_model_dir / "model.tflite").read_bytes())
    x = np.random.default_rng(3).random((6, 64, 64, 1), dtype=np.float32)
    raw, hot = Model(tiny_model_dir).predict(x), Model(tmp_path).predict(x)
    z = np.log(raw.astype(np.float64) / (1 - raw))
    np.testing.assert_allclose(hot, 1 / (1 + np.exp(-z / 0.25)), rtol=1e-5)
    assert np.abs(hot - raw).max() > 1e-3
    assert np.array_equal(np.argsort(hot), np.argsort(raw))
    np.testing.assert_array_equal(calibrate(raw, 0.25), hot)
    served = Model(tmp_path)
    assert served.can_explain  # the tiny model's GAP head exports Grad-CAM
    assert served.explain(x[0])[0] == pytest.approx(float(hot[0]), abs=1e-6)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_bad_temperature_is_refused(tiny_model_dir, tmp_path, bad):
    doc = json.loads((tiny_model_dir / "model.json").read_text())
    doc["output"]["temperature"] = bad
    (tmp_path / "model.json").write_text(json.dumps(doc))
    (tmp_path / "model.tflite").write_bytes((tiny_model_dir / "model.tflite").read_bytes())
    with pytest.raises(ModelUnavailable, match="temperature"):
        Model(tmp_path)
