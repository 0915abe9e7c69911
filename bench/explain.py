"""What Grad-CAM costs a request: the same photo with and without `?explain=1`, in one run.

Requests alternate between the variants (plain, crops, crops + explain) so that the machine's
noise hits each alike; medians and ratios to the plain request are printed, with the model-level
cost of one explain call against one prediction.

    .venv/bin/python bench/explain.py [--model models/default] [--requests 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.serving import SIZES, photo  # noqa: E402
from tests.conftest import LocalHost  # noqa: E402

VARIANTS = {"plain": {}, "crops": {"crops": "1"}, "crops + explain": {"crops": "1", "explain": "1"}}


def model_level(model_dir: Path, repeats: int = 100) -> tuple[float, float]:
    """Median ms of one LiteRT prediction and of one explain call (one face)."""
    from shared.model import Model

    model = Model(model_dir)
    x = np.random.default_rng(0).random((1, model.spec.size, model.spec.size, model.spec.channels))
    x = x.astype(np.float32)
    out = []
    for fn in (lambda: model.predict(x), lambda: model.explain(x[0])):
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        out.append(statistics.median(times))
    return out[0], out[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--requests", type=int, default=30, help="requests per variant")
    parser.add_argument("--photo", choices=list(SIZES), default="1 MP")
    args = parser.parse_args()

    predict_ms, explain_ms = model_level(args.model)
    data = photo(SIZES[args.photo])
    host = LocalHost(args.model, Path(tempfile.mkdtemp(prefix="bench-explain-")) / "host.log")
    wall: dict[str, list[float]] = {name: [] for name in VARIANTS}
    stage: list[float] = []
    try:
        for i in range(args.requests + 2):
            for name, params in VARIANTS.items():
                t = time.perf_counter()
                resp = requests.post(
                    host.url + "/api/predict",
                    data=data,
                    params=params,
                    headers={"content-type": "image/jpeg"},
                    timeout=60,
                )
                ms = (time.perf_counter() - t) * 1000
                assert resp.status_code == 200, resp.text
                if i < 2:
                    continue  # warm-up
                wall[name].append(ms)
                if "explain" in params:
                    stage.append(resp.json()["timings_ms"]["explain"])
    finally:
        host.stop()

    print(f"# Grad-CAM cost ({os.cpu_count()} CPUs, {args.photo} photo, one face, ")
    print(f"#  {args.requests} requests per variant, interleaved; model {args.model})\n")
    print("| request | p50 ms | p95 ms | ratio to plain |")
    print("|---|---|---|---|")
    base = statistics.median(wall["plain"])
    for name, times in wall.items():
        p50 = statistics.median(times)
        p95 = float(np.percentile(times, 95))
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {p50 / base:.2f} |")
    stage_p50 = statistics.median(stage)
    print(f"\nexplain stage inside the request (map + overlay PNG): p50 {stage_p50:.1f} ms")
    print(
        f"model only, one face: predict {predict_ms:.1f} ms, explain signature {explain_ms:.1f} ms "
        f"({explain_ms / predict_ms:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
