"""bytes -> image -> faces -> aligned tensors -> P(fake) -> the answer, with per-stage timings."""

from __future__ import annotations

import base64
import hashlib
import io
import math
import threading
import time
from contextlib import contextmanager

import numpy as np
from PIL import Image

from . import explain as explainlib
from . import faces as facelib
from . import feedback as feedbacklib
from .align import face_quad
from .errors import Busy, NoFace
from .fetch import fetch_image
from .images import Source, fit_within
from .model import Model
from .settings import Settings

PREVIEW_SIDE = 640
# Detection needs only RETRY_SIDE (640) px, but alignment needs a face's quad at twice the output
# size: decoding a large JPEG at ≥ 1024 px first (its 1/2 or 1/4 scale) usually serves both, where
# a 640-px first decode made a 12 MP photo decode twice (measured: 99 ms against 40).
FIRST_DECODE_SIDE = 1024


class Stopwatch:
    def __init__(self):
        self.ms: dict[str, float] = {}
        self._start = self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.ms[stage] = round(self.ms.get(stage, 0.0) + (now - self._last) * 1000, 2)
        self._last = now

    def total(self) -> dict[str, float]:
        return {**self.ms, "total": round((time.perf_counter() - self._start) * 1000, 2)}


def needed_scale(face: facelib.Face, align_size: int) -> float:
    """The decode scale that loses nothing the FFHQ recipe keeps: it shrinks every face to at
    least twice the output size before warping, so more pixels than that are never used."""
    quad = face_quad(*face.points)
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    return min(1.0, 2 * align_size / max(qsize, 1.0))


def locate_faces(
    src: Source, size: int, watch: Stopwatch, max_faces: int | None = None
) -> tuple[Image.Image, list[facelib.AlignedFace]]:
    """Detect on a small decode; place the landmarks and align each face from a decode as large
    as alignment needs (for a JPEG often still a reduced one). Returns the first decode too.
    With `max_faces`, only the largest that many are kept (each costs time and bytes)."""
    decoded = src.decode(min_side=FIRST_DECODE_SIDE)
    watch.lap("decode")
    found = facelib.detect(decoded)
    watch.lap("detect")
    if not found:
        raise NoFace("No face was found. Try a photo with a face in it, in good light.")
    largest = sorted(range(len(found)), key=lambda i: -found[i].box[2] * found[i].box[3])
    found = [found[i] for i in sorted(largest[:max_faces])]  # in the detector's order
    full_w = src.size[0]
    # Faces in full-resolution coordinates, so boxes refer to the photo as uploaded.
    found = [f.scaled(full_w / decoded.width) for f in found]
    scale = max(needed_scale(f, size) for f in found)
    if scale * full_w > decoded.width * 1.01:
        big = src.decode(min_side=math.ceil(max(src.size) * scale))
        watch.lap("decode")
    else:
        big = decoded
    k = big.width / full_w
    placed = [facelib.landmark(big, f.scaled(k)) for f in found]
    watch.lap("landmarks")
    aligned = [
        facelib.AlignedFace(**vars(f.scaled(1 / k)), aligned=facelib.align(big, f, size))
        for f in placed
    ]
    watch.lap("align")
    # Not shrunk here: only a preview needs it smaller (a 1 MP shrink cost 7 ms a request).
    return decoded, aligned


def view_scores(views: dict[str, float]) -> dict:
    """Each view's own P(fake), and whether they disagree: one alone would say likely fake
    (>= 0.5), the other likely real. The page shows both, so a person sees a split verdict."""
    said = {p >= 0.5 for p in views.values()}
    return {"views": {k: round(p, 6) for k, p in views.items()}, "views_disagree": len(said) > 1}


def data_url(img: Image.Image, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    img.save(buf, format=fmt, optimize=True, **({"quality": 80} if fmt == "JPEG" else {}))
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def analyze(
    data: bytes,
    model: Model,
    settings: Settings,
    crops: bool = False,
    watch: Stopwatch | None = None,
    preview: bool = False,
    explain: bool = False,
    signer: feedbacklib.Signer | None = None,
    source: str = "upload",
) -> dict:
    """The JSON-ready answer for one image's bytes. `crops` adds what the model saw of each
    face; `preview` a small JPEG of the photo (a page cannot show a URL's image itself under
    its Content-Security-Policy); `explain` a Grad-CAM overlay per face; `signer` a feedback
    token per face, vouching for this answer (`source`: how the photo came, upload or url)."""
    watch = watch or Stopwatch()
    spec = model.spec
    if explain:
        model.require_explain()  # before any work is done
    src = Source(data, settings.max_bytes, settings.max_pixels, settings.max_decode_bytes)
    decoded, found = locate_faces(src, spec.align_size, watch, settings.max_faces)
    scores = model.score([f.aligned for f in found])
    watch.lap("predict")
    faces = []
    sha256 = hashlib.sha256(data).hexdigest() if signer else ""
    for i, (face, p, x) in enumerate(zip(found, scores.p_fake, scores.inputs, strict=True)):
        x0, y0, w, h = face.box
        item = {
            "box": {"x": x0, "y": y0, "w": w, "h": h},
            "p_fake": round(float(p), 6),
            "label": model.label(float(p)),
        }
        if scores.views:
            item.update(view_scores({k: float(v[i]) for k, v in scores.views.items()}))
        if crops or explain:  # what the model saw, back in 8-bit pixels
            pixels = np.clip(np.rint((x - spec.offset) / spec.scale), 0, 255).astype(np.uint8)
        if crops:
            item["crop"] = data_url(Image.fromarray(pixels.squeeze()))
        if explain:
            item["explanation"] = explanation(model, x, pixels, item["label"])
        if signer:
            said = feedbacklib.claims(
                sha256,
                len(faces),
                feedbacklib.phash(face.aligned),
                spec.name,
                spec.version,
                item["p_fake"],
                item["label"],
                source,
                int(time.time()),
            )
            item["feedback_token"] = signer.sign(said)
        faces.append(item)
    if explain:
        watch.lap("explain")
    worst = max(f["p_fake"] for f in faces)
    image = {"width": src.size[0], "height": src.size[1]}
    if preview:
        image["preview"] = data_url(fit_within(decoded, PREVIEW_SIDE), "JPEG")
    return {
        "verdict": model.label(worst),
        "p_fake": worst,
        "threshold": spec.threshold,
        "faces": faces,
        "image": image,
        "model": {"name": spec.name, "version": spec.version},
        "timings_ms": watch.total(),
    }


def explanation(model: Model, x: np.ndarray, pixels: np.ndarray, label: str) -> dict:
    """Grad-CAM of one face for the label it was given, as a picture over the crop."""
    _, features, weights = model.explain(x)
    cam = explainlib.grad_cam(features, weights, fake=label == "fake")
    return {
        "method": "grad-cam",
        "explains": label,
        "overlay": data_url(explainlib.overlay(pixels, cam)),
    }


def analyze_url(
    url: str, model: Model, settings: Settings, crops: bool = False, explain: bool = False
) -> dict:
    watch = Stopwatch()
    data = fetch_image(
        url,
        settings.max_bytes,
        settings.fetch_connect_timeout,
        settings.fetch_read_timeout,
        settings.allow_loopback_urls,
    )
    watch.lap("fetch")
    return analyze(data, model, settings, crops, watch, preview=crops, explain=explain)


class Gate:
    """At most `n` analyses at once per process; others wait up to `timeout` s, then get 503."""

    def __init__(self, n: int, timeout: float):
        self._slots = threading.BoundedSemaphore(n)
        self._timeout = timeout

    @contextmanager
    def slot(self):
        if not self._slots.acquire(timeout=self._timeout):
            raise Busy("The server is busy with other images; try again in a few seconds.")
        try:
            yield
        finally:
            self._slots.release()
