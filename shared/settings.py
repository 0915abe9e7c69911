"""Every setting the app reads, from the environment (Azure app settings or local.settings.json)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Bytes of decoded pixels one image may hold at once (its decode and the copies its conversion
# needs; shared.images.decode_cost): 7000×7000 16-bit gray (49 MB, decoded to 8 bits) fits,
# 7000×7000 RGBA (392 MB with Pillow's premultiplied copy) does not. With MAX_CONCURRENT
# analyses, a process holds about its models plus MAX_CONCURRENT × this.
DECODE_BUDGET = 100 * 2**20

# The storage connection Azure Functions itself reads: a connection string (Azurite locally), or
# the identity-based form Azure writes when the account's shared keys are off (infra/main.bicep).
STORAGE = "AzureWebJobsStorage"
STORAGE_BLOB_URI = "AzureWebJobsStorage__blobServiceUri"
STORAGE_TABLE_URI = "AzureWebJobsStorage__tableServiceUri"
STORAGE_ACCOUNT = "AzureWebJobsStorage__accountName"
STORAGE_CREDENTIAL = "AzureWebJobsStorage__credential"
STORAGE_CLIENT_ID = "AzureWebJobsStorage__clientId"
# Every app setting the app reads. infra/main.bicep sets each FAKEFACES_ one and the identity
# form of storage; a test reads the template against this list, so renaming a setting here
# fails until the deployment follows.
FAKEFACES_SETTINGS = (
    "FAKEFACES_MODEL_DIR",
    "FAKEFACES_MAX_BYTES",
    "FAKEFACES_MAX_PIXELS",
    "FAKEFACES_ALLOW_LOOPBACK_URLS",
    "FAKEFACES_FETCH_CONNECT_TIMEOUT",
    "FAKEFACES_FETCH_READ_TIMEOUT",
    "FAKEFACES_MAX_CONCURRENT",
    "FAKEFACES_QUEUE_TIMEOUT",
    "FAKEFACES_MAX_DECODE_BYTES",
    "FAKEFACES_MAX_FACES",
    "FAKEFACES_MAX_FETCHES",
    "FAKEFACES_FEEDBACK_TABLE",
    "FAKEFACES_FEEDBACK_CONTAINER",
    "FAKEFACES_FEEDBACK_SECRET",
    "FAKEFACES_FEEDBACK_PER_MINUTE",
    "FAKEFACES_FEEDBACK_TOKEN_HOURS",
    "FAKEFACES_FEEDBACK_RETENTION_DAYS",
    "FAKEFACES_STORAGE_TIMEOUT",
)
STORAGE_IDENTITY_SETTINGS = (
    STORAGE_BLOB_URI,
    STORAGE_TABLE_URI,
    STORAGE_CREDENTIAL,
    STORAGE_CLIENT_ID,
)
# Telemetry (shared.telemetry): off unless the connection string is set.
TELEMETRY_SETTINGS = (
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
)
APP_SETTINGS = (
    *FAKEFACES_SETTINGS,
    STORAGE,
    STORAGE_ACCOUNT,
    *STORAGE_IDENTITY_SETTINGS,
    *TELEMETRY_SETTINGS,
)


def app_setting(name: str, default=None):
    """An app setting by name; only names in APP_SETTINGS may be read (see there why)."""
    if name not in APP_SETTINGS:
        raise KeyError(f"{name} is not in shared.settings.APP_SETTINGS")
    return os.environ.get(name, default)


def _flag(name: str) -> bool:
    return (app_setting(name) or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class StorageTarget:
    """Where feedback is stored and how the app proves who it is: a connection string (with
    its account key; Azurite, local), or service URIs and a Microsoft Entra token
    (`credential` "managedidentity" on Azure, with `client_id` naming a user-assigned identity;
    unset: the developer's own sign-in, as the Functions host does locally)."""

    connection_string: str = ""
    blob_uri: str = ""
    table_uri: str = ""
    credential: str = ""
    client_id: str = ""

    @property
    def mode(self) -> str:
        """How feedback reaches storage: connection string, managed identity, developer
        identity, or off."""
        if self.connection_string:
            return "connection string"
        if self.problem:
            return "off"
        return "managed identity" if self.credential else "developer identity"

    @property
    def problem(self) -> str:
        """Why feedback is off, in words; "" when it is on."""
        if self.connection_string:
            return ""
        if not (self.blob_uri or self.table_uri):
            return f"no storage account is configured ({STORAGE} is not set)"
        if not self.table_uri:
            # The Functions host needs only blob (and queue) URIs; feedback's records need tables.
            return f"identity-based storage needs {STORAGE_TABLE_URI} as well for feedback records"
        if not self.blob_uri:
            return f"identity-based storage needs {STORAGE_BLOB_URI} as well for kept photos"
        if self.credential and self.credential.lower() != "managedidentity":
            return f"{STORAGE_CREDENTIAL} must be managedidentity or unset, not {self.credential!r}"
        return ""

    @classmethod
    def from_env(cls) -> StorageTarget:
        conn = (app_setting(STORAGE) or "").strip()
        if conn:
            return cls(connection_string=conn)
        account = (app_setting(STORAGE_ACCOUNT) or "").strip()
        # accountName alone stands for the public cloud's endpoints, as the Functions host reads it.
        blob = (app_setting(STORAGE_BLOB_URI) or "").strip() or (
            f"https://{account}.blob.core.windows.net" if account else ""
        )
        table = (app_setting(STORAGE_TABLE_URI) or "").strip() or (
            f"https://{account}.table.core.windows.net" if account else ""
        )
        return cls(
            blob_uri=blob,
            table_uri=table,
            credential=(app_setting(STORAGE_CREDENTIAL) or "").strip(),
            client_id=(app_setting(STORAGE_CLIENT_ID) or "").strip(),
        )


@dataclass(frozen=True)
class Settings:
    model_dir: Path
    max_bytes: int
    max_pixels: int
    allow_loopback_urls: bool
    fetch_connect_timeout: float
    fetch_read_timeout: float
    max_concurrent: int
    queue_timeout: float
    max_decode_bytes: int = DECODE_BUDGET
    max_faces: int = 10
    max_fetches: int = 2
    # Feedback ("This verdict is wrong"): off unless a storage account is configured, by a
    # connection string (`storage`) or by identity (`storage_target`).
    storage: str = ""
    storage_target: StorageTarget = StorageTarget()
    feedback_table: str = "feedback"
    feedback_container: str = "feedback-photos"
    feedback_secret: str = ""
    feedback_per_minute: int = 10
    feedback_token_hours: float = 24.0
    feedback_retention_days: int = 365
    storage_timeout: float = 5.0

    @property
    def feedback_enabled(self) -> bool:
        return bool(self.storage) or not self.storage_target.problem

    @classmethod
    def from_env(cls) -> Settings:
        env = app_setting
        target = StorageTarget.from_env()
        return cls(
            model_dir=Path(env("FAKEFACES_MODEL_DIR") or ROOT / "models" / "default"),
            max_bytes=int(env("FAKEFACES_MAX_BYTES", 20 * 1024 * 1024)),
            max_pixels=int(env("FAKEFACES_MAX_PIXELS", 50_000_000)),
            allow_loopback_urls=_flag("FAKEFACES_ALLOW_LOOPBACK_URLS"),
            fetch_connect_timeout=float(env("FAKEFACES_FETCH_CONNECT_TIMEOUT", 3.05)),
            fetch_read_timeout=float(env("FAKEFACES_FETCH_READ_TIMEOUT", 10)),
            max_concurrent=int(env("FAKEFACES_MAX_CONCURRENT", 2)),
            queue_timeout=float(env("FAKEFACES_QUEUE_TIMEOUT", 10)),
            max_decode_bytes=int(env("FAKEFACES_MAX_DECODE_BYTES", DECODE_BUDGET)),
            # The largest faces of a crowd photo are analysed; each face costs time and bytes.
            max_faces=max(1, int(env("FAKEFACES_MAX_FACES", 10))),
            # URL downloads at once per process, apart from the analysis slots.
            max_fetches=max(1, int(env("FAKEFACES_MAX_FETCHES", 2))),
            # The name Azure Functions itself reads its storage account from.
            storage=target.connection_string,
            storage_target=target,
            feedback_table=env("FAKEFACES_FEEDBACK_TABLE") or "feedback",
            feedback_container=env("FAKEFACES_FEEDBACK_CONTAINER") or "feedback-photos",
            feedback_secret=env("FAKEFACES_FEEDBACK_SECRET") or "",
            feedback_per_minute=max(1, int(env("FAKEFACES_FEEDBACK_PER_MINUTE") or 10)),
            feedback_token_hours=float(env("FAKEFACES_FEEDBACK_TOKEN_HOURS") or 24),
            feedback_retention_days=max(1, int(env("FAKEFACES_FEEDBACK_RETENTION_DAYS") or 365)),
            # Per storage call: a storage account that stops answering costs a request seconds,
            # not the SDK's default minute.
            storage_timeout=float(env("FAKEFACES_STORAGE_TIMEOUT") or 5),
        )
