"""Find faces with YuNet (libfacedetection, via `yuface`) and place the FFHQ points with dlib.

Detection: YuNet, a small CNN whose weights are compiled into the `yuface` wheel, on a copy at
most DETECT_SIDE px (RETRY_SIDE when that finds nothing). It gives a confidence, a box and five
keypoints (eye centres, nose tip, mouth corners).

Landmarks: dlib's 68-point shape predictor on YuNet's box, where it agrees with YuNet's own
keypoints; where it does not (turned, tilted, blurred or tightly framed faces, on which dlib's
model is wrong), YuNet's keypoints from a second, closer look. The FFHQ recipe needs only the
eye centres and mouth corners, which both sources give.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .align import face_quad, ffhq_align, points_from_landmarks
from .images import fit_within

# YuNet is trained at 320 px; faces down to ~10 px of that are found. Photos with nothing found
# there are tried once more at RETRY_SIDE, for small faces in large photos.
DETECT_SIDE = 320
RETRY_SIDE = 640
# YuNet's confidence cut. Measured here (tools: bench/faces.py): faces of FFHQ and FairFace
# score a median 0.92 (1st percentile ≥ 0.80 on those found); scikit-image's non-face photos
# and 400 random crops of them never reached 0.5.
MIN_SCORE = 0.8
# How far dlib's alignment square may lie from the one YuNet's keypoints give, as a fraction
# of its side, before dlib's points are not trusted. YuNet's keypoints are the coarser (eye
# error at 256²: median 6.5 px on FFHQ, 18 px on faces turned 35°, against dlib's 1.7-2.0 px),
# so only a gross miss is caught: where dlib was right, the two differed by ≤ 0.24 (99th pct).
MAX_DISAGREEMENT = 0.3
# YuNet's box (x, y, w, h) -> the square dlib's predictor was trained on: side 1.045 w, centre
# (x + 0.485 w, y + 0.5 h). On faces dlib's HOG detector also finds, dlib's points then differ
# from those on HOG's own box by a median 0.011 eye distances.
DLIB_SIDE, DLIB_CX, DLIB_CY = 1.045, 0.485, 0.5


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h
    points: np.ndarray  # (4, 2): eye left, eye right, mouth left, mouth right (image x, y)
    score: float  # YuNet's confidence, 0-1
    source: str = "yunet"  # where `points` come from: "dlib68" or "yunet"
    landmarks: np.ndarray | None = None  # dlib's 68 points, when they were used

    def scaled(self, factor: float) -> Face:
        x, y, w, h = (v * factor for v in self.box)
        lm = None if self.landmarks is None else self.landmarks * factor
        box = (round(x), round(y), round(w), round(h))
        return replace(self, box=box, points=self.points * factor, landmarks=lm)


@dataclass
class AlignedFace(Face):
    aligned: Image.Image | None = None


@functools.cache
def _models():
    import dlib
    import face_recognition_models
    from yuface.yuface import detect as yunet

    dat = Path(face_recognition_models.__file__).parent / "models"
    predictor = dlib.shape_predictor(str(dat / "shape_predictor_68_face_landmarks.dat"))
    # Neither library documents thread safety; one lock covers both.
    return yunet, dlib, predictor, threading.Lock()


def _yunet(image: Image.Image) -> np.ndarray:
    """YuNet's raw rows (score 0-100, x, y, w, h, 5 keypoints x/y) for an RGB image."""
    yunet, _, _, lock = _models()
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    with lock:
        rows = yunet(bgr)
    return rows[:, :15].astype(np.float64)


def _from_row(row: np.ndarray, factor: float) -> Face:
    k = row[5:15].reshape(5, 2) * factor
    # YuNet's keypoints: eye, eye, nose, mouth corner, mouth corner, image-left first.
    points = np.stack([k[0], k[1], k[3], k[4]])
    x, y, w, h = (round(v * factor) for v in row[1:5])
    return Face((x, y, w, h), points, float(row[0]) / 100)


def detect(image: Image.Image, min_score: float = MIN_SCORE) -> list[Face]:
    """Faces by YuNet alone, largest first, in `image`'s pixels (points: YuNet's keypoints)."""
    for side in (DETECT_SIDE, RETRY_SIDE):
        small = fit_within(image, side)
        rows = _yunet(small)
        rows = rows[rows[:, 0] >= min_score * 100]
        if len(rows) or small is image:
            break
    factor = image.width / small.width
    faces = [_clipped(_from_row(r, factor), image.size) for r in rows]
    return sorted(faces, key=lambda f: f.box[2] * f.box[3], reverse=True)


def _clipped(face: Face, size: tuple[int, int]) -> Face:
    x, y, w, h = face.box
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, size[0]), min(y + h, size[1])
    return replace(face, box=(x0, y0, max(x1 - x0, 1), max(y1 - y0, 1)))


def disagreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance between the corners of two alignment squares, in units of b's side."""
    qa, qb = face_quad(*a), face_quad(*b)
    side = np.hypot(*(qb[3] - qb[0]))
    return float(np.hypot(*(qa - qb).T).mean() / max(side, 1e-6))


def dlib_landmarks(image: Image.Image, face: Face) -> np.ndarray:
    """dlib's 68 points, in `image`'s pixels, on a crop around YuNet's box turned so YuNet's
    eyes are level and stretched to full contrast: dlib's model was trained on upright, evenly
    lit faces, and on tilted or dim ones it goes wrong (measured: bench/faces.py)."""
    _, dlib, predictor, lock = _models()
    (lx, ly), (rx, ry) = face.points[:2]
    angle = np.degrees(np.arctan2(ry - ly, rx - lx))
    x, y, w, h = face.box
    side = DLIB_SIDE * w
    left, top = round(x + DLIB_CX * w - side), round(y + DLIB_CY * h - side)
    crop = image.crop((left, top, left + round(2 * side), top + round(2 * side)))
    # PIL turns counter-clockwise as shown on screen: that levels an eye line sloping down.
    gray = ImageOps.autocontrast(crop.convert("L").rotate(angle, Image.Resampling.BILINEAR), 1)
    c, s = crop.width / 2, side / 2
    with lock:
        shape = predictor(
            np.asarray(gray), dlib.rectangle(*(round(v) for v in (c - s, c - s, c + s, c + s)))
        )
    p = np.array([(q.x, q.y) for q in shape.parts()], dtype=np.float64) - c
    t = np.radians(angle)
    turned_back = p @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    return turned_back + [left + c, top + c]


def landmark(image: Image.Image, face: Face) -> Face:
    """`face` with the points alignment will use: dlib's, unless they are grossly off YuNet's
    own keypoints, which then stand in (coarser, but never far off)."""
    lm = dlib_landmarks(image, face)
    points = np.array(points_from_landmarks(lm))
    if disagreement(points, face.points) <= MAX_DISAGREEMENT:
        return replace(face, points=points, source="dlib68", landmarks=lm)
    return replace(face, source="yunet", landmarks=None)


def find_faces(image: Image.Image) -> list[Face]:
    """Every face of `image`, largest first, with its alignment points, in its pixels."""
    return [landmark(image, f) for f in detect(image)]


def align(image: Image.Image, face: Face, size: int = 256) -> Image.Image:
    return ffhq_align(image, *face.points, size=size)


def detect_and_align(image: Image.Image, size: int = 256) -> list[AlignedFace]:
    """Detect, place the points and align each face, all from `image` itself."""
    return [AlignedFace(**vars(f), aligned=align(image, f, size)) for f in find_faces(image)]
