"""What the HTTP functions do, free of any web framework: inputs in, (status, JSON) out."""

from __future__ import annotations

import functools
import json
import mimetypes
import platform
from importlib import metadata

from .errors import BadRequest, FakeFacesError, NotAnImage, NotFound, TooLarge
from .model import Model
from .pipeline import Gate, analyze, analyze_url
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


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


@functools.cache
def model() -> Model:
    """Loaded on first use and kept for the life of the process."""
    return Model(settings().model_dir)


@functools.cache
def gate() -> Gate:
    return Gate(settings().max_concurrent, settings().queue_timeout)


def predict(
    content_type: str,
    body: bytes,
    form_file: bytes | None,
    crops: bool = False,
    explain: bool = False,
) -> tuple[int, dict]:
    """POST /api/predict: a multipart `image` field, a raw image body, or JSON {"url": ...}."""
    try:
        cfg = settings()
        if len(body) > cfg.max_bytes + FORM_OVERHEAD:
            raise TooLarge(
                f"The request is {len(body) / 2**20:.1f} MB; the image limit is "
                f"{cfg.max_bytes / 2**20:.0f} MB."
            )
        kind = content_type.split(";")[0].strip().lower()
        url = None
        if kind == "multipart/form-data":
            if form_file is None:
                raise BadRequest("The form has no file field named 'image'.")
            data = form_file
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
        with gate().slot():
            if url is not None:
                return 200, analyze_url(url, mdl, cfg, crops, explain)
            return 200, analyze(data, mdl, cfg, crops, explain=explain)
    except FakeFacesError as exc:
        return exc.status, exc.to_json()


def _url_from_json(body: bytes) -> str:
    try:
        doc = json.loads(body or b"null")
    except ValueError as exc:
        raise BadRequest("The JSON body could not be parsed.") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("url"), str):
        raise BadRequest('The JSON body must be {"url": "https://..."}.')
    return doc["url"]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def health() -> tuple[int, dict]:
    """GET /api/health: is the model loaded, which one, and what runs it."""
    versions = {"python": platform.python_version()}
    for dist in ("ai-edge-litert", "dlib-bin", "numpy", "pillow", "azure-functions"):
        versions[dist] = _version(dist)
    cfg = settings()
    limits = {"max_bytes": cfg.max_bytes, "max_pixels": cfg.max_pixels}
    try:
        spec = model().spec
    except FakeFacesError as exc:
        return exc.status, {
            "status": "unavailable",
            **exc.to_json(),
            "limits": limits,
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
    }
    return 200, {"status": "ok", "model": info, "limits": limits, "versions": versions}


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
        return 404, {"Content-Type": "application/json"}, dumps(err.to_json()).encode()
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-cache",
        "Content-Security-Policy": CARD_CSP,
    }
    return 200, headers, path.read_bytes()


def static_file(path: str) -> tuple[int, dict[str, str], bytes]:
    """GET /{path}: the built page from frontend/dist; index.html for `/` and unknown routes."""
    path = path.strip("/")
    if path == "api" or path.startswith("api/"):
        body = dumps(NotFound(f"No API route /{path}.").to_json())
        return 404, {"Content-Type": "application/json"}, body.encode()
    root = DIST.resolve()
    target = (root / path).resolve() if path else root / "index.html"
    if not target.is_relative_to(root) or not target.is_file():
        target = root / "index.html"  # client-side routes fall back to the page
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
