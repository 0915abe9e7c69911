"""Reading the card's inputs and writing their numbers: CSV and JSON readers that name the file
they cannot use, the number formats of the card's cells, and its table and figure entries."""

from __future__ import annotations

import base64
import csv
import json
import math
from pathlib import Path

from ...errors import CommandError


class ReportError(CommandError):
    """An input that cannot be used as given; the message names the file."""


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
