"""The sections on how the model was trained and chosen, read from model.json and training/:
its data, the generators it learned, its operating point, the training curves, the recipe
comparison and whether it can explain a decision."""

from __future__ import annotations

from pathlib import Path

from ..compare import SELECTION_RULE
from .fairface import FAIRFACE_DIR
from .read import f3, f4, figure, num, pct, read_csv, table


def section_data(doc: dict, test: dict | None, fairface: dict | None) -> dict:
    classes = doc.get("training", {}).get("classes", {})
    rows = []
    for split in ("train", "valid"):
        c = classes.get(split)
        if c:
            fake, real = c.get("fake", 0), c.get("real", 0)
            rows.append([split, fake, real, fake + real, "model.json"])
    if test:
        fake, real = int(num(test["tp"]) + num(test["fn"])), int(num(test["fp"]) + num(test["tn"]))
        rows.append(["test (scored)", fake, real, fake + real, "eval/metrics.csv"])
    if fairface:
        n = fairface["scored"]
        rows.append(["FairFace val (faces found)", 0, n, n, f"{FAIRFACE_DIR}/metrics.csv"])
    balance = classes.get("balance") or {}
    cells = None
    if balance.get("cells"):
        cells = table(
            ["Source", "Class", "Training images", "Weight per image", "Share of the loss"],
            [
                [c["source"], c["class"], c["n"], f3(c["weight"]), pct(c["share"])]
                for c in balance["cells"]
            ],
        )
    return {
        "trained_on": doc.get("trained_on", ""),
        "table": table(["Split", "Fake", "Real", "Total", "From"], rows) if rows else None,
        "weights": classes.get("class_weights"),
        "balance": doc.get("training", {}).get("balance"),
        "rule": balance.get("rule", ""),
        "cells": cells,
    }


def section_generators(doc: dict) -> dict | None:
    """model.json's `generators` (written by `export`): the generators whose faces were in the
    training data, and in words what was not; None for a model.json from before."""
    gen = doc.get("generators")
    if not isinstance(gen, dict):
        return None
    learned = gen.get("learned") or []
    learned = [learned] if isinstance(learned, str) else [str(g) for g in learned]
    not_learned = gen.get("not_learned") or ""
    if not learned and not not_learned:
        return None
    return {"learned": learned, "not_learned": str(not_learned).strip().rstrip(".")}


def section_operating_point(doc: dict) -> dict | None:
    """model.json's `operating_point` (written by `export`): the rule that set the threshold and,
    per source of its split, the share of reals called fake and of fakes caught."""
    op = doc.get("operating_point")
    if not isinstance(op, dict):
        return None
    rows = []
    for name, cell in sorted((op.get("sources") or {}).items()):
        if not isinstance(cell, dict):
            continue
        real, fake = cell.get("real"), cell.get("fake")
        rows.append(
            [
                name,
                "—" if real is None else real,
                pct(cell.get("called_fake")) if real is not None else "—",
                "—" if fake is None else fake,
                pct(cell.get("caught")) if fake is not None else "—",
            ]
        )
    split = op.get("split") or "valid"
    head = [
        "Source",
        f"Real ({split})",
        "False alarms (real called fake)",
        f"Fake ({split})",
        "Caught (fake called fake)",
    ]
    target = op.get("false_alarm_target")
    return {
        "rule": op.get("rule") or "",
        "target": pct(target) if target is not None else "",
        "split": split,
        "threshold": f3(op.get("threshold", doc.get("threshold")), 4),
        "table": table(head, rows) if rows else None,
    }


def section_curves(model_dir: Path, doc: dict, out: Path) -> dict | None:
    folder = model_dir / "training"
    figs = [
        figure(folder / "accuracy.png", out, "Accuracy per epoch"),
        figure(folder / "loss.png", out, "Loss per epoch"),
    ]
    figs = [f for f in figs if f]
    history = folder / "history.csv"
    if not figs and not history.is_file():
        return None
    facts = {}
    if history.is_file():
        h = read_csv(history, ["epoch"])
        facts["epochs"] = len(h)
        if h and "seconds" in h[0]:
            facts["seconds"] = round(sum(num(r["seconds"]) for r in h))
    t = doc.get("training", {})
    facts["best_epoch"] = t.get("best_epoch", "")
    facts["checkpoint"] = t.get("checkpoint", "")
    return {"figures": figs, **facts}


def section_comparison(folder: Path | None, out: Path) -> dict | None:
    if folder is None:
        return None
    rows = read_csv(
        folder / "comparison.csv",
        ["variant", "differs", "valid_balanced_accuracy", "fairface_called_real", "selected"],
    )
    body = [
        [
            f"**{r['variant']}** (selected)" if r["selected"] == "yes" else r["variant"],
            r["differs"],
            r.get("epochs", ""),
            r.get("best_epoch", ""),
            f4(r.get("valid_accuracy")),
            f4(r["valid_balanced_accuracy"]),
            f4(r.get("valid_roc_auc")),
            f4(r.get("valid_f1")),
            f4(r["fairface_called_real"]),
            f3(r.get("train_seconds"), 0),
        ]
        for r in rows
    ]
    head = ["Variant", "Differs from the first", "Epochs", "Best epoch", "Valid acc."]
    head += ["Valid bal. acc."]
    head += ["Valid ROC-AUC", "Valid F1", "FairFace called real", "Train s"]
    chosen = next((r["variant"] for r in rows if r["selected"] == "yes"), None)
    return {
        "table": table(head, body),
        "selected": chosen,
        "rule": SELECTION_RULE,
        "notes": [f"{r['variant']}: {r['note']}" for r in rows if r.get("note")],
        "figure": figure(folder / "comparison.png", out, "Training recipes compared"),
    }


def can_explain(model_dir: Path) -> bool | None:
    """Whether the exported model has its Grad-CAM signature, asked of LiteRT as serving does;
    None when the model cannot be loaded."""
    from shared.errors import FakeFacesError
    from shared.model import Model

    try:
        # A shared/ without Grad-CAM support has no such property: it cannot explain.
        return bool(getattr(Model(model_dir, num_threads=1), "can_explain", False))
    except (FakeFacesError, ValueError, RuntimeError):
        return None
