"""Grad-CAM: the served maps equal TensorFlow's on the Keras model; API, CLI and picture."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import requests
from PIL import Image

from shared.explain import grad_cam, overlay
from shared.model import Model, ModelSpec, to_input
from tests.conftest import ROOT, LocalHost

SIZE = 64


def aligned_faces(images: dict[str, bytes], data_dir) -> list[Image.Image]:
    """Real faces through the serving path: the astronaut, plus 140k test photos when present."""
    from shared.faces import detect_and_align
    from shared.images import load_image

    sources = [images["astronaut"]]
    test = data_dir / "real-vs-fake" / "real_vs_fake" / "real-vs-fake" / "test"
    for label in ("real", "fake"):
        if (test / label).is_dir():
            sources += [p.read_bytes() for p in sorted((test / label).glob("*.jpg"))[:3]]
    faces = []
    for src in sources:
        found = detect_and_align(load_image(src))
        if found:
            faces.append(found[0].aligned)
    return faces


@pytest.fixture(scope="module")
def data_dir():
    return ROOT.parent / "shared" / "data"


def spec_for(name: str, color: str = "gray") -> ModelSpec:
    return ModelSpec(name=name, version="0", size=SIZE, color=color, trained_on="untrained")


@pytest.mark.parametrize("head", ["flatten", "gap", "bottleneck"])
def test_served_grad_cam_matches_tensorflow(tmp_path, images, data_dir, head):
    """The paper's VGG-10 with either head, exported; LiteRT's maps vs TensorFlow's Grad-CAM."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from training.evaluation.gradcam import reference
    from training.export import export_keras
    from training.models import build

    keras.utils.set_random_seed(3)
    model = build("vgg10", SIZE, 1, head=head)
    spec = spec_for(f"vgg10-{head}")
    x = np.stack([to_input(f, spec) for f in aligned_faces(images, data_dir)])
    served = export_keras(model, tmp_path, spec, check=x)
    assert served.can_explain
    assert json.loads((tmp_path / "model.json").read_text())["explain"]["grid"] == [8, 8]

    compared = []
    for face in x:
        p, features, weights = served.explain(face)
        assert p == pytest.approx(float(model.predict(face[None], verbose=0)[0, 0]), abs=1e-5)
        for fake in (True, False):
            want = reference(model, face[None], np.array([float(fake)]))[0]
            got = grad_cam(features, weights, fake)
            if want.max() == 0:  # nothing pushed towards this class: both maps must be flat
                assert got.max() == 0
                continue
            compared.append(np.corrcoef(got.ravel(), want.ravel())[0, 1])
    assert len(compared) >= len(x), "too few non-flat maps to compare"
    assert min(compared) >= 0.99, compared


def test_a_head_it_cannot_differentiate_exports_without_explain(tmp_path, capsys):
    import keras

    from training.export import export_keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.LayerNormalization(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    check = np.random.default_rng(0).random((2, SIZE, SIZE, 1), dtype=np.float32)
    served = export_keras(model, tmp_path, spec_for("odd-head"), check=check)
    assert not served.can_explain
    assert "explain" not in json.loads((tmp_path / "model.json").read_text())
    assert "no Grad-CAM signature" in capsys.readouterr().err


@pytest.fixture(scope="module")
def plain_model_dir(tmp_path_factory):
    """A real exported model without the explain signature (as models exported before it)."""
    import keras

    from training.export import export_keras

    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    out = tmp_path_factory.mktemp("plain-model")
    export_keras(model, out, spec_for("plain"), explain=False)
    return out


def test_grad_cam_follows_the_sign_of_the_gradient():
    features = np.zeros((2, 2, 2), np.float32)
    features[0, 0] = [1.0, 0.0]  # channel 0 lives top-left
    features[1, 1] = [0.0, 2.0]  # channel 1 bottom-right
    weights = np.array([1.0, -1.0], np.float32)  # channel 0 pushes to fake, channel 1 to real
    fake = grad_cam(features, weights, fake=True)
    real = grad_cam(features, weights, fake=False)
    assert fake[0, 0] == 1.0 and fake[1, 1] == 0.0
    assert real[1, 1] == 1.0 and real[0, 0] == 0.0
    assert grad_cam(features, np.zeros_like(weights), fake=True).max() == 0.0


def test_overlay_leaves_cold_pixels_alone_and_colours_hot_ones():
    pixels = np.full((8, 8, 1), 120, np.uint8)
    cam = np.zeros((2, 2), np.float32)
    cam[0, 0] = 1.0
    out = np.asarray(overlay(pixels, cam))
    assert out.shape == (8, 8, 3)
    assert (out[-1, -1] == 120).all()  # far from the hot cell: the face unchanged
    assert not (out[0, 0] == 120).all()


def decode(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_predict_explain_over_http(live_host, images):
    resp = requests.post(
        live_host + "/api/predict",
        params={"crops": "1", "explain": "1"},
        files={"image": ("a.jpg", images["astronaut"], "image/jpeg")},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    face = body["faces"][0]
    exp = face["explanation"]
    assert exp["method"] == "grad-cam" and exp["explains"] == face["label"]
    crop, heat = decode(face["crop"]), decode(exp["overlay"])
    assert heat.size == crop.size and heat.mode == "RGB"
    assert "explain" in body["timings_ms"]
    plain = requests.post(
        live_host + "/api/predict",
        files={"image": ("a.jpg", images["astronaut"], "image/jpeg")},
        timeout=30,
    ).json()
    assert "explanation" not in plain["faces"][0]
    assert plain["faces"][0]["p_fake"] == face["p_fake"]
    health = requests.get(live_host + "/api/health", timeout=10).json()
    assert health["model"]["explain"] is True


@pytest.fixture(scope="module")
def plain_host(plain_model_dir, tmp_path_factory):
    (plain_model_dir / "MODEL_CARD.html").write_text(
        "<!doctype html><title>card</title><p>plain model card</p>"
    )
    host = LocalHost(plain_model_dir, tmp_path_factory.mktemp("plain-host") / "host.log")
    yield host.url
    host.stop()


def test_a_model_without_explain_answers_501_and_serves_its_card(plain_host, images):
    resp = requests.post(
        plain_host + "/api/predict?explain=1",
        files={"image": ("a.jpg", images["astronaut"], "image/jpeg")},
        timeout=30,
    )
    assert resp.status_code == 501
    assert resp.json()["error"]["code"] == "explain_unavailable"
    health = requests.get(plain_host + "/api/health", timeout=10).json()["model"]
    assert health["explain"] is False and health["model_card"] == "/api/model-card"
    card = requests.get(plain_host + "/api/model-card", timeout=10)
    assert card.status_code == 200 and "plain model card" in card.text
    assert card.headers["content-type"].startswith("text/html")
    assert card.headers["content-security-policy"].startswith("default-src 'none'")


def test_no_card_is_a_json_404(live_host):
    resp = requests.get(live_host + "/api/model-card", timeout=10)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    assert requests.get(live_host + "/api/health", timeout=10).json()["model"]["model_card"] is None


def test_cli_writes_overlays(tmp_path, images, tiny_model_dir, plain_model_dir):
    photos = tmp_path / "in"
    (photos / "a").mkdir(parents=True)
    (photos / "b").mkdir()
    for folder in ("a", "b"):  # the same name twice: neither overlay may overwrite the other
        (photos / folder / "face.jpg").write_bytes(images["astronaut"])
    (photos / "cat.jpg").write_bytes(images["chelsea"])
    out = tmp_path / "heat"
    cmd = [sys.executable, "-m", "shared", "predict", str(photos), "--explain", str(out)]
    done = subprocess.run([*cmd, "--model", str(tiny_model_dir)], cwd=ROOT, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["face-2-face0.png", "face-face0.png"]
    assert Image.open(out / "face-face0.png").size == (SIZE, SIZE)
    refused = subprocess.run(
        [*cmd, "--model", str(plain_model_dir)], cwd=ROOT, capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: The model plain 0 was exported without Grad-CAM")
    assert len(refused.stderr.strip().splitlines()) == 1


def test_explain_on_the_shipped_model():
    """models/default ships with Grad-CAM, within the 25 MB cap."""
    model = Model(ROOT / "models" / "default")
    assert model.can_explain
    assert (ROOT / "models" / "default" / "model.tflite").stat().st_size <= 25 * 2**20
