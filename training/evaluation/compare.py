"""`compare`: training recipes side by side, one row per run folder.

Each run is read from what `train` and `evaluate` wrote into it: config.json (the recipe),
state.json (best epoch), history.csv (seconds per epoch), eval-valid/metrics.csv (the 140k valid
split) and eval-fairface/metrics.csv (held-out FairFace photos, all real). A run whose eval
folders are missing is still listed, with blanks and a note, so the table can be looked at while
other variants are training; it can never be the selected one.

With `--rule operating` (screens: short runs exported with `export --threshold reals`), each run
is read from config.json, state.json (best validation loss), history.csv and model/model.json's
operating_point instead; the eval folders are then not needed, and a run without
model/model.json is listed with a note and never selected.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from ..errors import CommandError

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

# Screens: short runs exported at the operating point (`export --threshold reals`).
OPERATING_RULE = (
    "highest mean catch rate over the validation split's fake sources at the operating point "
    "(at most 2 % of every real validation source's photos called fake); a tie "
    "goes to the lower validation loss"
)
RULES = {"roc-auc": SELECTION_RULE, "operating": OPERATING_RULE}
# Columns `--rule operating` adds after best_epoch, then one caught_<source> per fake source.
OP_FIELDS = ["best_val_loss", "op_threshold", "op_false_alarm", "op_mean_catch"]
FALSE_ALARM_TARGET = 0.02
TIE = 1e-9

# Keys a later version of `train` added, with the value older configs meant by leaving them out.
DEFAULTS = {"head": "flatten", "augment.resize": 0.0}
# Outputs and environment, not recipe: never reported as a difference.
IGNORED = {"version", "classes", "device", "params", "strategy", "mixed_precision"}


class CompareError(CommandError):
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


def _rate(path: Path, source: str, entry: dict, key: str) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise CompareError(f"{path}: operating_point source {source} has no rate {key} in [0, 1].")
    return float(value)


def read_operating_point(run: Path) -> tuple[dict, list[str]]:
    """(OP_FIELDS and caught_<source> values, notes) from RUN/model/model.json."""
    path = run / "model" / "model.json"
    if not path.is_file():
        return {}, ["model/model.json missing: not exported at the operating point"]
    doc = _read_json(path)
    op = doc.get("operating_point") if isinstance(doc, dict) else None
    if not isinstance(op, dict):
        raise CompareError(f"{path}: no operating_point; export the run with `--threshold reals`.")
    threshold, sources = op.get("threshold"), op.get("sources")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise CompareError(f"{path}: operating_point has no numeric threshold.")
    if not isinstance(sources, dict) or not all(isinstance(v, dict) for v in sources.values()):
        raise CompareError(f"{path}: operating_point has no sources of rates.")
    caught = {s: _rate(path, s, e, "caught") for s, e in sources.items() if "caught" in e}
    called = {s: _rate(path, s, e, "called_fake") for s, e in sources.items() if "called_fake" in e}
    if not caught or not called:
        raise CompareError(f"{path}: operating_point lacks a fake or a real source.")
    values = {
        "op_threshold": float(threshold),
        "op_false_alarm": max(called.values()),
        "op_mean_catch": sum(caught.values()) / len(caught),
        **{f"caught_{s}": v for s, v in caught.items()},
    }
    notes = []
    if op.get("split", "valid") != "valid":
        notes.append(f"operating point set on the {op['split']} split, not valid")
    target = op.get("false_alarm_target", FALSE_ALARM_TARGET)
    if target != FALSE_ALARM_TARGET:
        notes.append(f"operating point at {target} of reals called fake, not 0.02")
    return values, notes


def read_run(run: Path, base_cfg: dict | None, rule: str = "roc-auc") -> tuple[dict, dict]:
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
    operating = rule == "operating"
    if operating:
        loss = state.get("best_val_loss")
        ok = isinstance(loss, int | float) and not isinstance(loss, bool)
        row.update({k: "" for k in OP_FIELDS}, best_val_loss=float(loss) if ok else math.nan)
        values, op_notes = read_operating_point(run)
        row.update(values)
        notes += op_notes
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
    elif not operating:
        notes.append("eval-valid/metrics.csv missing: valid metrics not measured")
    fair = run / "eval-fairface" / "metrics.csv"
    if fair.is_file():
        m = _metrics_row(fair)
        fakes = _num(m, "tp") + _num(m, "fn")
        if fakes:
            raise CompareError(f"{fair}: {fakes:g} fakes in a set meant to be FairFace reals.")
        n = _num(m, "tn") + _num(m, "fp")
        row.update(fairface_n=int(n), fairface_called_real=_num(m, "tn") / n if n else math.nan)
    elif not operating:
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


def _real(v) -> bool:
    return isinstance(v, float) and not math.isnan(v)


def select_operating(rows: list[dict]) -> str | None:
    """The variant chosen by OPERATING_RULE, among runs exported at the operating point."""
    eligible = [r for r in rows if _real(r.get("op_mean_catch"))]
    if not eligible:
        return None
    top = max(r["op_mean_catch"] for r in eligible)
    tied = [r for r in eligible if r["op_mean_catch"] >= top - TIE]
    loss = [r["best_val_loss"] if _real(r["best_val_loss"]) else math.inf for r in tied]
    return tied[loss.index(min(loss))]["variant"]


def fields(rows: list[dict], rule: str) -> list[str]:
    """The CSV columns: FIELDS, and under the operating rule OP_FIELDS and caught_<source>."""
    if rule != "operating":
        return FIELDS
    caught = sorted({k for r in rows for k in r if k.startswith("caught_")})
    at = FIELDS.index("best_epoch") + 1
    return [*FIELDS[:at], *OP_FIELDS, *caught, *FIELDS[at:]]


def _fmt(v, digits: int = 4) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def write_csv(rows: list[dict], path: Path, columns: list[str] = FIELDS) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows([{k: _fmt(r.get(k, ""), 6) for k in columns} for r in rows])


def _md_operating(rows: list[dict]) -> tuple[list[str], list[str], list[str]]:
    """(title and explanation lines, column heads, row keys) of the operating-point table."""
    caught = [k for k in fields(rows, "operating") if k.startswith("caught_")]
    head = ["Variant", "Differs from the first", "Params", "Epochs", "Best epoch"]
    head += ["Best val loss", "Threshold", "False alarm", "Mean catch"]
    head += [f"Caught {k.removeprefix('caught_')}" for k in caught] + ["Train s"]
    cols = ["variant", "differs", "params", "epochs", "best_epoch", *OP_FIELDS, *caught]
    intro = [
        "# Training recipes compared at the operating point",
        "",
        "Each run's exported operating point (model/model.json): the threshold at which at most "
        "2 % of every real source's validation photos are called fake. False alarm: the worst "
        "real source's share called fake; catch: the share of a fake source's validation fakes "
        "called fake, and their mean.",
    ]
    return intro, head, [*cols, "train_seconds"]


def write_md(rows: list[dict], path: Path, chosen: str | None, rule: str = "roc-auc") -> None:
    if rule == "operating":
        intro, head, cols = _md_operating(rows)
        _write_md(rows, path, chosen, rule, intro, head, cols)
        return
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
    intro = [
        "# Training recipes compared",
        "",
        "Valid: the 140k valid split, at each run's threshold (positive class fake). FairFace: "
        "held-out FairFace train photos, all real; the share called real.",
    ]
    _write_md(rows, path, chosen, rule, intro, head, cols)


def _write_md(rows, path, chosen, rule, intro, head, cols) -> None:
    lines = [*intro, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [_fmt(r.get(c, ""), 0 if c == "train_seconds" else 4) or "—" for c in cols]
        if r["variant"] == chosen:
            cells[0] = f"**{cells[0]}** (selected)"
        lines.append("| " + " | ".join(c.replace("|", r"\|") for c in cells) + " |")
    lines += ["", f"Selection rule: {RULES[rule]}."]
    none = "model/model.json" if rule == "operating" else "both evaluations"
    lines.append(f"Selected: **{chosen}**." if chosen else f"Selected: none (no run has {none}).")
    lines += [f"- {r['variant']}: {r['note']}." for r in rows if r["note"]]
    path.write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], path: Path, rule: str = "roc-auc") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if rule == "operating":
        series = [("op_mean_catch", "mean catch at the operating point")]
        title = "Recipes: validation fakes caught with at most 2 % of reals called fake"
    else:
        series = [
            ("valid_balanced_accuracy", "valid balanced accuracy"),
            ("valid_roc_auc", "valid ROC-AUC"),
            ("fairface_called_real", "FairFace reals called real"),
        ]
        title = "Recipes: 140k valid split, held-out FairFace reals"
    x = np.arange(len(rows))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.3 * len(rows) + 2), 3.8), dpi=100)
    for i, (key, label) in enumerate(series):
        values = [r.get(key) if isinstance(r.get(key), float) else math.nan for r in rows]
        offset = (i - (len(series) - 1) / 2) * width
        bars = ax.bar(x + offset, np.nan_to_num(values, nan=0.0), width, label=label)
        for bar, v in zip(bars, values, strict=True):
            text = "n/m" if math.isnan(v) else f"{v:.2f}"
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    if rule != "operating":  # chance for the valid scores; no such line for a catch rate
        ax.axhline(0.5, color="gray", lw=0.8, ls=":")
    ax.set_xticks(x, [r["variant"] for r in rows])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score (higher is better)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right" if rule == "operating" else "lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def compare(runs: list[Path], out: Path, rule: str = "roc-auc") -> tuple[list[dict], str | None]:
    rows, base = [], None
    for run in runs:
        row, cfg = read_run(run, base, rule)
        base = cfg if base is None else base
        rows.append(row)
    names = [r["variant"] for r in rows]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise CompareError(f"two runs are named {dup}: variants are told apart by folder name.")
    if rule == "operating":
        every = [k for k in fields(rows, rule) if k.startswith("caught_")]
        for r in rows:
            lacks = [k.removeprefix("caught_") for k in every if k not in r]
            if lacks and _real(r.get("op_mean_catch")):
                extra = f"no {', '.join(lacks)} fakes at its operating point: mean over the rest"
                r["note"] = "; ".join(filter(None, [r["note"], extra]))
    chosen = select_operating(rows) if rule == "operating" else select(rows)
    for r in rows:
        r["selected"] = "yes" if r["variant"] == chosen else ""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "comparison.csv", fields(rows, rule))
    write_md(rows, out / "comparison.md", chosen, rule)
    plot(rows, out / "comparison.png", rule)
    return rows, chosen


def run(args) -> int:
    rows, chosen = compare(args.runs, args.out, args.rule)
    print((args.out / "comparison.md").read_text())
    print(f"{args.out}: comparison.csv, comparison.md, comparison.png ({len(rows)} runs)")
    return 0


HELP = "tabulate training runs side by side (valid metrics, FairFace, cost)"
DESCRIPTION = (
    "One row per run folder of `train` (evaluated with `evaluate --split "
    "valid --out RUN/eval-valid` and on held-out FairFace reals into RUN/eval-fairface): "
    "what the recipe changes from the FIRST run (from config.json), parameters, best epoch, "
    "valid accuracy / balanced accuracy / ROC-AUC / F1 at the run's threshold, the share of "
    "FairFace reals called real, and training seconds. A run without its eval folders is "
    "listed with blanks and a note. Writes comparison.csv, comparison.md and comparison.png "
    f"into OUT and marks the selected run: {SELECTION_RULE}. With --rule operating "
    "(screens exported with `export --threshold reals` into RUN/model), each run's "
    "model/model.json operating_point is tabulated instead (threshold, mean false alarm, "
    "catch per fake source and their mean, best validation loss) and the eval folders are "
    f"not needed: {OPERATING_RULE}."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders; first = base"
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the table"
    )
    parser.add_argument(
        "--rule",
        choices=list(RULES),
        default="roc-auc",
        help="roc-auc: runs with eval-valid and eval-fairface, by valid ROC-AUC (default); "
        "operating: runs exported into RUN/model with --threshold reals, by mean catch rate "
        "at the operating point",
    )
