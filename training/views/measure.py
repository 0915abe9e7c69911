"""The views side by side, measured across sources: each fake source against every real photo
of the split, each real source on its own, at the operating point chosen on the validation
split and at 1 % false alarms on every real source of the split itself."""

from __future__ import annotations

import numpy as np

from ..evaluation.calibration import ece, false_alarm_threshold, source_counts, versus_every_real
from .fit import Faces

VIEW_TITLES = {"cnn": "CNN alone", "clip": "CLIP view alone", "fused": "both views (shipped)"}


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


def source_rates(faces: Faces, p: np.ndarray, cut: float) -> dict[str, dict]:
    """Per source: its fakes' catch and ROC-AUC against every real of the split, its reals'
    share kept real, at `cut` (float32, as serving compares; counted by calibration's
    source_counts, as export's operating point is)."""
    src, y = np.array(faces.sources), faces.y
    counts = source_counts(y, np.asarray(p, np.float32), faces.sources, np.float32(cut))
    every_real = versus_every_real(y, faces.sources)
    out: dict[str, dict] = {}
    for name, c in counts.items():
        row: dict = {}
        if "fake" in c:
            both = every_real[name]
            row.update(
                fakes=c["fake"],
                caught=c["caught"] / c["fake"],
                auc_vs_every_real=_auc(y[both], p[both]) if (y == 0).any() else None,
            )
        if "fake" in c and "real" in c:
            own = src == name
            row["auc_vs_own_reals"] = _auc(y[own], p[own])
        if "real" in c:
            row.update(reals=c["real"], kept=(c["real"] - c["called_fake"]) / c["real"])
        out[name] = row
    return out


# The false-alarm rates at which each engine's catch is reported: the operating point's 2 %,
# and the anchor's terms (Aniano Porcile et al. 2024 report 0.5 %).
STRICT_LEVELS = (0.02, 0.01, 0.005)


def _at_rate(test: Faces, scores: np.ndarray, rate: float) -> dict:
    """The lowest cut that keeps every real source of `test` at or under `rate` called fake (a
    cut read off the test split itself), and every source's rates there."""
    cut, worst, _ = false_alarm_threshold(test.y, scores, test.sources, rate)
    return {
        "false_alarm": rate,
        "threshold": cut,
        "worst_false_alarm": worst,
        "sources": source_rates(test, scores, cut),
    }


def compare_views(
    test: Faces, p: dict[str, np.ndarray], cuts: dict[str, float], strict: float = 0.01
) -> dict:
    """Every view on `test`: at its validation operating point, and at the lowest cuts that keep
    every real source of `test` at or under `strict` (and each of STRICT_LEVELS) false alarms:
    what a detector catches at a false-alarm rate a person can live with."""
    out = {}
    for view, scores in p.items():
        levels = {f"{r:g}": _at_rate(test, scores, r) for r in STRICT_LEVELS}
        out[view] = {
            "threshold": cuts[view],
            "operating": source_rates(test, scores, cuts[view]),
            "strict": levels.get(f"{strict:g}") or _at_rate(test, scores, strict),
            "levels": levels,
            "roc_auc": _auc(test.y, scores),
            "ece": float(ece(test.y, scores)),
        }
    return out


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def _f3(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def markdown(table: dict, title: str, strict: float = 0.01) -> str:
    """Two tables: at the operating point, and at `strict` false alarms on every real source;
    then the last view's catch at each level, and ROC-AUC against a fake's own collection."""
    views = list(table)
    first = table[views[0]]["operating"]
    sources = sorted({s for v in views for s in table[v]["operating"]})
    fakes = [s for s in sources if "fakes" in first[s]]
    reals = [s for s in sources if "reals" in first[s]]
    head = "| source | " + " | ".join(VIEW_TITLES.get(v, v) for v in views) + " |"
    rule = "|---" * (len(views) + 1) + "|"
    lines = [f"# {title}", ""]
    lines += _operating_lines(table, fakes, reals, head, rule)
    lines += _strict_lines(table, fakes, strict, head, rule)
    lines += _level_lines(table, fakes)
    own = [s for s in fakes if first[s].get("auc_vs_own_reals") is not None]
    if own:
        lines += ["", "ROC-AUC of a generator's fakes against its own collection's reals:", ""]
        lines += [head, rule]
        for s in own:
            cells = [_f3(table[v]["operating"][s]["auc_vs_own_reals"]) for v in views]
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _row(label: str, cells: list[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def _operating_lines(table: dict, fakes: list, reals: list, head: str, rule: str) -> list[str]:
    views = list(table)
    first = table[views[0]]["operating"]
    lines = [
        "At the operating point (every real validation source ≤ 2 % called "
        "fake): fakes caught (ROC-AUC against every real photo of the split) and reals kept.",
        "",
        head,
        rule,
    ]
    for s in fakes:
        cells = []
        for v in views:
            r = table[v]["operating"][s]
            cells.append(f"{_pct(r['caught'])} ({_f3(r['auc_vs_every_real'])})")
        lines.append(_row(f"{s} fakes, n={first[s]['fakes']}", cells))
    for s in reals:
        cells = [_pct(table[v]["operating"][s]["kept"]) for v in views]
        lines.append(_row(f"{s} reals kept, n={first[s]['reals']}", cells))
    lines.append(_row("threshold", [f"{table[v]['threshold']:.4f}" for v in views]))
    lines.append(
        _row(
            "ROC-AUC, ECE (all)",
            [f"{_f3(table[v]['roc_auc'])}, {_f3(table[v]['ece'])}" for v in views],
        )
    )
    return lines


def _strict_lines(table: dict, fakes: list, strict: float, head: str, rule: str) -> list[str]:
    views = list(table)
    lines = [
        "",
        f"At ≤ {strict:.0%} false alarms on every real source of this split (the cut "
        "read off the split itself): each learned generator's catch.",
        "",
        head,
        rule,
    ]
    for s in fakes:
        lines.append(_row(s, [_pct(table[v]["strict"]["sources"][s]["caught"]) for v in views]))
    worst = [_pct(table[v]["strict"]["worst_false_alarm"]) for v in views]
    lines.append(_row("worst real source's false alarms", worst))
    return lines


def _level_lines(table: dict, fakes: list) -> list[str]:
    """The served (last) view at every level of false alarms, when measured."""
    last = list(table)[-1]
    levels = table[last].get("levels")
    if not levels:
        return []
    lines = [
        "",
        f"{VIEW_TITLES.get(last, last)}: each generator's catch at ≤ 2 %, 1 % and "
        "0.5 % false alarms on every real source of this split (processed reals included).",
        "",
        "| source | " + " | ".join(f"≤ {100 * float(r):g} %" for r in levels) + " |",
        "|---" * (len(levels) + 1) + "|",
    ]
    for s in fakes:
        lines.append(_row(s, [_pct(lv["sources"][s]["caught"]) for lv in levels.values()]))
    worst = [_pct(lv["worst_false_alarm"]) for lv in levels.values()]
    lines.append(_row("worst real source's false alarms", worst))
    return lines
