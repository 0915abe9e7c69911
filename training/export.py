"""Keras model -> `model.tflite` + `model.json`, the format `shared.model.Model` serves."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from shared.model import SPEC_FILE, Model, ModelSpec

from .data.sources import NOT_LEARNED, collections, generator_names
from .errors import CommandError
from .options import add_checkpoint


class ExportRefused(CommandError, RuntimeError):
    """A LiteRT model (or its Grad-CAM) that does not equal the Keras model it came from."""


def _convert(keras_model, explain: bool) -> tuple[bytes, dict]:
    """Keras -> LiteRT bytes with a `serving_default` signature (batches of faces) and, when the
    model's head allows, an `explain` one (Grad-CAM's activations and channel weights, one face)."""
    import keras
    import tensorflow as tf

    from .evaluation import gradcam

    archive = keras.export.ExportArchive()
    archive.track(keras_model)  # a plain tf.Module would not see Keras 3's variables
    shape = [None, *keras_model.inputs[0].shape[1:]]
    archive.add_endpoint(
        "serving_default",
        lambda x: {"p_fake": keras_model(x, training=False)},
        input_signature=[tf.TensorSpec(shape, tf.float32, name="input")],
    )
    info = {}
    if explain:
        try:
            fn, layer = gradcam.explain_function(keras_model)
        except gradcam.Unsupported as exc:
            print(f"export: no Grad-CAM signature ({exc}).", file=sys.stderr)
        else:
            archive.add_endpoint(gradcam.SIGNATURE, fn)
            grid = list(keras_model.get_layer(layer).output.shape[1:3])
            info = {"signature": gradcam.SIGNATURE, "method": "grad-cam", "layer": layer}
            info["grid"] = grid
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        keys = ["serving_default"] + ([gradcam.SIGNATURE] if info else [])
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=keys)
        return converter.convert(), info


def export_keras(
    keras_model,
    out_dir: str | Path,
    spec: ModelSpec,
    check: np.ndarray | None = None,
    atol: float = 1e-5,
    explain: bool = True,
) -> Model:
    """Convert, write both files, reload with LiteRT and, given `check` inputs, prove equality:
    predictions within `atol`, and Grad-CAM maps correlated at r >= MIN_CAM_R with
    TensorFlow's on the Keras model."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tflite, info = _convert(keras_model, explain)
    if info:
        spec = replace(spec, extra={**spec.extra, "explain": info})
    else:
        spec = replace(spec, extra={k: v for k, v in spec.extra.items() if k != "explain"})
    (out / spec.file).write_bytes(tflite)
    # The checks compare the network itself, before the temperature: a sharpening T < 1 would
    # magnify LiteRT's float32 differences past atol without anything being converted wrongly.
    replace(spec, temperature=1.0).write(out)
    served = Model(out)
    if check is not None:
        want = keras_model.predict(check, verbose=0).reshape(len(check), -1)[:, 0]
        if spec.positive_class == "real":
            want = 1.0 - want
        got = served.predict(check)
        worst = float(np.max(np.abs(got - want)))
        if worst > atol:
            raise ExportRefused(f"exported model differs from Keras by {worst:.2e} (> {atol:g})")
        if info:
            r = cam_agreement(keras_model, served, check[:CAM_CHECKS])
            if r < MIN_CAM_R:
                raise ExportRefused(f"exported Grad-CAM differs from TensorFlow's (r = {r:.4f})")
    spec.write(out)
    return Model(out)  # as serving loads it: with the temperature


MIN_CAM_R = 0.99
CAM_CHECKS = 8


def cam_agreement(keras_model, served: Model, inputs: np.ndarray) -> float:
    """The lowest Pearson r between served and TensorFlow Grad-CAM maps over `inputs`, each
    explaining the label serving gives. Flat maps (nothing for that class) must agree exactly."""
    from shared.explain import grad_cam

    from .evaluation.gradcam import reference

    worst = 1.0
    for x in inputs:
        p, features, weights = served.explain(x)
        fake = served.label(p) == "fake"
        got = grad_cam(features, weights, fake)
        want = reference(keras_model, x[None], np.array([float(fake)]))[0]
        if got.std() == 0 or want.std() == 0:
            worst = min(worst, 1.0 if np.allclose(got, want, atol=1e-4) else 0.0)
        else:
            worst = min(worst, float(np.corrcoef(got.ravel(), want.ravel())[0, 1]))
    return worst


CHECK_COUNT = 32


def check_inputs(
    cfg: dict, spec: ModelSpec, count: int = CHECK_COUNT, data: list[str] | None = None
) -> np.ndarray:
    """Real aligned faces from the run's data (validation split first), through `to_input`."""
    from PIL import Image

    from shared.model import to_input

    from .data.datasets import DataError, read_prepared, usable

    found = []
    for folder in data or cfg["data"]:
        try:
            prepared = read_prepared(folder)
        except DataError:
            continue
        val = cfg.get("val_split", "valid")
        rows = usable(prepared.rows, val) + [
            r for r in usable(prepared.rows, None) if r["split"] != val
        ]
        found += [prepared.root / r["output"] for r in rows[: count - len(found)]]
        if len(found) >= count:
            break
    if not found:
        raise DataError(
            "no aligned images to check the export against: the run's data "
            f"({', '.join(data or cfg['data'])}) is gone; pass --check-data DIR."
        )
    batch = []
    for path in found:
        with Image.open(path) as img:
            batch.append(to_input(img.convert("RGB"), spec))
    return np.stack(batch)


def _valid_calibration(
    model, cfg: dict, fit: bool, threshold: float | str, false_alarm: float = 0.02
) -> tuple[float, float, dict]:
    """(temperature, threshold, what model.json records) from the run's validation split.

    With `fit`, a temperature is fitted there (evaluation/calibration.py) and the threshold is
    chosen on the calibrated P(fake), the number serving shows. `threshold` "valid" is the cut
    that maximises balanced accuracy there: a small or short run can rank well (high AUC) yet
    sit off-centre; picking the cut on validation data (never test) keeps the call balanced
    between classes. `threshold` "reals" is the lowest cut that calls at most `false_alarm` of
    every real validation source's photos fake: a promise to real people that a person can
    check, where balanced accuracy would trade their false alarms for catches."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from shared.model import calibrate

    from .data.datasets import DataError, read_prepared, source_of
    from .data.pipeline import load_split
    from .evaluation.calibration import (
        choose_threshold,
        false_alarm_threshold,
        fit_on_valid,
        operating_sources,
    )

    val = load_split(
        [read_prepared(d) for d in cfg["data"]],
        cfg.get("val_split", "valid"),
        cfg["size"],
        cfg["color"],
        quiet=True,
    )
    x = np.asarray(val.images, np.float32) * np.float32(cfg["scale"]) + np.float32(cfg["offset"])
    p_raw = model.predict(x, batch_size=64, verbose=0)[:, 0]
    y = val.labels.astype(int)
    try:
        temperature, fitted = fit_on_valid(y, p_raw) if fit else (1.0, None)
    except ValueError as exc:
        raise DataError(f"{exc}; pass --calibrate none to export uncalibrated.") from None
    p = calibrate(p_raw, temperature)
    sources = [source_of(r) for r in val.rows]
    if threshold == "valid":
        cut, balanced = choose_threshold(y, p)
        rule = "maximises balanced accuracy on this split"
        rule += " (on calibrated P(fake))" if fit else ""
    elif threshold == "reals":
        try:
            cut, _, _ = false_alarm_threshold(y, p, sources, false_alarm)
        except ValueError as exc:
            raise DataError(f"--threshold reals: {exc}.") from None
        balanced = float(balanced_accuracy_score(y, (p >= cut).astype(int)))
        rule = (
            f"at most {false_alarm:.0%} of the validation real photos of every real collection "
            "called fake"
        )
    else:
        cut = float(threshold)
        balanced = float(balanced_accuracy_score(y, (p >= cut).astype(int)))
        rule = "given (--threshold)"
    info = {
        "split": cfg.get("val_split", "valid"),
        "n": len(y),
        "threshold_rule": rule,
        "threshold": cut,
        "balanced_accuracy": balanced,
        "accuracy": float(((p >= cut) == y).mean()),
        "roc_auc": float(roc_auc_score(y, p)),
        "accuracy_at_0.5": float(((p >= 0.5) == y).mean()),
    }
    if fitted:
        info["calibration"] = fitted
    info["sources"] = operating_sources(y, p, sources, cut)
    return temperature, cut, info


def generators(cfg: dict) -> dict:
    """The generators whose fakes the run trained on, by the sources its fake cells came from."""
    cells = cfg.get("classes", {}).get("balance", {}).get("cells", [])
    fake_sources = sorted({c["source"] for c in cells if c["class"] == "fake"})
    return {
        "learned": generator_names(fake_sources),
        "not_learned": NOT_LEARNED,
    }


def _trained_on(cfg: dict) -> str:
    c = cfg["classes"]
    sources = [cell["source"] for cell in c.get("balance", {}).get("cells", [])]
    names = collections(sources) if sources else ", ".join(Path(d).name for d in cfg["data"])
    return (
        f"{names}: {c['train']['fake']} fake + {c['train']['real']} real training images, "
        f"{cfg['size']}px {cfg['color']}, {cfg['model']}"
    )


def export_run(
    run_dir: Path,
    out: Path,
    name: str = "",
    version: str = "",
    checkpoint: str = "best",
    threshold: float | str = 0.5,
    check_data: list[str] | None = None,
    max_mb: float = 25.0,
    metrics_dir: Path | None = None,
    explain: bool = True,
    calibration: str = "valid",
    false_alarm: float = 0.02,
) -> tuple[Model, int]:
    """A run's checkpoint -> `out`, rebuilt in float32 and checked against Keras: the model is
    loaded, its calibration and threshold chosen on the validation split, its spec written from
    the run's config, and the files moved into `out` only once every check passed."""
    from .models import spec_from_config

    cfg, state, model = _load_run(run_dir, checkpoint)
    extra = _run_record(cfg, state, checkpoint, int(model.count_params()))
    temperature = 1.0
    if threshold in ("valid", "reals") or calibration == "valid":
        by_reals = threshold == "reals"
        temperature, threshold, valid = _valid_calibration(
            model, cfg, calibration == "valid", threshold, false_alarm
        )
        extra["metrics"]["valid"] = valid
        if by_reals:
            extra["operating_point"] = {
                "rule": valid["threshold_rule"],
                "false_alarm_target": false_alarm,
                "split": valid["split"],
                "threshold": valid["threshold"],
                "sources": valid["sources"],
            }
    extra["generators"] = generators(cfg)
    if metrics_dir:
        extra["metrics"]["test"] = _test_metrics(metrics_dir / "metrics.csv")
    spec = spec_from_config(cfg, name or cfg["model"], version or cfg.get("version", "0"))
    spec = replace(spec, threshold=float(threshold), trained_on=_trained_on(cfg), extra=extra)
    spec = replace(spec, temperature=temperature)
    _refuse_drift(cfg["data"])
    check = check_inputs(cfg, spec, data=check_data)
    _write_checked(model, spec, out, check, explain, max_mb)
    return Model(out), len(check)


def _load_run(run_dir: Path, checkpoint: str):
    """(config, state, the checkpoint's weights in the zoo's model rebuilt in float32), on
    TensorFlow, whose converter makes LiteRT."""
    import json

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from .data.datasets import DataError
    from .models import build

    if keras.backend.backend() != "tensorflow":  # the LiteRT converter is TensorFlow's
        raise DataError(
            f"export converts with TensorFlow: run it with KERAS_BACKEND=tensorflow (or unset), "
            f"not {keras.backend.backend()}; a checkpoint from any backend exports."
        )
    cfg_path, ckpt = run_dir / "config.json", run_dir / f"{checkpoint}.keras"
    if not cfg_path.is_file() or not ckpt.is_file():
        raise DataError(f"{run_dir}: not a run folder (needs config.json and {ckpt.name}).")
    cfg = json.loads(cfg_path.read_text())
    state_path = run_dir / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    # Weights only: a checkpoint from PyTorch names its optimizer by a torch module (Keras'
    # fused Adam there), which cannot load where torch is not installed; export needs none.
    trained = keras.models.load_model(ckpt, compile=False)
    # Rebuilt under float32 so a mixed-precision or multi-GPU run exports the same plain graph.
    keras.mixed_precision.set_global_policy("float32")
    channels = 1 if cfg["color"] == "gray" else 3
    model = build(
        cfg["model"],
        cfg["size"],
        channels,
        cfg["dropout"],
        head=cfg.get("head", "flatten"),
    )
    model.set_weights(trained.get_weights())
    return cfg, state, model


def _run_record(cfg: dict, state: dict, checkpoint: str, params: int) -> dict:
    """What model.json says of the run: architecture, recipe, classes, epochs, validation."""
    return {
        "architecture": cfg["model"],
        "params": params,
        "training": {
            k: cfg[k]
            for k in ("epochs", "batch_size", "learning_rate", "augment", "balance", "seed")
            + ("weights", "freeze_epochs", "fine_tune_learning_rate", "batch_norm")
            if k in cfg
        }
        | {
            "classes": {k: v for k, v in cfg.get("classes", {}).items() if k != "by_folder"},
            "checkpoint": checkpoint,
            "best_epoch": state.get("best_epoch"),
            "epochs_done": state.get("epochs_done"),
        },
        "metrics": {
            "valid": {
                k: state[k]
                for k in ("best_val_loss", "best_val_accuracy", "best_val_auc")
                if k in state
            }
        },
    }


def _test_metrics(metrics_csv: Path) -> dict:
    """The first row (every image) of an evaluate output's metrics.csv, as numbers."""
    import csv

    from .data.datasets import DataError

    if not metrics_csv.is_file():
        raise DataError(f"{metrics_csv}: no such file (--metrics takes an evaluate output).")
    with metrics_csv.open(newline="") as fh:
        first = next(csv.DictReader(fh))
    return {
        k: (float(v) if k not in ("group", "positive") else v)
        for k, v in first.items()
        if v not in ("", "nan")
    }


def _refuse_drift(folders: list[str]) -> None:
    """Refuse a run whose prepared crops serving's alignment would no longer produce."""
    from .data.datasets import DataError
    from .data.prepare import alignment_drift

    for folder in folders:
        drift = alignment_drift(Path(folder)) if Path(folder).is_dir() else None
        if drift and drift[0] > 0:
            raise DataError(
                f"{folder} was aligned by other code than serving runs now (pixels differ by up "
                f"to {drift[0]} on {drift[1]} re-aligned faces): re-run prepare, then train."
            )


def _write_checked(model, spec: ModelSpec, out: Path, check, explain: bool, max_mb: float) -> None:
    """Convert and check aside, then move the files into `out`: a failed export must not replace
    the model that was there."""
    from .data.datasets import DataError

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        served = export_keras(model, tmp, spec, check=check, atol=1e-5, explain=explain)
        mb = (Path(tmp) / spec.file).stat().st_size / 2**20
        if mb > max_mb:
            hint = " (with Grad-CAM; --no-explain drops it)" if served.can_explain else ""
            raise DataError(f"{out / spec.file} would be {mb:.1f} MB{hint}, over {max_mb:g} MB.")
        for name in (spec.file, SPEC_FILE):
            os.replace(Path(tmp) / name, out / name)


def run(args) -> int:
    out = Path(args.out)
    served, checked = export_run(
        Path(args.run_dir),
        out,
        args.name,
        args.version,
        args.checkpoint,
        args.threshold,
        args.check_data,
        args.max_mb,
        Path(args.metrics) if args.metrics else None,
        not args.no_explain,
        args.calibrate,
        args.false_alarm,
    )
    mb = (out / served.spec.file).stat().st_size / 2**20
    print(
        f"{out}: {served.spec.file} ({mb:.1f} MB) + model.json; LiteRT equals Keras within "
        f"1e-5 on {checked} real aligned faces"
        + (f", its Grad-CAM TensorFlow's at r >= {MIN_CAM_R}" if served.can_explain else "")
    )
    return 0


def _threshold(text: str) -> float | str:
    if text in ("valid", "reals"):
        return text
    value = float(text)
    if not 0.0 < value < 1.0:
        raise ValueError(text)
    return value


_threshold.__name__ = "threshold"  # argparse names the type in its error message


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise ValueError(text)
    return value


_rate.__name__ = "rate"


HELP = "export a trained run to a model folder serving loads"
DESCRIPTION = (
    "Convert a run's checkpoint to MODEL_DIR/model.tflite + model.json "
    "(name, version, input size/colour, normalisation, positive class fake, threshold, "
    "what it was trained on, metrics). Fails unless LiteRT's predictions equal Keras' "
    "within 1e-5 on a batch of real aligned faces from the run's data, or the file is too "
    "large."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder written by `train`")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR", help="e.g. models/default")
    parser.add_argument("--name", default="", help="model name (the architecture)")
    parser.add_argument("--version", default="", help="model version (the run's start time)")
    add_checkpoint(parser, help="which checkpoint (best: lowest validation loss)")
    parser.add_argument(
        "--threshold",
        type=_threshold,
        default=0.5,
        help="P(fake) at or above which serving says fake: a number (0.5); `valid`: the cut "
        "that maximises balanced accuracy on the run's validation split; `reals`: the lowest "
        "cut that calls at most --false-alarm of every real validation source's photos fake "
        "(model.json operating_point says so, with each source's rates)",
    )
    parser.add_argument(
        "--false-alarm",
        type=_rate,
        default=0.02,
        metavar="RATE",
        help="for --threshold reals: the largest share of validation reals called fake (0.02)",
    )
    parser.add_argument(
        "--metrics",
        metavar="DIR",
        help="an `evaluate` output whose overall row (with its threshold) goes into model.json",
    )
    parser.add_argument(
        "--check-data",
        action="append",
        metavar="DIR",
        help="prepared folder for the equality check (default: the run's data)",
    )
    parser.add_argument(
        "--max-mb", type=float, default=25.0, help="size limit of model.tflite (25)"
    )
    parser.add_argument(
        "--calibrate",
        choices=["valid", "none"],
        default="valid",
        help="valid: fit a temperature T on the run's validation split (model.json "
        "output.temperature; serving shows sigmoid(logit/T), and --threshold valid is chosen on "
        "that calibrated P(fake)); none: T = 1",
    )
    parser.add_argument(
        "--no-explain",
        action="store_true",
        help="leave out the Grad-CAM signature (serving then answers ?explain=1 with 501)",
    )
