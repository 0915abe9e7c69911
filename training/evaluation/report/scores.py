"""The sections of eval/, the test split scored by `evaluate`: its metrics, calibration,
robustness to perturbations and the share called fake per source."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from ..calibration import ECE_BINS
from .fairface import PREDICT_COLUMNS
from .read import f3, f4, figure, num, pct, read_csv, table


def section_test(model_dir: Path, out: Path) -> dict | None:
    path = model_dir / "eval" / "metrics.csv"
    if not path.is_file():
        return None
    rows = read_csv(path, ["group", "n", "accuracy", "f1", "precision", "recall", "roc_auc"])
    rows_out = [
        [
            r["group"],
            r["n"],
            f4(r["accuracy"]),
            f4(r["f1"]),
            f4(r["precision"]),
            f4(r["recall"]),
            f4(r["roc_auc"]),
            f4(r.get("average_precision")),
            f4(r.get("ece")),
            r.get("tp", ""),
            r.get("fp", ""),
            r.get("fn", ""),
            r.get("tn", ""),
        ]
        for r in rows
    ]
    head = ["Group", "n", "Accuracy", "F1", "Precision", "Recall", "ROC-AUC", "AP", "ECE"]
    return {
        "all": next((r for r in rows if r["group"] == "all"), rows[0]),
        "table": table([*head, "TP", "FP", "FN", "TN"], rows_out),
        "threshold": f3(rows[0].get("threshold"), 4),
        "figure": figure(model_dir / "eval" / "roc_pr.png", out, "ROC and precision-recall"),
    }


def section_calibration(model_dir: Path, doc: dict, test: dict | None, out: Path) -> dict | None:
    """The temperature serving applies, what it did on the valid split, the test split's ECE
    and reliability diagram; None when the model was exported before calibration existed and
    nothing was measured."""
    temperature = (doc.get("output") or {}).get("temperature")
    fitted = doc.get("metrics", {}).get("valid", {}).get("calibration") or {}
    fig = figure(model_dir / "eval" / "reliability.png", out, "Reliability of P(fake), test")
    test_ece = test["all"].get("ece") if test else None
    if temperature is None and not fitted and fig is None and not test_ece:
        return None
    rows = []
    if fitted:
        rows.append(
            [
                f"valid ({fitted.get('n', '?')}), before",
                f4(fitted.get("nll_before")),
                f4(fitted.get("ece_before")),
            ]
        )
        rows.append(
            [
                f"valid ({fitted.get('n', '?')}), after",
                f4(fitted.get("nll_after")),
                f4(fitted.get("ece_after")),
            ]
        )
    if test_ece:
        rows.append([f"test ({test['all'].get('n', '?')}), served", "—", f4(test_ece)])
    return {
        "temperature": f3(temperature if temperature is not None else 1.0, 4),
        "fitted": bool(fitted),
        "bins": fitted.get("ece_bins", ECE_BINS),
        "table": table(["Split", "NLL", "ECE"], rows) if rows else None,
        "figure": fig,
    }


def section_robustness(model_dir: Path) -> dict | None:
    path = model_dir / "eval" / "robustness.csv"
    if not path.is_file():
        return None
    rows = read_csv(path, ["variant", "scored", "accuracy", "clean_accuracy", "accuracy_drop"])
    body = [
        [
            r["variant"],
            r["scored"],
            r.get("no_face", ""),
            f4(r["accuracy"]),
            f4(r["clean_accuracy"]),
            f3(100 * num(r["accuracy_drop"]), 1),
            f4(r.get("roc_auc")),
            f4(r.get("ece")),
        ]
        for r in rows
    ]
    head = ["Variant", "Scored", "No face", "Accuracy", "Clean accuracy", "Drop (points)"]
    threshold = num(rows[0].get("threshold")) if rows else math.nan
    return {
        "applied_to": rows[0].get("applied_to", "") if rows else "",
        "table": table([*head, "ROC-AUC", "ECE"], body),
        "worst": max((num(r["accuracy_drop"]) for r in rows), default=math.nan),
        "by_source": _robustness_by_source(
            model_dir / "eval" / "robustness_predictions.csv",
            [r["variant"] for r in rows],
            threshold,
        ),
    }


def _robustness_by_source(path: Path, variants: list[str], threshold: float) -> dict | None:
    """Each (source, class): the share answered right, clean and after each variant, over the
    photos every variant found a face in. The pooled accuracy is mostly FairFace's reals; a
    collection whose photos a degradation moves shows only here."""
    if not path.is_file() or math.isnan(threshold):
        return None
    cells: dict[tuple[str, str], list[list[bool]]] = defaultdict(list)
    for r in read_csv(path, ["dataset", "true_label", "p_clean", *variants]):
        scores = [r["p_clean"], *(r[v] for v in variants)]
        if "" in scores:
            continue
        fake = r["true_label"] == "fake"
        cells[(r["dataset"], r["true_label"])].append(
            [(num(p) >= threshold) == fake for p in scores]
        )
    rows = []
    for (source, label), right in sorted(cells.items()):
        shares = [pct(sum(col) / len(right)) for col in zip(*right, strict=True)]
        rows.append(
            [source, "fakes caught" if label == "fake" else "reals kept", len(right), *shares]
        )
    return table(["Source", "Share", "n", "clean", *variants], rows)


def section_sources(model_dir: Path, fairface: dict | None) -> dict:
    path = model_dir / "eval" / "predictions.csv"
    rows, note = [], None
    if path.is_file():
        preds = read_csv(path, [*PREDICT_COLUMNS, "true_label", "split", "dataset"])
        names = {
            ("140k", "real"): "real FFHQ (140k test)",
            ("140k", "fake"): "fake StyleGAN (140k test)",
        }
        cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for r in preds:
            if r["split"] != "test":
                continue
            cell = cells[(r["dataset"], r["true_label"])]
            if r["error"] or r["p_fake"] == "":
                cell[2] += 1
            else:
                cell[0] += 1
                cell[1] += r["label"] == "fake"
        for key in sorted(cells):
            n, fake, missed = cells[key]
            name = names.get(key, f"{key[1]} {key[0]} (test)")
            rows.append([name, n, fake, f4(fake / n) if n else "—", missed])
    else:
        note = "eval/predictions.csv is absent, so the 140k test split per source is not measured."
    if fairface:
        n, fake = fairface["scored"], fairface["called_fake"]
        rows.append(["real FairFace val (served path)", n, fake, f4(fake / n) if n else "—", ""])
    return {
        "table": table(
            ["Source", "n scored", "Called fake", "Share called fake", "Not scored"], rows
        )
        if rows
        else None,
        "note": note,
    }
