"""What the second view costs a request: the served model's time per face with both views
against the CNN alone, measured in the same run on the same aligned faces, and the memory
the CLIP session adds to a process.

Each face is scored on its own (a photo's usual one face), alternating the two models so that a
noisy machine slows both alike; medians and their difference are printed. A script, not a test:

    .venv/bin/python bench/views.py [--model models/default] [--faces 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGET_MS = 120  # the budget: at most this much more per face for the second view


def faces(n: int) -> list[Image.Image]:
    """Real aligned faces: scikit-image's astronaut, shifted, as serving aligns it."""
    from skimage import data

    from shared.faces import detect_and_align

    face = detect_and_align(Image.fromarray(data.astronaut()), size=256)[0].aligned
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        dx, dy = rng.integers(-8, 9, 2)
        out.append(face.transform(face.size, Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy)))
    return out


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--faces", type=int, default=40, help="faces scored by each model (40)")
    parser.add_argument("--threads", type=int, default=2, help="threads per runtime (2)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    from shared.model import Model

    doc = json.loads((args.model / "model.json").read_text())
    if "views" not in doc:
        print(f"{args.model} has one view: nothing to compare.", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        # The same CNN, alone: model.json without its views, beside a link to the same tflite.
        cnn_dir = Path(tmp)
        (cnn_dir / doc["file"]).symlink_to((args.model / doc["file"]).resolve())
        (cnn_dir / "model.json").write_text(
            json.dumps({k: v for k, v in doc.items() if k != "views"})
        )
        before = rss_mb()
        cnn = Model(cnn_dir, num_threads=args.threads)
        after_cnn = rss_mb()
        both = Model(args.model, num_threads=args.threads)
        after_both = rss_mb()
        batch = faces(args.faces)
        for model in (cnn, both):  # warm-up: first calls allocate
            model.score(batch[:2])
        times: dict[str, list[float]] = {"cnn": [], "both": []}
        for face in batch:
            for name, model in (("cnn", cnn), ("both", both)):
                t0 = time.perf_counter()
                model.score([face])
                times[name].append((time.perf_counter() - t0) * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    extra = med["both"] - med["cnn"]
    figures = {
        "faces": args.faces,
        "threads": args.threads,
        "median_ms_cnn": round(med["cnn"], 1),
        "median_ms_both": round(med["both"], 1),
        "extra_ms_per_face": round(extra, 1),
        "ratio": round(med["both"] / med["cnn"], 2),
        "rss_mb_cnn_loaded": round(after_cnn - before, 1),
        "rss_mb_clip_loaded": round(after_both - after_cnn, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(f"per face, median of {args.faces}, {args.threads} threads:")
    print(f"  CNN alone   {med['cnn']:7.1f} ms")
    print(f"  both views  {med['both']:7.1f} ms  ({figures['ratio']}x)")
    verdict = "within" if extra <= BUDGET_MS else "OVER"
    print(f"  the CLIP view adds {extra:.1f} ms a face: {verdict} the {BUDGET_MS} ms budget")
    print(
        f"memory: CNN loaded +{figures['rss_mb_cnn_loaded']} MB, CLIP session +"
        f"{figures['rss_mb_clip_loaded']} MB, peak RSS {figures['peak_rss_mb']} MB"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if extra <= BUDGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
