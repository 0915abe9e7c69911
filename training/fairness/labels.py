"""Demographic labels, the paper's group definitions, and joining predictions to both.

A label is keyed by (dataset root, path relative to it), e.g. (`../shared/data/fairface`,
`val/12.jpg`): a real FairFace image and its pSp fake share `val/12.jpg` but not the root.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import CommandError
from .metrics import PRIV, UNPRIV

CLASSES = ("real", "fake")
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
PAIRS_COLUMNS = ["real_path", "fake_path", "age", "gender", "race", "status"]
MANIFEST = "falsify.json"
# FairFace's seven race names: the races the Stable Diffusion fakes are compared across.
FAIRFACE_RACES = (
    "White", "Black", "East Asian", "Southeast Asian", "Indian", "Middle Eastern",
    "Latino_Hispanic",
)  # fmt: skip
SD_LABELS = "sdfd_labels.csv"
SD_COLUMNS = ("path", "race")
SD_SPLITS = ("valid", "test")  # the shipped model trains on stable-diffusion/train
PACIFIC = "Pacific Islander"
BLEND = "Blend"
SPLIT_EXCLUDED = "fake_split_excluded"


class LabelError(CommandError, ValueError):
    """Labels or predictions that cannot be read; the message names the file."""


@dataclass
class Label:
    source: str
    root: Path
    key: str  # path relative to root, posix
    true_class: str | None  # "real" / "fake" when the source knows it
    attrs: dict[str, str]


@dataclass
class LabelSet:
    by_path: dict[str, Label] = field(default_factory=dict)  # resolved absolute path -> label
    by_key: dict[str, list[Label]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    unreadable: Counter = field(default_factory=Counter)  # source -> entries without labels
    # Labelled images deliberately left out (e.g. SD fakes of a split not audited), by resolved
    # path and by relative key: a prediction of one is counted as such, not as "no_label".
    excluded: set[str] = field(default_factory=set)
    excluded_keys: set[str] = field(default_factory=set)

    def add(self, label: Label) -> None:
        where = str((label.root / label.key).resolve())
        old = self.by_path.get(where)
        if old is not None:
            if (old.attrs, old.true_class) != (label.attrs, label.true_class):
                raise LabelError(
                    f"{label.key} under {label.root} has two different labels "
                    f"({old.source}: {old.attrs} {old.true_class}; "
                    f"{label.source}: {label.attrs} {label.true_class})."
                )
            return
        self.by_path[where] = label
        self.by_key.setdefault(label.key, []).append(label)

    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for label in self.by_path.values():
            seen.update(dict.fromkeys(label.attrs))
        return list(seen)


# --- reading labels -------------------------------------------------------------------------

UTK_RACES = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}
UTK_GENDERS = {"0": "Male", "1": "Female"}
UTK_NAME = re.compile(r"^(\d+)_([01])_([0-4])_")
# FairFace's age bins; UTKFace's exact ages are put in the same bins so definitions carry over.
AGE_BINS = [(0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69)]


def age_bin(age: int) -> str:
    for lo, hi in AGE_BINS:
        if lo <= age <= hi:
            return f"{lo}-{hi}"
    return "more than 70"


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelError(f"{path}: cannot be read as CSV ({exc}).") from exc


def read_label_csv(path: Path, labels: LabelSet, root: Path | None = None) -> None:
    """FairFace's `file,age,gender,race[,...]` or any CSV with `file`/`path` + label columns.

    A `true_label`/`class` column gives each row's class; otherwise a FairFace CSV means real
    photographs (the set has no generated faces) and anything else leaves the class open.
    """
    cols, rows = _read_csv(path)
    if set(PAIRS_COLUMNS) <= set(cols):
        read_pairs(path, labels)
        return
    key_col = next((c for c in ("file", "path", "image") if c in cols), None)
    if key_col is None:
        raise LabelError(
            f"{path}: no `file` or `path` column (columns: {', '.join(cols) or 'none'}); "
            "expected FairFace's file,age,gender,race or a falsify pairs.csv."
        )
    class_col = next((c for c in ("true_label", "class", "label_str") if c in cols), None)
    fairface = {"file", "age", "gender", "race"} <= set(cols)
    skip = {key_col, class_col, "service_test", "", "label"}
    root = (root or path.parent).resolve()
    labels.sources.append(str(path))
    for row in rows:
        truth = (row.get(class_col) or "").strip().lower() if class_col else ""
        if truth not in CLASSES:
            truth = "real" if fairface and not class_col else None
        attrs = {c: (row[c] or "").strip() for c in cols if c not in skip}
        labels.add(Label(str(path), root, _key(row[key_col]), truth, attrs))


def read_pairs(path: Path, labels: LabelSet) -> None:
    """A `falsify` pairs CSV: each `ok` row labels a fake (under the CSV's folder) and, when the
    run's manifest names the real root, its real original too."""
    cols, rows = _read_csv(path)
    missing = [c for c in PAIRS_COLUMNS if c not in cols]
    if missing:
        raise LabelError(f"{path}: not a pairs CSV, missing column(s) {', '.join(missing)}.")
    fake_root = path.parent.resolve()
    real_root = None
    manifest = path.parent / MANIFEST
    if manifest.is_file():
        try:
            real_root = Path(json.loads(manifest.read_text())["real_root"]).resolve()
        except (OSError, ValueError, KeyError) as exc:
            raise LabelError(f"{manifest}: cannot be read ({exc}).") from exc
    labels.sources.append(str(path))
    for row in rows:
        attrs = {c: (row[c] or "").strip() for c in ("age", "gender", "race")}
        if real_root is not None:
            labels.add(Label(str(path), real_root, _key(row["real_path"]), "real", attrs))
        if row["status"] == "ok" and row["fake_path"]:
            labels.add(Label(str(path), fake_root, _key(row["fake_path"]), "fake", attrs))


def read_utkface(folder: Path, labels: LabelSet) -> int:
    """UTKFace names: `age_gender_race_date.jpg` (gender 0 male, race 0-4 White..Others)."""
    root = folder.resolve()
    found = 0
    labels.sources.append(str(folder))
    for file in sorted(folder.rglob("*")):
        if file.suffix.lower() not in IMAGE_EXT:
            continue
        m = UTK_NAME.match(file.name)
        if not m:
            labels.unreadable[str(folder)] += 1
            continue
        age, gender, race = m.groups()
        attrs = {
            "age": age_bin(int(age)),
            "age_years": age,
            "gender": UTK_GENDERS[gender],
            "race": UTK_RACES[race],
        }
        key = file.relative_to(folder).as_posix()
        labels.add(Label(str(folder), root, key, "real", attrs))
        found += 1
    return found


def read_labels(paths: list[Path]) -> LabelSet:
    labels = LabelSet()
    for path in paths:
        if path.is_file():
            read_label_csv(path, labels)
        elif path.is_dir():
            csvs = sorted(path.glob("fairface_label_*.csv"))
            if (path / "pairs.csv").is_file():
                csvs.append(path / "pairs.csv")
            for file in csvs:
                read_label_csv(file, labels)
            if not csvs and not read_utkface(path, labels):
                raise LabelError(
                    f"{path}: no fairface_label_*.csv, pairs.csv or UTKFace-named images "
                    "(age_gender_race_*.jpg) in this folder."
                )
        else:
            raise LabelError(f"{path}: no such file or folder.")
    if not labels.by_path:
        raise LabelError("The labels given hold no labelled images.")
    return labels


@dataclass
class FakeLabels:
    """Stable Diffusion fakes with a prompted race (SDFD's sdfd_labels.csv), as read."""

    csv: Path
    root: Path
    splits: tuple[str, ...]
    by_split: Counter  # (split, race group) -> labelled fakes, every split


def race_group(race: str) -> str | None:
    """A FairFace race, Pacific Islander or Blend (any `Blend: A + B`); None if none of these."""
    race = race.strip()
    if race in FAIRFACE_RACES or race == PACIFIC:
        return race
    if race.startswith(BLEND + ":"):
        return BLEND
    return None


def parse_splits(text: str) -> tuple[str, ...]:
    splits = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not splits:
        raise LabelError(f"--fake-splits '{text}': name one or more splits, e.g. valid,test.")
    return splits


def read_sd_labels(path: Path, labels: LabelSet, splits: tuple[str, ...] = SD_SPLITS) -> FakeLabels:
    """SDFD fakes (`path,race,who,prompt`, path relative to the CSV's folder, e.g.
    `test/fake/x.jpg`): every row of `splits` labels a fake with its race; rows of other splits
    are remembered as excluded. `race` keeps only FairFace's seven names so every race group
    definition leaves Pacific Islander and blended prompts out; `sd_race` keeps the prompt's."""
    if path.is_dir():
        file = path / SD_LABELS
        if not file.is_file():
            raise LabelError(
                f"{file}: not found; --fakes-labels wants the stable-diffusion folder that "
                f"holds {SD_LABELS} (or that CSV itself)."
            )
    elif path.is_file():
        file = path
    else:
        raise LabelError(f"{path}: no such file or folder (--fakes-labels).")
    cols, rows = _read_csv(file)
    _require_columns(file, cols, SD_COLUMNS, "an SD labels CSV")
    root = file.parent.resolve()
    parsed = []
    for line, row in enumerate(rows, start=2):
        key = _key(row["path"] or "")
        group = race_group(row["race"] or "")
        if not key or group is None:
            raise LabelError(
                f"{file} line {line}: race {row['race']!r} is not one of FairFace's seven, "
                f"{PACIFIC} or 'Blend: A + B'" + ("" if key else ", or the path is empty") + "."
            )
        parsed.append((key, key.split("/")[0], group, row))
    have = sorted({split for _, split, _, _ in parsed})
    unknown = [s for s in splits if s not in have]
    if unknown:
        raise LabelError(
            f"{file}: --fake-splits {', '.join(unknown)} names no split of it (it has: "
            f"{', '.join(have) or 'no rows'})."
        )
    labels.sources.append(str(file))
    by_split: Counter = Counter()
    for key, split, group, row in parsed:
        by_split[(split, group)] += 1
        if split not in splits:
            labels.excluded.add(str((root / key).resolve()))
            labels.excluded_keys.add(key)
            continue
        race = row["race"].strip()
        attrs = {
            "race": race if race in FAIRFACE_RACES else "",
            "sd_race": race,
            "who": (row.get("who") or "").strip(),
        }
        labels.add(Label(str(file), root, key, "fake", attrs))
    return FakeLabels(file, root, tuple(splits), by_split)


def _key(path: str) -> str:
    return PurePosixPath(path.strip().replace("\\", "/")).as_posix().removeprefix("./")


# --- group definitions ----------------------------------------------------------------------


@dataclass(frozen=True)
class GroupDef:
    """A binary split of one label column. `None` on one side means "every other value"."""

    column: str
    privileged: frozenset[str] | None
    unprivileged: frozenset[str] | None
    privileged_name: str  # the paper's Table 9 row name
    unprivileged_name: str

    @property
    def name(self) -> str:
        return f"{self.column}: {self.unprivileged_name} vs {self.privileged_name}"

    def sides(self, values: list[str | None]) -> np.ndarray:
        """PRIV / UNPRIV per row; -1 where the row has no value in this column."""
        out = np.full(len(values), -1, dtype=np.int8)
        for i, v in enumerate(values):
            if not v:
                continue
            if self.unprivileged is not None and v in self.unprivileged:
                out[i] = UNPRIV
            elif self.privileged is not None and v in self.privileged or self.privileged is None:
                out[i] = PRIV
            elif self.unprivileged is None:
                out[i] = UNPRIV
        return out


def _set(*values: str) -> frozenset[str]:
    return frozenset(values)


# The paper's six definitions (Table 9 row = privileged group). Both child bins are "Non-Child".
PAPER_GROUPS = [
    GroupDef("gender", _set("Male"), _set("Female"), "Male", "Female"),
    GroupDef("race", _set("White"), None, "White", "Non-White"),
    GroupDef("race", None, _set("Black"), "Non-Black", "Black"),
    GroupDef("age", None, _set("0-2"), "Non-Child", "Age 0-2"),
    GroupDef("age", None, _set("3-9"), "Non-Child", "Age 3-9"),
    GroupDef("age", None, _set("more than 70"), "Non-Senior", "Age 70+"),
]


def parse_group(text: str, privileged: bool) -> GroupDef:
    """`column=value[|value...]`: those values against every other value of the column."""
    column, sep, values = text.partition("=")
    vals = frozenset(v.strip() for v in values.split("|") if v.strip())
    if not sep or not column.strip() or not vals:
        raise LabelError(f"--group '{text}': write it as column=value (e.g. race=Indian).")
    column = column.strip()
    shown = "/".join(sorted(vals))
    if privileged:
        return GroupDef(column, vals, None, shown, f"Non-{shown}")
    return GroupDef(column, None, vals, f"Non-{shown}", shown)


# --- predictions and the join ---------------------------------------------------------------

PRED_COLUMNS = ("path", "face", "p_fake", "label", "error")


@dataclass
class Joined:
    """One row per image file, with everything the audit used (written as joined.csv)."""

    rows: list[dict[str, str]]
    counts: Counter  # what happened to every prediction row, for the report
    unjoined: list[dict[str, str]]
    columns: list[str]
    attr_columns: list[str]


def _require_columns(path: Path, cols: list[str], needed: list[str], kind: str) -> None:
    missing = [c for c in needed if c not in cols]
    if missing:
        raise LabelError(
            f"{path}: not {kind}, missing column(s) {', '.join(missing)} "
            f"(expected {','.join(needed)})."
        )


def read_predictions(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    cols, rows = _read_csv(path)
    _require_columns(path, cols, PRED_COLUMNS, "a predictions CSV")
    return cols, rows


def _layout_class(path: str) -> str | None:
    """The Kaggle 140k layout names the class in a folder: .../test/real/x.jpg."""
    parts = {p.lower() for p in PurePosixPath(path.replace("\\", "/")).parts[:-1]}
    found = [c for c in CLASSES if c in parts]
    return found[0] if len(found) == 1 else None


def _find(labels: LabelSet, raw: str, base: Path) -> tuple[Label | None, str]:
    p = Path(raw)
    where = str((p if p.is_absolute() else base / p).resolve())
    hit = labels.by_path.get(where)
    if hit is not None:
        return hit, ""
    # A path already relative to a dataset root (`val/12.jpg`) joins if only one root has it.
    same = labels.by_key.get(_key(raw), [])
    if len(same) == 1:
        return same[0], ""
    if same:
        return None, "ambiguous"
    if where in labels.excluded or _key(raw) in labels.excluded_keys:
        return None, SPLIT_EXCLUDED
    return None, "no_label"


def join(
    pred_files: list[Path],
    labels: LabelSet,
    base: Path,
    threshold: float | None = None,
    truth_column: str | None = None,
) -> Joined:
    """Predictions (face 0 = the largest face of each file) joined to labels and true classes.

    Every prediction row ends in exactly one count: `extra_face` (face >= 1, not audited),
    `duplicate`, `no_label`/`ambiguous`/`fake_split_excluded`/`no_true_class` (listed in
    unjoined.csv) or `joined`.
    """
    counts: Counter = Counter()
    out: list[dict[str, str]] = []
    unjoined: list[dict[str, str]] = []
    seen: set[str] = set()
    attr_cols = labels.columns()
    for file in pred_files:
        cols, rows = read_predictions(file)
        col = truth_column or ("true_label" if "true_label" in cols else None)
        if truth_column and truth_column not in cols:
            raise LabelError(f"{file}: --truth-column {truth_column} is not a column.")
        for row in rows:
            counts["rows"] += 1
            face = (row.get("face") or "").strip()
            if face not in ("", "0"):
                counts["extra_face"] += 1
                continue
            label, why = _find(labels, row["path"], base)
            if label is None:
                counts[why] += 1
                unjoined.append({"predictions": str(file), "path": row["path"], "reason": why})
                continue
            where = str((label.root / label.key).resolve())
            if where in seen:
                counts["duplicate"] += 1
                continue
            seen.add(where)
            truth = (row.get(col) or "").strip().lower() if col else ""
            if truth not in CLASSES:
                truth = label.true_class or _layout_class(row["path"]) or ""
            elif label.true_class and truth != label.true_class:
                counts["class_conflict"] += 1  # the predictions' own column wins
            if not truth:
                counts["no_true_class"] += 1
                unjoined.append(
                    {"predictions": str(file), "path": row["path"], "reason": "no_true_class"}
                )
                continue
            error = (row.get("error") or "").strip()
            judged = ""
            p_fake = (row.get("p_fake") or "").strip()
            if not error:
                if threshold is not None and p_fake:
                    judged = "fake" if float(p_fake) >= threshold else "real"
                else:
                    judged = (row.get("label") or "").strip().lower()
                if judged not in CLASSES:
                    error = "no_prediction"
                    judged = ""
            counts["joined"] += 1
            counts["error" if error else "scored"] += 1
            out.append(
                {
                    "path": row["path"],
                    "source": label.source,
                    "root": str(label.root),
                    "key": label.key,
                    "true_class": truth,
                    "judged": judged,
                    "p_fake": p_fake,
                    "error": error,
                    **{c: label.attrs.get(c, "") for c in attr_cols},
                }
            )
    columns = ["path", "source", "root", "key", "true_class", "judged", "p_fake", "error"]
    return Joined(out, counts, unjoined, columns + attr_cols, attr_cols)
