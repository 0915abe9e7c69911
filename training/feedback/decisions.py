"""A reviewer's decision on one feedback record, and the agreement between users and reviewers.

A record's review is "pending" until a person decides: "accepted" (the reviewer's label equals
the user's), "relabelled" (the reviewer gave another label) or "rejected" (unusable: no face,
spam, not a photo). Only accepted or relabelled records labelled real or fake ever train.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.records import LABELS, REVIEWS

# Every state but "pending": a person has decided.
REVIEWED = REVIEWS[1:]
# Decisions by key and by word (the sheet's CSV takes either).
KEYS = {
    "a": "accept",
    "r": "real",
    "f": "fake",
    "u": "unsure",
    "x": "reject",
    "s": "skip",
    "q": "quit",
}
WORDS = {"accept", "real", "fake", "unsure", "reject", "skip"}


def action_of(text: str) -> str | None:
    """'a' or 'accept' -> 'accept'; an empty cell is a skip; None when it means nothing."""
    word = text.strip().lower()
    if not word:
        return "skip"
    word = KEYS.get(word, word)
    return word if word in WORDS | {"quit"} else None


def decide(user_label: str, action: str) -> tuple[str, str] | None:
    """(review, reviewer_label) for `action` on a record the user labelled `user_label`;
    None for skip (and quit): the record stays pending."""
    if action == "accept":
        return "accepted", user_label
    if action in LABELS:
        return ("accepted" if action == user_label else "relabelled"), action
    if action == "reject":
        return "rejected", ""
    return None


def final_label(record: dict) -> str:
    """The label a record trains with: the reviewer's, once accepted or relabelled."""
    if record.get("review") in ("accepted", "relabelled"):
        return record.get("reviewer_label", "")
    return ""


def agreement(records: Iterable[dict]) -> dict[str, dict[str, int]]:
    """Per user label: how many reviewed records, how many rejected, how many the reviewer
    labelled real / fake / unsure, and how many of those agreed with the user."""
    table = {
        u: {"reviewed": 0, "rejected": 0, "agreed": 0, **dict.fromkeys(LABELS, 0)} for u in LABELS
    }
    for r in records:
        row = table.get(r.get("user_label", ""))
        if row is None or r.get("review") not in REVIEWED:
            continue
        row["reviewed"] += 1
        if r["review"] == "rejected":
            row["rejected"] += 1
            continue
        said = r.get("reviewer_label", "")
        if said in LABELS:
            row[said] += 1
        row["agreed"] += said == r["user_label"]
    return table


def agreement_table(records: Iterable[dict]) -> str:
    """agreement() as a small fixed-width table, one line per user label."""
    lines = [
        f"{'user said':<10}{'reviewed':>10}{'rejected':>10}{'→ real':>8}{'→ fake':>8}"
        f"{'→ unsure':>10}  agreed"
    ]
    for label, row in agreement(records).items():
        judged = row["reviewed"] - row["rejected"]
        agreed = f"{row['agreed']} of {judged}"
        if judged:
            agreed += f" ({100 * row['agreed'] / judged:.0f}%)"
        lines.append(
            f"{label:<10}{row['reviewed']:>10}{row['rejected']:>10}{row['real']:>8}"
            f"{row['fake']:>8}{row['unsure']:>10}  {agreed}"
        )
    return "\n".join(lines)


def summary(decided: list[tuple[dict, str]], skipped: int, everything: list[dict]) -> str:
    """What this run decided, then the agreement over every reviewed record in the store."""
    counts = {k: sum(review == k for _, review in decided) for k in REVIEWED}
    pending = sum((r.get("review") or "pending") == "pending" for r in everything)
    reviewed = [r for r in everything if r.get("review") in REVIEWED]
    return (
        f"\nreviewed {len(decided)} now: {counts['accepted']} accepted, "
        f"{counts['relabelled']} relabelled, {counts['rejected']} rejected; "
        f"{skipped} skipped; {pending} still pending.\n"
        f"Agreement between users and reviewers over all {len(reviewed)} reviewed records "
        "(agreed: the reviewer's label is the user's, rejected ones aside):\n"
        + agreement_table(reviewed)
    )
