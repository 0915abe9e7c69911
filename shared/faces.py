"""Find faces with YuNet (libfacedetection, via `yuface`) and place the FFHQ points with dlib.

Detection: YuNet, a small CNN whose weights are compiled into the `yuface` wheel, on a copy at
most DETECT_SIDE px (RETRY_SIDE when that finds nothing). It gives a confidence, a box and five
keypoints (eye centres, nose tip, mouth corners).

Landmarks: dlib's 68-point shape predictor on YuNet's box, on a crop turned until the eyes
are level (dlib's model wants upright faces). Where dlib's points are grossly off YuNet's own
keypoints, as on faces in profile, YuNet's keypoints from a second look at the levelled face
stand in. The FFHQ recipe needs only the eye centres and mouth corners, which both give.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .align import ffhq_align, points_from_landmarks
from .images import fit_within

# YuNet is trained at 320 px; faces down to ~10 px of that are found. Photos with nothing found
# there are tried once more at RETRY_SIDE, for small faces in large photos.
DETECT_SIDE = 320
RETRY_SIDE = 640
# YuNet's confidence cut. Measured here (bench/faces.py): faces found on FairFace val score a
# median 0.93 (1st percentile 0.84); 18 of scikit-image's non-face photos and 400 random crops
# of them blown up to 256² scored at most 0.74. One crop of the coffee cup filling the frame, in
# an earlier sample of 320, scored 0.83: a cut of 0.85 would refuse it, and ~1 % of real faces.
MIN_SCORE = 0.8
# How far dlib's eye and mouth middles may lie from YuNet's, in face widths, before YuNet's
# keypoints stand in for dlib's points. dlib fits a frontal face to whatever it is given: on
# faces in profile or three-quarter view it puts the far eye on the cheek (seen on a contact
# sheet of FairFace val faces past this cut: 7 % of them), where YuNet's are on the features.
# Elsewhere YuNet's are the coarser (eye error at 256²: ~7 px on FFHQ against dlib's ~2).
MAX_DISAGREEMENT = 0.25
# YuNet's box (x, y, w, h) -> the square dlib's predictor was trained on: side 1.045 w, centre
# (x + 0.485 w, y + 0.5 h). On faces dlib's HOG detector also finds, dlib's points then differ
# from those on HOG's own box by a median 0.011 eye distances.
DLIB_SIDE, DLIB_CX, DLIB_CY = 1.045, 0.485, 0.5
# dlib's square is shrunk to this side before landmarking: a bigger face has no more for its 68
# points to find, and turning and stretching its crop cost 52 ms at 12 MP. Above every face in
# the training data (largest: 306 px), so prepared crops stay the same.
MAX_DLIB_SIDE = 320
# YuNet's eye line stays within ~5° of level however the face is turned (measured on a face
# turned ±35°), so the first turn is only a start: dlib's eyes on a face turned 35° then slope
# 12°; levelling by those, and again, converges (2.7° -> 14° -> 25° -> 37.7° -> 37.8°).
RELEVEL_DEGREES = 3.0
LEVEL_PASSES = 5
# A face crop whose 1st-99th percentile gray levels span less than this is stretched.
MIN_CONTRAST = 128


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


# libfacedetection's answer: a face count (int32), then 16 int16 per face (score 0-100, x, y,
# w, h, 5 keypoints x/y, one unused), at most 1024 faces: 0x9000 bytes, as its examples size it.
YUNET_RESULT_BYTES = 0x9000
YUNET_ROW = 16


@functools.cache
def _models():
    import dlib
    import face_recognition_models

    dat = Path(face_recognition_models.__file__).parent / "models"
    predictor = dlib.shape_predictor(str(dat / "shape_predictor_68_face_landmarks.dat"))
    # Neither library documents thread safety; one lock covers both, and the one result
    # buffer YuNet writes into.
    return _facedetect_cnn(), dlib, predictor, threading.Lock()


def _facedetect_cnn():
    """libfacedetection's own entry point in the `yuface` wheel, called with a result buffer
    this module owns. yuface's Python wrapper (2023.5.1) mallocs a 36 KB result buffer on
    every call and never frees it: 50 KB a request under load (issue 25), 1.1 GB after
    20,000 requests. Same library, same weights, same answers (tests/test_memory.py)."""
    import yuface

    lib = ctypes.CDLL(str(Path(yuface.__file__).parent / "libfacedetection.so"))
    # int* facedetect_cnn(unsigned char* result, unsigned char* bgr, int w, int h, int step),
    # a C++ function: exported under its mangled name only.
    fn = lib["_Z14facedetect_cnnPhS_iii"]
    fn.restype = ctypes.c_void_p
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    result = np.zeros(YUNET_RESULT_BYTES, dtype=np.uint8)

    def detect(bgr: np.ndarray) -> np.ndarray:
        """(N, 16) int16 rows for a C-contiguous (h, w, 3) uint8 BGR image; call under the
        lock (the buffer is shared). ctypes lets other threads run meanwhile."""
        h, w, _ = bgr.shape
        if not fn(result.ctypes.data, bgr.ctypes.data, w, h, 3 * w):
            raise RuntimeError("libfacedetection returned no result")
        count = int(result[:4].view(np.int32)[0])
        rows = result[4 : 4 + 2 * YUNET_ROW * count].view(np.int16)
        return rows.reshape(count, YUNET_ROW).copy()

    return detect


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


def _detect_copy(image: Image.Image, side: int) -> tuple[Image.Image, float]:
    """`image` at most `side` px, and its pixels per pixel of the copy. A photo at least twice
    that size is first box-averaged by a whole factor: a bilinear shrink straight from 1 MP
    took 7 ms, with the box step 3.5. Photos under twice `side` (all of the training data
    here) shrink as they always have, so prepared crops stay the same. The factor never
    exceeds the shorter side: a 32832×48 image would otherwise have no whole block to keep."""
    k = min(max(image.size) // side, min(image.size))
    if k >= 2:
        w, h = image.width // k * k, image.height // k * k  # whole blocks: the factor stays exact
        reduced = image.reduce(k, box=(0, 0, w, h))
    else:
        k, reduced = 1, image
    small = fit_within(reduced, side)
    return small, k * reduced.width / small.width


def detect(image: Image.Image, min_score: float = MIN_SCORE) -> list[Face]:
    """Faces by YuNet alone, largest first, in `image`'s pixels (points: YuNet's keypoints)."""
    for side in (DETECT_SIDE, RETRY_SIDE):
        small, factor = _detect_copy(image, side)
        rows = _yunet(small)
        rows = rows[rows[:, 0] >= min_score * 100]
        if len(rows) or small is image:
            break
    faces = [_clipped(_from_row(r, factor), image.size) for r in rows]
    return sorted(faces, key=lambda f: f.box[2] * f.box[3], reverse=True)


def _clipped(face: Face, size: tuple[int, int]) -> Face:
    x, y, w, h = face.box
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, size[0]), min(y + h, size[1])
    return replace(face, box=(x0, y0, max(x1 - x0, 1), max(y1 - y0, 1)))


def disagreement(a: np.ndarray, b: np.ndarray, width: float) -> float:
    """How far apart two sets of points put the eyes' and the mouth's middles, in face widths.
    Not their angle: YuNet's eye line stays near level whichever way the face is turned."""
    middles = [(p[0] + p[1]) / 2 for p in (a, b)] + [(p[2] + p[3]) / 2 for p in (a, b)]
    return float(
        max(np.hypot(*(middles[0] - middles[1])), np.hypot(*(middles[2] - middles[3]))) / width
    )


def _face_crop(image: Image.Image, face: Face) -> tuple[Image.Image, np.ndarray, float, float]:
    """Gray square around the face, 2·DLIB_SIDE box widths wide, shrunk so dlib's square is at
    most MAX_DLIB_SIDE px; its centre in `image`'s pixels; the side of dlib's square in the
    crop; the crop's pixels per pixel of `image`."""
    x, y, w, h = face.box
    side = DLIB_SIDE * w
    left, top = round(x + DLIB_CX * w - side), round(y + DLIB_CY * h - side)
    width = round(2 * side)
    # crop(), not resize(box=...): that refuses a box past the photo's edge.
    crop = image.crop((left, top, left + width, top + width))
    scale = min(1.0, MAX_DLIB_SIDE / side)
    if scale < 1:
        n = round(2 * side * scale)
        crop = crop.resize((n, n), Image.Resampling.BILINEAR, reducing_gap=2.0)
        scale = n / width
    centre = np.array([left, top]) + width / 2
    return crop.convert("L"), centre, side * scale, scale


def dlib_landmarks(image: Image.Image, face: Face) -> tuple[np.ndarray, float]:
    """dlib's 68 points, in `image`'s pixels, on a crop around YuNet's box turned so the eyes
    are level and stretched to full contrast, and the turn in degrees. dlib's model was
    trained on upright, evenly lit faces; on tilted or dim ones it goes wrong (measured:
    bench/faces.py). YuNet's eyes give the first turn; while dlib's own eyes then still slope,
    the crop is turned by those."""
    gray, centre, side, scale = _face_crop(image, face)
    angle = _eye_angle(face.points)
    for _ in range(LEVEL_PASSES):
        points = _dlib_levelled(gray, angle, side) / scale + centre
        turn, angle = angle, _eye_angle(np.array(points_from_landmarks(points)))
        if abs(angle - turn) <= RELEVEL_DEGREES:
            break
    return points, angle


def _eye_angle(points: np.ndarray) -> float:
    (lx, ly), (rx, ry) = points[:2]
    return float(np.degrees(np.arctan2(ry - ly, rx - lx)))


def _turn_back(points: np.ndarray, angle: float) -> np.ndarray:
    """Points of a picture PIL turned by `angle` about its centre (origin), turned back."""
    t = np.radians(angle)
    return points @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])


def _stretched(gray: Image.Image) -> Image.Image:
    """A dim or flat crop stretched to full contrast. Only those: on well-exposed faces the
    stretch moved dlib's mouth corners (FFHQ photos re-aligned onto themselves within 4 px:
    73 % stretched, 83 % as they are)."""
    low, high = np.percentile(np.asarray(gray), [1, 99])
    return ImageOps.autocontrast(gray, 1) if high - low < MIN_CONTRAST else gray


def _dlib_levelled(gray: Image.Image, angle: float, side: float) -> np.ndarray:
    """dlib's points on `gray` turned by `angle`, turned back, relative to its centre."""
    _, dlib, predictor, lock = _models()
    # PIL turns counter-clockwise as shown on screen: that levels an eye line sloping down.
    level = _stretched(gray.rotate(angle, Image.Resampling.BILINEAR))
    c, s = gray.width / 2, side / 2
    rect = dlib.rectangle(*(round(v) for v in (c - s, c - s, c + s, c + s)))
    with lock:
        shape = predictor(np.asarray(level), rect)
    p = np.array([(q.x, q.y) for q in shape.parts()], dtype=np.float64) - c
    return _turn_back(p, angle)


def levelled_keypoints(image: Image.Image, face: Face, angle: float) -> np.ndarray | None:
    """YuNet's keypoints on the face's crop turned by `angle`: YuNet places them well only
    on upright faces (its eye line stays within ~5° of level on a face turned 35°)."""
    gray, centre, _, scale = _face_crop(image, face)
    level = gray.convert("RGB").rotate(angle, Image.Resampling.BILINEAR)
    small = fit_within(level, DETECT_SIDE)
    rows = _yunet(small)
    if not len(rows):
        return None
    middle = np.array(small.size) / 2
    best = rows[np.argmin(np.hypot(*(rows[:, 1:3] + rows[:, 3:5] / 2 - middle).T))]
    points = _from_row(best, level.width / small.width).points - level.width / 2
    return _turn_back(points, angle) / scale + centre


def landmark(image: Image.Image, face: Face) -> Face:
    """`face` with the points alignment will use: dlib's, unless they are grossly off YuNet's
    keypoints (as first found, or found again on the levelled face), which then stand in:
    coarser, but on the features where dlib fits a frontal face to a face in profile."""
    lm, angle = dlib_landmarks(image, face)
    points = np.array(points_from_landmarks(lm))
    dlib68 = replace(face, points=points, source="dlib68", landmarks=lm)
    if disagreement(points, face.points, face.box[2]) <= MAX_DISAGREEMENT:
        return dlib68
    again = levelled_keypoints(image, face, angle)
    if again is None:
        return replace(face, source="yunet", landmarks=None)
    if disagreement(points, again, face.box[2]) <= MAX_DISAGREEMENT:
        return dlib68
    return replace(face, points=again, source="yunet", landmarks=None)


def find_faces(image: Image.Image) -> list[Face]:
    """Every face of `image`, largest first, with its alignment points, in its pixels."""
    return [landmark(image, f) for f in detect(image)]


def align(image: Image.Image, face: Face, size: int = 256) -> Image.Image:
    return ffhq_align(image, *face.points, size=size)


def detect_and_align(image: Image.Image, size: int = 256) -> list[AlignedFace]:
    """Detect, place the points and align each face, all from `image` itself."""
    return [AlignedFace(**vars(f), aligned=align(image, f, size)) for f in find_faces(image)]
