"""What EfficientNet-Lite0 costs here, against the paper's VGG-10 gray 128²: training
throughput (img/s of optimizer steps, frozen backbone and fine-tuning) per input size, the
model-alone LiteRT latency per face and the size of model.tflite (with the Grad-CAM signature).

Model compute only: batches are random tensors already in memory (the real input pipeline
delivers thousands of img/s, bench/training.py). A script, not a test:

    .venv/bin/python bench/efficientnet.py [--sizes 128 160 224] [--steps 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def train_rate(model, size: int, channels: int, batch: int, steps: int) -> float:
    """img/s of `steps` training steps, after two warm-up steps (graph tracing)."""
    import keras
    import tensorflow as tf

    model.compile(keras.optimizers.Adam(1e-4), "binary_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch, size, size, channels)).astype(np.float32)
    y = (rng.random((batch, 1)) > 0.5).astype(np.float32)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - t0)


def litert(model, size: int, color: str, runs: int) -> tuple[float, float]:
    """(median ms per face of the served model's predict, model.tflite MB)."""
    from shared.model import Model, ModelSpec
    from training.export import export_keras

    channels = 1 if color == "gray" else 3
    x = np.random.default_rng(1).uniform(-1, 1, (1, size, size, channels)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        spec = ModelSpec(name="bench", version="0", size=size, color=color)
        export_keras(model, tmp, spec, check=x)
        served = Model(tmp)
        mb = (Path(tmp) / spec.file).stat().st_size / 2**20
        served.predict(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            served.predict(x)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), mb


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 160, 224])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8, help="training steps timed per case (8)")
    ap.add_argument("--runs", type=int, default=50, help="LiteRT predictions timed (50)")
    ap.add_argument("--images", type=int, default=6000, help="training set size for epoch time")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    import keras

    from training.models import build, set_trainable

    cases = [("vgg10", 128, "gray")] + [("efficientnet_lite0", s, "rgb") for s in args.sizes]
    rows = []
    print(
        f"| model | input | phase | train img/s | epoch of {args.images:,} (min) | "
        "LiteRT ms/face | model.tflite MB |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, size, color in cases:
        channels = 1 if color == "gray" else 3
        keras.utils.set_random_seed(0)
        model = build(name, size, channels, weights="imagenet" if name != "vgg10" else None)
        phases = {"all layers": None}
        if name == "efficientnet_lite0":
            # the fine-tuning schedule: head only, then all but batch norm
            phases = {"frozen backbone": (False, False), "fine-tuning": (True, False)}
        ms, mb = litert(model, size, color, args.runs)
        for phase, switch in phases.items():
            if switch:
                set_trainable(model, *switch)
            rate = train_rate(model, size, channels, args.batch_size, args.steps)
            row = dict(model=name, size=size, color=color, phase=phase, img_s=round(rate, 1))
            row |= dict(
                epoch_min=round(args.images / rate / 60, 1), ms=round(ms, 2), mb=round(mb, 1)
            )
            rows.append(row)
            print(
                f"| {name} | {size}² {color} | {phase} | {rate:.1f} | {row['epoch_min']} | "
                f"{ms:.1f} | {mb:.1f} |",
                flush=True,
            )
    print(f"\n{os.cpu_count()} CPUs visible; batch {args.batch_size}; {args.steps} steps timed.")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
