"""Face finding and alignment: how often, how equally, how accurately, how fast.

Measures, in one run, serving's own path (`shared.faces`: YuNet, then dlib's 68 landmarks):

1. Faces found on FairFace val through the serving path, by race, gender and age, with the
   YuNet scores of the faces found.
2. False faces: YuNet's best score on scikit-image's non-face photos and on random crops of them,
   against the cut `shared.faces.MIN_SCORE`.
3. Alignment accuracy on FFHQ photos (already aligned, so their eyes must land where FFHQ puts
   them) as published and turned, darkened and blurred, tightly cropped, or small in a large
   photo: eye-centre error at 256², for dlib's points as served and for YuNet's keypoints alone.
4. Detection time at 224², 1 MP and 12 MP against dlib's HOG detector (the detector before).
5. The first pass's side (DETECT_SIDE) against a smaller one: detection time at 1 MP, and the
   small faces found in group photos (FairFace faces pasted beside one large face), where the
   retry at RETRY_SIDE does not run because a face was found.

    .venv/bin/python bench/faces.py [--fairface 4999] [--crops 400] [--ffhq 60] [--groups 40]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving import photo  # noqa: E402  (the astronaut photos the serving bench times)
from shared import faces as facelib  # noqa: E402
from shared.errors import NoFace  # noqa: E402
from shared.images import Source  # noqa: E402
from shared.pipeline import Stopwatch, locate_faces  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
FFHQ = DATA / "real-vs-fake" / "real_vs_fake" / "real-vs-fake" / "test" / "real"
# Eye centres of FFHQ-aligned faces at 256² (tests/test_align.py says how they were measured).
FFHQ_EYES = np.array([[96.2, 121.5], [159.4, 121.3]])
NON_FACES = ("chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "moon")
NON_FACES += ("coins", "brick", "grass", "gravel", "colorwheel", "logo", "retina", "cell")
NON_FACES += ("clock", "horse", "page", "text")


def age_band(age: str) -> str:
    return {"0-2": "0-2", "3-9": "3-9", "more than 70": "70+"}.get(age, "10-69")


def fairface(limit: int) -> dict:
    """Serving's path on FairFace val photos: whether a face was found, and its score."""
    rows = list(csv.DictReader((DATA / "fairface" / "fairface_label_val.csv").open()))
    rows = rows[:: max(1, len(rows) // limit)][:limit]
    found, scores, sources = defaultdict(list), [], defaultdict(int)
    settled = defaultdict(list)
    for i, r in enumerate(tqdm(rows, desc="FairFace val", unit="photo")):
        data = (DATA / "fairface" / r["file"]).read_bytes()
        try:
            face = locate_faces(Source(data, 2**30, 10**9), 256, Stopwatch())[1][0]
            ok = True
            scores.append(face.score)
            sources[face.source] += 1
            if face.source == "yunet" or i % 10 == 0:
                settled[face.source].append(realigned_eye_error(face.aligned))
        except NoFace:
            ok = False
        for group in ("all", r["race"], r["gender"], "age " + age_band(r["age"])):
            found[group].append(ok)
    return {"found": found, "scores": scores, "sources": dict(sources), "settled": settled}


def realigned_eye_error(aligned: Image.Image) -> float:
    """Where YuNet finds the eyes of an aligned face, against FFHQ's places, px at 256². No
    ground truth exists for FairFace; YuNet is the checker because on an upright, centred face
    it is at its best (on FFHQ photos as published: median 6 px), and it does not share dlib's
    failure on faces in profile. So this is an upper bound on the alignment's own error."""
    again = facelib.detect(aligned)
    return float(np.hypot(*(again[0].points[:2] - FFHQ_EYES).T).max()) if again else np.nan


def non_face_scores(crops: int, seed: int = 0) -> tuple[dict[str, float], list[float]]:
    """YuNet's best score (no cut) on each non-face photo and on `crops` random crops."""
    from skimage import data

    rng = np.random.default_rng(seed)
    photos, crop_scores = {}, []
    images = []
    for name in NON_FACES:
        a = getattr(data, name)()
        a = (a * 255).astype(np.uint8) if a.dtype == bool else a
        images.append(Image.fromarray(a[..., :3] if a.ndim == 3 else a).convert("RGB"))
        photos[name] = best_score(images[-1])
    for i in range(crops):
        img = images[i % len(images)]
        s = int(rng.integers(min(img.size) // 5, min(img.size) + 1))
        x, y = int(rng.integers(0, img.width - s + 1)), int(rng.integers(0, img.height - s + 1))
        crop_scores.append(best_score(img.crop((x, y, x + s, y + s)).resize((256, 256))))
    return photos, crop_scores


def best_score(img: Image.Image) -> float:
    rows = facelib._yunet(facelib.fit_within(img, facelib.DETECT_SIDE))
    return float(rows[:, 0].max()) / 100 if len(rows) else 0.0


def _turn(points: np.ndarray, degrees: float, centre) -> np.ndarray:
    t, d = np.radians(degrees), points - centre
    return centre + np.stack([d @ [np.cos(t), np.sin(t)], d @ [-np.sin(t), np.cos(t)]], 1)


VARIANTS = {
    "as published": lambda im: (im, FFHQ_EYES),
    "turned 20°": lambda im: (im.rotate(20, Image.Resampling.BILINEAR), _turn(FFHQ_EYES, 20, 128)),
    "turned -35°": lambda im: (
        im.rotate(-35, Image.Resampling.BILINEAR),
        _turn(FFHQ_EYES, -35, 128),
    ),
    "dark and blurred": lambda im: (
        ImageEnhance.Contrast(
            ImageEnhance.Brightness(im.filter(ImageFilter.GaussianBlur(2.5))).enhance(0.35)
        ).enhance(0.5),
        FFHQ_EYES,
    ),
    "tightly cropped": lambda im: (
        im.crop((60, 70, 196, 216)).resize((272, 292)),
        (FFHQ_EYES - [60, 70]) * 2,
    ),
    "small in 1 MP": lambda im: _small(im),
}


def _small(im: Image.Image) -> tuple[Image.Image, np.ndarray]:
    canvas = Image.new("RGB", (1152, 864), (128, 128, 128))
    canvas.paste(im.resize((128, 128)), (600, 300))
    return canvas, FFHQ_EYES / 2 + [600, 300]


def alignment(count: int) -> dict[str, dict[str, list[float]]]:
    """Eye-centre error, in pixels of the 256² aligned face, of dlib's points as served and of
    YuNet's keypoints alone; `missed` counts photos where no face was found."""
    errors: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in tqdm(sorted(FFHQ.glob("*.jpg"))[:count], desc="FFHQ alignment", unit="photo"):
        base = Image.open(path).convert("RGB")
        for name, make in VARIANTS.items():
            img, truth = make(base)
            found = facelib.detect(img)
            if not found:
                errors[name]["missed"].append(1)
                continue
            served = facelib.landmark(img, found[0])
            unit = 63.2 / np.hypot(*(truth[1] - truth[0]))  # FFHQ's eye distance at 256²
            for who, points in (("served", served.points), ("yunet", found[0].points)):
                errors[name][who].append(float(np.hypot(*(points[:2] - truth).T).max() * unit))
            errors[name]["dlib68"].append(served.source == "dlib68")
    return errors


def speed(repeats: int) -> dict[str, tuple[float, float]]:
    """Median ms of detection alone: YuNet as served against dlib's HOG on a ≤1024 px copy."""
    import dlib

    hog = dlib.get_frontal_face_detector()
    out = {}
    for label, size in (("224²", (224, 224)), ("1 MP", (1152, 864)), ("12 MP", (4000, 3000))):
        src = Source(photo(size), 2**30, 10**9)
        decoded = src.decode(min_side=facelib.RETRY_SIDE)
        gray = np.asarray(facelib.fit_within(src.decode(min_side=1024), 1024).convert("L"))
        ours, theirs = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            facelib.detect(decoded)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            hog.run(gray, 1 if max(gray.shape) < 400 else 0, 0.0)
            theirs.append(time.perf_counter() - t)
        out[label] = (statistics.median(ours) * 1000, statistics.median(theirs) * 1000)
    return out


GROUP_HEIGHTS = (0.14, 0.10, 0.07)  # small faces' height, as a share of the photo's
SMALLER_SIDE = 256


def _group(large: Image.Image, small: list[Image.Image], height: float) -> Image.Image:
    """A 1 MP photo: one face ~30 % of its height, three of `height` in a row beside it.
    FairFace photos are framed with the face about half their height."""
    canvas = Image.new("RGB", (1152, 864), (200, 200, 200))
    canvas.paste(large.resize((518, 518)), (20, 20))
    side = int(864 * height * 2)
    for x, face in zip((540, 720, 900), small, strict=True):
        canvas.paste(face.resize((side, side)), (x, 500))
    return canvas


def first_pass(groups: int, repeats: int) -> dict[int, dict[str, float]]:
    """Per first-pass side: median detection ms at 1 MP and the share of small faces found."""
    files = sorted((DATA / "fairface" / "val").glob("*.jpg"))[: 4 * groups]
    photos = [Image.open(f).convert("RGB") for f in files]
    one_mp = Source(photo((1152, 864)), 2**30, 10**9).decode(min_side=facelib.RETRY_SIDE)
    served, out = facelib.DETECT_SIDE, {}
    for side in (served, SMALLER_SIDE):
        facelib.DETECT_SIDE = side
        try:
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                facelib.detect(one_mp)
                times.append(time.perf_counter() - t)
            out[side] = {"1 MP ms": statistics.median(times) * 1000}
            for height in GROUP_HEIGHTS:
                found = 0
                for i in tqdm(range(0, len(photos) - 3, 4), desc=f"groups at {side} px"):
                    found += len(facelib.detect(_group(photos[i], photos[i + 1 : i + 4], height)))
                    found -= 1  # the large face
                out[side][f"{height:.0%}"] = found / (3 * (len(photos) // 4))
        finally:
            facelib.DETECT_SIDE = served
    return out


def report(
    ff: dict, photos: dict, crops: list[float], align: dict, times: dict, sides: dict
) -> None:
    cut = facelib.MIN_SCORE
    print(f"\n## Faces found on FairFace val (serving's path, score ≥ {cut})\n")
    print("| group | photos | face found |\n|---|---|---|")
    rates = {}
    for group, hits in sorted(ff["found"].items(), key=lambda kv: kv[0] != "all"):
        rates[group] = np.mean(hits)
        print(f"| {group} | {len(hits)} | {100 * rates[group]:.1f} % |")
    groups = [g for g in rates if g != "all"]
    races = [g for g in groups if not g.startswith("age") and g not in ("Male", "Female")]
    gap = 100 * (max(rates[g] for g in races) - min(rates[g] for g in races))
    print(
        f"\nRace gap {gap:.1f} points; lowest group {min(groups, key=rates.get)} "
        f"{100 * min(rates[g] for g in groups):.1f} %. Points from: {ff['sources']}."
    )
    for source, errors in ff["settled"].items():
        e = np.array(errors)
        print(
            f"Aligned by {source} points ({len(e)} faces"
            f"{'' if source == 'yunet' else ', every 10th'}): "
            f"eyes found again {np.nanmedian(e):.1f} px (median), {np.nanpercentile(e, 95):.1f} "
            f"(95th pct) from FFHQ's places at 256²; {int(np.isnan(e).sum())} not found again."
        )
    s = np.array(ff["scores"])
    print(f"Scores of faces found: 1st/5th/50th percentile {np.percentile(s, [1, 5, 50]).round(3)}")
    c = np.array(crops)
    print(f"\n## False faces (cut {cut})\n")
    print(
        f"- {len(photos)} non-face photos: best score {max(photos.values()):.2f}, "
        f"{sum(v >= cut for v in photos.values())} at or above the cut"
    )
    print(
        f"- {len(c)} random crops of them: best {c.max():.2f}, 99th pct "
        f"{np.percentile(c, 99):.2f}, {int((c >= cut).sum())} at or above the cut"
    )
    print("\n## Alignment: eye-centre error at 256², px (median / 95th pct)\n")
    print("| FFHQ photo | served points | YuNet keypoints alone | dlib's 68 used | missed |")
    print("|---|---|---|---|---|")
    for name, e in align.items():
        served, yunet = np.array(e["served"]), np.array(e["yunet"])
        print(
            f"| {name} | {np.median(served):.1f} / {np.percentile(served, 95):.1f} | "
            f"{np.median(yunet):.1f} / {np.percentile(yunet, 95):.1f} | "
            f"{100 * np.mean(e['dlib68']):.0f} % | {len(e['missed'])} |"
        )
    print("\n## Detection time, median ms (YuNet as served vs dlib HOG before)\n")
    print("| photo | YuNet | dlib HOG | ratio |\n|---|---|---|---|")
    for label, (ours, theirs) in times.items():
        print(f"| {label} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |")
    print("\n## First pass: side, time at 1 MP, small faces found beside a large one\n")
    heights = " | ".join(f"{h:.0%} high" for h in GROUP_HEIGHTS)
    print(f"| first pass | 1 MP median ms | {heights} |\n|---|---|" + "---|" * len(GROUP_HEIGHTS))
    for side, row in sides.items():
        found = " | ".join(f"{100 * row[f'{h:.0%}']:.0f} %" for h in GROUP_HEIGHTS)
        served = " (served)" if side == facelib.DETECT_SIDE else ""
        print(f"| {side} px{served} | {row['1 MP ms']:.1f} | {found} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fairface", type=int, default=4999, help="FairFace val photos (4999)")
    p.add_argument("--crops", type=int, default=400, help="random non-face crops (400)")
    p.add_argument("--ffhq", type=int, default=60, help="FFHQ photos for alignment (60)")
    p.add_argument("--repeats", type=int, default=20, help="timing repeats per size (20)")
    p.add_argument("--groups", type=int, default=40, help="group photos per face height (40)")
    args = p.parse_args(argv)
    if not (DATA / "fairface").is_dir():
        print(f"error: {DATA} is missing; this benchmark needs ../shared/data.", file=sys.stderr)
        return 1
    times = speed(args.repeats)
    sides = first_pass(args.groups, args.repeats)
    photos, crops = non_face_scores(args.crops)
    align = alignment(args.ffhq)
    ff = fairface(args.fairface)
    report(ff, photos, crops, align, times, sides)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
