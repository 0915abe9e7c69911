"""`evaluate`: a trained run or an exported model on a split of prepared data.

Positive class: fake. Writes metrics.csv / .md / .tex (the paper's Tables 4-8: accuracy, F1,
precision, recall, plus ROC-AUC, average precision, the confusion matrix and the expected
calibration error of P(fake)), predictions.csv (the columns of `python -m shared predict`, then
true_label, split, dataset and attributes), roc_pr.png, reliability.png / reliability.csv (the
calibration of P(fake)), evaluation.json (what was scored, which sources the model never trained
on) and, with `--robustness`, robustness.csv / .md (accuracy drop per degradation).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from pathlib import Path

import numpy as np

from shared.cli import COLUMNS

from ..data.datasets import (
    MANIFEST_FIELDS,
    DataError,
    Prepared,
    prepare_info,
    read_prepared,
    source_of,
)
from ..options import add_checkpoint
from .calibration import ECE_BINS, ece, plot_reliability, reliability, versus_every_real
from .robustness import TARGETS, VARIANTS

# The columns of `python -m shared predict`, so both CSVs feed the fairness audit alike.
PREDICT_FIELDS = COLUMNS
# The scores of a group, in the order every table prints them.
SCORE_FIELDS = ["accuracy", "f1", "precision", "recall", "roc_auc", "average_precision", "ece"]
METRIC_FIELDS = ["group", "n", *SCORE_FIELDS, "tp", "fp", "fn", "tn", "positive", "threshold"]


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
        "ece": ece(y_true, p_fake),
        "tp": int(tp),
        "fp": int(fp),
        "fn": int(fn),
        "tn": int(tn),
        "positive": "fake",
        "threshold": threshold,
    }


def every_real_groups(
    rows: list[dict], y: np.ndarray, p_fake: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The groups `<source> fakes vs every real` (calibration.versus_every_real): each source's
    fakes against every real photo scored; none when no real photo was scored."""
    if not (y == 0).any():
        return {}
    masks = versus_every_real(y, [source_of(r) for r in rows])
    return {f"{name} fakes vs every real": (y[m], p_fake[m]) for name, m in masks.items()}


def _aligned_pixels(spec):
    """A two-view model is fed the aligned faces themselves (8-bit, as aligned): each view
    takes what it needs from them, as in serving."""
    from dataclasses import replace

    return replace(spec, size=spec.align_size, color="rgb", scale=1.0, offset=0.0)


def _two_views(served):
    """predict(aligned faces as float 0-255) -> the combined P(fake), through `Model.score`,
    the call serving makes."""
    from PIL import Image

    def predict(x):
        faces = [Image.fromarray(np.asarray(a, np.uint8)) for a in x]
        return served.score(faces).p_fake if faces else np.zeros(0, np.float32)

    return predict


def load_predictor(model_dir: Path, checkpoint: str = "best"):
    """(predict(inputs) -> P(fake), ModelSpec, description) for a run folder or a model folder."""
    from shared.model import SPEC_FILE, Model

    if (model_dir / SPEC_FILE).is_file():
        served = Model(model_dir)
        described = f"{served.spec.name} {served.spec.version} (LiteRT)"
        if served.clip is None:
            return served.predict, served.spec, described
        return _two_views(served), _aligned_pixels(served.spec), described + " + CLIP (ONNX)"
    cfg_path, ckpt = model_dir / "config.json", model_dir / f"{checkpoint}.keras"
    if not cfg_path.is_file() or not ckpt.is_file():
        raise DataError(
            f"{model_dir}: neither a model folder ({SPEC_FILE}) nor a run folder "
            f"(config.json and {ckpt.name})."
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from ..models import spec_from_config

    cfg = json.loads(cfg_path.read_text())
    # Scoring needs no optimizer: a checkpoint saved on the torch backend names torch's Adam.
    model = keras.models.load_model(ckpt, compile=False)

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
        "ECE",
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
        r"\begin{tabular}{lrrrrrrr}",
        r"\toprule",
        r"Group & Accuracy & F1 & Precision & Recall & ROC-AUC & AP & ECE \\",
        r"\midrule",
    ]
    tex += [
        " & ".join([esc(r["group"])] + [_fmt(r[c]).replace("—", "--") for c in SCORE_FIELDS])
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


def _jsonable(value):
    """NaN (an undefined metric) as null: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def trained_sources(model_dir: Path) -> list[str] | None:
    """The sources (manifest `dataset` names) the model was trained on, as its run recorded them
    (config.json, or model.json for an exported model); None when it did not record them."""
    from shared.model import SPEC_FILE

    for name, keys in ((SPEC_FILE, ("training", "classes")), ("config.json", ("classes",))):
        path = model_dir / name
        if path.is_file():
            doc = json.loads(path.read_text())
            for k in keys:
                doc = doc.get(k) or {}
            found = (doc.get("balance") or {}).get("sources")
            return sorted(found) if found else None
    return None


def _only_sources(prepared: list[Prepared], sources: list[str]) -> list[Prepared]:
    """The prepared folders with only the rows of the named sources (`--source`)."""
    present = sorted({source_of({**r, "root": str(p.root)}) for p in prepared for r in p.rows})
    unknown = [s for s in sources if s not in present]
    if unknown:
        raise DataError(
            f"--source {', '.join(unknown)}: not in the data; its sources are "
            f"{', '.join(present) or 'none'}."
        )
    return [
        Prepared(p.root, [r for r in p.rows if source_of({**r, "root": str(p.root)}) in sources])
        for p in prepared
    ]


def _source_roots(prepared: list[Prepared]) -> dict[str, Path]:
    """Each prepared folder's source folder (from what `prepare` recorded), keyed by the folder."""
    roots = {}
    for p in prepared:
        info = prepare_info(p.root)
        roots[str(p.root)] = Path(info["source"]) if info else p.root
    return roots


ROBUSTNESS_FIELDS = [
    "variant",
    "applied_to",
    "images",
    "scored",
    "no_face",
    "accuracy",
    "clean_accuracy",
    "accuracy_drop",
    "roc_auc",
    "clean_roc_auc",
    "ece",
    "clean_ece",
    "threshold",
]


def robustness_table(
    chosen,
    p_clean: np.ndarray,
    roots: dict[str, Path],
    variants: list[str],
    target: str,
    spec,
    predict,
    threshold: float,
    out: Path,
    title: str,
    workers: int | None = None,
    quiet: bool = False,
) -> list[dict]:
    """Score every variant; compare each with the clean scores of the same images (a degraded
    photo with no face found is left out of both); write robustness.csv / .md and the scores."""
    from .robustness import score_variant, source_paths

    if target == "photo":
        _require_sources(chosen.rows)
    paths = source_paths(chosen.rows, target, roots)
    y = chosen.labels.astype(int)
    table, scores = [], {}
    for variant in variants:
        p = score_variant(paths, variant, target, spec, predict, workers, quiet)
        scores[variant] = p
        table.append({"variant": variant, **_variant_row(y, p, p_clean, target, threshold)})
    with (out / "robustness.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ROBUSTNESS_FIELDS)
        writer.writeheader()
        writer.writerows(table)
    _write_variant_scores(out / "robustness_predictions.csv", chosen.rows, paths, p_clean, scores)
    (out / "robustness.md").write_text(_robustness_markdown(table, title, target, threshold))
    return table


def _require_sources(rows) -> None:
    """Degrading the source photo needs to know where it is: prepare.json says."""
    folders = {r["root"] for r in rows}
    missing = sorted(f for f in folders if prepare_info(Path(f)) is None)
    if missing:
        raise DataError(
            f"{', '.join(missing)}: no prepare.json (nor a shard's), so the source photos "
            "are unknown; pass --robustness-on crop."
        )


def _variant_row(
    y: np.ndarray, p: np.ndarray, p_clean: np.ndarray, target: str, threshold: float
) -> dict:
    """One variant against the clean scores of the same images (no face found: left out)."""
    ok = ~np.isnan(p)
    now = metrics(y[ok], p[ok], threshold)
    clean = metrics(y[ok], p_clean[ok], threshold)
    return {
        "applied_to": "source photo, then serving's detection and alignment"
        if target == "photo"
        else "aligned crop",
        "images": len(y),
        "scored": int(ok.sum()),
        "no_face": int((~ok).sum()),
        "accuracy": now["accuracy"],
        "clean_accuracy": clean["accuracy"],
        "accuracy_drop": clean["accuracy"] - now["accuracy"],
        "roc_auc": now["roc_auc"],
        "clean_roc_auc": clean["roc_auc"],
        "ece": now["ece"],
        "clean_ece": clean["ece"],
        "threshold": threshold,
    }


def _write_variant_scores(path: Path, rows, paths, p_clean, scores: dict) -> None:
    variants = list(scores)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "true_label", "dataset", "p_clean", *variants])
        for i, r in enumerate(rows):
            cells = ["" if np.isnan(scores[v][i]) else f"{scores[v][i]:.6f}" for v in variants]
            writer.writerow([paths[i], r["label"], r["dataset"], f"{p_clean[i]:.6f}", *cells])


def _robustness_markdown(table: list[dict], title: str, target: str, threshold: float) -> str:
    head = ["Variant", "Scored", "No face", "Accuracy", "Clean accuracy", "Drop (points)"]
    head += ["ROC-AUC", "Clean ROC-AUC", "ECE"]
    md = [
        f"# Robustness: {title}",
        "",
        f"Each variant is applied to the {table[0]['applied_to'] if table else target}; "
        '"clean" is the same images\' score without it, so the drop compares like with like. '
        f"Threshold {threshold:g} on P(fake).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    md += [
        f"| {r['variant']} | {r['scored']} | {r['no_face']} | {_fmt(r['accuracy'])} | "
        f"{_fmt(r['clean_accuracy'])} | {100 * r['accuracy_drop']:.1f} | {_fmt(r['roc_auc'])} | "
        f"{_fmt(r['clean_roc_auc'])} | {_fmt(r['ece'])} |"
        for r in table
    ]
    return "\n".join(md) + "\n"


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
    sources: list[str] | None = None,
    robustness: list[str] | None = None,
    robustness_on: str = "photo",
) -> list[dict]:
    """Score `split` of the prepared folders and write OUT: predictions.csv, the metrics by
    group (metrics.csv/.md/.tex), ROC/PR and reliability plots, evaluation.json and, when asked,
    the robustness table. Returns the metrics table (its first row: every image)."""
    from ..data.pipeline import load_split

    predict, spec, described = load_predictor(model_dir, checkpoint)
    threshold = spec.threshold if threshold is None else threshold
    prepared = [read_prepared(d) for d in data]
    if sources:
        prepared = _only_sources(prepared, sources)
    chosen = load_split(prepared, split, spec.size, spec.color, workers, cache_dir, quiet)
    p_fake = _score(predict, spec, chosen)
    roots = _source_roots(prepared)
    skipped = write_predictions(prepared, roots, split, chosen, p_fake, threshold, out)

    y = chosen.labels.astype(int)
    groups = _groups(chosen.rows, y, p_fake, by)
    table = [{"group": g, **metrics(yt, pt, threshold)} for g, (yt, pt) in groups.items()]
    scored_sources = sorted({source_of(r) for r in chosen.rows})
    seen = trained_sources(model_dir)
    held_out = None if seen is None else [s for s in scored_sources if s not in seen]
    title = f"{described} on {', '.join(p.name for p in prepared)} [{split}]"
    if sources:
        title += f" (source: {', '.join(sources)})"
    notes = _notes(y, threshold, spec, scored_sources, seen, held_out, skipped)
    write_tables(table, out, title, notes)
    plot_curves(groups, out, title)
    _write_reliability(groups, out, title)
    summary = {
        "model": described,
        "data": [str(p.root) for p in prepared],
        "split": split,
        "sources": sources or None,
        "sources_scored": scored_sources,
        "trained_sources": seen,
        "held_out_sources": held_out,
        "threshold": threshold,
        "temperature": spec.temperature,
        "all": {k: v for k, v in table[0].items() if k != "group"},
    }
    if robustness:
        rob = robustness_table(
            chosen,
            p_fake,
            roots,
            robustness,
            robustness_on,
            spec,
            predict,
            threshold,
            out,
            title,
            workers,
            quiet,
        )
        summary["robustness"] = rob
    (out / "evaluation.json").write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
    return table


def _score(predict, spec, split) -> np.ndarray:
    """P(fake) of every image of the split, normalised as the model was trained, in bounded
    batches."""
    p_fake = np.empty(len(split.labels), np.float32)
    batch = 256  # bounded memory whatever the split's size
    for i in range(0, len(p_fake), batch):
        x = np.asarray(split.images[i : i + batch], np.float32)
        p_fake[i : i + batch] = predict(x * np.float32(spec.scale) + np.float32(spec.offset))
    return p_fake


def write_predictions(
    prepared: list[Prepared], roots, split, chosen, p_fake, threshold, out: Path
) -> dict[str, int]:
    """OUT/predictions.csv in `python -m shared predict`'s columns plus the truth and each
    source's attributes: one row per photo of the split, scored or not (`error` says why not).
    Returns the count of photos not scored, by reason."""
    rows, attr_keys = [], []
    for p in prepared:
        src = roots[str(p.root)]
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
    return skipped


def _groups(rows: list[dict], y: np.ndarray, p_fake: np.ndarray, by: list[str]) -> dict:
    """The groups the metrics are broken down by: every image, each value of each --by column
    and, by dataset, each source's fakes against every real photo."""
    groups = {"all": (y, p_fake)}
    for col in by:
        values = [r.get(col) for r in rows]
        if any(v is None for v in values):
            known = sorted(set(rows[0]) - {"root"})
            raise DataError(f"--by {col}: no such column; choose from {', '.join(known)}.")
        for v in sorted(set(values)):
            mask = np.array([x == v for x in values])
            groups[f"{col}={v}"] = (y[mask], p_fake[mask])
    if "dataset" in by:
        groups.update(every_real_groups(rows, y, p_fake))
    return groups


def _notes(y, threshold, spec, scored_sources, seen, held_out, skipped) -> list[str]:
    """The lines under the metrics table: threshold and counts, calibration, which sources the
    model trained on, and what was not scored."""
    notes = [
        f"threshold {threshold:g} on P(fake); {len(y)} images scored "
        f"({int(y.sum())} fake, {len(y) - int(y.sum())} real).",
        (
            f"P(fake) calibrated with temperature {spec.temperature:.4g}"
            if spec.temperature != 1.0
            else "P(fake) uncalibrated (temperature 1)"
        )
        + f"; ECE over {ECE_BINS} equal-width bins of P(fake).",
    ]
    if held_out is not None:
        notes.append(
            f"sources scored: {', '.join(scored_sources)}; the model trained on "
            f"{', '.join(seen)}"
            + (
                f"; **held out** (never trained on): {', '.join(held_out)}."
                if held_out
                else "; none held out."
            )
        )
    if skipped:
        notes.append(
            "not scored (no aligned face or no label): "
            + ", ".join(f"{v} {k}" for k, v in sorted(skipped.items()))
            + " — listed in predictions.csv with `error` set."
        )
    return notes


def _write_reliability(groups: dict, out: Path, title: str) -> None:
    """OUT/reliability.png and reliability.csv: P(fake) against the share of fakes, per group."""
    plot_reliability(groups, out / "reliability.png", f"Reliability of P(fake): {title}")
    with (out / "reliability.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["group", "lo", "hi", "n", "mean_p_fake", "fake_share"])
        writer.writeheader()
        for g, (yt, pt) in groups.items():
            for b in reliability(yt, pt):
                writer.writerow({"group": g, **b})


def run(args) -> int:
    out = Path(args.out)
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
        args.source,
        None if args.robustness is None else (args.robustness or list(VARIANTS)),
        args.robustness_on,
    )
    print((out / "metrics.md").read_text())
    if args.robustness is not None:
        print((out / "robustness.md").read_text())
    a = table[0]
    print(
        f"{out}: accuracy {a['accuracy']:.4f}, F1 {a['f1']:.4f}, ROC-AUC {a['roc_auc']:.4f}, "
        f"ECE {a['ece']:.4f} (positive = fake)"
    )
    return 0


HELP = "metrics of a run or exported model on a prepared split"
DESCRIPTION = (
    "Score a run folder (its best.keras) or an exported model folder "
    "(model.json + model.tflite, run with LiteRT as serving does) on a split of prepared "
    "data. Positive class: fake. Writes metrics.csv, metrics.md, metrics.tex, "
    "predictions.csv (columns of `python -m shared predict` plus true_label, split, "
    "dataset and attributes such as FairFace's race) and roc_pr.png into OUT."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="RUN_DIR_OR_MODEL_DIR")
    parser.add_argument(
        "--data",
        required=True,
        action="append",
        metavar="DIR",
        help="a prepared folder; repeat to pool several",
    )
    parser.add_argument("--split", default="test", help="train, valid, test or all (test)")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for the tables and plot"
    )
    parser.add_argument(
        "--by",
        action="append",
        metavar="COLUMN",
        help="also break the table down by this column (dataset, race, gender, age)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="P(fake) at or above which an image is called fake (model's, or 0.5)",
    )
    add_checkpoint(parser, help="which checkpoint of a run folder (best)")
    parser.add_argument(
        "--source",
        action="append",
        metavar="NAME",
        help="score only this source (a manifest `dataset`: 140k, fairface, stylegan2-unsplash, "
        "...); repeat for several. evaluation.json and metrics.md say whether the model ever "
        "trained on it (leave-source-out)",
    )
    parser.add_argument(
        "--robustness",
        nargs="*",
        choices=VARIANTS,
        metavar="VARIANT",
        help=f"also score degraded copies and report the accuracy drop: {', '.join(VARIANTS)} "
        "(all three when none is named); robustness.csv / .md",
    )
    parser.add_argument(
        "--robustness-on",
        choices=TARGETS,
        default="photo",
        help="degrade the source photo, then detect and align it with serving's code (photo, "
        "default), or the prepared aligned crop (crop: fast, no detection)",
    )
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (all cores)")
    parser.add_argument("--cache-dir", help="where decoded pixels are cached (DIR/cache)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
