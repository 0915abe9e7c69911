"""Every setting the app reads, from the environment (Azure app settings or local.settings.json)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
        )
