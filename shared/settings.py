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


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


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
    # Feedback ("This verdict is wrong"): off unless a storage connection string is set.
    storage: str = ""
    feedback_table: str = "feedback"
    feedback_container: str = "feedback-photos"
    feedback_secret: str = ""
    feedback_per_minute: int = 10
    feedback_token_hours: float = 24.0
    feedback_retention_days: int = 365
    storage_timeout: float = 5.0

    @property
    def feedback_enabled(self) -> bool:
        return bool(self.storage)

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ.get
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
            storage=(env("AzureWebJobsStorage") or "").strip(),
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
