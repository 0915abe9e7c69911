"""`evaluate`: a trained run or an exported model on a split of prepared data.

Positive class: fake. Writes metrics.csv / .md / .tex (the paper's Tables 4-8: accuracy, F1,
precision, recall, plus ROC-AUC, average precision and the confusion matrix), predictions.csv
(the columns of `python -m shared predict`, then true_label, split, dataset and attributes) and
roc_pr.png.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from shared.cli import COLUMNS

from .datasets import MANIFEST_FIELDS, DataError, read_prepared

# The columns of `python -m shared predict`, so both CSVs feed the fairness audit alike.
PREDICT_FIELDS = COLUMNS
METRIC_FIELDS = [
    "group",
    "n",
    "accuracy",
    "f1",
    "precision",
    "recall",
    "roc_auc",
    "average_precision",
    "tp",
    "fp",
    "fn",
    "tn",
    "positive",
    "threshold",
]


def metrics(y_true: np.ndarray, p_fake: np.ndarray, threshold: float) -> dict:
    """Binary metrics with fake = 1 as the positive class; undefined ones are NaN."""
    from sklearn import metrics as m

    y_pred = (p_fake >= threshold).astype(int)
    tn, fp, fn, tp = m.confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    both = len(set(y_true.tolist())) == 2
    nan = float("nan")
    return {
        "n": len(y_true),
        "accuracy": m.accuracy_score(y_true, y_pred),
        "f1": m.f1_score(y_true, y_pred, zero_division=nan),
        "precision": m.precision_score(y_true, y_pred, zero_division=nan),
        "recall": m.recall_score(y_true, y_pred, zero_division=nan),
        "roc_auc": m.roc_auc_score(y_true, p_fake) if both else nan,
        "average_precision": m.average_precision_score(y_true, p_fake) if both else nan,
        "tp": int(tp),
        "fp": int(fp),
        "fn": int(fn),
        "tn": int(tn),
        "positive": "fake",
        "threshold": threshold,
    }


def load_predictor(model_dir: Path, checkpoint: str = "best"):
    """(predict(inputs) -> P(fake), ModelSpec, description) for a run folder or a model folder."""
    from shared.model import SPEC_FILE, Model

    if (model_dir / SPEC_FILE).is_file():
        served = Model(model_dir)
        return served.predict, served.spec, f"{served.spec.name} {served.spec.version} (LiteRT)"
    cfg_path, ckpt = model_dir / "config.json", model_dir / f"{checkpoint}.keras"
    if not cfg_path.is_file() or not ckpt.is_file():
        raise DataError(
            f"{model_dir}: neither a model folder ({SPEC_FILE}) nor a run folder "
            f"(config.json and {ckpt.name})."
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from .train import spec_from_config

    cfg = json.loads(cfg_path.read_text())
    model = keras.models.load_model(ckpt)

    def predict(x):
        return model.predict(x, batch_size=64, verbose=0).reshape(len(x), -1)[:, 0]

    return predict, spec_from_config(cfg), f"{cfg['model']} ({ckpt}, Keras)"


def _fmt(v) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def write_tables(table: list[dict], out: Path, title: str, notes: list[str]) -> None:
    with (out / "metrics.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, METRIC_FIELDS)
        writer.writeheader()
        writer.writerows([{k: r[k] for k in METRIC_FIELDS} for r in table])
    cols = [c for c in METRIC_FIELDS if c not in ("positive", "threshold")]
    head = [
        "Group",
        "N",
        "Accuracy",
        "F1",
        "Precision",
        "Recall",
        "ROC-AUC",
        "AP",
        "TP",
        "FP",
        "FN",
        "TN",
    ]
    md = [
        f"# {title}",
        "",
        "Positive class: **fake** (precision, recall and F1 are for fakes; "
        "TP = a fake called fake).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    md += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in table]
    md += ["", *[f"- {n}" for n in notes]]
    (out / "metrics.md").write_text("\n".join(md) + "\n")
    esc = lambda s: str(s).replace("_", r"\_").replace("&", r"\&").replace("%", r"\%")  # noqa: E731
    tex = [
        r"% " + title,
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{lrrrrrr}",
        r"\toprule",
        r"Group & Accuracy & F1 & Precision & Recall & ROC-AUC & AP \\",
        r"\midrule",
    ]
    tex += [
        " & ".join(
            [esc(r["group"])]
            + [
                _fmt(r[c]).replace("—", "--")
                for c in ("accuracy", "f1", "precision", "recall", "roc_auc", "average_precision")
            ]
        )
        + r" \\"
        for r in table
    ]
    tex += [
        r"\bottomrule",
        r"\end{tabular}",
        r"\caption{" + esc(title) + r". Positive class: fake.}",
        r"\end{table}",
    ]
    (out / "metrics.tex").write_text("\n".join(tex) + "\n")


def plot_curves(groups: dict[str, tuple[np.ndarray, np.ndarray]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, (roc, pr) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    for name, (y, p) in groups.items():
        if len(set(y.tolist())) < 2:
            continue  # a one-class group has no curve
        fpr, tpr, _ = roc_curve(y, p)
        prec, rec, _ = precision_recall_curve(y, p)
        roc.plot(fpr, tpr, label=name)
        pr.plot(rec, prec, label=name)
    roc.plot([0, 1], [0, 1], ":", color="gray")
    roc.set(
        xlabel="false positive rate (real called fake)",
        ylabel="true positive rate",
        title="ROC (positive = fake)",
    )
    pr.set(xlabel="recall (fakes caught)", ylabel="precision", title="Precision-recall")
    for ax in (roc, pr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out / "roc_pr.png")
    plt.close(fig)


def evaluate(
    model_dir: Path,
    data: list[Path],
    split: str,
    out: Path,
    by: list[str],
    threshold: float | None = None,
    checkpoint: str = "best",
    workers: int | None = None,
    cache_dir: Path | None = None,
    quiet: bool = False,
) -> list[dict]:
    from .pipeline import load_split

    predict, spec, described = load_predictor(model_dir, checkpoint)
    threshold = spec.threshold if threshold is None else threshold
    prepared = [read_prepared(d) for d in data]
    chosen = load_split(prepared, split, spec.size, spec.color, workers, cache_dir, quiet)
    p_fake = np.empty(len(chosen.labels), np.float32)
    batch = 256  # bounded memory whatever the split's size
    for i in range(0, len(p_fake), batch):
        x = np.asarray(chosen.images[i : i + batch], np.float32)
        p_fake[i : i + batch] = predict(x * np.float32(spec.scale) + np.float32(spec.offset))

    rows, attr_keys = [], []
    for p in prepared:
        info = p.root / "prepare.json"
        src = Path(json.loads(info.read_text())["source"]) if info.is_file() else p.root
        extra = [k for k in (p.rows[0] if p.rows else {}) if k not in attr_keys]
        attr_keys += [k for k in extra if k not in MANIFEST_FIELDS]
        for r in p.rows:
            if split in (None, "all") or r["split"] == split:
                rows.append((src, p.root, r))
    index = {(r["root"], r["output"]): i for i, r in enumerate(chosen.rows)}
    preds, skipped = [], {}
    for src, root, r in rows:
        line = {
            "path": str(src / r["source"]),
            "face": "",
            "x": r["x"],
            "y": r["y"],
            "w": r["w"],
            "h": r["h"],
            "p_fake": "",
            "label": "",
            "error": "",
            "true_label": r["label"],
            "split": r["split"],
            "dataset": r["dataset"],
            **{k: r.get(k, "") for k in attr_keys},
        }
        i = index.get((str(root), r["output"]))
        if i is None:
            reason = r["status"] if r["status"] != "ok" else "unlabelled"
            skipped[reason] = skipped.get(reason, 0) + 1
            line["error"] = reason
        else:
            line.update(
                face="0",
                p_fake=f"{p_fake[i]:.6f}",
                label="fake" if p_fake[i] >= threshold else "real",
            )
        preds.append(line)

    out.mkdir(parents=True, exist_ok=True)
    fields = PREDICT_FIELDS + ["true_label", "split", "dataset"] + attr_keys
    with (out / "predictions.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fields)
        writer.writeheader()
        writer.writerows(preds)

    y = chosen.labels.astype(int)
    groups = {"all": (y, p_fake)}
    for col in by:
        values = [r.get(col) for r in chosen.rows]
        if any(v is None for v in values):
            known = sorted(set(chosen.rows[0]) - {"root"})
            raise DataError(f"--by {col}: no such column; choose from {', '.join(known)}.")
        for v in sorted(set(values)):
            mask = np.array([x == v for x in values])
            groups[f"{col}={v}"] = (y[mask], p_fake[mask])
    table = [{"group": g, **metrics(yt, pt, threshold)} for g, (yt, pt) in groups.items()]
    title = f"{described} on {', '.join(p.name for p in prepared)} [{split}]"
    notes = [
        f"threshold {threshold:g} on P(fake); {len(y)} images scored "
        f"({int(y.sum())} fake, {len(y) - int(y.sum())} real)."
    ]
    if skipped:
        notes.append(
            "not scored (no aligned face or no label): "
            + ", ".join(f"{v} {k}" for k, v in sorted(skipped.items()))
            + " — listed in predictions.csv with `error` set."
        )
    write_tables(table, out, title, notes)
    plot_curves(groups, out, title)
    return table


def run(args) -> int:
    out = Path(args.out)
    try:
        table = evaluate(
            Path(args.model),
            [Path(d) for d in args.data],
            args.split,
            out,
            args.by or [],
            args.threshold,
            args.checkpoint,
            args.workers,
            Path(args.cache_dir) if args.cache_dir else None,
            args.quiet,
        )
    except DataError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    print((out / "metrics.md").read_text())
    a = table[0]
    print(
        f"{out}: accuracy {a['accuracy']:.4f}, F1 {a['f1']:.4f}, ROC-AUC {a['roc_auc']:.4f} "
        f"(positive = fake)"
    )
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics of a run or exported model on a prepared split",
        description="Score a run folder (its best.keras) or an exported model folder "
        "(model.json + model.tflite, run with LiteRT as serving does) on a split of prepared "
        "data. Positive class: fake. Writes metrics.csv, metrics.md, metrics.tex, "
        "predictions.csv (columns of `python -m shared predict` plus true_label, split, "
        "dataset and attributes such as FairFace's race) and roc_pr.png into OUT.",
    )
    p.add_argument("--model", required=True, metavar="RUN_DIR_OR_MODEL_DIR")
    p.add_argument(
        "--data",
        required=True,
        action="append",
        metavar="DIR",
        help="a prepared folder; repeat to pool several",
    )
    p.add_argument("--split", default="test", help="train, valid, test or all (test)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the tables and plot")
    p.add_argument(
        "--by",
        action="append",
        metavar="COLUMN",
        help="also break the table down by this column (dataset, race, gender, age)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="P(fake) at or above which an image is called fake (model's, or 0.5)",
    )
    p.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default="best",
        help="which checkpoint of a run folder (best)",
    )
    p.add_argument("--workers", type=int, default=None, help="decoding processes (all cores)")
    p.add_argument("--cache-dir", help="where decoded pixels are cached (DIR/cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
