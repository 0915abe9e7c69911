"""`compare`: training recipes side by side, one row per run folder.

Each run is read from what `train` and `evaluate` wrote into it: config.json (the recipe),
state.json (best epoch), history.csv (seconds per epoch), eval-valid/metrics.csv (the 140k valid
split) and eval-fairface/metrics.csv (held-out FairFace photos, all real). A run whose eval
folders are missing is still listed, with blanks and a note, so the table can be looked at while
other variants are training; it can never be the selected one.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

FIELDS = [
    "variant",
    "differs",
    "params",
    "epochs",
    "best_epoch",
    "valid_n",
    "valid_threshold",
    "valid_accuracy",
    "valid_balanced_accuracy",
    "valid_roc_auc",
    "valid_f1",
    "fairface_n",
    "fairface_called_real",
    "train_seconds",
    "selected",
    "note",
]

# ROC-AUC, not accuracy at a fixed cut: export sets the served threshold on the valid split
# afterwards, so how well a run ranks matters, not where a short run's scores happen to sit.
SELECTION_RULE = (
    "highest ROC-AUC on the 140k valid split; a tie goes to the higher share of held-out "
    "FairFace reals called real"
)

# Keys a later version of `train` added, with the value older configs meant by leaving them out.
DEFAULTS = {"head": "flatten", "augment.resize": 0.0}
# Outputs and environment, not recipe: never reported as a difference.
IGNORED = {"version", "classes", "device", "params", "strategy", "mixed_precision"}


class CompareError(Exception):
    """A run folder that cannot be read; the message names the file."""


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CompareError(f"{path}: missing; is this a run folder of `train`?") from None
    except (OSError, ValueError) as exc:
        raise CompareError(f"{path}: not readable JSON ({exc}).") from None


def _read_csv(path: Path, needed: list[str]) -> list[dict]:
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CompareError(f"{path}: not a readable CSV ({exc}).") from None
    missing = [c for c in needed if not rows or c not in rows[0]]
    if missing:
        raise CompareError(f"{path}: no rows or no column {', '.join(missing)}.")
    return rows


def _flat(cfg: dict) -> dict:
    """Recipe keys, nested dicts as dotted keys, data folders by name."""
    flat = {}
    for key, value in cfg.items():
        if key in IGNORED:
            continue
        if key == "data":
            flat[key] = tuple(Path(d).name for d in value)
        elif isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return {**DEFAULTS, **flat}


def differences(base: dict, cfg: dict) -> str:
    """What `cfg` changes from `base`, e.g. "color rgb; data + aligned-fairface-train"."""
    a, b = _flat(base), _flat(cfg)
    out = []
    for key in [*a, *(k for k in b if k not in a)]:
        if a.get(key) == b.get(key):
            continue
        if key == "data":
            added = [d for d in b.get(key, ()) if d not in a.get(key, ())]
            removed = [d for d in a.get(key, ()) if d not in b.get(key, ())]
            out += [f"data + {d}" for d in added] + [f"data − {d}" for d in removed]
        else:
            out.append(f"{key} {b.get(key)} (was {a.get(key)})")
    return "; ".join(out)


def _num(row: dict, key: str) -> float:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        return math.nan


def _metrics_row(path: Path) -> dict:
    rows = _read_csv(path, ["group", "n", "accuracy", "tp", "fp", "fn", "tn"])
    return next((r for r in rows if r["group"] == "all"), rows[0])


def _balanced(row: dict) -> float:
    tp, fp, fn, tn = (_num(row, k) for k in ("tp", "fp", "fn", "tn"))
    if tp + fn == 0 or tn + fp == 0:
        return math.nan
    return (tp / (tp + fn) + tn / (tn + fp)) / 2


def read_run(run: Path, base_cfg: dict | None) -> tuple[dict, dict]:
    """(table row, config) of one run folder."""
    if not run.is_dir():
        raise CompareError(f"{run}: no such run folder.")
    cfg = _read_json(run / "config.json")
    state = _read_json(run / "state.json")
    history = _read_csv(run / "history.csv", ["epoch", "seconds"])
    row = {k: "" for k in FIELDS}
    row.update(
        variant=run.name,
        differs="reference" if base_cfg is None else (differences(base_cfg, cfg) or "nothing"),
        params=cfg.get("params", ""),
        epochs=state.get("epochs_done", len(history)),
        best_epoch=state.get("best_epoch") or "",
        train_seconds=round(sum(_num(h, "seconds") for h in history), 1),
    )
    notes = []
    valid = run / "eval-valid" / "metrics.csv"
    if valid.is_file():
        m = _metrics_row(valid)
        row.update(
            valid_n=int(_num(m, "n")),
            valid_threshold=_num(m, "threshold"),
            valid_accuracy=_num(m, "accuracy"),
            valid_balanced_accuracy=_balanced(m),
            valid_roc_auc=_num(m, "roc_auc"),
            valid_f1=_num(m, "f1"),
        )
    else:
        notes.append("eval-valid/metrics.csv missing: valid metrics not measured")
    fair = run / "eval-fairface" / "metrics.csv"
    if fair.is_file():
        m = _metrics_row(fair)
        fakes = _num(m, "tp") + _num(m, "fn")
        if fakes:
            raise CompareError(f"{fair}: {fakes:g} fakes in a set meant to be FairFace reals.")
        n = _num(m, "tn") + _num(m, "fp")
        row.update(fairface_n=int(n), fairface_called_real=_num(m, "tn") / n if n else math.nan)
    else:
        notes.append("eval-fairface/metrics.csv missing: FairFace not measured")
    row["note"] = "; ".join(notes)
    return row, cfg


def select(rows: list[dict]) -> str | None:
    """The variant chosen by SELECTION_RULE, among runs with both evaluations."""

    def key(r: dict) -> tuple[float, float]:
        return (r["valid_roc_auc"], r["fairface_called_real"])

    eligible = [
        r
        for r in rows
        if isinstance(r["valid_roc_auc"], float)
        and not math.isnan(r["valid_roc_auc"])
        and isinstance(r["fairface_called_real"], float)
        and not math.isnan(r["fairface_called_real"])
    ]
    return max(eligible, key=key)["variant"] if eligible else None


def _fmt(v, digits: int = 4) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        writer.writeheader()
        writer.writerows([{k: _fmt(r[k], 6) for k in FIELDS} for r in rows])


def write_md(rows: list[dict], path: Path, chosen: str | None) -> None:
    head = [
        "Variant",
        "Differs from the first",
        "Params",
        "Best epoch",
        "Valid acc.",
        "Valid bal. acc.",
        "Valid ROC-AUC",
        "Valid F1",
        "FairFace called real",
        "Train s",
    ]
    cols = [
        "variant",
        "differs",
        "params",
        "best_epoch",
        "valid_accuracy",
        "valid_balanced_accuracy",
        "valid_roc_auc",
        "valid_f1",
        "fairface_called_real",
        "train_seconds",
    ]
    lines = [
        "# Training recipes compared",
        "",
        "Valid: the 140k valid split, at each run's threshold (positive class fake). FairFace: "
        "held-out FairFace train photos, all real; the share called real.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [_fmt(r[c], 0 if c == "train_seconds" else 4) or "—" for c in cols]
        if r["variant"] == chosen:
            cells[0] = f"**{cells[0]}** (selected)"
        lines.append("| " + " | ".join(c.replace("|", r"\|") for c in cells) + " |")
    lines += ["", f"Selection rule: {SELECTION_RULE}."]
    lines.append(
        f"Selected: **{chosen}**." if chosen else "Selected: none (no run has both evaluations)."
    )
    lines += [f"- {r['variant']}: {r['note']}." for r in rows if r["note"]]
    path.write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series = [
        ("valid_balanced_accuracy", "valid balanced accuracy"),
        ("valid_roc_auc", "valid ROC-AUC"),
        ("fairface_called_real", "FairFace reals called real"),
    ]
    x = np.arange(len(rows))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.3 * len(rows) + 2), 3.8), dpi=100)
    for i, (key, label) in enumerate(series):
        values = [r[key] if isinstance(r[key], float) else math.nan for r in rows]
        bars = ax.bar(x + (i - 1) * width, np.nan_to_num(values, nan=0.0), width, label=label)
        for bar, v in zip(bars, values, strict=True):
            text = "n/m" if math.isnan(v) else f"{v:.2f}"
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.axhline(0.5, color="gray", lw=0.8, ls=":")
    ax.set_xticks(x, [r["variant"] for r in rows])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score (higher is better)")
    ax.set_title("Recipes: 140k valid split, held-out FairFace reals", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def compare(runs: list[Path], out: Path) -> tuple[list[dict], str | None]:
    rows, base = [], None
    for run in runs:
        row, cfg = read_run(run, base)
        base = cfg if base is None else base
        rows.append(row)
    names = [r["variant"] for r in rows]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise CompareError(f"two runs are named {dup}: variants are told apart by folder name.")
    chosen = select(rows)
    for r in rows:
        r["selected"] = "yes" if r["variant"] == chosen else ""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "comparison.csv")
    write_md(rows, out / "comparison.md", chosen)
    plot(rows, out / "comparison.png")
    return rows, chosen


def _run(args) -> int:
    try:
        rows, chosen = compare(args.runs, args.out)
    except CompareError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 2
    print((args.out / "comparison.md").read_text())
    print(f"{args.out}: comparison.csv, comparison.md, comparison.png ({len(rows)} runs)")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="tabulate training runs side by side (valid metrics, FairFace, cost)",
        description="One row per run folder of `train` (evaluated with `evaluate --split "
        "valid --out RUN/eval-valid` and on held-out FairFace reals into RUN/eval-fairface): "
        "what the recipe changes from the FIRST run (from config.json), parameters, best epoch, "
        "valid accuracy / balanced accuracy / ROC-AUC / F1 at the run's threshold, the share of "
        "FairFace reals called real, and training seconds. A run without its eval folders is "
        "listed with blanks and a note. Writes comparison.csv, comparison.md and comparison.png "
        f"into OUT and marks the selected run: {SELECTION_RULE}.",
    )
    p.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders; first = base"
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the table")
    p.set_defaults(func=_run)
