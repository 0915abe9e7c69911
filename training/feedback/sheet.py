"""`feedback review --sheet DIR` / `--apply CSV`: review many records at once.

The sheet route writes DIR/sheet.png (kept photos, numbered; more pages as sheet-2.png, ...),
DIR/photos/<n>-<receipt>.<ext> (each photo, full size) and DIR/review.csv, one row per pending
record with an empty `decision` column. A maintainer fills it in (accept, real, fake, unsure,
reject, or a/r/f/u/x; empty skips) and applies it. Applying checks every row first and
changes nothing unless all of them are valid.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .connect import FeedbackError, receipt_of
from .decisions import action_of, decide
from .photos import suffix, verified

PER_PAGE = 48
COLUMNS = 8
TILE = 200
CAPTION = 20
CSV_FIELDS = [
    "n",
    "receipt",
    "created",
    "user_label",
    "verdict",
    "p_fake",
    "model_version",
    "photo",
    "decision",
]


def _tile(data: bytes | None, n: int, note: str):
    from PIL import Image, ImageDraw, ImageFont

    from shared.images import load_image

    tile = Image.new("RGB", (TILE, TILE + CAPTION), "white")
    draw = ImageDraw.Draw(tile)
    if data is not None:
        img = load_image(data)
        img.thumbnail((TILE, TILE))
        tile.paste(img, ((TILE - img.width) // 2, (TILE - img.height) // 2))
    else:
        draw.rectangle([0, 0, TILE - 1, TILE - 1], fill="#ddd")
    number = ImageFont.load_default(size=22)
    box = draw.textbbox((6, 4), str(n), font=number)
    draw.rectangle([0, 0, box[2] + 6, box[3] + 6], fill="black")
    draw.text((6, 4), str(n), fill="yellow", font=number)
    draw.text((4, TILE + 3), note, fill="black", font=ImageFont.load_default(size=12))
    return tile


def _page(tiles: list) -> object:
    from PIL import Image

    cols = min(COLUMNS, len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * TILE, rows * (TILE + CAPTION)), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % cols) * TILE, (i // cols) * (TILE + CAPTION)))
    return sheet


def write_sheet(store, records: list[dict], out: Path) -> list[Path]:
    """Contact sheet page(s) and review.csv for `records`; returns the pages written."""
    out.mkdir(parents=True, exist_ok=True)
    photos = out / "photos"
    photos.mkdir(exist_ok=True)
    tiles, rows = [], []
    for n, record in enumerate(records, start=1):
        receipt = receipt_of(record)
        data = store.photo(record) if record.get("kept") and record.get("blob") else None
        photo = ""
        p_fake = record.get("p_fake")
        note = f"user: {record.get('user_label', '?')} · model: {record.get('verdict', '?')}"
        note += f" {float(p_fake):.2f}" if p_fake is not None else ""
        if data is None:
            note = f"user: {record.get('user_label', '?')} · no photo kept"
        elif not verified(record, data):
            data, note = None, "stored photo does not match: reject"
        else:
            path = photos / f"{n}-{receipt}{suffix(record.get('content_type', ''), data)}"
            path.write_bytes(data)
            photo = path.relative_to(out).as_posix()
        tiles.append(_tile(data, n, note))
        rows.append(
            {
                "n": n,
                "receipt": receipt,
                "created": record.get("created", ""),
                "user_label": record.get("user_label", ""),
                "verdict": record.get("verdict", ""),
                "p_fake": record.get("p_fake", ""),
                "model_version": record.get("model_version", ""),
                "photo": photo,
                "decision": "",
            }
        )
    with (out / "review.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    pages = []
    for start in range(0, len(tiles), PER_PAGE):
        page = len(pages) + 1
        path = out / ("sheet.png" if page == 1 else f"sheet-{page}.png")
        _page(tiles[start : start + PER_PAGE]).save(path)
        pages.append(path)
    return pages


def read_decisions(
    path: Path, records: list[dict]
) -> tuple[list[tuple[dict, tuple[str, str]]], int]:
    """The rows of a filled-in review.csv as (record, (review, reviewer_label)), and how many
    were skipped; FeedbackError naming the line of the first row that is not valid."""
    by_receipt = {receipt_of(r): r for r in records}
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ("receipt", "decision") if c not in (reader.fieldnames or [])]
            if missing:
                raise FeedbackError(f"{path}: no {' or '.join(missing)} column.")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FeedbackError(f"{path}: cannot be read as CSV ({exc}).") from None
    out, skipped = [], 0
    for line, row in enumerate(rows, start=2):
        receipt = (row["receipt"] or "").strip()
        record = by_receipt.get(receipt)
        if record is None:
            raise FeedbackError(f"{path} line {line}: no feedback record has receipt {receipt!r}.")
        action = action_of(row["decision"] or "")
        if action is None or action == "quit":
            raise FeedbackError(
                f"{path} line {line}: decision {row['decision']!r} is not one of accept, "
                "real, fake, unsure, reject, skip (or a, r, f, u, x, s)."
            )
        outcome = decide(record.get("user_label", ""), action)
        if outcome is None:
            skipped += 1
        else:
            out.append((record, outcome))
    return out, skipped
