"""`report`: the model card, MODEL_CARD.md and a self-contained MODEL_CARD.html.

Every figure in the card is read from a file: the model folder's model.json, eval/ and training/,
plus the fairness audit, the FairFace predictions of the served path, the recipe comparison and
the leave-source-out runs, which are first copied (or, for the predictions, summarised) into
OUT/fairness, OUT/fairface, OUT/comparison and OUT/leave-source-out/<run> so that
`report MODEL_DIR` re-renders the same card from the model folder alone.
A missing input makes its section say "not measured"; nothing is filled in.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import shlex
import shutil
import sys
from collections import Counter, defaultdict
from pathlib import Path

from ..fairness.metrics import wilson
from .calibration import ECE_BINS
from .compare import SELECTION_RULE

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"  # training/templates
# ../shared/data beside the repository, as everywhere else in the project.
DEFAULT_LABELS = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "fairface" / "fairface_label_val.csv"
)
FAIRNESS_FILES = ["fairness.csv", "fairness_groups.csv", "fairness.md", "fairness.png"]
FAIRNESS_FILES += ["fairness.json", "sd_race.csv", "sd_race.md", "sd_race.png"]
COMPARISON_FILES = ["comparison.csv", "comparison.md", "comparison.png"]
# An `evaluate` output of the same recipe trained without a source, scored on that source.
LEAVE_OUT_FILES = ["metrics.csv", "metrics.md", "evaluation.json", "reliability.png"]
LEAVE_OUT_DIR = "leave-source-out"
FAIRFACE_FILES = ["metrics.csv", "no_face_by_group.csv"]
# Not "fairface/": that name belongs to the data set, and the model folder holds only a summary.
FAIRFACE_DIR = "fairface-val"
PREDICT_COLUMNS = ["path", "face", "p_fake", "label", "error"]
FAIRFACE_FIELDS = [
    "source",
    "images",
    "faces_found",
    "no_face",
    "other_errors",
    "extra_faces",
    "scored",
    "called_real",
    "called_fake",
    "specificity",
    "false_positive_rate",
    "mean_p_fake",
]
ATTRIBUTES = ["race", "gender", "age"]
NOT_MEASURED = "not measured"


class ReportError(Exception):
    """An input that cannot be used as given; the message names the file."""


# --- reading -------------------------------------------------------------------------------


def read_csv(path: Path, needed: list[str]) -> list[dict]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            fields = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReportError(f"{path}: not a readable CSV ({exc}).") from None
    missing = [c for c in needed if c not in fields]
    if missing:
        raise ReportError(f"{path}: no column {', '.join(missing)}; is it the right file?")
    return rows


def read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReportError(f"{path}: not readable JSON ({exc}).") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{path}: not a JSON object.")
    return doc


def num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def f3(value, digits: int = 3) -> str:
    v = num(value)
    return "—" if math.isnan(v) else f"{v:.{digits}f}"


def f4(value) -> str:
    return f3(value, 4)


def pct(value) -> str:
    v = num(value)
    return "—" if math.isnan(v) else f"{100 * v:.1f} %"


def interval(value, lo, hi) -> str:
    if math.isnan(num(value)):
        return "—"
    return f"{f3(value)} [{f3(lo)}, {f3(hi)}]"


# --- staging the inputs into OUT -----------------------------------------------------------


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def stage_folder(given: Path | None, kept: Path, dest: Path, files: list[str], flag: str):
    """Copy a table folder into dest; a given folder must hold files[0]. Returns dest or None."""
    src = given if given is not None else kept
    if given is not None and not (given / files[0]).is_file():
        raise ReportError(f"{flag} {given}: no {files[0]} there.")
    if not (src / files[0]).is_file():
        return None
    if not _same(src, dest):
        if dest.exists():
            shutil.rmtree(dest)  # a stale file from an older input must not survive
        dest.mkdir(parents=True)
        for name in files:
            if (src / name).is_file():
                shutil.copy2(src / name, dest / name)
    return dest


def leave_out_runs(root: Path) -> dict[str, Path]:
    """The `evaluate` outputs kept in root, by name: every subfolder holding metrics.csv; in an
    older model folder (no such subfolder), root itself when it holds metrics.csv (name "")."""
    if not root.is_dir():
        return {}
    runs = {d.name: d for d in sorted(root.iterdir()) if (d / "metrics.csv").is_file()}
    if not runs and (root / "metrics.csv").is_file():
        runs[""] = root
    return runs


def stage_leave_out(given: list[Path], kept: Path, dest: Path) -> list[Path]:
    """Copy leave-source-out runs into dest/<name> (a given folder's name); returns the folders.

    Given folders make up the whole set: whatever else dest holds (an older run, the files of
    the old single-folder layout) is removed. A given folder that already is dest/<name> stays
    as it is. Without given folders, the runs kept in `kept` are used, copied when dest differs.
    Every file is read before anything is removed, so a source inside dest is never lost."""
    if given:
        runs: dict[str, Path] = {}
        for folder in given:
            if not (folder / "metrics.csv").is_file():
                raise ReportError(f"--leave-source-out {folder}: no metrics.csv there.")
            other = runs.setdefault(folder.name, folder)
            if not _same(other, folder):
                raise ReportError(
                    f"--leave-source-out {other} and {folder}: both would be kept as "
                    f"{LEAVE_OUT_DIR}/{folder.name}; give folders of different names."
                )
    else:
        runs = leave_out_runs(kept)
        if not runs or _same(kept, dest):
            return [dest / name for name in sorted(runs)]
    in_place = {name for name, src in runs.items() if _same(src, dest / name)}
    copies = {
        name: {f: (src / f).read_bytes() for f in LEAVE_OUT_FILES if (src / f).is_file()}
        for name, src in runs.items()
        if name not in in_place
    }
    if dest.is_dir():
        for entry in dest.iterdir():  # stale runs and old-layout files must not survive
            if entry.name not in in_place:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    for name, files in copies.items():
        (dest / name).mkdir(parents=True, exist_ok=True)
        for f, data in files.items():
            (dest / name / f).write_bytes(data)
    return [dest / name for name in sorted(runs)]


def _image_key(path: str) -> str:
    """'…/val/12.jpg' -> 'val/12.jpg', the form of FairFace's `file` column."""
    parts = Path(path).parts
    return "/".join(parts[-2:])


def _age_order(value: str) -> tuple[int, str]:
    match = re.match(r"\d+", value)
    return (int(match.group()) if match else 10**6, value)


def summarise_fairface(predictions: Path, labels: Path | None, out: Path) -> None:
    """fairface-val/metrics.csv (and no_face_by_group.csv given labels) from a predict CSV."""
    rows = read_csv(predictions, PREDICT_COLUMNS)
    if not rows:
        raise ReportError(f"{predictions}: no prediction rows.")
    if "true_label" in rows[0] and any(r["true_label"] == "fake" for r in rows):
        raise ReportError(f"{predictions}: has fake rows; FairFace predictions are of reals only.")
    by_path: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_path[r["path"]].append(r)
    errors: Counter = Counter()
    scored, extra = [], 0
    for group in by_path.values():
        faces = [r for r in group if r["face"] != "" and not r["error"]]
        extra += sum(1 for r in faces if r["face"] != "0")
        first = next((r for r in faces if r["face"] == "0"), None)
        if first is not None:
            if first["label"] not in ("real", "fake"):
                raise ReportError(f"{predictions}: label {first['label']!r} for {first['path']}.")
            scored.append(first)
        else:
            errors[next((r["error"] for r in group if r["error"]), "no_face")] += 1
    called_real = sum(1 for r in scored if r["label"] == "real")
    n = len(scored)
    summary = {
        "source": str(predictions),
        "images": len(by_path),
        "faces_found": n,
        "no_face": errors.pop("no_face", 0),
        "other_errors": sum(errors.values()),
        "extra_faces": extra,
        "scored": n,
        "called_real": called_real,
        "called_fake": n - called_real,
        "specificity": f"{called_real / n:.6f}" if n else "",
        "false_positive_rate": f"{(n - called_real) / n:.6f}" if n else "",
        "mean_p_fake": f"{sum(num(r['p_fake']) for r in scored) / n:.6f}" if n else "",
    }
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with (out / "metrics.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, FAIRFACE_FIELDS)
        writer.writeheader()
        writer.writerow(summary)
    if labels is None:
        return
    found = {
        path: any(r["face"] == "0" and not r["error"] for r in g) for path, g in by_path.items()
    }
    no_face = {path: any(r["error"] == "no_face" for r in g) for path, g in by_path.items()}
    attrs = {r["file"]: r for r in read_csv(labels, ["file", *ATTRIBUTES])}
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    joined = 0
    for path in by_path:
        label = attrs.get(_image_key(path))
        if label is None or not (found[path] or no_face[path]):
            continue  # unlabelled, or failed for another reason than finding no face
        joined += 1
        for attr in ATTRIBUTES:
            cell = counts[(attr, label[attr])]
            cell[0] += 1
            cell[1] += no_face[path]
    if not joined:
        raise ReportError(
            f"{labels}: no `file` matches a path of {predictions} (e.g. val/1.jpg); "
            "are they the same FairFace split?"
        )
    order = sorted(
        counts,
        key=lambda k: (ATTRIBUTES.index(k[0]), _age_order(k[1]) if k[0] == "age" else (0, k[1])),
    )
    with (out / "no_face_by_group.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["attribute", "group", "images", "no_face", "no_face_rate", "lo", "hi", "labels"]
        )
        for attr, value in order:
            images, missed = counts[(attr, value)]
            lo, hi = wilson(missed, images)
            writer.writerow(
                [attr, value, images, missed, f"{missed / images:.6f}", f"{lo:.6f}", f"{hi:.6f}"]
                + [labels.name]
            )


def _rate_ci(row: dict[str, str]) -> str:
    if not row.get("lo"):  # written before intervals were
        return pct(row["no_face_rate"])
    return f"{pct(row['no_face_rate'])} [{pct(row['lo'])}, {pct(row['hi'])}]"


# --- the card's sections -------------------------------------------------------------------


def table(head: list[str], rows: list[list]) -> dict:
    return {"head": head, "rows": [[str(c) for c in row] for row in rows]}


def figure(path: Path, out: Path, title: str) -> dict | None:
    if not path.is_file():
        return None
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    # The Markdown links relative to the card; a figure outside OUT keeps its absolute path.
    full, base = path.resolve(), out.resolve()
    rel = full.relative_to(base) if full.is_relative_to(base) else full
    return {"title": title, "rel": rel.as_posix(), "uri": f"data:image/png;base64,{data}"}


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
    return {
        "applied_to": rows[0].get("applied_to", "") if rows else "",
        "table": table([*head, "ROC-AUC", "ECE"], body),
        "worst": max((num(r["accuracy_drop"]) for r in rows), default=math.nan),
    }


def _rate(k: int | float, n: int | float) -> float:
    return k / n if n > 0 else math.nan


def _counts(row: dict) -> tuple[float, float, float, float]:
    return tuple(num(row.get(k)) for k in ("tp", "fp", "fn", "tn"))


def _rate_of_counts(k: float, n: float) -> str:
    """k/n with its counts, as 0.8411 (90 of 107); "—" without counts or denominator."""
    if math.isnan(k) or math.isnan(n) or n <= 0:
        return "—"
    return f"{f4(k / n)} ({int(k)} of {int(n)})"


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
                "table": table(
                    ["Group", "n", "Accuracy", "ROC-AUC", "Recall (catch)", "False alarms", "ECE"],
                    body,
                ),
            }
        )
    return sections


def section_fairface(folder: Path | None) -> dict | None:
    if folder is None or not (folder / "metrics.csv").is_file():
        return None
    rows = read_csv(folder / "metrics.csv", FAIRFACE_FIELDS)
    if not rows:
        raise ReportError(f"{folder / 'metrics.csv'}: empty.")
    r = rows[0]
    images = int(num(r["images"]))
    found = int(num(r["faces_found"]))
    result = {
        "source": r["source"],
        "scored": int(num(r["scored"])),
        "called_fake": int(num(r["called_fake"])),
        "fpr": num(r["false_positive_rate"]),
        "table": table(
            ["Measure", "Value"],
            [
                ["images", images],
                ["faces found (largest face scored)", f"{found} ({pct(found / images)})"],
                ["no face found", f"{r['no_face']} ({pct(num(r['no_face']) / images)})"],
                ["other errors", r["other_errors"]],
                ["further faces (not scored)", r["extra_faces"]],
                ["called real (specificity)", f"{r['called_real']} ({f4(r['specificity'])})"],
                [
                    "called fake (false-positive rate)",
                    f"{r['called_fake']} ({f4(r['false_positive_rate'])})",
                ],
                ["mean P(fake)", f4(r["mean_p_fake"])],
                ["precision / recall / F1 for fake", "n/a: no fakes"],
            ],
        ),
        "by_group": None,
    }
    groups = folder / "no_face_by_group.csv"
    if groups.is_file():
        g = read_csv(groups, ["attribute", "group", "images", "no_face", "no_face_rate"])
        result["by_group"] = table(
            ["Attribute", "Group", "Images", "No face", "No-face rate [95 % Wilson CI]"],
            [[x["attribute"], x["group"], x["images"], x["no_face"], _rate_ci(x)] for x in g],
        )
        result["group_rows"] = g
        result["labels"] = g[0].get("labels", "") if g else ""
    return result


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


def section_fairness(folder: Path | None, out: Path) -> dict | None:
    if folder is None:
        return None
    defs = read_csv(
        folder / "fairness.csv",
        ["definition", "privileged", "unprivileged", "n_privileged", "n_unprivileged", "di"],
    )
    groups_path = folder / "fairness_groups.csv"
    groups = (
        read_csv(groups_path, ["definition", "group", "n", "errors", "rows"])
        if (groups_path.is_file())
        else []
    )
    meta = read_json(folder / "fairness.json") if (folder / "fairness.json").is_file() else {}
    di_rows, notes = [], []
    for r in defs:
        aod = interval(r.get("aod"), r.get("aod_lo"), r.get("aod_hi"))
        di_rows.append(
            [
                r["privileged"],
                r["unprivileged"],
                r["n_privileged"],
                r["n_unprivileged"],
                interval(r["di"], r.get("di_lo"), r.get("di_hi")),
                "undefined (no fakes)" if aod == "—" else aod,
            ]
        )
        if r.get("note"):
            notes.append(f"{r['privileged']} vs {r['unprivileged']}: {r['note']}")
    group_rows = []
    for g in groups:
        rows_n = num(g["rows"])
        group_rows.append(
            [
                g["definition"],
                g["group"],
                g["n"],
                f"{g['errors']} ({pct(num(g['errors']) / rows_n) if rows_n else '—'})",
                interval(
                    g.get("real_called_fake"),
                    g.get("real_called_fake_lo"),
                    g.get("real_called_fake_hi"),
                ),
                interval(
                    g.get("fake_called_real"),
                    g.get("fake_called_real_lo"),
                    g.get("fake_called_real_hi"),
                )
                if g.get("fake_called_real")
                else "n/a: no fakes",
            ]
        )
    # AIF360 calls the favourable outcome positive; say which way round it was measured.
    return {
        "favourable": meta.get("favourable", "real"),
        "predictions": ", ".join(meta.get("predictions", [])),
        "resamples": meta.get("resamples"),
        "counts": meta.get("counts", {}),
        "class_counts": meta.get("class_counts", {}),
        "di": table(
            ["Privileged", "Unprivileged", "n priv.", "n unpriv.", "DI [95 % CI]", "AOD [95 % CI]"],
            di_rows,
        ),
        "notes": notes,
        "groups": table(
            [
                "Definition",
                "Group",
                "n scored",
                "No prediction",
                "Real called fake [95 % CI]",
                "Fake called real [95 % CI]",
            ],
            group_rows,
        )
        if group_rows
        else None,
        "group_rows": groups,
        "figure": figure(folder / "fairness.png", out, "Disparate impact and AOD, 95 % intervals"),
        "sd_race": section_sd_race(folder, out),
    }


def section_sd_race(folder: Path, out: Path) -> dict | None:
    """The audit's labelled fakes by race (`fairness --fakes-labels`): catch rate, false alarms
    and AOD per race with intervals, and the largest catch-rate gap."""
    path = folder / "sd_race.csv"
    if not path.is_file():
        return None
    rows = read_csv(path, ["race", "n_fakes", "catch_rate", "n_reals", "false_alarm_rate", "aod"])

    def rate(r: dict, key: str) -> str:
        if not r[f"{key}_rate"]:
            return "—"
        lo, hi = pct(num(r[f"{key}_lo"])), pct(num(r[f"{key}_hi"]))
        return f"{pct(num(r[f'{key}_rate']))} [{lo}, {hi}]"

    body = [
        [
            r["race"] + ("" if r.get("compared") == "yes" else " †"),
            r["n_fakes"],
            rate(r, "catch") if r["n_fakes"] != "0" else "—",
            r["n_reals"],
            rate(r, "false_alarm") if r["n_reals"] != "0" else "—",
            interval(r["aod"], r["aod_lo"], r["aod_hi"]),
            r.get("aod_goal") or "—",
        ]
        for r in rows
    ]
    gap = next((r for r in rows if r.get("catch_gap_points")), None)
    return {
        "table": table(
            [
                "Race",
                "SD fakes",
                "Caught [95 % Wilson]",
                "Reals",
                "Called fake [95 % Wilson]",
                "AOD vs the other six [95 % CI]",
                "|AOD| ≤ 0.02",
            ],
            body,
        ),
        "gap": (
            f"{num(gap['catch_gap_points']):.1f} points "
            f"[{num(gap['catch_gap_lo']):.1f}, {num(gap['catch_gap_hi']):.1f}]: "
            f"{gap.get('catch_gap_goal', '')}"
        )
        if gap
        else "",
        "figure": figure(folder / "sd_race.png", out, "Catch and false-alarm rate per race"),
    }


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


def cross_check(fairface: dict | None, fairness: dict | None) -> list[str]:
    """The audit and the FairFace summary should describe the same predictions; say when not."""
    if not fairface or not fairness:
        return []
    whole = next((g for g in fairness["group_rows"] if g["definition"] == "all"), None)
    if whole is None or not whole.get("real_called_fake"):
        return []
    # Only the reals: an audit with labelled fakes (Stable Diffusion) scores those too.
    n, rate = int(num(whole.get("n_real") or whole["n"])), num(whole["real_called_fake"])
    if n == fairface["scored"] and abs(rate - fairface["fpr"]) < 5e-4:
        return []
    return [
        f"The fairness audit ({fairness['predictions'] or 'its predictions'}: {n} scored, "
        f"{rate:.4f} real called fake) and the FairFace predictions ({fairface['source']}: "
        f"{fairface['scored']} scored, {fairface['fpr']:.4f} called fake) disagree: they are "
        "probably of different models or thresholds; re-run the audit on the same predictions."
    ]


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


def _rate_of(rows: list[dict], attr: str, group: str) -> tuple[float, int] | None:
    hits = [r for r in rows if r["attribute"] == attr and r["group"] == group]
    if not hits:
        return None
    return num(hits[0]["no_face_rate"]), int(num(hits[0]["images"]))


def face_found_gap(fairface: dict | None, fairness: dict | None) -> dict | None:
    """Face-found rate of Black faces against the rest: the detector's known weak spot."""
    if fairface and fairface.get("group_rows"):
        rows = fairface["group_rows"]
        black = _rate_of(rows, "race", "Black")
        races = [r for r in rows if r["attribute"] == "race" and r["group"] != "Black"]
        if black and races:
            n_other = sum(int(num(r["images"])) for r in races)
            missed = sum(int(num(r["no_face"])) for r in races)
            return {
                "black": 1 - black[0],
                "n_black": black[1],
                "other": 1 - missed / n_other,
                "n_other": n_other,
                "from": f"{FAIRFACE_DIR}/no_face_by_group.csv",
            }
    if fairness:
        rows = [g for g in fairness["group_rows"] if g["definition"] == "race: Black vs Non-Black"]
        black = next((g for g in rows if g["group"] == "Black"), None)
        other = next((g for g in rows if g["group"] == "Non-Black"), None)
        if black and other:
            return {
                "black": 1 - num(black["errors"]) / num(black["rows"]),
                "n_black": int(num(black["rows"])),
                "other": 1 - num(other["errors"]) / num(other["rows"]),
                "n_other": int(num(other["rows"])),
                "from": "the fairness audit's photos without a prediction",
            }
    return None


# --- rendering -----------------------------------------------------------------------------


def _inline(text, html: bool):
    """`code` and **bold**, the only inline markup the card's prose and cells use."""
    from markupsafe import Markup, escape

    text = re.sub(r"\s*\n\s*", " ", str(text) if not html else str(escape(text))).strip()
    if not html:
        return text
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return Markup(text)


def render(context: dict, out: Path) -> list[Path]:
    import jinja2

    written = []
    for fmt in ("md", "html"):
        html = fmt == "html"
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=html,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.filters["inline"] = lambda t, h=html: _inline(t, h)
        env.filters["mdcell"] = lambda t: str(t).replace("|", r"\|").replace("\n", " ")
        text = env.get_template("model_card.j2").render(fmt=fmt, **context)
        text = re.sub(r"\n{3,}", "\n\n", text)
        path = out / f"MODEL_CARD.{fmt}"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def build(
    model_dir: Path,
    out: Path,
    fairness: Path | None = None,
    fairface_predictions: Path | None = None,
    comparison: Path | None = None,
    labels: Path | None = None,
    command: str = "",
    leave_out: list[Path] | None = None,
) -> list[Path]:
    spec_path = model_dir / "model.json"
    if not spec_path.is_file():
        raise ReportError(f"{model_dir}: no model.json there; is it a model folder of `export`?")
    doc = read_json(spec_path)
    for given, flag in (
        (fairness, "--fairness"),
        (comparison, "--comparison"),
        *((folder, "--leave-source-out") for folder in leave_out or []),
    ):
        if given is not None and not given.is_dir():
            raise ReportError(f"{flag} {given}: no such folder.")
    if fairface_predictions is not None and not fairface_predictions.is_file():
        raise ReportError(f"--fairface-predictions {fairface_predictions}: no such file.")
    if labels is not None and not labels.is_file():
        raise ReportError(f"--labels {labels}: no such file.")
    out.mkdir(parents=True, exist_ok=True)

    fair_dir = stage_folder(
        fairness, model_dir / "fairness", out / "fairness", FAIRNESS_FILES, "--fairness"
    )
    comp_dir = stage_folder(
        comparison, model_dir / "comparison", out / "comparison", COMPARISON_FILES, "--comparison"
    )
    lso_runs = stage_leave_out(leave_out or [], model_dir / LEAVE_OUT_DIR, out / LEAVE_OUT_DIR)
    if fairface_predictions is not None:
        use_labels = labels or (DEFAULT_LABELS if DEFAULT_LABELS.is_file() else None)
        summarise_fairface(fairface_predictions, use_labels, out / FAIRFACE_DIR)
        ff_dir = out / FAIRFACE_DIR
    else:
        ff_dir = stage_folder(
            None,
            model_dir / FAIRFACE_DIR,
            out / FAIRFACE_DIR,
            FAIRFACE_FILES,
            "--fairface-predictions",
        )

    test = section_test(model_dir, out)
    fairface = section_fairface(ff_dir)
    fair = section_fairness(fair_dir, out)
    inp = doc.get("input", {})
    scale, offset = num(inp.get("scale")), num(inp.get("offset"))
    context = {
        "NM": NOT_MEASURED,
        "doc": doc,
        "name": doc.get("name", model_dir.name),
        "version": doc.get("version", ""),
        "threshold": f3(doc.get("threshold"), 4),
        "threshold_rule": doc.get("metrics", {}).get("valid", {}).get("threshold_rule", ""),
        "positive": doc.get("output", {}).get("positive_class", "fake"),
        "architecture": doc.get("architecture", ""),
        "params": doc.get("params", ""),
        "size": inp.get("size", ""),
        "color": {"gray": "grayscale (1 channel)", "rgb": "RGB (3 channels)"}.get(
            inp.get("color"), inp.get("color", "")
        ),
        "align_size": doc.get("align_size", ""),
        "scale": f"{scale:.8g}",
        "offset": f"{offset:g}",
        "unit_range": abs(scale - 1 / 255) < 1e-9 and offset == 0,
        "training": doc.get("training", {}),
        "generators": section_generators(doc),
        "operating_point": section_operating_point(doc),
        "data": section_data(doc, test["all"] if test else None, fairface),
        "test": test,
        "fairface": fairface,
        "sources": section_sources(model_dir, fairface),
        "curves": section_curves(model_dir, doc, out),
        "fairness": fair,
        "gap": face_found_gap(fairface, fair),
        "warnings": cross_check(fairface, fair),
        "explain": can_explain(model_dir),
        "explain_layer": (doc.get("explain") or {}).get("layer", ""),
        "comparison": section_comparison(comp_dir, out),
        "calibration": section_calibration(model_dir, doc, test, out),
        "robustness": section_robustness(model_dir),
        "leave_out": section_leave_out(lso_runs, out),
        "command": command,
    }
    return render(context, out)


def _command(args) -> str:
    parts = ["python", "-m", "training", "report", str(args.model_dir)]
    for flag, value in (
        ("--fairness", args.fairness),
        ("--fairface-predictions", args.fairface_predictions),
        ("--comparison", args.comparison),
        *(("--leave-source-out", folder) for folder in args.leave_source_out or []),
        ("--labels", args.labels),
        ("--out", args.out),
    ):
        if value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _run(args) -> int:
    out = args.out or args.model_dir
    try:
        written = build(
            args.model_dir,
            out,
            args.fairness,
            args.fairface_predictions,
            args.comparison,
            args.labels,
            _command(args),
            args.leave_source_out,
        )
    except ReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    print("\n".join(str(p) for p in written))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="render the model card (MODEL_CARD.md and a self-contained MODEL_CARD.html)",
        description="Render the model card of an exported model folder from its own files "
        "(model.json, eval/metrics.csv, eval/predictions.csv, eval/roc_pr.png, training/*) and "
        "the optional inputs below, which are copied (or summarised) into OUT/fairness, "
        "OUT/fairface, OUT/comparison and OUT/leave-source-out first, so that "
        "`report MODEL_DIR` alone re-renders the same card later. The HTML has its CSS inline "
        "and every image as a data: URI (no script, no external load). A missing input makes "
        "its section say 'not measured'.",
    )
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="model folder of `export`")
    p.add_argument(
        "--fairness",
        type=Path,
        metavar="DIR",
        help="a `fairness` audit folder (fairness.csv, fairness_groups.csv, fairness.png, ...)",
    )
    p.add_argument(
        "--fairface-predictions",
        type=Path,
        metavar="CSV",
        help="`python -m shared predict` CSV of FairFace val (all real photos)",
    )
    p.add_argument(
        "--comparison", type=Path, metavar="DIR", help="a `compare` folder (comparison.csv, ...)"
    )
    p.add_argument(
        "--leave-source-out",
        type=Path,
        action="append",
        metavar="DIR",
        help="an `evaluate` output of the same recipe trained without a source, scored on the "
        "test splits (metrics.csv, evaluation.json); repeat it, one per held-out source. Kept in "
        "OUT/leave-source-out/<DIR's name>, which then holds these runs only; without it, the "
        "runs kept in MODEL_DIR/leave-source-out are used",
    )
    p.add_argument(
        "--labels",
        type=Path,
        metavar="CSV",
        help="FairFace labels (file,age,gender,race) for the no-face rate per group "
        "(default ../shared/data/fairface/fairface_label_val.csv when present)",
    )
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="where the card and copies go (MODEL_DIR)"
    )
    p.set_defaults(func=_run)
