"""Kept photos: their file suffix, and their bytes checked against the record's SHA-256."""

from __future__ import annotations

import hashlib
import io

SUFFIXES = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
}
FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}


def suffix(content_type: str, data: bytes) -> str:
    """The stored content type's suffix, else the one Pillow recognises in the bytes."""
    known = SUFFIXES.get(content_type.split(";")[0].strip().lower())
    if known:
        return known
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return FORMATS.get(img.format or "", ".bin")
    except OSError:
        return ".bin"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verified(record: dict, data: bytes | None) -> bool:
    """The photo is there and is the one the service analysed."""
    return data is not None and sha256(data) == record.get("image_sha256", "")
