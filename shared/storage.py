"""Feedback records in Azure Table Storage and kept photos in Azure Blob Storage.

The official SDKs against the account in `AzureWebJobsStorage` (Azurite locally and in tests):
by its connection string, or, where the account's shared keys are off (infra/), by Microsoft
Entra tokens from the app's managed identity (shared.settings.StorageTarget).
One entity per feedback: PartitionKey the UTC month (retention deletes by date), RowKey the
receipt. A kept photo is the blob named by the receipt. The blob is written first and the entity
second, so a record never points at a photo that is not there; if the entity cannot be written
the blob is deleted again (and `purge` sweeps any blob a dead storage left behind).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings, LinearRetry

from .errors import AlreadyStored, StorageUnavailable
from .records import LABELS, REVIEWS, iso_utc
from .settings import StorageTarget

__all__ = [
    "AlreadyStored",
    "FeedbackStore",
    "StorageUnavailable",
    "connection_string",
    "DEVELOPMENT_STORAGE",
]

log = logging.getLogger("fakefaces.storage")

# Azurite's well-known account (published in Microsoft's docs; not a secret), on its default
# ports: what `UseDevelopmentStorage=true` means to every Azure SDK and to Functions itself.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEVELOPMENT_STORAGE = (
    f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
    f"BlobEndpoint=http://127.0.0.1:10000/{DEV_ACCOUNT};"
    f"QueueEndpoint=http://127.0.0.1:10001/{DEV_ACCOUNT};"
    f"TableEndpoint=http://127.0.0.1:10002/{DEV_ACCOUNT};"
)
COLUMNS = (
    "image_sha256",
    "crop_phash",
    "face",
    "model_name",
    "model_version",
    "p_fake",
    "verdict",
    "user_label",
    "kept",
    "blob",
    "content_type",
    "source",
    "created",
    "review",
    "reviewer_label",
    "reviewed_at",
)
# A blob with no record this old was left by a save that storage broke off; newer ones may
# belong to a save still in flight.
ORPHAN_AGE = timedelta(hours=1)
# A blob without a record younger than this may be a save of the same token still running.
IN_FLIGHT = timedelta(minutes=1)


def connection_string(value: str) -> str:
    """`value` as the SDKs take it: `UseDevelopmentStorage=true` spelled out as Azurite's
    account (the table SDK does not understand the shorthand)."""
    parts = dict(p.split("=", 1) for p in value.strip().split(";") if "=" in p)
    if parts.get("UseDevelopmentStorage", "").lower() == "true":
        return DEVELOPMENT_STORAGE
    return value.strip()


def token_credential(target: StorageTarget):
    """The Entra credential `target` names: the managed identity (a user-assigned one by its
    client id) on Azure, or, with no `credential` setting, the developer's own sign-in (Azure
    CLI, azd, VS Code...) as the Functions host uses locally. Loaded only in identity mode."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = target.client_id or None
    if target.credential.lower() == "managedidentity":
        # One retry, as for storage itself: the next feedback post tries again anyway.
        return ManagedIdentityCredential(client_id=client_id, retry_total=1)
    return DefaultAzureCredential(managed_identity_client_id=client_id)


def month_of(created: str) -> str:
    return created[:7]


class FeedbackStore:
    """Feedback records and kept photos. Every storage failure is StorageUnavailable (503)."""

    def __init__(self, table: TableClient, container: ContainerClient):
        self.table = table
        self.container = container

    @classmethod
    def connect(
        cls,
        target: str | StorageTarget,
        table: str = "feedback",
        container: str = "feedback-photos",
        timeout: float = 5.0,
    ) -> FeedbackStore:
        """Clients for `target` (a connection string, or a StorageTarget by key or by
        identity), the table and container created if missing. Each call waits at most
        `timeout` s and is retried once after a short pause, so a storage that is down answers
        in seconds (the SDKs' defaults wait minutes)."""
        if isinstance(target, str):
            target = StorageTarget(connection_string=target)
        if target.problem:
            raise _unavailable("connect", ValueError(target.problem))
        common = {"connection_timeout": timeout, "read_timeout": timeout}
        table_opts = {
            **common,
            "retry_total": 1,
            "retry_backoff_factor": 0.2,
            "retry_backoff_max": 1,
        }
        # ExponentialRetry waits at least 1 s more than its initial backoff.
        blob_opts = {
            **common,
            "retry_policy": LinearRetry(backoff=0.3, retry_total=1, random_jitter_range=0.1),
        }
        try:
            if target.connection_string:
                conn = connection_string(target.connection_string)
                tables = TableServiceClient.from_connection_string(conn, **table_opts)
                blobs = BlobServiceClient.from_connection_string(conn, **blob_opts)
            else:
                credential = token_credential(target)
                tables = TableServiceClient(target.table_uri, credential=credential, **table_opts)
                blobs = BlobServiceClient(target.blob_uri, credential=credential, **blob_opts)
            tables.create_table_if_not_exists(table)
            box = blobs.get_container_client(container)
            with contextlib.suppress(ResourceExistsError):
                box.create_container()
            return cls(tables.get_table_client(table), box)
        except (AzureError, ValueError) as exc:
            # ValueError: a connection string or service URI the SDKs cannot parse.
            raise _unavailable("connect", exc) from exc

    def save(self, record: dict, photo: bytes | None = None, content_type: str = "") -> None:
        """Store `record` (its `receipt` names it), and `photo` as its blob when given.
        AlreadyStored if the receipt exists; StorageUnavailable if storage fails, in which case
        neither the record nor the photo is left behind (as far as storage lets us delete)."""
        receipt = record["receipt"]
        entity = {
            **{k: record[k] for k in COLUMNS if k in record},
            "PartitionKey": month_of(record["created"]),
            "RowKey": receipt,
            "kept": photo is not None,
            "blob": receipt if photo is not None else "",
            "content_type": content_type if photo is not None else "",
        }
        if photo is not None:
            self._put_photo(receipt, photo, content_type)
        try:
            self.table.create_entity(entity)
        except ResourceExistsError as exc:
            if photo is not None:
                self._drop_blob(receipt)  # ours: _put_photo refused to overwrite an older one
            raise AlreadyStored("This feedback was already received; thank you.") from exc
        except AzureError as exc:
            if photo is not None:
                self._drop_blob(receipt)
            raise _unavailable("save", exc) from exc

    def _put_photo(self, receipt: str, photo: bytes, content_type: str) -> None:
        settings = ContentSettings(content_type=content_type or "application/octet-stream")
        try:
            try:
                self.container.upload_blob(
                    receipt, photo, overwrite=False, content_settings=settings
                )
            except ResourceExistsError:
                if self._entity(receipt) is not None or not self._stale(receipt):
                    # Stored already, or a save of the same token in flight right now.
                    raise AlreadyStored("This feedback was already received; thank you.") from None
                # A blob without a record, left by a save that storage broke off. Ours now.
                self.container.upload_blob(
                    receipt, photo, overwrite=True, content_settings=settings
                )
        except AzureError as exc:
            raise _unavailable("upload", exc) from exc

    def _stale(self, receipt: str) -> bool:
        props = self.container.get_blob_client(receipt).get_blob_properties()
        return props.last_modified < datetime.now(UTC) - IN_FLIGHT

    def _drop_blob(self, receipt: str) -> None:
        try:
            self.container.delete_blob(receipt)
        except ResourceNotFoundError:
            pass
        except AzureError:
            # Storage is down: purge() removes the orphan once it is back.
            log.warning("could not delete the blob of an unsaved record %s", receipt)

    def _entity(self, receipt: str) -> dict | None:
        found = list(
            self.table.query_entities("RowKey eq @r", parameters={"r": receipt}, results_per_page=1)
        )
        return found[0] if found else None

    def records(self, review: str | None = None) -> list[dict]:
        """Every record (or those whose review is `review`), oldest first."""
        try:
            if review is None:
                found = list(self.table.list_entities())
            else:
                found = list(self.table.query_entities("review eq @r", parameters={"r": review}))
        except AzureError as exc:
            raise _unavailable("list", exc) from exc
        return sorted((_record(e) for e in found), key=lambda r: (r["created"], r["receipt"]))

    def photo(self, record: dict) -> bytes | None:
        """The kept photo's bytes, or None when none was kept (or it is gone)."""
        if not record.get("blob"):
            return None
        try:
            return self.container.download_blob(record["blob"]).readall()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _unavailable("download", exc) from exc

    def set_review(self, record: dict, review: str, reviewer_label: str) -> None:
        """A maintainer's decision on `record`: accepted, relabelled or rejected (or pending)."""
        if review not in REVIEWS:
            raise ValueError(f"review must be one of {REVIEWS}, not {review!r}")
        if reviewer_label not in ("", *LABELS):
            raise ValueError(
                f"reviewer_label must be one of {LABELS} or '', not {reviewer_label!r}"
            )
        patch = {
            "PartitionKey": month_of(record["created"]),
            "RowKey": record["receipt"],
            "review": review,
            "reviewer_label": reviewer_label,
            "reviewed_at": iso_utc() if review != "pending" else "",
        }
        try:
            self.table.update_entity(patch, mode=UpdateMode.MERGE)
        except AzureError as exc:
            raise _unavailable("review", exc) from exc

    def delete(self, receipt: str) -> bool:
        """Delete a record and its photo (a user's request). False if there was neither."""
        try:
            entity = self._entity(receipt)
            gone = False
            try:
                self.container.delete_blob(receipt)
                gone = True
            except ResourceNotFoundError:
                pass
            if entity is not None:
                self.table.delete_entity(entity["PartitionKey"], entity["RowKey"])
                gone = True
            return gone
        except AzureError as exc:
            raise _unavailable("delete", exc) from exc

    def purge(self, older_than_days: int) -> int:
        """Delete records (and their photos) created more than `older_than_days` ago, and blobs
        no record points to that a broken-off save left. Returns how many records went."""
        cutoff_iso = iso_utc(datetime.now(UTC) - timedelta(days=older_than_days))
        try:
            old = list(self.table.query_entities("created lt @c", parameters={"c": cutoff_iso}))
            for entity in old:
                if entity.get("blob"):
                    with contextlib.suppress(ResourceNotFoundError):
                        self.container.delete_blob(entity["blob"])
                self.table.delete_entity(entity["PartitionKey"], entity["RowKey"])
            self._sweep_orphans()
        except AzureError as exc:
            raise _unavailable("purge", exc) from exc
        return len(old)

    def _sweep_orphans(self) -> None:
        recorded = {e["RowKey"] for e in self.table.list_entities(select=["RowKey"])}
        limit = datetime.now(UTC) - ORPHAN_AGE
        for blob in self.container.list_blobs():
            if blob.name not in recorded and blob.last_modified < limit:
                self.container.delete_blob(blob.name)


def _record(entity: dict) -> dict:
    out = {k: entity.get(k) for k in COLUMNS}
    out["receipt"] = entity["RowKey"]
    for key in ("blob", "content_type", "reviewer_label", "reviewed_at"):
        out[key] = out[key] or ""
    out["p_fake"] = float(out["p_fake"]) if out["p_fake"] is not None else None
    out["face"] = int(out["face"]) if out["face"] is not None else None
    out["kept"] = bool(out["kept"])
    return out


def _unavailable(what: str, exc: BaseException) -> StorageUnavailable:
    log.warning("feedback storage failed (%s): %s: %s", what, type(exc).__name__, exc)
    return StorageUnavailable(
        "The feedback could not be saved: storage did not answer. Please try again later."
    )
