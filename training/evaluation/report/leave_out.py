"""The leave-source-out section: the same recipe trained without a source, scored on it."""

from __future__ import annotations

import math
from pathlib import Path

from .read import f4, num, read_csv, read_json, table


def _rate(k: int | float, n: int | float) -> float:
    return k / n if n > 0 else math.nan


def _counts(row: dict) -> tuple[float, float, float, float]:
    return tuple(num(row.get(k)) for k in ("tp", "fp", "fn", "tn"))


def _rate_of_counts(k: float, n: float) -> str:
    """k/n with its counts, as 0.8411 (90 of 107); "—" without counts or denominator."""
    if math.isnan(k) or math.isnan(n) or n <= 0:
        return "—"
    return f"{f4(k / n)} ({int(k)} of {int(n)})"


def _views_table(path: Path, held: list[str]) -> dict | None:
    """The CNN trained without the source, the CLIP view fitted without it and their fusion
    (`training fuse --leave-out`, views.json): each held-out source's test fakes, per view."""
    if not path.is_file():
        return None
    test = read_json(path)["test"]
    views = [
        (v, t) for v, t in (("cnn", "CNN"), ("clip", "CLIP view"), ("fused", "both")) if v in test
    ]
    rows = []
    for source in held:
        cells = []
        for v, _ in views:
            r = test[v]["operating"].get(source, {})
            if "fakes" not in r:
                break
            cells.append(f"{f4(r['auc_vs_every_real'])} / {100 * r['caught']:.1f} %")
        else:
            rows.append([source, *cells])
    worst = [min(r["kept"] for r in test[v]["operating"].values() if "kept" in r) for v, _ in views]
    rows.append(["worst real source kept", *(f"{100 * w:.1f} %" for w in worst)])
    head = ["Held-out source: ROC-AUC vs every real / caught", *(t for _, t in views)]
    return table(head, rows) if len(rows) > 1 else None


def section_leave_out(runs: list[Path], out: Path) -> list[dict]:
    """Per run, the same recipe trained without a source, scored on every test split (an
    `evaluate` output): per held-out source, how its fakes rank and are caught against every
    real photo, then every row of metrics.csv."""
    sections = []
    for folder in runs:
        rows = read_csv(folder / "metrics.csv", ["group", "n", "accuracy", "roc_auc"])
        meta = (
            read_json(folder / "evaluation.json") if (folder / "evaluation.json").is_file() else {}
        )
        by_group = {r["group"]: r for r in rows}
        held = [str(s) for s in meta.get("held_out_sources") or []]
        threshold = meta.get("threshold", rows[0].get("threshold") if rows else None)
        compact = []
        for source in held:
            vs = by_group.get(f"{source} fakes vs every real")
            if vs is None:
                continue
            tp, fp, fn, tn = _counts(vs)
            own = by_group.get(f"dataset={source}")
            has_reals = own is not None and _counts(own)[1] + _counts(own)[3] != 0
            compact.append(
                [
                    source,
                    f4(vs.get("roc_auc")),
                    _rate_of_counts(tp, tp + fn),
                    _rate_of_counts(fp, fp + tn),
                    f4(own["accuracy"]) if has_reals else "n/a: no reals",
                    f4(own["roc_auc"]) if has_reals else "n/a: no reals",
                ]
            )
        body = []
        for r in rows:
            tp, fp, fn, tn = _counts(r)
            body.append(
                [
                    r["group"],
                    r["n"],
                    f4(r["accuracy"]),
                    f4(r["roc_auc"]),
                    f4(_rate(tp, tp + fn)),
                    f4(_rate(fp, fp + tn)),
                    f4(r.get("ece")),
                ]
            )
        full, base = folder.resolve(), out.resolve()
        rel = full.relative_to(base) if full.is_relative_to(base) else full
        head = ["Held-out source", "ROC-AUC vs every real", "Caught (fakes called fake)"]
        head += ["False alarms (every real)", "Own dataset accuracy", "Own dataset ROC-AUC"]
        sections.append(
            {
                "name": folder.name,
                "path": (rel / "metrics.csv").as_posix(),
                "model": meta.get("model", ""),
                "split": meta.get("split", ""),
                "threshold": f4(threshold),
                "sources": ", ".join(meta.get("sources_scored") or []),
                "trained": ", ".join(meta.get("trained_sources") or []) or "unrecorded sources",
                "held_out": ", ".join(held),
                "compact": table(head, compact) if compact else None,
                "views": _views_table(folder / "views.json", held),
                "table": table(
                    ["Group", "n", "Accuracy", "ROC-AUC", "Recall (catch)", "False alarms", "ECE"],
                    body,
                ),
            }
        )
    return sections
