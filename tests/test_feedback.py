"""Feedback ("This verdict is wrong"): shared.feedback's parts, then predict -> feedback over real
HTTP (python -m shared serve) into a real Azurite, forged, replayed, flooded and with storage down.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
import uuid

import pytest
import requests
from PIL import Image

from shared import feedback as fb
from shared.errors import BadRequest, InvalidToken, RateLimited, TooLarge, UnsupportedMediaType
from shared.storage import FeedbackStore
from tests.azurite import start_azurite
from tests.conftest import LocalHost

SECRET = "test-secret-not-for-production"
MODEL, VERSION = "tiny-test", "0.0.1"  # conftest's tiny_model_dir


def mint(secret: str = SECRET, **change) -> str:
    """A token as predict would sign it (with `change` applied before signing)."""
    said = fb.claims(
        change.pop("sha256", uuid.uuid4().hex * 2),
        0,
        "0123456789abcdef",
        MODEL,
        VERSION,
        0.25,
        "real",
        "upload",
        int(time.time()),
    )
    return fb.Signer(secret).sign({**said, **change})


def edited(token: str, **change) -> str:
    """`token` with its payload changed and its signature kept: what a forger can do."""
    payload, sig = token.split(".")
    doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body = json.dumps({**doc, **change}, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(body).rstrip(b"=").decode() + "." + sig


def unique(photo: bytes) -> bytes:
    """The same JPEG with a comment of its own: other bytes (so another token, as a photo
    analysed twice in one second gets the same one), the same pixels."""
    note = uuid.uuid4().hex.encode()
    return photo[:2] + b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note + photo[2:]


def claims_of(token: str) -> dict:
    return fb.Signer(SECRET).verify(token, 3600)


# --- Tokens -----------------------------------------------------------------------------------


def test_a_token_verifies_and_every_edit_is_refused():
    token = mint()
    assert claims_of(token)["p_fake"] == 0.25
    forged = [
        edited(token, p_fake=0.9),
        edited(token, version="9.9.9"),
        edited(token, label="fake"),
        mint(secret="another key"),
        token[:-2],
        "not-a-token",
        "a.b.c",
        token + "x" * fb.MAX_TOKEN,
        "eyJ2IjoxfQ.",
        fb.Signer(SECRET).sign({"v": 1, "sha256": "x"}),  # signed but not a full claim set
        fb.Signer(SECRET).sign({**claims_of(token), "p_fake": True}),
    ]
    for bad in forged:
        with pytest.raises(InvalidToken) as err:
            fb.Signer(SECRET).verify(bad, 3600)
        assert err.value.status == 403 and err.value.code == "invalid_token"


def test_a_token_expires_and_cannot_come_from_the_future():
    now = time.time()
    old = mint(iat=int(now) - 25 * 3600)
    with pytest.raises(InvalidToken, match="expired"):
        fb.Signer(SECRET).verify(old, 24 * 3600, now=now)
    assert fb.Signer(SECRET).verify(old, 26 * 3600, now=now)
    ahead = mint(iat=int(now) + 3600)
    with pytest.raises(InvalidToken):
        fb.Signer(SECRET).verify(ahead, 24 * 3600, now=now)


def test_without_a_secret_each_process_has_its_own_key():
    token = fb.Signer("").sign({"x": 1})
    with pytest.raises(InvalidToken):
        fb.Signer("").verify(token, 3600)


def test_one_token_one_receipt():
    token = mint()
    assert fb.receipt_of(token) == fb.receipt_of(token)
    assert len(fb.receipt_of(token)) == 32 and int(fb.receipt_of(token), 16) >= 0
    assert fb.receipt_of(token) != fb.receipt_of(mint())


# --- Perceptual hash --------------------------------------------------------------------------


def aligned(photo: bytes) -> Image.Image:
    from shared import faces

    [face] = faces.detect_and_align(Image.open(io.BytesIO(photo)).convert("RGB"))
    return face.aligned


def test_phash_is_stable_under_recompression_and_tells_faces_apart(images):
    crop = aligned(images["astronaut"])
    again = io.BytesIO()
    Image.open(io.BytesIO(images["astronaut"])).save(again, format="JPEG", quality=50)
    same = aligned(again.getvalue())
    other = Image.open(io.BytesIO(images["chelsea"])).resize(crop.size)
    mirrored = crop.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    h = fb.phash(crop)
    assert len(h) == 16 and int(h, 16) >= 0
    assert fb.hamming(h, fb.phash(same)) <= 8
    assert fb.hamming(h, fb.phash(other)) >= 20
    assert fb.hamming(h, fb.phash(mirrored)) >= 20


# --- Rate limit and client address ------------------------------------------------------------


def test_rate_limit_per_client_and_minute():
    now = [1000.0]
    limit = fb.RateLimiter(3, clock=lambda: now[0])
    for _ in range(3):
        limit.check("203.0.113.5")
    with pytest.raises(RateLimited) as err:
        limit.check("203.0.113.5")
    assert err.value.status == 429 and 1 <= err.value.retry_after <= 60
    assert err.value.to_json()["error"]["retry_after"] == err.value.retry_after
    limit.check("198.51.100.7")  # another client is not held up
    now[0] += 30
    with pytest.raises(RateLimited) as err:
        limit.check("203.0.113.5")
    assert err.value.retry_after == 30
    now[0] += 30
    limit.check("203.0.113.5")


def test_client_address_from_forwarded_for():
    # A client can send its own X-Forwarded-For; Azure's front end appends the address it saw.
    assert fb.client_address("198.51.100.7, 203.0.113.5:51234") == "203.0.113.5"
    assert fb.client_address("203.0.113.5") == "203.0.113.5"
    assert fb.client_address("[2001:db8::1]:443") == "2001:db8::1"
    assert fb.client_address("2001:db8::1") == "2001:db8::1"
    assert fb.client_address("") == "unknown"


# --- The form ---------------------------------------------------------------------------------


def form(fields: dict, files: dict | None = None) -> tuple[str, bytes]:
    req = requests.Request("POST", "http://x/", data=fields, files=files).prepare()
    body = req.body.encode() if isinstance(req.body, str) else req.body
    return req.headers["Content-Type"], body


def test_form_validation():
    ok = form({"token": "t", "label": "fake", "keep": "1"}, {"image": ("a.jpg", b"\xff\xd8")})
    parsed = fb.parse_form(*ok, max_bytes=1000)
    assert (parsed.token, parsed.label, parsed.keep, parsed.image) == (
        "t",
        "fake",
        True,
        b"\xff\xd8",
    )
    assert fb.parse_form(*form({"token": "t", "label": "unsure"}), max_bytes=1000).keep is False
    bad = [
        form({"label": "fake"}),
        form({"token": "t"}),
        form({"token": "t", "label": "cat"}),
        form({"token": "t", "label": "fake", "keep": "yes"}),
        form({"token": "t", "label": "fake", "keep": "1"}),
        ("multipart/form-data; boundary=x", b"--x\r\nbroken"),
        ("multipart/form-data", b""),
        form({"token": "t" * (fb.MAX_FORM_TEXT + 1), "label": "fake"}),
        form({"token": "t" * (fb.MAX_FORM_TEXT + 1), "label": "fake"}, {"image": ("a", b"x")}),
    ]
    for ctype, body in bad:
        with pytest.raises(BadRequest):
            fb.parse_form(ctype, body, max_bytes=1000)
    with pytest.raises(UnsupportedMediaType):
        fb.parse_form("application/json", b'{"token": "t"}', max_bytes=1000)
    with pytest.raises(TooLarge):
        fb.parse_form(*form({"token": "t"}, {"image": ("a", b"x" * 80_000)}), max_bytes=1000)


# --- Over HTTP, into Azurite ------------------------------------------------------------------


class FeedbackHost:
    """A local host with feedback on, its own table and container in `azurite`, and a store
    on the same names to look at what it wrote."""

    def __init__(self, model_dir, log, azurite, **env: str):
        tag = uuid.uuid4().hex[:12]
        self.table, self.container = f"fb{tag}", f"fb-{tag}"
        self.host = LocalHost(
            model_dir,
            log,
            AzureWebJobsStorage=azurite.connection_string,
            FAKEFACES_FEEDBACK_TABLE=self.table,
            FAKEFACES_FEEDBACK_CONTAINER=self.container,
            FAKEFACES_FEEDBACK_SECRET=SECRET,
            FAKEFACES_ALLOW_LOOPBACK_URLS="1",
            **env,
        )
        self.url = self.host.url
        self.azurite = azurite

    def store(self) -> FeedbackStore:
        return FeedbackStore.connect(self.azurite.connection_string, self.table, self.container)

    def predict(self, photo: bytes) -> dict:
        resp = requests.post(
            self.url + "/api/predict", files={"image": ("a.jpg", photo, "image/jpeg")}, timeout=60
        )
        assert resp.status_code == 200, resp.text
        return resp.json()

    def predict_url(self, url: str) -> dict:
        resp = requests.post(self.url + "/api/predict", json={"url": url}, timeout=60)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def send(self, token: str, label: str = "fake", keep: str = "0", **kw) -> requests.Response:
        fields = {"token": token, "label": label, "keep": keep}
        files = None
        if "image" in kw:
            files = {"image": ("photo.jpg", kw.pop("image"), "image/jpeg")}
        fields.update(kw)
        return requests.post(self.url + "/api/feedback", data=fields, files=files, timeout=30)


@pytest.fixture(scope="module")
def host(tiny_model_dir, tmp_path_factory, azurite):
    server = FeedbackHost(
        tiny_model_dir,
        tmp_path_factory.mktemp("fb-host") / "host.log",
        azurite,
        # These tests all come from 127.0.0.1: the limit has a test of its own.
        FAKEFACES_FEEDBACK_PER_MINUTE="1000",
    )
    yield server
    server.host.stop()


def error_code(resp: requests.Response) -> str:
    assert resp.headers["content-type"].startswith("application/json"), resp.text
    assert resp.headers["content-security-policy"] and resp.headers["cache-control"] == "no-store"
    assert resp.json()["error"]["message"]
    return resp.json()["error"]["code"]


def receipts(store: FeedbackStore) -> set[str]:
    return {r["receipt"] for r in store.records()}


def test_health_says_feedback_is_on(host):
    body = requests.get(host.url + "/api/health", timeout=10).json()
    assert body["feedback"] == {
        "enabled": True,
        "storage": "connection string",
        "retention_days": 365,
    }


def test_predict_signs_what_it_answered_for_each_face(host, images):
    photo = unique(images["astronaut"])
    answer = host.predict(photo)
    [face] = answer["faces"]
    said = claims_of(face["feedback_token"])
    assert said == {
        "v": 1,
        "sha256": hashlib.sha256(photo).hexdigest(),
        "face": 0,
        "phash": said["phash"],
        "model": MODEL,
        "version": VERSION,
        "p_fake": face["p_fake"],
        "label": face["label"],
        "source": "upload",
        "iat": said["iat"],
    }
    assert len(said["phash"]) == 16 and abs(said["iat"] - time.time()) < 120


def test_round_trip_without_keeping_stores_no_pixels(host, images):
    """keep=0 with the photo attached anyway: the record only, no blob."""
    photo = unique(images["astronaut"])
    token = host.predict(photo)["faces"][0]["feedback_token"]
    resp = host.send(token, "fake", "0", image=photo)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["status"] == "stored" and body["kept_photo"] is False
    assert body["receipt"] in body["message"] and "365 days" in body["message"]
    store = host.store()
    [rec] = [r for r in store.records() if r["receipt"] == body["receipt"]]
    said = claims_of(token)
    assert rec["image_sha256"] == said["sha256"] and rec["crop_phash"] == said["phash"]
    assert (rec["user_label"], rec["verdict"], rec["p_fake"]) == (
        "fake",
        said["label"],
        said["p_fake"],
    )
    assert (rec["kept"], rec["blob"], rec["review"]) == (False, "", "pending")
    assert (rec["model_name"], rec["model_version"], rec["source"]) == (MODEL, VERSION, "upload")
    assert "127.0.0.1" not in json.dumps(rec)
    assert body["receipt"] not in [b.name for b in store.container.list_blobs()]


def test_round_trip_keeping_an_upload_keeps_its_exact_bytes(host, images):
    photo = unique(images["astronaut"])
    token = host.predict(photo)["faces"][0]["feedback_token"]
    resp = host.send(token, "real", "1", image=photo)
    assert resp.status_code == 201, resp.text
    assert resp.json()["kept_photo"] is True
    store = host.store()
    [rec] = [r for r in store.records() if r["receipt"] == resp.json()["receipt"]]
    assert (rec["kept"], rec["content_type"], rec["user_label"]) == (True, "image/jpeg", "real")
    assert store.photo(rec) == photo


def test_round_trip_keeping_a_url_fetches_it_again(host, images, image_server):
    photo = unique(images["astronaut"])
    path = f"/fb-{uuid.uuid4().hex}.jpg"
    url = image_server.add(path, photo)
    token = host.predict_url(url)["faces"][0]["feedback_token"]
    assert claims_of(token)["source"] == "url"
    sent = host.send(token, "unsure", "1", url=url)
    assert sent.status_code == 201, sent.text
    store = host.store()
    [rec] = [r for r in store.records() if r["receipt"] == sent.json()["receipt"]]
    assert store.photo(rec) == photo and rec["source"] == "url"


def test_a_different_photo_is_not_kept(host, images, image_server):
    """The photo sent (or found at the URL now) must be the one analysed: 422, nothing stored."""
    photo = unique(images["astronaut"])
    store = host.store()
    before = receipts(store)
    token = host.predict(photo)["faces"][0]["feedback_token"]
    recoded = io.BytesIO()
    Image.open(io.BytesIO(photo)).save(recoded, format="JPEG", quality=80)
    resp = host.send(token, "fake", "1", image=recoded.getvalue())
    assert (resp.status_code, error_code(resp)) == (422, "photo_mismatch")
    path = f"/swap-{uuid.uuid4().hex}.jpg"
    url = image_server.add(path, photo)
    token = host.predict_url(url)["faces"][0]["feedback_token"]
    image_server.add(path, recoded.getvalue())  # the page behind the URL changed since
    resp = host.send(token, "fake", "1", url=url)
    assert (resp.status_code, error_code(resp)) == (422, "photo_mismatch")
    assert receipts(store) == before


def test_forged_and_replayed_feedback_is_refused_and_not_stored(host, images):
    photo = unique(images["astronaut"])
    store = host.store()
    before = receipts(store)
    token = host.predict(photo)["faces"][0]["feedback_token"]
    first = host.send(token, "fake")
    assert first.status_code == 201, first.text
    cases = [
        (token, 409, "already_received"),  # replay
        (edited(token, p_fake=0.99), 403, "invalid_token"),
        (
            edited(token, label="fake" if claims_of(token)["label"] == "real" else "real"),
            403,
            "invalid_token",
        ),
        (mint(secret="a guess"), 403, "invalid_token"),
        (mint(version="9.9.9"), 409, "model_changed"),  # genuine, for another model version
        (mint(iat=int(time.time()) - 30 * 3600), 403, "invalid_token"),  # expired
        ("forged", 403, "invalid_token"),
    ]
    for bad, status, code in cases:
        resp = host.send(bad, "fake", "1", image=photo)
        assert (resp.status_code, error_code(resp)) == (status, code), (bad, resp.text)
    assert receipts(store) == before | {first.json()["receipt"]}
    assert first.json()["receipt"] not in [b.name for b in store.container.list_blobs()]


def test_bad_forms_are_json_400s(host):
    token = mint()
    cases = [
        ({"data": {"label": "fake"}}, 400, "bad_request"),
        ({"data": {"token": token, "label": "maybe"}}, 400, "bad_request"),
        ({"data": {"token": token, "label": "fake", "keep": "1"}}, 400, "bad_request"),
        ({"json": {"token": token, "label": "fake"}}, 415, "unsupported_media_type"),
    ]
    for kwargs, status, code in cases:
        resp = requests.post(host.url + "/api/feedback", timeout=30, **kwargs)
        assert (resp.status_code, error_code(resp)) == (status, code), kwargs


FUZZ_URLS = [
    "file:///etc/passwd",
    "http://10.0.0.1/x.jpg",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:9/x.jpg",
    "ftp://example.com/x.jpg",
    "http://exa mple.com/",
    "",
    "\x00",
]


def fuzz_request(rng, photo: bytes) -> tuple[dict, bytes | None]:
    """One hostile feedback post: (requests keyword arguments)."""
    token = rng.choice(
        [
            mint(),
            edited(mint(), p_fake=2),
            "",
            "x" * rng.choice([1, 5000]),
            "..",
            "a.b",
            "\u00ff.\u00ff",
        ]
    )
    fields = {
        "token": token,
        "label": rng.choice(["real", "fake", "unsure", "", "REAL", "fake\x00", "é" * 100]),
        "keep": rng.choice(["0", "1", "", "2", "true", "1" * 50]),
    }
    if rng.random() < 0.5:
        fields["url"] = rng.choice(FUZZ_URLS)
    for key in list(fields):
        if rng.random() < 0.15:
            del fields[key]
    shape = rng.randrange(5)
    if shape == 0:
        junk = rng.randbytes(rng.randint(0, 3000))
        return {"files": {"image": ("a.jpg", rng.choice([photo, junk]))}, "data": fields}
    if shape == 1:
        return {"data": fields}
    if shape == 2:
        ctype = rng.choice(["multipart/form-data", "multipart/form-data; boundary=", "text/plain"])
        return {"data": rng.randbytes(rng.randint(0, 2000)), "headers": {"Content-Type": ctype}}
    if shape == 3:
        return {"json": fields}
    body = f'--b\r\nContent-Disposition: form-data; name="{"token" * rng.randint(0, 3)}"\r\n\r\n'
    return {
        "data": body.encode() + rng.randbytes(rng.randint(0, 100)),
        "headers": {"Content-Type": "multipart/form-data; boundary=b"},
    }


def test_fuzzed_feedback_never_fails_with_500(host, images):
    """300 seeded hostile posts: every answer a 2xx or a JSON 4xx (storage is up: no 5xx),
    and nothing is stored but what a genuine token allows."""
    import random

    rng = random.Random(13)
    photo = unique(images["astronaut"])
    store = host.store()
    before = receipts(store)
    stored = set()
    with requests.Session() as session:
        for index in range(300):
            kwargs = fuzz_request(rng, photo)
            resp = session.post(host.url + "/api/feedback", timeout=30, **kwargs)
            assert resp.status_code < 500, (index, kwargs, resp.text)
            if resp.status_code == 201:
                stored.add(resp.json()["receipt"])
            else:
                assert error_code(resp), (index, resp.text)
    assert receipts(store) == before | stored
    assert all(not r["kept"] for r in store.records() if r["receipt"] in stored)


def test_feedback_accepts_only_post(host):
    resp = requests.get(host.url + "/api/feedback", timeout=10)
    assert (resp.status_code, error_code(resp)) == (405, "method_not_allowed")
    assert resp.headers["allow"] == "POST"


def test_a_thousand_posts_in_a_minute_store_only_the_limit(tiny_model_dir, tmp_path, azurite):
    """1,000 genuine tokens from one client in a minute (each with a made-up X-Forwarded-For,
    which the host must not believe): FAKEFACES_FEEDBACK_PER_MINUTE stored, the rest 429."""
    limited = FeedbackHost(
        tiny_model_dir, tmp_path / "host.log", azurite, FAKEFACES_FEEDBACK_PER_MINUTE="10"
    )
    statuses = []
    start = time.monotonic()
    try:
        with requests.Session() as session:
            for i in range(1000):
                resp = session.post(
                    limited.url + "/api/feedback",
                    data={"token": mint(), "label": "fake", "keep": "0"},
                    headers={"X-Forwarded-For": f"198.51.100.{i % 250}"},
                    timeout=30,
                )
                statuses.append(resp.status_code)
                if resp.status_code == 429:
                    assert error_code(resp) == "rate_limited"
                    assert 1 <= int(resp.headers["retry-after"]) <= 60
        took = time.monotonic() - start
    finally:
        limited.host.stop()
    assert took < 60, took  # all inside one minute, so the limit applied to every one
    assert statuses[:10] == [201] * 10 and statuses[10:] == [429] * 990
    assert len(limited.store().records()) == 10
    print(f"1,000 feedback posts in {took:.1f} s")


class Falling:
    """An image URL on loopback whose server stops `azurite` when the photo is fetched the
    second time (feedback's re-fetch), then serves it: storage goes down mid-request, after
    every check and before anything is written."""

    def __init__(self, photo: bytes, azurite):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        gets = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                gets.append(self.path)
                if len(gets) == 2:
                    azurite.stop()
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(photo)))
                self.end_headers()
                self.wfile.write(photo)

            def log_message(self, *args):
                pass

        self.gets = gets
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/face.jpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_storage_down_mid_request_is_503_and_leaves_nothing(
    tiny_model_dir, tmp_path, azurite, images
):
    """Azurite stopped between predict and feedback, then during a feedback request: 503
    storage_unavailable within seconds; once it is back, nothing of either post is there, and
    the same post then stores."""
    photo = unique(images["astronaut"])
    own = start_azurite(tmp_path / "azurite")
    server = FeedbackHost(tiny_model_dir, tmp_path / "host.log", own)
    falling = Falling(unique(images["astronaut"]), own)
    try:
        token = server.predict(photo)["faces"][0]["feedback_token"]
        other = mint(sha256=hashlib.sha256(photo).hexdigest())
        done = server.send(other, "real", "1", image=photo)
        assert done.status_code == 201, done.text  # connected and working before the fall
        stored = {done.json()["receipt"]}
        own.stop()
        start = time.monotonic()
        resp = server.send(token, "fake", "1", image=photo)
        took = time.monotonic() - start
        assert (resp.status_code, error_code(resp)) == (503, "storage_unavailable")
        assert took < 5, took
        own.start()
        store = server.store()
        assert receipts(store) == stored
        assert [b.name for b in store.container.list_blobs()] == [done.json()["receipt"]]
        again = server.send(token, "fake", "1", image=photo)
        assert again.status_code == 201, again.text
        stored.add(again.json()["receipt"])
        assert store.photo({"blob": again.json()["receipt"]}) == photo

        url_token = server.predict_url(falling.url)["faces"][0]["feedback_token"]
        resp = server.send(url_token, "fake", "1", url=falling.url)
        assert len(falling.gets) == 2 and own.proc is None  # it did fall mid-request
        assert (resp.status_code, error_code(resp)) == (503, "storage_unavailable")
        own.start()
        assert receipts(store) == stored
        assert sorted(b.name for b in store.container.list_blobs()) == sorted(stored)
        print(f"storage down: 503 in {took * 1000:.0f} ms")
    finally:
        falling.server.shutdown()
        server.host.stop()
        own.stop()


def test_without_storage_feedback_is_off_everywhere(live_host, images):
    """No AzureWebJobsStorage: 503 feedback_unavailable with a sentence, health says so, and
    predict signs nothing."""
    photo = unique(images["astronaut"])
    resp = requests.post(
        live_host + "/api/feedback", data={"token": mint(), "label": "fake"}, timeout=10
    )
    assert (resp.status_code, error_code(resp)) == (503, "feedback_unavailable")
    assert "storage" in resp.json()["error"]["message"]
    health = requests.get(live_host + "/api/health", timeout=10).json()
    assert health["feedback"] == {
        "enabled": False,
        "storage": "off",
        "off_because": "no storage account is configured (AzureWebJobsStorage is not set)",
        "retention_days": 365,
    }
    answer = requests.post(
        live_host + "/api/predict",
        files={"image": ("a.jpg", photo, "image/jpeg")},
        timeout=60,
    ).json()
    assert answer["faces"] and all("feedback_token" not in f for f in answer["faces"])
