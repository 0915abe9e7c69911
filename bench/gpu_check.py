"""A run's checkpoint, rebuilt in float32 as `training export` does, predicted on the first 32
validation faces of a prepared folder (through `to_input`), on whichever Keras backend runs it.

The same command on two backends (say torch on a GPU box, TensorFlow here) must give the same
numbers: the model means the same everywhere, padding and batch norm included.

    KERAS_BACKEND=torch python bench/gpu_check.py RUN_DIR CROPS OUT.npy [--compare OTHER.npy]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def predict(run: Path, crops: Path, count: int = 32, checkpoint: str = "last"):
    import keras
    import numpy as np
    from PIL import Image

    from shared.model import to_input
    from training.data.datasets import read_prepared, usable
    from training.models import build
    from training.train import spec_from_config

    cfg = json.loads((run / "config.json").read_text())
    trained = keras.models.load_model(run / f"{checkpoint}.keras", compile=False)
    keras.mixed_precision.set_global_policy("float32")
    channels = 1 if cfg["color"] == "gray" else 3
    head = cfg.get("head", "flatten")
    model = build(cfg["model"], cfg["size"], channels, cfg["dropout"], head=head)
    model.set_weights(trained.get_weights())
    spec = spec_from_config(cfg)
    prepared = read_prepared(crops)
    rows = usable(prepared.rows, cfg.get("val_split", "valid"))[:count]
    x = np.stack([to_input(Image.open(prepared.root / r["output"]), spec) for r in rows])
    return model.predict(x, verbose=0)[:, 0]


def main() -> int:
    import keras
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("crops", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--compare", type=Path, help="another backend's predictions (.npy)")
    args = ap.parse_args()
    p = predict(args.run, args.crops)
    np.save(args.out, p)
    print(f"{keras.backend.backend()}: {len(p)} predictions, mean {p.mean():.4f}, sd {p.std():.4f}")
    if args.compare:
        other = np.load(args.compare)
        worst = float(np.max(np.abs(other - p)))
        print(f"largest difference from {args.compare.name}: {worst:.2e}")
        return 0 if worst <= 1e-4 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
