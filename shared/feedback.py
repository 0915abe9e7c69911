"""Feedback on a verdict ("This verdict is wrong"): untrusted input, bound to a real answer.

Predict signs, per face, what it answered (a token: the photo's SHA-256, the aligned crop's
perceptual hash, the model and its version, p_fake, the verdict). Feedback must carry such a
token, so it can only be about a photo this service analysed, with the p_fake it gave, by the
model it serves now; the token's signature names the receipt, so one token stores at most one
record. Nothing here trains a model: records wait for a person's review (`training feedback`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import ipaddress
import json
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .errors import (
    BadRequest,
    InvalidToken,
    ModelChanged,
    PhotoMismatch,
    RateLimited,
    TooLarge,
    UnsupportedMediaType,
)
from .records import LABELS, iso_utc

if TYPE_CHECKING:  # the storage SDKs cost ~0.4 s to import: only a feedback post needs them
    from .storage import FeedbackStore

SOURCES = ("upload", "url")
TOKEN_VERSION = 1
# A token is ~300 characters; anything far longer is not one of ours.
MAX_TOKEN = 2048
# Text fields of the form (token, label, keep, url) together.
MAX_FORM_TEXT = 64 * 1024
# Multipart framing around a kept photo, on top of the image cap.
FORM_OVERHEAD = 64 * 1024
# A token from a clock a little ahead of ours is still genuine.
CLOCK_SKEW_S = 300
WINDOW_S = 60.0


# --- Tokens -----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """HMAC-SHA256 tokens: `<payload base64url>.<signature base64url>`. Without a configured
    secret the key is random per process (every instance on Azure must share one: set it)."""

    def __init__(self, secret: str | bytes = ""):
        if isinstance(secret, str):
            secret = secret.encode()
        self._key = secret or secrets.token_bytes(32)

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()

    def sign(self, claims: dict) -> str:
        payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        return f"{payload}.{_b64(self._mac(payload))}"

    def verify(self, token: str, max_age_s: float, now: float | None = None) -> dict:
        """The token's claims; InvalidToken if it is malformed, forged, edited or expired."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 1:
            raise InvalidToken("The feedback token is not one this service issued.")
        payload, sig = token.split(".")
        try:
            given = _unb64(sig)
            claims = json.loads(_unb64(payload))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidToken("The feedback token is not one this service issued.") from exc
        if not hmac.compare_digest(given, self._mac(payload)):
            # An edited p_fake, label or version lands here: the signature covers them all.
            raise InvalidToken("The feedback token's signature does not match its contents.")
        if not _well_formed(claims):
            raise InvalidToken("The feedback token is not one this service issued.")
        now = time.time() if now is None else now
        if claims["iat"] > now + CLOCK_SKEW_S or now - claims["iat"] > max_age_s:
            raise InvalidToken(
                "The feedback token has expired: analyse the photo again to give feedback."
            )
        return claims


def receipt_of(token: str) -> str:
    """32 hex digits from the token's signature: one token, one receipt, so storing a replay
    is an insert conflict in the table."""
    return hashlib.sha256(token.rsplit(".", 1)[-1].encode()).hexdigest()[:32]


def claims(
    sha256: str,
    face: int,
    phash: str,
    model: str,
    version: str,
    p_fake: float,
    label: str,
    source: str,
    iat: int,
) -> dict:
    """What a feedback token vouches for: one face of one analysed photo."""
    return {
        "v": TOKEN_VERSION,
        "sha256": sha256,
        "face": face,
        "phash": phash,
        "model": model,
        "version": version,
        "p_fake": p_fake,
        "label": label,
        "source": source,
        "iat": iat,
    }


def _well_formed(doc: object) -> bool:
    kinds = {
        "v": int,
        "sha256": str,
        "face": int,
        "phash": str,
        "model": str,
        "version": str,
        "p_fake": (int, float),
        "label": str,
        "source": str,
        "iat": int,
    }
    return (
        isinstance(doc, dict)
        and set(doc) == set(kinds)
        and all(isinstance(doc[k], t) and not isinstance(doc[k], bool) for k, t in kinds.items())
        and doc["v"] == TOKEN_VERSION
        and doc["source"] in SOURCES
    )


# --- The aligned crop's perceptual hash -------------------------------------------------------


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    mat = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * math.sqrt(2 / n)
    mat[0] /= math.sqrt(2)
    return mat


DCT32 = _dct_matrix(32)


def phash(image: Image.Image) -> str:
    """64-bit DCT perceptual hash (pHash) as 16 hex digits: the same face crop re-encoded or
    slightly resized differs in a few bits, another face in about half of them. Lets a reviewer
    find the same face among records without keeping its pixels."""
    small = image.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    low = (DCT32 @ pixels @ DCT32.T)[:8, :8]
    bits = (low > np.median(low.flatten()[1:])).flatten()  # the DC term would skew the median
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


# --- Rate limit -------------------------------------------------------------------------------


class RateLimiter:
    """At most `per_minute` posts per client in any 60 s, in this process (on Azure, per
    instance: a scaled-out app lets a client through once per instance)."""

    MAX_CLIENTS = 100_000  # memory bound: idle clients are dropped past this

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def check(self, client: str) -> None:
        """Count one post from `client`; RateLimited (with seconds to wait) past the limit."""
        now = self.clock()
        with self._lock:
            if len(self._seen) > self.MAX_CLIENTS:
                self._forget(now)
            times = self._seen.setdefault(client, deque())
            while times and now - times[0] >= WINDOW_S:
                times.popleft()
            if len(times) >= self.per_minute:
                wait = max(1, math.ceil(WINDOW_S - (now - times[0])))
                raise RateLimited(
                    f"Too much feedback from one address: at most {self.per_minute} a minute. "
                    f"Try again in {wait} s.",
                    wait,
                )
            times.append(now)

    def _forget(self, now: float) -> None:
        for client in [c for c, t in self._seen.items() if not t or now - t[-1] >= WINDOW_S]:
            del self._seen[client]


def client_address(forwarded_for: str, fallback: str = "unknown") -> str:
    """The client's address: the last of X-Forwarded-For, without a port. Azure's front end
    appends the address it saw to whatever the client sent, so only the last entry cannot be
    written by the client (the local host sets the header from the socket). Only counted, never
    stored."""
    last = (forwarded_for or "").split(",")[-1].strip()
    if not last:
        return fallback
    try:
        return str(ipaddress.ip_address(last.strip("[]")))
    except ValueError:
        pass
    host = last.rsplit(":", 1)[0].strip("[]")  # "203.0.113.5:51234", "[2001:db8::1]:443"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return last[:64]


# --- The form ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    token: str
    label: str
    keep: bool
    image: bytes | None
    url: str | None


def parse_form(content_type: str, body: bytes, max_bytes: int) -> Form:
    """The feedback form, validated: BadRequest for anything missing or out of range."""
    from werkzeug.exceptions import HTTPException
    from werkzeug.formparser import FormDataParser
    from werkzeug.http import parse_options_header

    if len(body) > max_bytes + FORM_OVERHEAD:
        raise TooLarge(
            f"The request is {len(body) / 2**20:.1f} MB; the photo limit is "
            f"{max_bytes / 2**20:.0f} MB."
        )
    kind, options = parse_options_header(content_type or "")
    if not body:
        raise BadRequest("The request carried no form: send token, label and keep.")
    kind = kind.lower()
    # A browser's FormData is multipart; a plain form (curl -d, no photo) is accepted too.
    if kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise UnsupportedMediaType(
            f"Content-Type {kind or 'missing'} is not accepted: send multipart/form-data."
        )
    if kind != "multipart/form-data" and len(body) > MAX_FORM_TEXT:
        # werkzeug caps text fields of multipart forms only (max_form_memory_size).
        raise BadRequest("The form's fields are too long for feedback.")
    parser = FormDataParser(max_form_memory_size=MAX_FORM_TEXT, max_content_length=None)
    try:
        _, form, files = parser.parse(io.BytesIO(body), kind, len(body), options)
        upload = files.get("image")
        image = upload.read() if upload is not None else None
    except (HTTPException, ValueError, TypeError, KeyError, IndexError, LookupError) as exc:
        raise BadRequest("The multipart form could not be parsed.") from exc
    token = form.get("token", "")
    if not token:
        raise BadRequest("The form has no 'token': send the face's feedback_token.")
    label = form.get("label", "")
    if label not in LABELS:
        raise BadRequest(f"label must be one of {', '.join(LABELS)}.")
    keep = form.get("keep", "0")
    if keep not in ("0", "1"):
        raise BadRequest("keep must be 1 (keep the photo) or 0.")
    url = form.get("url") or None
    if keep == "1" and not image and not url:
        raise BadRequest("keep=1 needs the photo: the file as 'image', or its 'url'.")
    return Form(token, label, keep == "1", image or None, url)


# --- The POST ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What one feedback post needs from the process: the served model's identity, the signer,
    limits, the store (connected on first use) and the safe fetcher."""

    model_name: str
    model_version: str
    signer: Signer
    limiter: RateLimiter
    store: Callable[[], FeedbackStore]
    fetch: Callable[[str], bytes]
    max_bytes: int
    token_hours: float
    retention_days: int


def receive(content_type: str, body: bytes, client: str, ctx: Context) -> tuple[int, dict]:
    """POST /api/feedback: validate, bind to the token, store. Raises FakeFacesError."""
    ctx.limiter.check(client)  # first: a flood costs as little as possible
    form = parse_form(content_type, body, ctx.max_bytes)
    said = ctx.signer.verify(form.token, ctx.token_hours * 3600)
    if (said["model"], said["version"]) != (ctx.model_name, ctx.model_version):
        raise ModelChanged(
            f"This verdict came from model {said['model']} {said['version']}; the service now "
            f"runs {ctx.model_version}. Analyse the photo again to give feedback."
        )
    photo, content_type_kept = None, ""
    if form.keep:
        photo = form.image if form.image is not None else ctx.fetch(form.url)
        if hashlib.sha256(photo).hexdigest() != said["sha256"]:
            raise PhotoMismatch("The photo sent is not the photo that was analysed.")
        content_type_kept = sniff(photo)
    record = {
        "receipt": receipt_of(form.token),
        "image_sha256": said["sha256"],
        "crop_phash": said["phash"],
        "face": said["face"],
        "model_name": said["model"],
        "model_version": said["version"],
        "p_fake": float(said["p_fake"]),
        "verdict": said["label"],
        "user_label": form.label,
        "source": said["source"],
        "created": iso_utc(),
        "review": "pending",
        "reviewer_label": "",
        "reviewed_at": "",
    }
    ctx.store().save(record, photo, content_type_kept)
    return 201, {
        "status": "stored",
        "receipt": record["receipt"],
        "kept_photo": photo is not None,
        "message": thanks(photo is not None, record["receipt"], ctx.retention_days),
    }


def thanks(kept: bool, receipt: str, days: int) -> str:
    what = (
        "Your answer and the photo are kept"
        if kept
        else "Your answer is kept, with the photo's fingerprint but none of its pixels,"
    )
    return (
        f"Thank you. {what} for up to {days} days for the maintainers to review before any "
        f"training; to have it deleted, quote receipt {receipt}."
    )


def sniff(photo: bytes) -> str:
    """The kept photo's media type from its own bytes (the form's claim is not trusted)."""
    try:
        fmt = Image.open(io.BytesIO(photo)).format
    except Exception:  # noqa: BLE001 (any undecodable header: stored as plain bytes)
        return "application/octet-stream"
    return Image.MIME.get(fmt or "", "application/octet-stream")
