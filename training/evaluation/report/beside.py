"""Beside earlier models: the same test faces scored by this model and by models it replaces
(the one shipped before it, the paper's VGG-10), each at its own threshold."""

from __future__ import annotations

from pathlib import Path

from .read import f3, f4, num, pct, read_csv, read_json, table

DATASET = "dataset="


def _by_source(path: Path) -> dict[str, dict]:
    rows = read_csv(path, ["group", "tp", "fp", "fn", "tn", "roc_auc"])
    return {r["group"][len(DATASET) :]: r for r in rows if r["group"].startswith(DATASET)}


def _rate(row: dict | None, hit: str, miss: str) -> str:
    """hit / (hit + miss) of a metrics.csv row with its counts; "—" where the row is absent."""
    if row is None:
        return "—"
    k, n = num(row[hit]), num(row[hit]) + num(row[miss])
    return f"{pct(k / n)} ({int(k)} of {int(n)})" if n > 0 else "—"


def _auc(row: dict | None) -> str:
    return "—" if row is None else f4(row["roc_auc"])


def _title(folder: Path, meta: dict) -> str:
    return meta.get("model") or folder.name


def section_beside(model_dir: Path, runs: list[Path]) -> dict | None:
    """Per test source of this model's eval/metrics.csv: fakes caught, reals kept and, where a
    source has both, its ROC-AUC, for this model and every earlier model's `evaluate` output
    (by folder name, descending: folders named by date come newest first)."""
    own = model_dir / "eval" / "metrics.csv"
    if not runs or not own.is_file():
        return None
    runs = sorted(runs, key=lambda f: f.name, reverse=True)  # named by date: newest first
    mine = _by_source(own)
    columns = [_by_source(folder / "metrics.csv") for folder in runs]
    metas = [
        read_json(f / "evaluation.json") if (f / "evaluation.json").is_file() else {} for f in runs
    ]
    rows = []
    for source, row in mine.items():
        every = [row, *(c.get(source) for c in columns)]
        fakes = num(row["tp"]) + num(row["fn"]) > 0
        reals = num(row["fp"]) + num(row["tn"]) > 0
        if fakes:
            rows.append([f"{source} fakes caught", *(_rate(r, "tp", "fn") for r in every)])
        if reals:
            rows.append([f"{source} reals kept", *(_rate(r, "tn", "fp") for r in every)])
        if fakes and reals:
            rows.append([f"{source} ROC-AUC", *(_auc(r) for r in every)])
    this = read_json(model_dir / "model.json")
    rows.append(
        [
            "threshold on P(fake)",
            f3(this.get("threshold"), 4),
            *(f3(m.get("threshold"), 4) for m in metas),
        ]
    )
    head = ["Test split", f"**{this.get('name', '')} {this.get('version', '')}** (this model)"]
    head += [_title(f, m) for f, m in zip(runs, metas, strict=True)]
    return {"table": table(head, rows)}
