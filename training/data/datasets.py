"""Dataset readers: what images a source folder holds, with labels, splits and attributes.

Raw sources (read by `prepare`): the Kaggle 140k layout (its CSVs), FairFace (its CSVs, all real),
any folder with `real/` and `fake/` subfolders, or a plain folder of images (unlabelled).
Prepared folders (read by `train` / `evaluate`): the manifest `prepare` wrote.

Labels are strings "fake" / "real" ("" when unknown): the model's positive class is fake.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CommandError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
KAGGLE_ROOT = Path("real_vs_fake") / "real-vs-fake"
KAGGLE_SPLITS = ("train", "valid", "test")
FAIRFACE_CSVS = {"train": "fairface_label_train.csv", "val": "fairface_label_val.csv"}
SPLIT_NAMES = {
    "train": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "test": "test",
}
MANIFEST_FIELDS = [
    "source",
    "output",
    "split",
    "label",
    "dataset",
    "faces",
    "status",
    "error",
    "x",
    "y",
    "w",
    "h",
    "score",
]


class DataError(CommandError):
    """A dataset that cannot be read as asked; the message names the file."""


@dataclass
class Record:
    """One source image. `rel` is its path relative to the source root (mirrored by prepare)."""

    rel: str
    label: str  # "fake" | "real" | ""
    split: str  # "train" | "valid" | "test" | ""
    source: str  # which dataset it came from, e.g. "140k", "fairface", a folder name
    attrs: dict[str, str] = field(default_factory=dict)  # e.g. FairFace age/gender/race


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by `key`: carves validation sets reproducibly, machine-free."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 2**32


def detect_kind(root: Path) -> str:
    """Which layout `root` has: 140k, fairface, realfake or images."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder.")
    if any((root / f"{s}.csv").is_file() for s in KAGGLE_SPLITS) and (root / KAGGLE_ROOT).is_dir():
        return "140k"
    if any((root / name).is_file() for name in FAIRFACE_CSVS.values()):
        return "fairface"
    if any(p.is_dir() and p.name in ("real", "fake") for p in root.rglob("*")):
        return "realfake"
    return "images"


def read_source(root: str | Path, val_fraction: float = 0.1) -> tuple[str, list[Record]]:
    """All records of a raw dataset folder, whatever its layout."""
    root = Path(root)
    kind = detect_kind(root)
    reader = {
        "140k": read_140k,
        "fairface": read_fairface,
        "realfake": read_realfake,
        "images": read_images,
    }[kind]
    records = reader(root) if kind in ("140k", "images") else reader(root, val_fraction)
    if not records:
        raise DataError(f"{root}: found no images ({kind} layout).")
    return kind, records


def _read_csv(path: Path, required: list[str]) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(
                    f"{path}: missing column(s) {', '.join(missing)}; found "
                    f"{', '.join(reader.fieldnames or []) or 'no header'}."
                )
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read as CSV ({exc}).") from exc


def read_140k(root: Path) -> list[Record]:
    """Kaggle "140k Real and Fake Faces": label 1 = real, 0 = fake; `path` under KAGGLE_ROOT."""
    records = []
    for split in KAGGLE_SPLITS:
        path = root / f"{split}.csv"
        if not path.is_file():
            continue
        rows = _read_csv(path, ["label", "path"])
        bad = [i for i, r in enumerate(rows, start=2) if r["label"].strip() not in ("0", "1")]
        if bad:
            raise DataError(
                f"{path}: {len(bad)} row(s) have a label other than 0 (fake) or "
                f"1 (real), first at line {bad[0]}."
            )
        for r in rows:
            label = "real" if r["label"].strip() == "1" else "fake"
            if r.get("label_str") and r["label_str"].strip() != label:
                raise DataError(
                    f"{path}: label {r['label']} disagrees with label_str "
                    f"{r['label_str']!r} for {r['path']}."
                )
            rel = (KAGGLE_ROOT / r["path"].strip()).as_posix()
            records.append(Record(rel, label, split, "140k"))
    return records


def read_fairface(root: Path, val_fraction: float = 0.1) -> list[Record]:
    """FairFace: every image is a real photograph. Its `val` set becomes our "test" split (the
    fairness audit set); `val_fraction` of its `train` set, fixed by file name, becomes "valid"."""
    records = []
    for part, name in FAIRFACE_CSVS.items():
        path = root / name
        if not path.is_file():
            continue
        for r in _read_csv(path, ["file", "age", "gender", "race"]):
            rel = r["file"].strip()
            if part == "val":
                split = "test"
            else:
                split = "valid" if stable_fraction(rel) < val_fraction else "train"
            attrs = {k: r[k].strip() for k in ("age", "gender", "race")}
            records.append(Record(rel, "real", split, "fairface", attrs))
    return records


def _images_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_realfake(root: Path, val_fraction: float = 0.1) -> list[Record]:
    """Any folder whose images sit under `real/` or `fake/` folders, optionally below
    `train/`, `valid/` (or `val/`) and `test/`. Without splits, `val_fraction` becomes "valid"."""
    records = []
    for path in _images_under(root):
        parts = path.relative_to(root).parts[:-1]
        label = next((p for p in reversed(parts) if p in ("real", "fake")), "")
        if not label:
            continue
        split = next((SPLIT_NAMES[p] for p in reversed(parts) if p in SPLIT_NAMES), "")
        rel = path.relative_to(root).as_posix()
        if not split:
            split = "valid" if stable_fraction(rel) < val_fraction else "train"
        records.append(Record(rel, label, split, root.name))
    return records


def read_images(root: Path) -> list[Record]:
    """Unlabelled images (prepare aligns them; train refuses them)."""
    return [Record(p.relative_to(root).as_posix(), "", "", root.name) for p in _images_under(root)]


# ---- prepared folders ----------------------------------------------------------------------


@dataclass
class Prepared:
    """One prepared folder's manifest rows (every source image, aligned or not)."""

    root: Path
    rows: list[dict[str, str]]

    @property
    def name(self) -> str:
        return self.root.name


def manifest_paths(root: Path) -> list[Path]:
    return sorted(root.glob("manifest*.csv"))


def prepare_info(root: Path) -> dict | None:
    """What `prepare` recorded of a folder (its source, detector, align size): prepare.json, or
    a shard's prepare-K-of-N.json when it was prepared in shards (they share those fields)."""
    import json

    for info in [root / "prepare.json", *sorted(root.glob("prepare-*-of-*.json"))]:
        if info.is_file():
            return json.loads(info.read_text())
    return None


def read_prepared(root: str | Path) -> Prepared:
    """Rows of every manifest in a folder written by `prepare` (several if it was sharded)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder.")
    paths = manifest_paths(root)
    if not paths:
        hint = (
            ""
            if detect_kind(root) == "images"
            else (
                f" It looks like a raw {detect_kind(root)} dataset: run "
                f"`python -m training prepare {root} OUT` and pass OUT."
            )
        )
        raise DataError(f"{root}: no manifest.csv, so it is not a prepared dataset.{hint}")
    rows: dict[str, dict[str, str]] = {}
    for path in paths:
        for r in _read_csv(path, MANIFEST_FIELDS):
            rows[r["source"]] = r  # later lines (a resumed run) win
    return Prepared(root, list(rows.values()))


def usable(rows: list[dict[str, str]], split: str | None) -> list[dict[str, str]]:
    """Aligned, labelled rows of `split` ("all" or None: every split)."""
    return [
        r
        for r in rows
        if r["status"] == "ok"
        and r["label"] in ("fake", "real")
        and (split in (None, "all") or r["split"] == split)
    ]


def class_counts(rows: list[dict[str, str]]) -> dict[str, int]:
    return {c: sum(r["label"] == c for r in rows) for c in ("fake", "real")}


def source_of(row: dict[str, str]) -> str:
    """The source a manifest row came from: `prepare`'s `dataset` column (140k, fairface, or
    the folder name of a real/-fake/ set), else the prepared folder it sits in."""
    return row.get("dataset") or Path(row.get("root", "")).name or "?"
