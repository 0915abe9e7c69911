"""Traces a person can read in Application Insights: one span per analysis, a child span per
stage (decode, detect, landmarks, align, each view, explain), through OpenTelemetry and the
Azure Monitor distro.

Off unless APPLICATIONINSIGHTS_CONNECTION_STRING is set: nothing is configured, imported or
sent, and every helper here is a no-op. With APPLICATIONINSIGHTS_AUTHENTICATION_STRING
("Authorization=AAD;ClientId=...", as infra/ sets it for an Application Insights resource
whose local auth is off) telemetry is sent with the managed identity's token.

Spans carry sizes, counts, timings, the verdict and error codes: never image bytes, hashes of
a photo, URLs, client addresses or feedback receipts. The HTTP client instrumentations are
off for the same reason (they would record the image URLs users send).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from .settings import app_setting

CONNECTION = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
TRACER = "fakefaces"
# Instrumentations the distro would switch on that could record what users send (URLs fetched
# for them) or that this app does not use.
OFF = ("requests", "urllib", "urllib3", "django", "fastapi", "flask", "psycopg2")
# Attribute values are numbers, booleans or short words: a long string is a mistake.
MAX_TEXT = 64

log = logging.getLogger("fakefaces.telemetry")
_tracer = None
_lock = threading.Lock()
_configured = False


def enabled() -> bool:
    return _tracer is not None


def use(provider) -> None:
    """Trace through `provider` (an OpenTelemetry TracerProvider); None switches tracing off.
    setup() calls it with the distro's provider; tests with an in-memory one."""
    global _tracer
    _tracer = provider.get_tracer(TRACER) if provider is not None else None


def credential_for(auth: str):
    """The Entra credential APPLICATIONINSIGHTS_AUTHENTICATION_STRING asks for, or None."""
    parts = dict(p.split("=", 1) for p in auth.split(";") if "=" in p)
    if parts.get("Authorization", "").upper() != "AAD":
        return None
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=parts.get("ClientId") or None)


def setup() -> bool:
    """Configure Azure Monitor once per process when the connection string is set. Returns
    whether telemetry is on. A broken configuration logs and leaves it off: tracing must never
    stop the app from answering."""
    global _configured
    with _lock:
        if _configured:
            return enabled()
        _configured = True
        conn = (app_setting(CONNECTION) or "").strip()
        if not conn:
            return False
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor
            from opentelemetry import trace

            configure_azure_monitor(
                connection_string=conn,
                credential=credential_for(app_setting(AUTHENTICATION) or ""),
                instrumentation_options={name: {"enabled": False} for name in OFF},
                enable_live_metrics=False,
                logger_name="fakefaces",
            )
            use(trace.get_tracer_provider())
        except Exception:  # an SDK or setting problem: serve without traces
            log.exception("Application Insights could not be configured; tracing is off")
            use(None)
        return enabled()


def _clean(attrs: dict) -> dict:
    out = {}
    for key, value in attrs.items():
        short = isinstance(value, str) and len(value) <= MAX_TEXT
        if not (short or isinstance(value, bool | int | float)):
            raise TypeError(f"span attribute {key} must be a number or a short word")
        out[f"fakefaces.{key}"] = value
    return out


@contextlib.contextmanager
def span(name: str, **attrs) -> Iterator[object | None]:
    """A span around a block (the current one's child), or nothing when tracing is off.
    Yields the span, or None, so a caller can add attributes it learns inside."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(name, attributes=_clean(attrs)) as current:
        yield current


def annotate(current, **attrs) -> None:
    """Attributes learnt inside a span (the verdict, an error code); no-op when off."""
    if current is not None:
        current.set_attributes(_clean(attrs))


def current_context():
    """The context to hang stage spans under later (see record_stage); None when off."""
    if _tracer is None:
        return None
    from opentelemetry import context

    return context.get_current()


def record_stage(parent, name: str, start_ns: int, end_ns: int) -> None:
    """A finished stage as a child span of `parent` (from current_context), with its own start
    and end: stages timed once by shared.pipeline's stopwatch are traced from those times."""
    if _tracer is not None and parent is not None:
        _tracer.start_span(name, context=parent, start_time=start_ns).end(end_time=end_ns)
