"""`feedback review`: walk through pending feedback in the terminal, one record at a time.

Each record's facts are printed and its kept photo written to a private temporary folder (its
path printed, to open in any viewer); the folder is removed when the review ends, so no copy
of a user's photo outlives it. Keys are read line by line from stdin, so a script can drive it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from .connect import receipt_of
from .decisions import KEYS, decide
from .photos import suffix, verified

HELP = "a accept the user's label, r real, f fake, u unsure, x reject, s skip, q quit"


def describe(record: dict, index: int, total: int) -> str:
    """The facts a reviewer needs, one line each."""
    p_fake = record.get("p_fake")
    score = f"{float(p_fake):.3f}" if p_fake not in (None, "") else "?"
    return "\n".join(
        [
            f"[{index}/{total}] receipt {receipt_of(record)} ({record.get('created', '?')})",
            f"  user says:  {record.get('user_label', '?')}",
            f"  model said: {record.get('verdict', '?')} (p_fake {score}) — "
            f"{record.get('model_name', '?')} {record.get('model_version', '')}".rstrip(),
            f"  {_which_face(record.get('face'))} of a photo from {record.get('source', '?')}"
            f" (sha256 {str(record.get('image_sha256', ''))[:16]}…)",
        ]
    )


def _which_face(face: int | None) -> str:
    if face in (0, None):
        return "the largest face"
    # Serving numbers faces largest first; prepare aligns only the largest.
    return f"face {face} (counting from 0, largest first: `pull` leaves it out)"


def save_photo(store, record: dict, folder: Path) -> str:
    """Where the kept photo was written, or why there is none."""
    if not record.get("kept") or not record.get("blob"):
        return "no photo kept (the user did not tick the box)"
    data = store.photo(record)
    if data is None:
        return "the kept photo is missing from storage"
    if not verified(record, data):
        return "the stored photo's SHA-256 is not the analysed photo's: reject it"
    path = folder / f"{receipt_of(record)}{suffix(record.get('content_type', ''), data)}"
    path.write_bytes(data)
    return str(path)


def ask_action(ask: Callable[[str], str], say: Callable[[str], None]) -> str:
    """Ask until a known key is given; the end of input means quit."""
    while True:
        try:
            answer = ask("decision [a/r/f/u/x/s/q, ? for help]: ")
        except EOFError:
            say("\n  end of input: stopping here.")
            return "quit"
        key = answer.strip().lower()
        if key in KEYS:
            return KEYS[key]
        say(f"  keys: {HELP}")


def walk(
    store,
    records: list[dict],
    ask: Callable[[str], str],
    say: Callable[[str], None],
) -> tuple[list[tuple[dict, str]], int]:
    """Review `records` in order: ([(record, review) decided], how many skipped)."""
    decided: list[tuple[dict, str]] = []
    skipped = 0
    say(f"{len(records)} pending feedback record(s). Keys: {HELP}.")
    with tempfile.TemporaryDirectory(prefix="feedback-review-") as tmp:
        for i, record in enumerate(records, start=1):
            say(describe(record, i, len(records)))
            say(f"  photo: {save_photo(store, record, Path(tmp))}")
            action = ask_action(ask, say)
            if action == "quit":
                skipped += len(records) - i + 1
                break
            outcome = decide(record.get("user_label", ""), action)
            if outcome is None:
                skipped += 1
                continue
            store.set_review(record, *outcome)
            decided.append((record, outcome[0]))
            label = f" as {outcome[1]}" if outcome[1] else ""
            say(f"  → {outcome[0]}{label}")
    return decided, skipped
