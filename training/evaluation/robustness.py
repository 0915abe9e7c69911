"""Robustness variants of a split: the photos a user shares are re-compressed and resized.

`evaluate --robustness` scores each image again after a degradation and reports the accuracy
drop against the clean score of the same images:

- `jpeg75`: re-encoded as JPEG at quality 75 (PIL, 4:2:0 chroma), decoded as serving decodes;
- `half`: shrunk to half its side (bicubic, antialiased) and enlarged back (bicubic);
- `half+jpeg75`: both, in that order (a photo resized, then saved).

Applied to the **source photo** (default), then detected and aligned by serving's own code
(`shared.faces.detect_and_align`, the largest face, as `prepare` does): what serving would see
of such a photo. A degraded photo in which no face is found is counted, not scored. With
`--robustness-on crop` the degradation is applied to the prepared aligned crop instead (fast, no
detection, but a model whose input is half the crop side or less barely sees `half` there).
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from shared.model import ModelSpec, to_input

VARIANTS = ("jpeg75", "half", "half+jpeg75")
TARGETS = ("photo", "crop")
JPEG_QUALITY = 75
INLINE_BELOW = 64  # fewer jobs than this: no worker processes


def degrade(img: Image.Image, variant: str) -> Image.Image:
    """One RGB image -> the same after `variant` (see the module's docstring)."""
    from shared.images import load_image

    if variant not in VARIANTS:
        raise ValueError(f"unknown robustness variant {variant!r}; choose from {VARIANTS}")
    img = img.convert("RGB")
    if variant.startswith("half"):
        w, h = img.size
        small = img.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BICUBIC)
        img = small.resize((w, h), Image.Resampling.BICUBIC)
    if variant.endswith("jpeg75"):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
        img = load_image(buf.getvalue())  # serving's decoder, as for an uploaded JPEG
    return img


def _raw_pixels(aligned: Image.Image, size: int, color: str) -> np.ndarray:
    """`to_input` before its scale and offset, uint8 (exact: PIL's pixels are integers)."""
    raw = ModelSpec(name="", version="", size=size, color=color, scale=1.0, offset=0.0)
    return to_input(aligned.convert("RGB"), raw).astype(np.uint8)


def variant_pixels(job: tuple[str, str, str, int, int, str]) -> np.ndarray | None:
    """(path, variant, target, align_size, size, color) -> uint8 model pixels, or None when
    serving's detector finds no face in the degraded photo."""
    path, variant, target, align_size, size, color = job
    from shared.images import load_image

    if target == "crop":
        with Image.open(path) as img:
            return _raw_pixels(degrade(img, variant), size, color)
    from shared.faces import detect_and_align

    faces = detect_and_align(degrade(load_image(path), variant), size=align_size)
    if not faces:
        return None
    return _raw_pixels(faces[0].aligned, size, color)  # the largest face, as prepare keeps


def _init_worker() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def score_variant(
    paths: list[str],
    variant: str,
    target: str,
    spec: ModelSpec,
    predict,
    workers: int | None = None,
    quiet: bool = False,
) -> np.ndarray:
    """P(fake) of every path after `variant`; NaN where no face was found."""
    jobs = [(p, variant, target, spec.align_size, spec.size, spec.color) for p in paths]
    desc = f"robustness {variant} ({target})"
    pool = None
    if len(jobs) < INLINE_BELOW or workers == 1:
        results = map(variant_pixels, jobs)
    else:
        # spawn: no fork after TensorFlow or dlib threads exist
        pool = mp.get_context("spawn").Pool(workers or os.cpu_count(), _init_worker)
        results = pool.imap(variant_pixels, jobs, chunksize=8)
    pixels: list[np.ndarray | None] = []
    try:
        pixels = list(tqdm(results, total=len(jobs), desc=desc, unit="img", disable=quiet))
    finally:
        if pool:
            pool.terminate()
    p = np.full(len(paths), np.nan, np.float32)
    found = [i for i, px in enumerate(pixels) if px is not None]
    batch = 256
    for start in range(0, len(found), batch):
        idx = found[start : start + batch]
        x = np.stack([pixels[i] for i in idx]).astype(np.float32)
        p[idx] = predict(x * np.float32(spec.scale) + np.float32(spec.offset))
    return p


def source_paths(rows: list[dict[str, str]], target: str, sources: dict[str, Path]) -> list[str]:
    """Where each row's image is: its source photo (under the prepared folder's source) or its
    aligned crop (under the prepared folder)."""
    if target == "crop":
        return [str(Path(r["root"]) / r["output"]) for r in rows]
    return [str(sources[r["root"]] / r["source"]) for r in rows]
