"""A small, portable prepared folder for timing training on another machine (bench/gpu_train.sh).

Takes N faces of a prepared folder (train and valid, both classes, evenly), puts each through
`to_input` at the model's size (what training's cache holds) and stores it as a JPEG at
quality 95 (a 160² colour face in about 10 KB, so 1,500 travel in under 20 MB), with a
manifest, so `python -m training train --data OUT` runs on it unchanged. The pixels are the
JPEG's, not the aligned PNG's: a timing and portability set, not a source of served models.

    .venv/bin/python bench/gpu_crops.py runs/aligned-140k runs/gpu-bench/crops
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from training.data.datasets import MANIFEST_FIELDS, read_prepared, usable  # noqa: E402
from training.data.pipeline import pixels  # noqa: E402


def pick(rows: list[dict], n: int) -> list[dict]:
    """n rows, half of each class, spread evenly over the manifest's order."""
    out = []
    for label in ("fake", "real"):
        mine = [r for r in rows if r["label"] == label]
        step = max(1, len(mine) // (n // 2))
        out += mine[::step][: n // 2]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="a prepared folder")
    ap.add_argument("out", help="the folder to write")
    ap.add_argument("--train", type=int, default=1200)
    ap.add_argument("--valid", type=int, default=300)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--color", choices=["gray", "rgb"], default="rgb")
    args = ap.parse_args()
    prepared, out = read_prepared(args.src), Path(args.out)
    rows = []
    for split, n in (("train", args.train), ("valid", args.valid)):
        for r in pick(usable(prepared.rows, split), n):
            name = f"{split}/{r['label']}/{Path(r['output']).stem}.jpg"
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            px = pixels(prepared.root / r["output"], args.size, args.color)
            Image.fromarray(px[..., 0] if args.color == "gray" else px).save(out / name, quality=95)
            rows.append({**r, "source": r["output"], "output": name})
    with (out / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, MANIFEST_FIELDS, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    info = {"source": str(prepared.root), "kind": "subset", "detector": "copy", "align_size": 256}
    info |= {"images": len(rows), "size": args.size, "color": args.color, "jpeg_quality": 95}
    (out / "prepare.json").write_text(json.dumps(info, indent=2) + "\n")
    mb = sum(p.stat().st_size for p in out.rglob("*.jpg")) / 2**20
    print(f"{out}: {len(rows)} faces, {mb:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
