"""FairFace val, all real photos scored on the served path: the summary of a predict CSV (and
the no-face rate per labelled group), its section of the card, and the face-found gap."""

from __future__ import annotations

import csv
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path

from ...fairness.metrics import wilson
from .read import ReportError, f4, num, pct, read_csv, table

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
    summary = _fairface_summary(predictions, by_path)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with (out / "metrics.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, FAIRFACE_FIELDS)
        writer.writeheader()
        writer.writerow(summary)
    if labels is not None:
        _write_no_face_by_group(predictions, by_path, labels, out / "no_face_by_group.csv")


def _fairface_summary(predictions: Path, by_path: dict[str, list[dict]]) -> dict:
    """Each photo's largest face (face 0) scored; photos without one counted by their error."""
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
    return {
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


def _write_no_face_by_group(
    predictions: Path, by_path: dict[str, list[dict]], labels: Path, path: Path
) -> None:
    """Per FairFace group: the photos in which no face was found, with Wilson intervals."""
    found = {
        path: any(r["face"] == "0" and not r["error"] for r in g) for path, g in by_path.items()
    }
    no_face = {path: any(r["error"] == "no_face" for r in g) for path, g in by_path.items()}
    attrs = {r["file"]: r for r in read_csv(labels, ["file", *ATTRIBUTES])}
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    joined = 0
    for photo in by_path:
        label = attrs.get(_image_key(photo))
        if label is None or not (found[photo] or no_face[photo]):
            continue  # unlabelled, or failed for another reason than finding no face
        joined += 1
        for attr in ATTRIBUTES:
            cell = counts[(attr, label[attr])]
            cell[0] += 1
            cell[1] += no_face[photo]
    if not joined:
        raise ReportError(
            f"{labels}: no `file` matches a path of {predictions} (e.g. val/1.jpg); "
            "are they the same FairFace split?"
        )
    order = sorted(
        counts,
        key=lambda k: (ATTRIBUTES.index(k[0]), _age_order(k[1]) if k[0] == "age" else (0, k[1])),
    )
    with path.open("w", newline="") as fh:
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
