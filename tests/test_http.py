"""Every kind of input over real HTTP, against the real local host (python -m shared serve)."""

import io
import json
import shutil

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import TEST_MAX_BYTES, TEST_READ_TIMEOUT
from tests.test_images import png_declaring


def post(host: str, **kw) -> requests.Response:
    return requests.post(host + "/api/predict", timeout=30, **kw)


def error_code(resp: requests.Response) -> str:
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["error"]["message"]
    return body["error"]["code"]


def test_health(live_host):
    resp = requests.get(live_host + "/api/health", timeout=10)
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok" and body["model"]["name"] == "tiny-test"
    assert body["limits"]["max_bytes"] == TEST_MAX_BYTES
    assert body["versions"]["ai-edge-litert"] and body["versions"]["dlib-bin"]
    # The tiny model's model.json predates them: null, not missing.
    assert body["model"]["operating_point"] is None and body["model"]["generators"] is None


OPERATING_POINT = {
    "rule": "at most 2 % of validation real photos called fake, each real source weighing the same",
    "false_alarm_target": 0.02,
    "split": "valid",
    "threshold": 0.83,
    "sources": {"fairface": {"real": 120, "called_fake": 0.0083}},
}
GENERATORS = {
    "learned": ["StyleGAN2 (thispersondoesnotexist.com)", "Stable Diffusion 2.1 (SDFD)"],
    "not_learned": "other diffusion models: tested only by leaving one generator out",
}


@pytest.mark.parametrize(
    "extra", [{"operating_point": OPERATING_POINT, "generators": GENERATORS}, {}]
)
def test_health_reads_the_operating_point_and_generators(
    tiny_model_dir, tmp_path, monkeypatch, extra
):
    """In process: health passes on model.json's operating point (the rule and its target, not
    the per-source table) and generators, or null for a model.json written before them."""
    from shared import api

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    doc = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**doc, **extra}))
    monkeypatch.setenv("FAKEFACES_MODEL_DIR", str(model))
    api.settings.cache_clear()
    api.model.cache_clear()
    try:
        status, body = api.health()
    finally:
        api.settings.cache_clear()
        api.model.cache_clear()
    assert status == 200 and body["model"]["name"] == "tiny-test"
    if extra:
        assert body["model"]["operating_point"] == {
            "rule": OPERATING_POINT["rule"],
            "false_alarm_target": 0.02,
        }
        assert body["model"]["generators"] == GENERATORS
    else:
        assert body["model"]["operating_point"] is None and body["model"]["generators"] is None


def test_multipart_upload(live_host, images):
    resp = post(live_host, files={"image": ("a.jpg", images["astronaut"], "image/jpeg")})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["faces"]) == 1 and "crop" not in body["faces"][0]
    assert resp.headers["content-security-policy"].startswith("default-src 'self'")


def test_raw_body_with_crops(live_host, images):
    resp = post(
        live_host + "",
        data=images["astronaut"],
        headers={"content-type": "image/jpeg"},
        params={"crops": "1"},
    )
    assert resp.status_code == 200
    assert resp.json()["faces"][0]["crop"].startswith("data:image/png;base64,")


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_no_face_is_422(live_host, images, name):
    resp = post(live_host, files={"image": ("x.jpg", images[name], "image/jpeg")})
    assert resp.status_code == 422 and error_code(resp) == "no_face"


def truncated(images) -> bytes:
    return images["astronaut"][: len(images["astronaut"]) // 2]


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"", 400, "bad_request"),
        (np.random.default_rng(0).bytes(20000), 415, "not_an_image"),
        ("truncated", 415, "not_an_image"),
        (png_declaring(30000, 30000), 413, "too_large"),
        (b"\xff" * (TEST_MAX_BYTES + 1), 413, "too_large"),
    ],
)
def test_bad_bodies(live_host, images, body, status, code):
    body = truncated(images) if body == "truncated" else body
    resp = post(live_host, data=body, headers={"content-type": "image/jpeg"})
    assert (resp.status_code, error_code(resp)) == (status, code)


def test_bad_requests(live_host):
    cases = [
        ({"data": b"hello", "headers": {"content-type": "text/plain"}}, 415, "not_an_image"),
        ({"data": b"{nope", "headers": {"content-type": "application/json"}}, 400, "bad_request"),
        ({"json": {"link": "x"}}, 400, "bad_request"),
        ({"files": {"other": ("a.jpg", b"x")}}, 400, "bad_request"),
        ({"files": {"image": ("big.jpg", b"\xff" * (TEST_MAX_BYTES + 200_000))}}, 413, "too_large"),
    ]
    for kwargs, status, code in cases:
        resp = post(live_host, **kwargs)
        assert (resp.status_code, error_code(resp)) == (status, code), kwargs


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/face.jpg",
        "http://127.0.0.1:9/face.jpg",
        "http://10.0.0.1/face.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/face.jpg",
        "http://[::ffff:127.0.0.1]/face.jpg",
        "http://localhost:9/x.jpg",
    ],
)
def test_forbidden_urls_are_refused_before_connecting(live_host, url):
    resp = post(live_host, json={"url": url})
    assert (resp.status_code, error_code(resp)) == (400, "url_not_allowed")


def test_image_url(live_host_loopback, image_server, images):
    url = image_server.add("/astronaut.jpg", images["astronaut"])
    resp = post(live_host_loopback, json={"url": url})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["faces"]) == 1 and "fetch" in resp.json()["timings_ms"]
    assert "preview" not in resp.json()["image"]
    with_crops = post(live_host_loopback, json={"url": url}, params={"crops": "1"}).json()
    assert with_crops["image"]["preview"].startswith("data:image/jpeg;base64,")


def test_loopback_urls_are_refused_by_default(live_host, image_server, images):
    url = image_server.add("/astronaut.jpg", images["astronaut"])
    assert post(live_host, json={"url": url}).status_code == 400


@pytest.mark.parametrize(
    "target", ["http://10.1.2.3/face.jpg", "http://169.254.169.254/", "file:///etc/passwd"]
)
def test_redirect_to_a_forbidden_address(live_host_loopback, image_server, target):
    url = image_server.redirect(f"/go-{abs(hash(target))}", target)
    resp = post(live_host_loopback, json={"url": url})
    assert (resp.status_code, error_code(resp)) == (400, "url_not_allowed")


def test_redirect_to_an_allowed_image(live_host_loopback, image_server, images):
    image_server.add("/final.jpg", images["astronaut"])
    url = image_server.redirect("/hop", image_server.url("/final.jpg"))
    assert post(live_host_loopback, json={"url": url}).status_code == 200


def test_url_failures(live_host_loopback, image_server):
    html = image_server.add("/page.html", b"<html>hi</html>", "text/html")
    cases = [
        (html, 415, "not_an_image"),
        (image_server.url("/missing.jpg"), 502, "fetch_failed"),
        (image_server.url("/hang"), 504, "fetch_timeout"),
        (image_server.url("/stall"), 504, "fetch_timeout"),
        (image_server.url("/drip"), 504, "fetch_timeout"),
    ]
    for url, status, code in cases:
        resp = post(live_host_loopback, json={"url": url})
        assert (resp.status_code, error_code(resp)) == (status, code), url


def test_url_body_over_the_cap(live_host_loopback, image_server):
    url = image_server.add("/huge.jpg", b"\xff" * (TEST_MAX_BYTES + 1))
    resp = post(live_host_loopback, json={"url": url})
    assert (resp.status_code, error_code(resp)) == (413, "too_large")


def test_timeout_is_bounded(live_host_loopback, image_server):
    import time

    start = time.monotonic()
    post(live_host_loopback, json={"url": image_server.url("/hang")})
    assert time.monotonic() - start < TEST_READ_TIMEOUT * 3


def test_unknown_api_route_and_method(live_host):
    assert requests.get(live_host + "/api/nope", timeout=5).status_code == 404
    assert requests.delete(live_host + "/api/predict", timeout=5).status_code == 405


def test_head_of_the_page(live_host):
    get = requests.get(live_host + "/", timeout=5)
    head = requests.head(live_host + "/", timeout=5)
    assert head.status_code == get.status_code and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]


def test_page_or_a_clear_note(live_host):
    resp = requests.get(live_host + "/", timeout=5)
    assert resp.headers["content-security-policy"]
    if resp.status_code == 200:
        assert resp.headers["content-type"].startswith("text/html")
        assert resp.headers["cache-control"] == "no-cache"
    else:
        assert resp.status_code == 404 and b"not built" in resp.content


def test_png_upload_with_transparency(live_host, images):
    img = Image.open(io.BytesIO(images["astronaut"])).convert("RGBA")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    resp = post(live_host, files={"image": ("a.png", buf.getvalue(), "image/png")})
    assert resp.status_code == 200
