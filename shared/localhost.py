"""Run the Azure function app on a real local HTTP server (waitress), without Core Tools.

The route table is read from the app's own registered functions and host.json's routePrefix,
so routes are written once, in function_app.py, and `func start` serves the same ones.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import azure.functions as func
from azure.functions.decorators.http import HttpTrigger

from .api import SECURITY_HEADERS

# Azure's own cap on a request body.
MAX_BODY = 100 * 1024 * 1024
# Answered by threads of their own, so a health probe never queues behind predictions.
FAST_PATHS = frozenset({"/api/health"})
FAST_THREADS = 2
log = logging.getLogger("fakefaces.localhost")
# Headers of every response the local host makes itself, as the app's own JSON errors have.
ERROR_HEADERS = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    *SECURITY_HEADERS.items(),
]


@dataclass
class Route:
    name: str
    pattern: re.Pattern
    methods: frozenset[str]
    handler: Callable[[func.HttpRequest], func.HttpResponse]
    literal: int  # specificity: literal segments count first, as the Functions host ranks


def _compile(template: str) -> tuple[re.Pattern, int]:
    parts, literal = [], 0
    for seg in template.strip("/").split("/") if template.strip("/") else []:
        m = re.fullmatch(r"\{(\*?)(\w+)(?::[^}?]*)?(\??)\}", seg)
        if not m:
            parts.append(re.escape(seg))
            literal += 1
        elif m.group(1):
            parts.append(f"(?P<{m.group(2)}>.*)")
        else:
            parts.append(f"(?P<{m.group(2)}>[^/]{'*' if m.group(3) else '+'})")
    regex = "/".join(parts)
    # A trailing catch-all also matches the bare prefix ("/" for "{*path}").
    regex = regex.replace("/(?P<", "(?:/|$)(?P<") if regex.endswith(".*)") else regex
    return re.compile(regex), literal


@functools.cache
def indexed(app: func.FunctionApp) -> list:
    """The app's functions, as the Functions host indexes them. Cached: this azure-functions
    version refuses a second get_functions() on one app (it sees every name as a duplicate)."""
    return app.get_functions()


def routes(app: func.FunctionApp, prefix: str = "api") -> list[Route]:
    """Every HTTP function of `app`, most specific first."""
    table = []
    for fn in indexed(app):
        trigger = fn.get_trigger()
        if not isinstance(trigger, HttpTrigger):
            continue
        template = "/".join(
            p for p in (prefix.strip("/"), trigger.route or fn.get_function_name()) if p
        )
        pattern, literal = _compile(template)
        methods = frozenset(str(getattr(m, "value", m)).upper() for m in trigger.methods or [])
        table.append(
            Route(
                fn.get_function_name(),
                pattern,
                methods or frozenset(("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")),
                fn.get_user_function(),
                literal,
            )
        )
    return sorted(table, key=lambda r: r.literal, reverse=True)


def route_prefix(host_json: Path) -> str:
    try:
        doc = json.loads(host_json.read_text())
    except (OSError, ValueError):
        return "api"
    return doc.get("extensions", {}).get("http", {}).get("routePrefix", "api")


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def _json(status: str, code: str, message: str, start_response, extra=()) -> list[bytes]:
    body = error_body(code, message)
    start_response(status, [*ERROR_HEADERS, *extra, ("Content-Length", str(len(body)))])
    return [body]


def wsgi_app(app: func.FunctionApp, prefix: str = "api"):
    """A WSGI application that dispatches to the function app's handlers."""
    table = routes(app, prefix)

    def application(environ, start_response):
        try:
            return dispatch(environ, start_response)
        except Exception:  # a bug: answer as the Functions host would, but in JSON
            log.exception("unhandled error serving %s", environ.get("PATH_INFO"))
            return _json(
                "500 Internal Server Error",
                "internal",
                "The server failed to handle this request.",
                start_response,
            )

    def dispatch(environ, start_response):
        path = environ.get("PATH_INFO", "/").strip("/")
        method = environ["REQUEST_METHOD"].upper()
        matches = [(r, m) for r in table if (m := r.pattern.fullmatch(path))]
        if not matches:
            return _json("404 Not Found", "not_found", f"No route for /{path}.", start_response)
        allowed = [(r, m) for r, m in matches if method in r.methods]
        if not allowed:
            # The methods of the most specific route that matched are the resource's.
            allow = ", ".join(sorted(matches[0][0].methods))
            return _json(
                "405 Method Not Allowed",
                "method_not_allowed",
                f"/{path} does not accept {method}; it accepts {allow}.",
                start_response,
                [("Allow", allow)],
            )
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0:
            return _json(
                "400 Bad Request", "bad_request", "Content-Length is not valid.", start_response
            )
        if length > MAX_BODY:
            return _json(
                "413 Payload Too Large",
                "too_large",
                "The request body is too large.",
                start_response,
            )
        route, match = allowed[0]
        headers = {
            k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        # The socket's address, as Azure's front end passes the client's: never what the
        # client wrote itself (feedback's rate limit counts per address).
        headers["x-forwarded-for"] = environ.get("REMOTE_ADDR", "")
        host = headers.get("host", "localhost")
        query = environ.get("QUERY_STRING", "")
        req = func.HttpRequest(
            method=method,
            url=f"http://{host}/{path}" + (f"?{query}" if query else ""),
            headers=headers,
            params=dict(parse_qsl(query)),
            route_params={k: v for k, v in match.groupdict().items() if v is not None},
            body=environ["wsgi.input"].read(length) if length else b"",
        )
        resp = route.handler(req)
        body = resp.get_body() or b""
        out = [(k, v) for k, v in resp.headers.items() if k.lower() != "content-length"]
        if not any(k.lower() == "content-type" for k, _ in out):
            # As the Functions host does: the response's mimetype becomes its Content-Type.
            out.append(("Content-Type", f"{resp.mimetype}; charset={resp.charset}"))
        out.append(("Content-Length", str(len(body))))
        status = resp.status_code
        start_response(f"{status} {_reason(status)}", out)
        return [body] if method != "HEAD" else []

    return application


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _waitress_parts():
    """waitress's error task and channel, made to answer in JSON with the security headers,
    and a dispatcher that gives FAST_PATHS threads of their own."""
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask, ThreadedTaskDispatcher

    class JsonErrorTask(ErrorTask):
        """What waitress answers itself (a malformed request, a body over its cap, an
        exception that escaped the app), as JSON like every other error."""

        def execute(self):
            err = self.request.error
            body = error_body(
                "internal" if err.code >= 500 else "bad_request",
                f"{err.reason}: {err.body}" if err.body else err.reason,
            )
            self.status = f"{err.code} {err.reason}"
            self.response_headers.extend(ERROR_HEADERS)
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class Channel(HTTPChannel):
        error_task_class = JsonErrorTask

    class Dispatcher:
        """Two thread pools: FAST_THREADS for FAST_PATHS, `threads` for the rest."""

        def __init__(self, threads: int):
            self.main, self.fast = ThreadedTaskDispatcher(), ThreadedTaskDispatcher()
            self.main.set_thread_count(threads)
            self.fast.set_thread_count(FAST_THREADS)

        def add_task(self, channel):
            # waitress queues a channel once per complete request; its first request is next.
            request = channel.requests[0] if getattr(channel, "requests", None) else None
            fast = request is not None and not request.error and request.path in FAST_PATHS
            (self.fast if fast else self.main).add_task(channel)

        def set_thread_count(self, count: int) -> None:
            self.main.set_thread_count(count)

        def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
            fast = self.fast.shutdown(cancel_pending, timeout)
            return self.main.shutdown(cancel_pending, timeout) and fast

    return Channel, Dispatcher


def make_server(app: func.FunctionApp, host: str, port: int, prefix: str, threads: int = 8):
    """A waitress server for `app` (not yet running): `.run()` serves until interrupted."""
    from waitress.server import BaseWSGIServer, create_server

    channel, dispatcher = _waitress_parts()
    sockets: dict = {}
    server = create_server(
        wsgi_app(app, prefix),
        map=sockets,
        _dispatcher=dispatcher(threads),
        host=host,
        port=port,
        max_request_body_size=MAX_BODY,
        ident="fakefaces",
    )
    for listener in set(sockets.values()):
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = channel
    return server


def serve(app: func.FunctionApp, host: str, port: int, prefix: str, threads: int = 8) -> None:
    logging.basicConfig()
    server = make_server(app, host, port, prefix, threads)
    server.print_listen("Listening on http://{}:{}")
    server.run()
