"""`chain SRC OUT`: copies of a dataset's photos put through the figure-grid chain of `t2i/`,
or (`--steps reshare`) re-shared as people re-share photos.

Every FLUX.1 and SDXL face in `../shared/data/t2i/` was resampled to a ~476 px tile, saved
inside a grid as JPEG 75 (4:2:0, at an offset, so its 8×8 blocks do not start at the tile's
corner), cut out and saved again as JPEG 90. Real photos that never went through that chain
would let a model learn the chain as "fake". These copies put the other collections' photos
through the same steps, so the chain is seen on both sides in training and measured on both
sides in testing (processed reals kept as often as unprocessed ones, processed fakes caught as
often). OUT has the real/-fake/ layout with the source's splits: `prepare OUT` reads it as a
source of its own, named by OUT's folder name.

`reshare` copies answer a different shortcut. A real photo re-saved as JPEG at its own size is
a step the training reals never took while every FLUX.1 and SDXL fake carries JPEG blocks, and
the CLIP view learned it: FFHQ test reals re-saved at quality 75 were called fake 8 % of the
time by that view alone, against 1.2 % as they are. A reshare copy is the photo, shrunk to a
random 50-90 % of its side half the time, saved once as JPEG at a random quality of 50-95, as
a messaging app or a photo site would; reals and fakes alike, so it carries no label either.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from .datasets import DataError, Record, read_source, stable_fraction

TILE = (474, 479)  # the tiles' sides in t2i/ (DATA.md): most are 476
OFFSET = 7  # the tile's largest offset from the 8×8 JPEG grid, in pixels
GRID_QUALITY, FINAL_QUALITY = 75, 90
RESHARE_SHRINK = (0.5, 0.9)  # the side kept when a copy is shrunk (half of them are)
RESHARE_QUALITY = (50, 95)
RESAMPLERS = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality, subsampling="4:2:0")
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def grid_chain(image: Image.Image, seed: str) -> bytes:
    """One photo -> the JPEG bytes of its tile: centre square, Lanczos to a ~476 px side, JPEG 75
    inside a black canvas at a 0-7 px offset, cut out, JPEG 90 (all 4:2:0). `seed` fixes the
    side and the offset, so a copy is the same every time it is made."""
    rng = random.Random(seed)
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.convert("RGB").crop((left, top, left + side, top + side))
    tile = rng.randint(*TILE)
    square = square.resize((tile, tile), Image.Resampling.LANCZOS)
    dx, dy = rng.randint(0, OFFSET), rng.randint(0, OFFSET)
    canvas = Image.new("RGB", (tile + 2 * OFFSET, tile + 2 * OFFSET))
    canvas.paste(square, (dx, dy))
    cut = _jpeg(canvas, GRID_QUALITY).crop((dx, dy, dx + tile, dy + tile))
    buf = io.BytesIO()
    cut.save(buf, "JPEG", quality=FINAL_QUALITY, subsampling="4:2:0")
    return buf.getvalue()


def reshare(image: Image.Image, seed: str) -> bytes:
    """One photo -> the JPEG bytes of it re-shared: half the time shrunk (bilinear, bicubic or
    Lanczos) to 50-90 % of its side, then saved once at JPEG quality 50-95 (4:2:0). `seed`
    fixes every draw, so a copy is the same every time it is made."""
    rng = random.Random("reshare:" + seed)
    image = image.convert("RGB")
    if rng.random() < 0.5:
        keep = rng.uniform(*RESHARE_SHRINK)
        size = (max(1, round(image.width * keep)), max(1, round(image.height * keep)))
        image = image.resize(size, rng.choice(RESAMPLERS))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=rng.randint(*RESHARE_QUALITY), subsampling="4:2:0")
    return buf.getvalue()


STEPS = {"grid": grid_chain, "reshare": reshare}


def chosen(records: list[Record], labels: dict[str, set[str]], limit: int | None) -> list[Record]:
    """The records whose (label, split) is asked for; at most `limit` of each (label, split),
    picked by a hash of the path so the choice does not depend on the machine or the order."""
    out: list[Record] = []
    for label, splits in labels.items():
        for split in sorted(splits):
            group = [r for r in records if r.label == label and r.split == split]
            group.sort(key=lambda r: stable_fraction("chain:" + r.rel))
            out += group[:limit] if limit else group
    return out


def _parse_labels(real: str, fake: str) -> dict[str, set[str]]:
    labels = {"real": set(real.split(",")) - {""}, "fake": set(fake.split(",")) - {""}}
    bad = set().union(*labels.values()) - {"train", "valid", "test"}
    if bad:
        raise DataError(f"unknown split(s) {', '.join(sorted(bad))}: use train, valid, test.")
    return {k: v for k, v in labels.items() if v}


def run(args) -> int:
    src, out = Path(args.src), Path(args.out)
    if out.resolve().is_relative_to(src.resolve()):
        raise DataError(f"{out} is inside {src}: write the copies outside the source.")
    _, records = read_source(src)
    todo = chosen(records, _parse_labels(args.real, args.fake), args.limit)
    if not todo:
        raise DataError(f"{src}: no photo of the asked labels and splits.")
    from shared.errors import FakeFacesError
    from shared.images import load_image

    steps = STEPS[args.steps]
    written = skipped = 0
    for r in tqdm(todo, desc=f"{args.steps} {src.name}", unit="photo", disable=args.quiet):
        target = out / r.split / r.label / (Path(r.rel).stem + ".jpg")
        if target.is_file():
            written += 1
            continue
        try:
            data = steps(load_image(src / r.rel), r.rel)
        except (FakeFacesError, OSError) as exc:
            print(f"chain: {src / r.rel}: skipped ({exc})", file=sys.stderr)
            skipped += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        written += 1
    print(f"{out}: {written} photos through the {args.steps} steps ({skipped} skipped)")
    return 0


HELP = "copies of a dataset's photos through t2i/'s figure-grid JPEG chain, or re-shared"
DESCRIPTION = (
    "Write OUT/<split>/<label>/*.jpg: each chosen photo of SRC (any layout "
    "prepare reads) as its centre square, resampled (Lanczos) to a 474-479 px tile, saved "
    "as JPEG 75 4:2:0 inside a black canvas at a 0-7 px offset, cut out and saved as JPEG "
    "90 4:2:0 - the chain every t2i/ fake went through (DATA.md). Put real photos through it "
    "for training, and real photos and fakes of the test split for measuring that the "
    "chain carries no label. With --steps reshare, each copy is instead the photo re-shared: "
    "half of them shrunk to 50-90 % of the side, then saved once as JPEG at quality 50-95. "
    "Then `prepare OUT ALIGNED`. Re-running skips written files."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="dataset folder (140k layout, FairFace, real/-fake/ folders)")
    parser.add_argument("out", help="output folder, named for the new source (e.g. 140k-chain)")
    parser.add_argument(
        "--steps",
        choices=sorted(STEPS),
        default="grid",
        help="grid: t2i/'s figure-grid chain (default); reshare: shrunk or not, one JPEG save",
    )
    parser.add_argument(
        "--real",
        default="train,valid,test",
        metavar="SPLITS",
        help="splits whose real photos are copied (comma-separated; default all three)",
    )
    parser.add_argument(
        "--fake",
        default="test",
        metavar="SPLITS",
        help="splits whose fakes are copied (default test: to measure, not to train)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="at most N photos of each label and split, chosen by a hash of the path",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
