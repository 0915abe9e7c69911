"""What a feedback record holds, for the service that writes it and the commands that review it:
the labels a person may give, the review states, and how its times are written."""

from __future__ import annotations

from datetime import UTC, datetime

LABELS = ("real", "fake", "unsure")
REVIEWS = ("pending", "accepted", "relabelled", "rejected")


def iso_utc(when: datetime | None = None) -> str:
    """UTC to the second in one fixed format, so stored times sort and filter as strings."""
    return (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
