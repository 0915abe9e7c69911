"""`feedback pull --out DIR`: reviewed feedback photos -> the real/-fake/ layout `prepare` reads.

Only records a person accepted or relabelled as real or fake, with a kept photo, are pulled:
DIR/real/<receipt>.<ext>, DIR/fake/<receipt>.<ext> and DIR/feedback.csv (one row per photo).
Each photo's SHA-256 must equal the record's (the photo the service analysed) or it is left
out, and so is feedback on any face but a photo's first (serving numbers faces largest first,
and `prepare` aligns only the largest: it would give that face this label). DIR belongs to
pull: re-running skips photos already there and removes the ones whose record was since
deleted, purged, rejected or relabelled, so a deletion reaches the copies.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tqdm import tqdm

from .connect import RECEIPT, receipt_of
from .decisions import final_label
from .photos import sha256, suffix, verified

CLASSES = ("real", "fake")
CSV_FIELDS = [
    "receipt",
    "label",
    "user_label",
    "review",
    "reviewed_at",
    "model_name",
    "model_version",
    "p_fake",
    "sha256",
    "face",
    "file",
]


def eligible(record: dict) -> bool:
    """Reviewed into training: accepted or relabelled as real or fake, with a kept photo."""
    return final_label(record) in CLASSES and bool(record.get("kept")) and bool(record.get("blob"))


def _ours(out: Path) -> dict[str, Path]:
    """Files pull wrote earlier: named by a receipt, under real/ or fake/."""
    found = {}
    for label in CLASSES:
        for path in (out / label).glob("*"):
            if path.is_file() and RECEIPT.fullmatch(path.stem):
                found[f"{label}/{path.stem}"] = path
    return found


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)  # an interrupted pull never leaves half a photo for prepare to read


def pull(store, out: Path, quiet: bool = False) -> dict:
    """Bring DIR up to date with the store; returns counts and the receipts left out."""
    records = [r for r in store.records() if eligible(r)]
    other_face = [receipt_of(r) for r in records if r.get("face") not in (0, None)]
    records = [r for r in records if r.get("face") in (0, None)]
    before = _ours(out)
    wanted = {f"{final_label(r)}/{receipt_of(r)}" for r in records}
    removed = 0
    for key, path in before.items():
        if key not in wanted:
            path.unlink()
            removed += 1
    counts = {"written": 0, "already": 0, "removed": removed}
    missing, mismatched, rows = [], [], []
    for record in tqdm(records, desc="pulling reviewed feedback", unit="photo", disable=quiet):
        receipt, label = receipt_of(record), final_label(record)
        path = before.get(f"{label}/{receipt}")
        if path is not None and sha256(path.read_bytes()) == record.get("image_sha256"):
            counts["already"] += 1
        else:
            if path is not None:
                path.unlink()  # not the reviewed photo (edited or cut short): fetch it again
            data = store.photo(record)
            if data is None:
                missing.append(receipt)
                continue
            if not verified(record, data):
                mismatched.append(receipt)
                continue
            path = out / label / f"{receipt}{suffix(record.get('content_type', ''), data)}"
            _write(path, data)
            counts["written"] += 1
        rows.append(
            {
                "receipt": receipt,
                "label": label,
                "user_label": record.get("user_label", ""),
                "review": record.get("review", ""),
                "reviewed_at": record.get("reviewed_at", ""),
                "model_name": record.get("model_name", ""),
                "model_version": record.get("model_version", ""),
                "p_fake": record.get("p_fake", ""),
                "sha256": record.get("image_sha256", ""),
                "face": record.get("face", ""),
                "file": path.relative_to(out).as_posix(),
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "feedback.csv.part"
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["file"]))
    tmp.replace(out / "feedback.csv")
    return {
        **counts,
        "photos": len(rows),
        "by_label": {c: sum(r["label"] == c for r in rows) for c in CLASSES},
        "missing": missing,
        "mismatched": mismatched,
        "other_face": other_face,
    }
