"""Memory on a fresh local host with the shipped model: under hostile images, and over many
ordinary requests.

Issue 11: a 190 KB PNG declaring 7000×7000 RGBA took the worker to 1.1 GB, and after a few
such requests 3.7 GB stayed resident. Each image below is sent 5 times, then 4 at once; the
serving process's peak RSS (VmHWM) may rise at most 350 MB above its RSS once started with the
model loaded, and stay within 1 GB whatever the model; its RSS afterwards at most 150 MB above.

Issue 25: RSS climbed ~50 KB a request under steady load (156 MB to 1.1 GB in 20,000), because
yuface's wrapper leaked YuNet's 36 KB result buffer on every call. Hundreds of requests in a
row must leave RSS flat once the host is warm.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image, ImageOps

from tests.conftest import ROOT, LocalHost
from tests.test_images import huge_png

MODEL = ROOT / "models" / "default"
# What hostile images may add to a started host: the model's own size is not theirs (the
# one-view model starts at ~150 MB, peak +291, after +52; with the CLIP view ~270 MB, +311, +73).
PEAK_ADDED_MB, AFTER_ADDED_MB = 350, 150
# Whatever the model: a 1.5 GB Consumption plan instance keeps a third free.
PEAK_MB = 1000
# Issue 25: requests sent one after another; RSS is read after WARMUP of them (glibc's arenas,
# LiteRT's and dlib's buffers have reached their size by then) and after all. The leak added
# 36 KB a request at least (one YuNet call), 7 MB over these 200 (9.4 measured); a flat host
# moves < 1 MB.
WARMUP, REQUESTS = 100, 300
GROWTH_MB = 4.0


def rss_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) / 1024
    return out


@pytest.mark.skipif(not (MODEL / "model.json").is_file(), reason="needs models/default")
def test_hostile_pngs_stay_within_the_memory_budget(tmp_path):
    # 7000² RGBA is refused from its header (392 MB to decode); 8-bit and 16-bit gray of the
    # same size are decoded (49 MB each), with a face, so alignment decodes them a second time.
    cases = {
        "7000² RGBA": (huge_png(7000, "RGBA", face=False), {413}),
        "7000² gray 8-bit": (huge_png(7000, "L"), {200}),
        "7000² gray 16-bit": (huge_png(7000, "I;16"), {200}),
        "3500² RGBA": (huge_png(3500, "RGBA"), {200}),  # the largest RGBA within the budget
    }
    # The defaults, whatever the environment says.
    host = LocalHost(
        MODEL,
        tmp_path / "host.log",
        FAKEFACES_MAX_BYTES=str(20 * 2**20),
        FAKEFACES_MAX_DECODE_BYTES=str(100 * 2**20),
        FAKEFACES_MAX_CONCURRENT="2",
    )
    try:
        start = rss_mb(host.proc.pid)

        def send(data: bytes) -> int:
            resp = requests.post(
                host.url + "/api/predict",
                data=data,
                headers={"Content-Type": "image/png"},
                timeout=120,
            )
            return resp.status_code

        report = []
        for name, (data, expected) in cases.items():
            statuses = [send(data) for _ in range(5)]
            with ThreadPoolExecutor(4) as pool:
                statuses += list(pool.map(send, [data] * 4))
            assert set(statuses) <= expected | {503}, (name, statuses)
            report.append((name, len(data), statuses, rss_mb(host.proc.pid)))
        after = rss_mb(host.proc.pid)
    finally:
        host.stop()
    lines = [f"{n}: {size / 1e6:.1f} MB file, {s} -> {m}" for n, size, s, m in report]
    summary = f"start {start}, after {after}\n" + "\n".join(lines)
    print(summary)
    assert after["VmHWM"] - start["VmRSS"] <= PEAK_ADDED_MB, summary
    assert after["VmHWM"] <= PEAK_MB, summary
    assert after["VmRSS"] - start["VmRSS"] <= AFTER_ADDED_MB, summary


def steady_photos(images: dict[str, bytes]) -> list[bytes]:
    """Ordinary uploads, as JPEG: the astronaut as it is, mirrored and at twice its size (the
    box-reduce path before detection), and the coffee cup (no face: 422 after a second look)."""
    face = Image.open(io.BytesIO(images["astronaut"]))
    out = [images["astronaut"], images["coffee"]]
    for img in (ImageOps.mirror(face), face.resize((1024, 1024))):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


@pytest.mark.skipif(not (MODEL / "model.json").is_file(), reason="needs models/default")
def test_rss_stays_flat_over_hundreds_of_requests(tmp_path, images):
    photos = steady_photos(images)
    host = LocalHost(MODEL, tmp_path / "host.log", FAKEFACES_MAX_CONCURRENT="2")
    series = []
    try:
        with requests.Session() as session:
            for i in range(REQUESTS):
                resp = session.post(
                    host.url + "/api/predict",
                    data=photos[i % len(photos)],
                    headers={"Content-Type": "image/jpeg"},
                    timeout=60,
                )
                assert resp.status_code in (200, 422), resp.text[:200]
                if (i + 1) % 50 == 0:
                    series.append((i + 1, rss_mb(host.proc.pid)["VmRSS"]))
    finally:
        host.stop()
    rss = dict(series)
    growth = rss[REQUESTS] - rss[WARMUP]
    summary = ", ".join(f"{n}: {mb:.1f}" for n, mb in series)
    print(f"RSS MB after n requests: {summary}; growth after {WARMUP}: {growth:.1f} MB")
    assert growth < GROWTH_MB, summary


def test_yunet_called_directly_answers_as_yuface_does(images):
    # shared.faces calls libfacedetection itself, with a buffer it owns, instead of yuface's
    # leaking wrapper: the rows must be the wrapper's (its 16th column is never written).
    from yuface.yuface import detect as wrapper

    from shared import faces

    direct, _, _, lock = faces._models()
    found = 0
    for name, data in images.items():
        img = Image.open(io.BytesIO(data)).convert("RGB")
        for side in (faces.DETECT_SIDE, faces.RETRY_SIDE, 97):
            small = img.resize((side, side * img.height // img.width))
            bgr = np.ascontiguousarray(np.asarray(small)[:, :, ::-1])
            with lock:
                ours, theirs = direct(bgr), wrapper(bgr)
            assert ours.shape == theirs.shape, (name, side)
            assert np.array_equal(ours[:, :15], theirs[:, :15]), (name, side)
            found += len(ours)
    assert found >= 2  # the astronaut at two sizes at least: the comparison saw faces
