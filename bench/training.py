"""Training input throughput: this repo's tf.data pipeline vs the paper's loader
(`ImageDataGenerator.flow_from_directory`, from tf-keras), on the same aligned images, with the
same augmentations (flip, rotation, shear), feeding the same VGG-10; plus `prepare` with 1 and
with all cores. A script, not a test: `python bench/training.py --help`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def ours(data: Path, size: int, color: str, batch: int):
    """(dataset factory, seconds spent building the decoded cache, image count)."""
    from shared.model import ModelSpec
    from training.data.datasets import read_prepared
    from training.data.pipeline import Augment, load_split, make_dataset

    spec = ModelSpec(name="bench", version="0", size=size, color=color)
    # A fresh cache folder: the figure is the one-off cold decode, not a reused cache.
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        split = load_split(
            [read_prepared(data)], "train", size, color, cache_dir=Path(cache), quiet=True
        )
        cache_s = time.perf_counter() - t0
        split.images = np.array(split.images)  # off the temporary file, into memory
    aug = Augment(flip=True, rotation=10, shear=10, jpeg=0.0, blur=0.0)  # the paper's three

    def make(epoch: int):
        return make_dataset(
            split.images, split.labels, spec, batch, shuffle_seed=0, epoch=epoch, augment=aug
        )

    return make, cache_s, len(split.labels)


def theirs(data: Path, size: int, color: str, batch: int):
    from tf_keras.preprocessing.image import ImageDataGenerator

    gen = ImageDataGenerator(
        rescale=1 / 255, horizontal_flip=True, rotation_range=10, shear_range=10
    )
    return gen.flow_from_directory(
        str(data / "real_vs_fake" / "real-vs-fake" / "train"),
        target_size=(size, size),
        color_mode="grayscale" if color == "gray" else "rgb",
        class_mode="binary",
        batch_size=batch,
        shuffle=True,
        seed=0,
    )


def loader_rate(batches, steps: int) -> float:
    """img/s of pulling `steps` batches after one warm-up batch."""
    it = iter(batches)
    next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(steps):
        x = next(it)[0]
        n += len(x)
    return n / (time.perf_counter() - t0)


def train_rate(batches, steps: int, size: int, channels: int) -> float:
    """img/s of VGG-10 training steps fed by `batches` (after two warm-up steps)."""
    import keras

    from training.models import build

    keras.utils.set_random_seed(0)
    model = build("vgg10", size, channels)
    model.compile("adam", "binary_crossentropy")
    it = iter(batches)
    seen = [0]

    def gen():
        while True:
            x, y = next(it)[:2]
            seen[0] += len(x)
            yield x, y

    g = gen()
    model.fit(g, steps_per_epoch=2, epochs=1, verbose=0)
    # Keras may read ahead a batch; count what the timed fit pulled.
    before, t0 = seen[0], time.perf_counter()
    model.fit(g, steps_per_epoch=steps, epochs=1, verbose=0)
    return (seen[0] - before) / (time.perf_counter() - t0)


def prepare_rate(src: Path, n: int, workers: int) -> float:
    from training.data.prepare import prepare

    with tempfile.TemporaryDirectory() as tmp:
        s = prepare(src, Path(tmp) / "p", workers=workers, limit=n, quiet=True)
    return s["images_per_second"]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=ROOT / "runs" / "aligned-140k",
        help="a folder written by `python -m training prepare` from the 140k layout",
    )
    ap.add_argument(
        "--src",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "real-vs-fake",
        help="raw dataset for the prepare benchmark",
    )
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--color", choices=["gray", "rgb"], default="gray")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20, help="batches timed per loader (20)")
    ap.add_argument("--train-steps", type=int, default=10, help="training steps timed (10)")
    ap.add_argument("--prepare-images", type=int, default=48, help="images to align (48)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if not (args.data / "manifest.csv").is_file():
        print(
            f"bench: {args.data} is not a prepared folder; run `python -m training prepare "
            f"{args.src} {args.data}` first.",
            file=sys.stderr,
        )
        return 2
    channels = 1 if args.color == "gray" else 3
    cores = os.cpu_count() or 1
    print(
        f"{cores} cores; {args.size}px {args.color}, batch {args.batch_size}; augment: "
        "flip + rotation 10° + shear 10° for both loaders"
    )

    make, cache_s, n = ours(args.data, args.size, args.color, args.batch_size)
    r = {"cache_build_s": round(cache_s, 2), "train_images": n}
    r["tfdata_loader"] = loader_rate(make(0).repeat(), args.steps)
    r["idg_loader"] = loader_rate(
        theirs(args.data, args.size, args.color, args.batch_size), args.steps
    )
    r["tfdata_train"] = train_rate(make(1).repeat(), args.train_steps, args.size, channels)
    r["idg_train"] = train_rate(
        theirs(args.data, args.size, args.color, args.batch_size),
        args.train_steps,
        args.size,
        channels,
    )
    r["prepare_1_core"] = prepare_rate(args.src, args.prepare_images, 1)
    r[f"prepare_{cores}_cores"] = prepare_rate(args.src, args.prepare_images, cores)

    print(
        f"decoded cache, built once per folder and size (all cores): {n} images in "
        f"{cache_s:.1f} s = {n / cache_s:.0f} img/s; reused by later epochs and runs"
    )
    print(f"{'':34}{'img/s':>10}")
    print(f"{'input only, tf.data (ours)':34}{r['tfdata_loader']:>10.1f}")
    print(
        f"{'input only, ImageDataGenerator':34}{r['idg_loader']:>10.1f}"
        f"   ratio {r['tfdata_loader'] / r['idg_loader']:.1f}x"
    )
    print(f"{'VGG-10 training, tf.data':34}{r['tfdata_train']:>10.1f}")
    print(
        f"{'VGG-10 training, ImageDataGenerator':34}{r['idg_train']:>10.1f}"
        f"   ratio {r['tfdata_train'] / r['idg_train']:.2f}x"
    )
    print(f"{'prepare (dlib), 1 worker':34}{r['prepare_1_core']:>10.1f}")
    print(
        f"{f'prepare (dlib), {cores} workers':34}{r[f'prepare_{cores}_cores']:>10.1f}"
        f"   ratio {r[f'prepare_{cores}_cores'] / r['prepare_1_core']:.2f}x"
    )
    if args.json:
        args.json.write_text(json.dumps({k: round(v, 2) for k, v in r.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
