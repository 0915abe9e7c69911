"""Which storage the feedback commands talk to, and the one-sentence errors they end with."""

from __future__ import annotations

import re

from ..errors import CommandError

RECEIPT = re.compile(r"[0-9a-f]{32}")
# Azure Functions' own setting name (mixed case, as Azure spells it).
CONNECTION_SETTING = "AzureWebJobsStorage"


class FeedbackError(CommandError):
    """Bad input to a feedback command: one sentence naming the thing; the CLI exits 2."""


def app_settings():
    """The app's own settings (shared.settings), so the table, container, retention and timeout
    the commands use are the ones the service writes with, named and defaulted in one place."""
    from shared.settings import Settings

    try:
        return Settings.from_env()
    except ValueError as exc:
        raise FeedbackError(f"a FAKEFACES_* setting is not a number ({exc}).") from None


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
    conn = (connection if connection is not None else app_settings().storage).strip()
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
            conn, table=table, container=container, timeout=app_settings().storage_timeout
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
