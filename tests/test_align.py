"""Detection and FFHQ alignment on real photographs (real dlib, no mocks)."""

import numpy as np
import pytest
from PIL import Image
from skimage import data

from shared import faces as facelib
from shared.align import points_from_landmarks
from tests.conftest import REAL_VS_FAKE, need_data

# Eye centres of FFHQ-aligned faces at 256², the median of dlib's landmarks on 198 FFHQ
# images of ../shared/data (train/real). An aligned face must put its eyes here.
FFHQ_EYES_256 = np.array([[96.2, 121.5], [159.4, 121.3]])


def eyes(face) -> np.ndarray:
    return np.array(points_from_landmarks(face.landmarks)[:2])


def test_astronaut_has_one_face_aligned_to_ffhq_eye_positions():
    found = facelib.detect_and_align(Image.fromarray(data.astronaut()))
    assert len(found) == 1
    aligned = found[0].aligned
    assert aligned.size == (256, 256)
    again = facelib.find_faces(aligned)
    assert len(again) == 1
    (lx, ly), (rx, ry) = eyes(again[0])
    assert abs(ly - ry) < 2, "eyes are not level"
    assert np.abs(eyes(again[0]) - FFHQ_EYES_256).max() < 4


def test_face_box_is_on_the_face():
    face = facelib.detect_and_align(Image.fromarray(data.astronaut()))[0]
    x, y, w, h = face.box
    # The astronaut's face is around (220, 120) in the 512² photo.
    assert x < 220 < x + w and y < 120 < y + h and 60 < w < 140


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_no_face_in_a_cat_or_a_cup(name):
    assert facelib.detect_and_align(Image.fromarray(getattr(data, name)())) == []


def test_faces_come_largest_first():
    # Two copies of the astronaut side by side, the right one 1.4 times larger.
    small = Image.fromarray(data.astronaut())
    canvas = Image.new("RGB", (1300, 720), "white")
    canvas.paste(small, (0, 100))
    canvas.paste(small.resize((717, 717)), (560, 0))
    found = facelib.detect_and_align(canvas)
    assert len(found) == 2
    assert found[0].box[2] > found[1].box[2] * 1.2
    assert found[0].box[0] > 560 > found[1].box[0]


def test_landmark_drift_rejects_boxes_that_are_not_faces():
    import dlib

    _, _, predictor, _ = facelib._dlib()
    rng = np.random.default_rng(1)
    rejected = []
    for name in ("chelsea", "coffee", "rocket"):
        gray = np.asarray(Image.fromarray(getattr(data, name)()).convert("L"))
        for _ in range(15):
            s = int(rng.integers(60, min(gray.shape) // 2))
            x, y = int(rng.integers(0, gray.shape[1] - s)), int(rng.integers(0, gray.shape[0] - s))
            rect = dlib.rectangle(x, y, x + s, y + s)
            lm = facelib._points(predictor(gray, rect))
            rejected.append(facelib.landmark_drift(predictor, gray, rect, lm) > facelib.MAX_DRIFT)
    assert np.mean(rejected) >= 0.85


@pytest.mark.slow
def test_ffhq_faces_pass_the_drift_check():
    files = sorted((need_data(REAL_VS_FAKE) / "test" / "real").glob("*.jpg"))[:40]
    found = [len(facelib.detect_and_align(Image.open(p).convert("RGB"))) == 1 for p in files]
    assert np.mean(found) >= 0.95


@pytest.mark.slow
def test_realigning_an_ffhq_image_reproduces_it():
    """The strongest check of the recipe: an FFHQ-aligned photo is a fixed point of alignment.

    Tolerance (measured here on 30 test/real images): median eye movement ≤ 2 px, median mean
    absolute pixel difference ≤ 8 of 255 (edges differ where FFHQ's padding was rebuilt from
    the 256² copy), and 80 % of faces within 4 px.
    """
    files = sorted((need_data(REAL_VS_FAKE) / "test" / "real").glob("*.jpg"))[:30]
    moves, diffs = [], []
    for path in files:
        img = Image.open(path).convert("RGB")
        found = facelib.detect_and_align(img)
        if not found:
            continue
        again = facelib.find_faces(found[0].aligned)
        assert again, f"{path.name}: no face in its own realignment"
        moves.append(np.abs(eyes(found[0]) - eyes(again[0])).max())
        diffs.append(np.abs(np.asarray(found[0].aligned, float) - np.asarray(img, float)).mean())
    assert len(moves) >= 25
    assert np.median(moves) <= 2
    assert np.mean(np.array(moves) <= 4) >= 0.8
    assert np.median(diffs) <= 8
