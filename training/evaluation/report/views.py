"""The card's "Two views" section: the CNN alone, the CLIP view alone and both, side by side
(from `training fuse`'s views/views.json), and the CLIP view's leave-one-generator-out runs."""

from __future__ import annotations

from pathlib import Path

from .read import read_json, table

VIEWS = {"cnn": "CNN alone", "clip": "CLIP view alone", "fused": "both views (served)"}


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def _f3(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def operating_table(test: dict) -> dict:
    """Per source: fakes caught (ROC-AUC against every real) or reals kept, per view, at each
    view's validation operating point."""
    views = [v for v in VIEWS if v in test]
    first = test[views[0]]["operating"]
    rows = []
    for s in sorted(first):
        if "fakes" in first[s]:
            cells = [
                f"{_pct(test[v]['operating'][s]['caught'])} "
                f"({_f3(test[v]['operating'][s]['auc_vs_every_real'])})"
                for v in views
            ]
            rows.append([f"{s} fakes caught (AUC), n={first[s]['fakes']}", *cells])
        if "reals" in first[s]:
            cells = [_pct(test[v]["operating"][s]["kept"]) for v in views]
            rows.append([f"{s} reals kept, n={first[s]['reals']}", *cells])
    rows.append(["threshold", *(f"{test[v]['threshold']:.4f}" for v in views)])
    rows.append(
        [
            "ROC-AUC / ECE, all",
            *(f"{_f3(test[v]['roc_auc'])} / {_f3(test[v]['ece'])}" for v in views),
        ]
    )
    return table(["test split", *(VIEWS[v] for v in views)], rows)


def strict_table(test: dict) -> dict:
    """Each learned generator's catch at the lowest cut keeping every real test source at or
    under 1 % called fake."""
    views = [v for v in VIEWS if v in test]
    first = test[views[0]]["strict"]["sources"]
    rows = [
        [s, *(_pct(test[v]["strict"]["sources"][s]["caught"]) for v in views)]
        for s in sorted(first)
        if "fakes" in first[s]
    ]
    rows.append(
        [
            "worst real source called fake",
            *(_pct(test[v]["strict"]["worst_false_alarm"]) for v in views),
        ]
    )
    return table(["fakes caught", *(VIEWS[v] for v in views)], rows)


def own_auc_table(test: dict) -> dict | None:
    """ROC-AUC of each generator's fakes against the reals of their own collection."""
    views = [v for v in VIEWS if v in test]
    first = test[views[0]]["operating"]
    rows = [
        [s, *(_f3(test[v]["operating"][s]["auc_vs_own_reals"]) for v in views)]
        for s in sorted(first)
        if first[s].get("auc_vs_own_reals") is not None
    ]
    return table(["fakes vs own reals", *(VIEWS[v] for v in views)], rows) if rows else None


def leave_out_table(runs: list[Path]) -> dict | None:
    """The CLIP view trained without one generator: its fakes ranked against every real."""
    rows = []
    for path in runs:
        doc = read_json(path)
        test = doc["test"]["clip"]["operating"]
        for source in doc.get("left_out", []):
            if "fakes" in test.get(source, {}):
                r = test[source]
                rows.append([source, r["fakes"], _f3(r["auc_vs_every_real"]), _pct(r["caught"])])
    if not rows:
        return None
    return table(["left out", "its test fakes", "ROC-AUC vs every real", "caught"], rows)


def _head_words(head: dict) -> str:
    if head.get("kind") == "mlp":
        return (
            f"a small MLP head (the average of {head.get('bag', 1)} MLPs of one hidden layer of "
            f"{head['hidden']} ReLUs, `{head['file']}`)"
        )
    return "a linear head (logistic regression)"


def section_views(model_dir: Path, doc: dict) -> dict | None:
    views = doc.get("views")
    summary = model_dir / "views" / "views.json"
    if not isinstance(views, dict) or not summary.is_file():
        return None
    data = read_json(summary)
    enc = views["clip"]["encoder"]
    weights = views["fusion"]["weights"]
    return {
        "encoder": enc,
        "feature": views["clip"]["head"]["feature"],
        "head": _head_words(views["clip"]["head"]),
        "tried": data.get("heads_tried", []),
        "fusion": f"{weights['cnn']:.3f} × CNN logit + {weights['clip']:.3f} × CLIP logit "
        f"{views['fusion']['intercept']:+.3f}",
        "counts": data["counts"],
        "operating": operating_table(data["test"]),
        "strict": strict_table(data["test"]),
        "own_auc": own_auc_table(data["test"]),
        "leave_out": leave_out_table(sorted((model_dir / "views").glob("leave-*/views.json"))),
    }
