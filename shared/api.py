"""What the HTTP functions do, free of any web framework: inputs in, (status, JSON) out."""

from __future__ import annotations

import functools
import io
import json
import mimetypes
import platform
import threading
import time
from importlib import metadata

from . import feedback as feedbacklib
from . import telemetry
from .errors import (
    BadRequest,
    FakeFacesError,
    FeedbackUnavailable,
    MethodNotAllowed,
    NotAnImage,
    NotFound,
    TooLarge,
)
from .fetch import fetch_image
from .model import Model
from .pipeline import Gate, Stopwatch, analyze
from .settings import ROOT, Settings

DIST = ROOT / "frontend" / "dist"
# The page loads nothing from elsewhere and runs no inline script or style.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Multipart framing around the file is allowed on top of the image cap.
FORM_OVERHEAD = 64 * 1024
# A JSON body carries one URL; nothing legitimate comes near this.
MAX_JSON_BYTES = 64 * 1024
# Seconds a client told 503 busy should wait before trying again.
RETRY_AFTER_S = 5
# The API routes and their methods, as function_app.py registers them (a test keeps the two
# equal): the catch-all page route also matches these paths, and must answer 405, not the page.
API_METHODS = {
    "api/predict": ("POST",),
    "api/health": ("GET",),
    "api/model-card": ("GET",),
    "api/feedback": ("POST",),
}


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


@functools.cache
def model() -> Model:
    """Loaded on first use and kept for the life of the process."""
    return Model(settings().model_dir)


@functools.cache
def gate() -> Gate:
    """Analyses at once (decode, detect, align, predict: the CPU and memory heavy part)."""
    return Gate(settings().max_concurrent, settings().queue_timeout)


@functools.cache
def fetch_gate() -> Gate:
    """URL downloads at once: apart from the analysis slots, so slow URLs (which mostly wait)
    never make an upload wait, and bounded, so they cannot take every server thread."""
    return Gate(settings().max_fetches, settings().queue_timeout)


def media_type(content_type: str) -> str:
    """`type/subtype` of a Content-Type header, lower case (media types ignore case)."""
    return content_type.split(";")[0].strip().lower()


class TracedStopwatch(Stopwatch):
    """The pipeline's stopwatch, each lap also a child span of the request's span (when
    tracing is on): the stages are timed once, for timings_ms and for the trace alike."""

    def __init__(self):
        super().__init__()
        self._parent = telemetry.current_context()
        self._last_ns = time.time_ns()

    def lap(self, stage: str) -> None:
        super().lap(stage)
        now = time.time_ns()
        telemetry.record_stage(self._parent, stage, self._last_ns, now)
        self._last_ns = now


def predict(
    content_type: str, body: bytes, crops: bool = False, explain: bool = False
) -> tuple[int, dict]:
    """POST /api/predict: a multipart `image` field, a raw image body, or JSON {"url": ...}."""
    with telemetry.span(
        "POST /api/predict", bytes=len(body), crops=crops, explain=explain
    ) as current:
        status, answer = _predict(content_type, body, crops, explain)
        if status == 200:
            telemetry.annotate(
                current, status=status, faces=len(answer["faces"]), verdict=answer["verdict"]
            )
        else:
            telemetry.annotate(current, status=status, error=answer["error"]["code"])
        return status, answer


def _predict(content_type: str, body: bytes, crops: bool, explain: bool) -> tuple[int, dict]:
    try:
        cfg = settings()
        if len(body) > cfg.max_bytes + FORM_OVERHEAD:
            raise TooLarge(
                f"The request is {len(body) / 2**20:.1f} MB; the image limit is "
                f"{cfg.max_bytes / 2**20:.0f} MB."
            )
        kind = media_type(content_type)
        url = None
        if kind == "multipart/form-data":
            data = form_image(content_type, body)
        elif kind == "application/json":
            url = _url_from_json(body)
        elif kind.startswith("image/") or kind == "application/octet-stream":
            data = body
        elif not body:
            raise BadRequest("The request carried no image: send a file, image bytes or a URL.")
        else:
            raise NotAnImage(
                f"Content-Type {kind or 'missing'} is not accepted: send "
                "multipart/form-data, image/* or application/json with a url."
            )
        mdl = model()
        if explain:
            mdl.require_explain()  # before anything is fetched
        watch = None
        if url is not None:
            watch = TracedStopwatch()
            data = fetch_url(url)
            watch.lap("fetch")
        with gate().slot():
            if watch:
                watch.lap("queue")
            else:
                watch = TracedStopwatch()  # an upload's timings start once it has a slot
            preview = url is not None and crops
            return 200, analyze(
                data,
                mdl,
                cfg,
                crops,
                watch,
                preview=preview,
                explain=explain,
                signer=signer() if cfg.feedback_enabled else None,
                source="url" if url is not None else "upload",
            )
    except FakeFacesError as exc:
        return exc.status, exc.to_json()


@functools.cache
def signer() -> feedbacklib.Signer:
    """Signs predict's feedback tokens; random per process unless FAKEFACES_FEEDBACK_SECRET."""
    return feedbacklib.Signer(settings().feedback_secret)


@functools.cache
def limiter() -> feedbacklib.RateLimiter:
    return feedbacklib.RateLimiter(settings().feedback_per_minute)


_store = None
_store_lock = threading.Lock()


def feedback_store():
    """The feedback store, connected on first use. A failed connection is not kept, so the
    next post tries again once storage is back."""
    global _store
    with _store_lock:
        if _store is None:
            from .storage import FeedbackStore  # the SDKs load only when feedback is used

            cfg = settings()
            _store = FeedbackStore.connect(
                cfg.storage or cfg.storage_target,
                cfg.feedback_table,
                cfg.feedback_container,
                cfg.storage_timeout,
            )
        return _store


def fetch_url(url: str) -> bytes:
    """An image URL's bytes through the safe fetcher, in one of the bounded download slots:
    for predict, and again for feedback that keeps a linked photo."""
    cfg = settings()
    with fetch_gate().slot():
        return fetch_image(
            url,
            cfg.max_bytes,
            cfg.fetch_connect_timeout,
            cfg.fetch_read_timeout,
            cfg.allow_loopback_urls,
        )


def feedback(content_type: str, body: bytes, forwarded_for: str = "") -> tuple[int, dict]:
    """POST /api/feedback: a user's answer on one face's verdict (shared.feedback)."""
    with telemetry.span("POST /api/feedback", bytes=len(body)) as current:
        status, answer = _feedback(content_type, body, forwarded_for)
        code = answer.get("error", {}).get("code") if status >= 400 else None
        telemetry.annotate(current, status=status, **({"error": code} if code else {}))
        return status, answer


def _feedback(content_type: str, body: bytes, forwarded_for: str) -> tuple[int, dict]:
    try:
        cfg = settings()
        if not cfg.feedback_enabled:
            raise FeedbackUnavailable(
                f"Feedback is switched off on this server: {cfg.storage_target.problem}."
            )
        spec = model().spec
        ctx = feedbacklib.Context(
            model_name=spec.name,
            model_version=spec.version,
            signer=signer(),
            limiter=limiter(),
            store=feedback_store,
            fetch=fetch_url,
            max_bytes=cfg.max_bytes,
            token_hours=cfg.feedback_token_hours,
            retention_days=cfg.feedback_retention_days,
        )
        client = feedbacklib.client_address(forwarded_for)
        return feedbacklib.receive(content_type, body, client, ctx)
    except FakeFacesError as exc:
        return exc.status, exc.to_json()


def purge_feedback() -> int:
    """The retention promise: records and kept photos older than FAKEFACES_FEEDBACK_RETENTION_DAYS
    are deleted (daily, by function_app's timer). Returns how many records went; 0 when off."""
    cfg = settings()
    if not cfg.feedback_enabled:
        return 0
    return feedback_store().purge(cfg.feedback_retention_days)


def form_image(content_type: str, body: bytes) -> bytes:
    """The `image` file of a multipart/form-data body. Parsed here rather than through
    HttpRequest.files, which hands werkzeug the media type as sent, so `Multipart/Form-Data`
    (media types ignore case) parsed as no form at all."""
    from werkzeug.exceptions import HTTPException
    from werkzeug.formparser import FormDataParser
    from werkzeug.http import parse_options_header

    _, options = parse_options_header(content_type)
    parser = FormDataParser(max_form_memory_size=None, max_content_length=None)
    try:
        _, _, files = parser.parse(io.BytesIO(body), "multipart/form-data", len(body), options)
        upload = files.get("image")
        data = upload.read() if upload is not None else None
    except (HTTPException, ValueError, TypeError, KeyError, IndexError, LookupError) as exc:
        # werkzeug on a malformed body (a bad boundary, broken part headers).
        raise BadRequest("The multipart form could not be parsed.") from exc
    if data is None:
        raise BadRequest("The form has no file field named 'image'.")
    return data


def _url_from_json(body: bytes) -> str:
    if len(body) > MAX_JSON_BYTES:
        raise TooLarge(f"A JSON body carries one URL; this one is {len(body)} bytes.")
    try:
        doc = json.loads(body or b"null")
    except (ValueError, RecursionError) as exc:
        # RecursionError: "[" * 100000 nests deeper than the parser can go.
        raise BadRequest("The JSON body could not be parsed.") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("url"), str):
        raise BadRequest('The JSON body must be {"url": "https://..."}.')
    return doc["url"]


def response_headers(status: int, body: dict) -> dict[str, str]:
    """Headers of a JSON answer: the security headers, no caching, and Retry-After on busy."""
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
    error = body.get("error", {})
    if status == 503 and error.get("code") == "busy":
        headers["Retry-After"] = str(RETRY_AFTER_S)
    if status == 429 and "retry_after" in error:
        headers["Retry-After"] = str(error["retry_after"])
    return headers


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def _versions() -> dict[str, str | None]:
    """Looked up once: importlib.metadata scans sys.path each time, tens of milliseconds of a
    probe that must answer fast while the service is busy."""
    versions = {"python": platform.python_version()}
    for dist in ("ai-edge-litert", "onnxruntime", "dlib-bin", "numpy", "pillow", "azure-functions"):
        versions[dist] = _version(dist)
    return versions


def health() -> tuple[int, dict]:
    """GET /api/health: is the model loaded, which one, and what runs it."""
    versions = dict(_versions())
    cfg = settings()
    limits = {"max_bytes": cfg.max_bytes, "max_pixels": cfg.max_pixels}
    # Whether storage is configured and how the app signs in to it, not whether it answers:
    # a probe must not wait on it.
    feedback_info = {
        "enabled": cfg.feedback_enabled,
        "storage": "connection string" if cfg.storage else cfg.storage_target.mode,
        "retention_days": cfg.feedback_retention_days,
    }
    if not cfg.feedback_enabled:
        feedback_info["off_because"] = cfg.storage_target.problem
    try:
        spec = model().spec
    except FakeFacesError as exc:
        return exc.status, {
            "status": "unavailable",
            **exc.to_json(),
            "limits": limits,
            "feedback": feedback_info,
            "versions": versions,
        }
    info = {
        "name": spec.name,
        "version": spec.version,
        "trained_on": spec.trained_on,
        "threshold": spec.threshold,
        "input": {"size": spec.size, "color": spec.color},
        "explain": model().can_explain,
        "model_card": "/api/model-card" if _card_path().is_file() else None,
        # Written by `training export` since the retraining on diffusion faces; null before.
        "operating_point": _operating_point(spec.extra.get("operating_point")),
        "generators": spec.extra.get("generators"),
        **_views(spec.extra.get("views")),
    }
    return 200, {
        "status": "ok",
        "model": info,
        "limits": limits,
        "feedback": feedback_info,
        "versions": versions,
    }


def _views(views) -> dict:
    """What each view is, in words, how their answers join (two-view models only), and the
    engines taught later by `training adapt`."""
    if not isinstance(views, dict):
        return {"views": None, "adapted": []}
    named = [
        {"name": k, "title": views[k].get("title", k), "detail": views[k].get("detail", "")}
        for k in ("cnn", "clip")
        if isinstance(views.get(k), dict)
    ]
    taught = [
        {k: e.get(k) for k in ("name", "faces", "reals", "added")}
        for e in (views.get("clip") or {}).get("adapted", [])
        if isinstance(e, dict)
    ]
    return {
        "views": named,
        "fusion": (views.get("fusion") or {}).get("rule"),
        "adapted": taught,
    }


def _operating_point(op) -> dict | None:
    """The rule that set the threshold, in words, and its false-alarm target (the per-source
    figures stay on the model card)."""
    if not isinstance(op, dict):
        return None
    return {"rule": op.get("rule"), "false_alarm_target": op.get("false_alarm_target")}


CARD_FILE = "MODEL_CARD.html"
# The card is one self-contained file: its own <style>, images as data: URIs, no script.
CARD_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)


def _card_path():
    return settings().model_dir / CARD_FILE


def model_card() -> tuple[int, dict[str, str], bytes]:
    """GET /api/model-card: the served model's card (HTML written by `training report`)."""
    path = _card_path()
    if not path.is_file():
        err = NotFound(f"The served model has no {CARD_FILE}; `training report` writes it.")
        return _json_error(err)
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-cache",
        "Content-Security-Policy": CARD_CSP,
    }
    return 200, headers, path.read_bytes()


def _json_error(err: FakeFacesError, **headers: str) -> tuple[int, dict[str, str], bytes]:
    out = {"Content-Type": "application/json", "Cache-Control": "no-store", **headers}
    return err.status, out, dumps(err.to_json()).encode()


def static_file(path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """GET /{path}: the built page from frontend/dist; index.html for `/` and unknown routes."""
    path = path.strip("/")
    if path in API_METHODS:
        allow = ", ".join(API_METHODS[path])
        err = MethodNotAllowed(f"/{path} does not accept {method}; it accepts {allow}.")
        return _json_error(err, Allow=allow)
    if path == "api" or path.startswith("api/"):
        return _json_error(NotFound(f"No API route /{path}."))
    root = DIST.resolve()
    try:
        target = (root / path).resolve() if path else root / "index.html"
        if not target.is_relative_to(root) or not target.is_file():
            target = root / "index.html"  # client-side routes fall back to the page
    except (ValueError, OSError):
        # A null byte (ValueError) or a name too long for the file system (OSError) names no
        # file: the page, as for any other unknown route.
        target = root / "index.html"
    if not target.is_file():
        return (
            404,
            {"Content-Type": "text/plain; charset=utf-8"},
            (
                b"The page is not built: run `make serve` (or `cd frontend && npm ci && npm run "
                b"build`). The API is at /api/predict and /api/health."
            ),
        )
    ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "image/svg+xml"):
        ctype += "; charset=utf-8"
    # Vite puts a content hash in every asset name, so assets never change under a URL.
    immutable = target.parent.name == "assets"
    cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
    return 200, {"Content-Type": ctype, "Cache-Control": cache}, target.read_bytes()


def dumps(doc: dict) -> str:
    return json.dumps(doc, separators=(",", ":"))
