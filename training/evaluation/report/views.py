"""The card's "Two views" section: the CNN alone, the CLIP view alone and both, side by side
(from `training fuse`'s views/views.json), and the CLIP view's leave-one-generator-out runs."""

from __future__ import annotations

from pathlib import Path

from ...data.sources import CHAINED_FROM
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


def levels_table(test: dict) -> dict | None:
    """The served answer: each generator's catch at the lowest cuts keeping every real test
    source at or under 2 %, 1 % and 0.5 % called fake."""
    levels = test.get("fused", {}).get("levels")
    if not levels:
        return None
    first = next(iter(levels.values()))["sources"]
    rows = [
        [s, *(_pct(lv["sources"][s]["caught"]) for lv in levels.values())]
        for s in sorted(first)
        if "fakes" in first[s]
    ]
    rows.append(
        [
            "worst real source called fake",
            *(_pct(lv["worst_false_alarm"]) for lv in levels.values()),
        ]
    )
    return table(["fakes caught", *(f"≤ {100 * float(r):g} %" for r in levels)], rows)


def chain_table(test: dict) -> dict | None:
    """The figure-grid chain carries no label: the served answer on test photos as they are and
    on copies put through t2i/'s chain, fakes caught and reals kept side by side."""
    rates = test.get("fused", {}).get("operating", {})
    rows = []
    for copy, original in CHAINED_FROM.items():
        a, b = rates.get(original, {}), rates.get(copy, {})
        for key, words, count in (
            ("caught", "fakes caught", "fakes"),
            ("kept", "reals kept", "reals"),
        ):
            if key in a and key in b:
                rows.append(
                    [
                        f"{original} {words}",
                        f"{_pct(a[key])} (n={a[count]})",
                        f"{_pct(b[key])} (n={b[count]})",
                    ]
                )
    if not rows:
        return None
    return table(["test photos", "as they are", "through the chain"], rows)


def _cell(rates: dict) -> str:
    return f"{_f3(rates.get('auc_vs_every_real'))} / {_pct(rates.get('caught'))}"


def leave_out_table(runs: list[Path]) -> dict | None:
    """Each view of a two-view model fitted without one generator: the left-out generator's test
    fakes ranked against every real test photo (ROC-AUC) and caught at each view's operating
    point; which CNN and which CLIP feature it used; the worst real test source kept."""
    rows = []
    for path in runs:
        doc = read_json(path)
        test = doc["test"]
        views = [v for v in VIEWS if v in test]
        for source in doc.get("left_out", []):
            if "fakes" not in test[views[0]]["operating"].get(source, {}):
                continue
            kept = [r["kept"] for r in test[views[-1]]["operating"].values() if "kept" in r]
            rows.append(
                [
                    source,
                    doc.get("feature", "patch_mean"),
                    doc.get("cnn", ""),
                    *(_cell(test[v]["operating"][source]) for v in views),
                    _pct(min(kept)) if kept else "—",
                ]
            )
    if not rows:
        return None
    head = ["left out", "CLIP feature", "CNN", "CNN: AUC / caught", "CLIP: AUC / caught"]
    return table([*head, "both: AUC / caught", "worst real source kept"], rows)


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
        "cnn_trained_on": views.get("cnn", {}).get("trained_on", "an unrecorded set"),
        "encoder": enc,
        "feature": views["clip"]["head"]["feature"],
        "head": _head_words(views["clip"]["head"]),
        "tried": data.get("heads_tried", []),
        "fusion": f"{weights['cnn']:.3f} × CNN logit + {weights['clip']:.3f} × CLIP logit "
        f"{views['fusion']['intercept']:+.3f}",
        "counts": data["counts"],
        "operating": operating_table(data["test"]),
        "strict": strict_table(data["test"]),
        "levels": levels_table(data["test"]),
        "chain": chain_table(data["test"]),
        "own_auc": own_auc_table(data["test"]),
        "leave_out": leave_out_table(sorted((model_dir / "views").glob("leave-*/views.json"))),
    }
