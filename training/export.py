"""Keras model -> `model.tflite` + `model.json`, the format `shared.model.Model` serves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.model import Model, ModelSpec


def export_keras(keras_model, out_dir: str | Path, spec: ModelSpec, check: np.ndarray | None = None,
                 atol: float = 1e-5) -> Model:
    """Convert, write both files, reload with LiteRT and, given `check` inputs, prove equality."""
    import tensorflow as tf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    (out / spec.file).write_bytes(converter.convert())
    spec.write(out)
    served = Model(out)
    if check is not None:
        want = keras_model.predict(check, verbose=0).reshape(len(check), -1)[:, 0]
        if spec.positive_class == "real":
            want = 1.0 - want
        got = served.predict(check)
        worst = float(np.max(np.abs(got - want)))
        if worst > atol:
            raise RuntimeError(f"exported model differs from Keras by {worst:.2e} (> {atol:g})")
    return served


def register(sub) -> None:
    p = sub.add_parser("export", help="export a trained run to models/<name>/")
    p.set_defaults(func=lambda args: p.error("export from a run folder is not built yet"))
