"""Which storage the feedback commands talk to, and the one-sentence errors they end with."""

from __future__ import annotations

import os
import re

DEFAULT_TABLE = "feedback"
DEFAULT_CONTAINER = "feedback-photos"
RECEIPT = re.compile(r"[0-9a-f]{32}")
# Azure Functions' own setting name (mixed case, as Azure spells it).
CONNECTION_SETTING = "AzureWebJobsStorage"


class FeedbackError(Exception):
    """Bad input to a feedback command: one sentence naming the thing; the CLI exits 2."""


def default_table() -> str:
    return os.environ.get("FAKEFACES_FEEDBACK_TABLE") or DEFAULT_TABLE


def default_container() -> str:
    return os.environ.get("FAKEFACES_FEEDBACK_CONTAINER") or DEFAULT_CONTAINER


def default_retention_days() -> int:
    value = os.environ.get("FAKEFACES_FEEDBACK_RETENTION_DAYS") or "365"
    try:
        return int(value)
    except ValueError:
        raise FeedbackError(
            f"FAKEFACES_FEEDBACK_RETENTION_DAYS={value!r} is not a whole number of days."
        ) from None


def storage_timeout() -> float:
    """Seconds per storage call, as the app reads it (FAKEFACES_STORAGE_TIMEOUT, 5)."""
    value = os.environ.get("FAKEFACES_STORAGE_TIMEOUT") or "5"
    try:
        return float(value)
    except ValueError:
        raise FeedbackError(
            f"FAKEFACES_STORAGE_TIMEOUT={value!r} is not a number of seconds."
        ) from None


def where(conn: str) -> str:
    """The account or endpoint a connection string points at, for messages: never its key."""
    if conn.strip().lower() == "usedevelopmentstorage=true":
        return "Azurite (UseDevelopmentStorage=true)"
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    for key in ("TableEndpoint", "BlobEndpoint", "AccountName"):
        if parts.get(key):
            return parts[key]
    return "the storage account of the connection string"


def configured(connection: str | None) -> str:
    """The connection string to use: --connection, else AzureWebJobsStorage, as Azure
    Functions reads it; FeedbackError when neither is set."""
    conn = (
        connection if connection is not None else os.environ.get(CONNECTION_SETTING, "")
    ).strip()
    if not conn:
        raise FeedbackError(
            f"no feedback storage is configured: set {CONNECTION_SETTING} or pass --connection."
        )
    return conn


def unreachable(conn: str) -> FeedbackError:
    return FeedbackError(
        f"the feedback storage at {where(conn)} did not answer (is it running, and is the "
        "connection string right?)."
    )


def open_store(connection: str | None, table: str, container: str):
    """A FeedbackStore (shared.storage) on the configured storage, table and container."""
    conn = configured(connection)
    from shared.errors import FakeFacesError
    from shared.storage import FeedbackStore

    try:
        return FeedbackStore.connect(
            conn, table=table, container=container, timeout=storage_timeout()
        )
    except FakeFacesError:  # StorageUnavailable: down, wrong address, malformed string
        raise unreachable(conn) from None


def receipt_of(record: dict) -> str:
    """A record's receipt: the table's RowKey."""
    return record.get("receipt") or record["RowKey"]


def check_receipt(text: str) -> str:
    receipt = text.strip().lower()
    if not RECEIPT.fullmatch(receipt):
        raise FeedbackError(f"{text!r} is not a receipt (32 hexadecimal characters).")
    return receipt
