"""Run the Azure function app on a real local HTTP server (waitress), without Core Tools.

The route table is read from the app's own registered functions and host.json's routePrefix,
so routes are written once, in function_app.py, and `func start` serves the same ones.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import azure.functions as func
from azure.functions.decorators.http import HttpTrigger

# Azure's own cap on a request body.
MAX_BODY = 100 * 1024 * 1024


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


def _json(status: str, code: str, message: str, start_response) -> list[bytes]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def wsgi_app(app: func.FunctionApp, prefix: str = "api"):
    """A WSGI application that dispatches to the function app's handlers."""
    table = routes(app, prefix)

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "/").strip("/")
        method = environ["REQUEST_METHOD"].upper()
        matches = [(r, m) for r in table if (m := r.pattern.fullmatch(path))]
        if not matches:
            return _json("404 Not Found", "not_found", f"No route for /{path}.", start_response)
        allowed = [(r, m) for r, m in matches if method in r.methods]
        if not allowed:
            return _json(
                "405 Method Not Allowed",
                "method_not_allowed",
                f"/{path} does not accept {method}.",
                start_response,
            )
        length = int(environ.get("CONTENT_LENGTH") or 0)
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


def serve(app: func.FunctionApp, host: str, port: int, prefix: str, threads: int = 4) -> None:
    import waitress

    waitress.serve(
        wsgi_app(app, prefix),
        host=host,
        port=port,
        threads=threads,
        max_request_body_size=MAX_BODY,
        ident="fakefaces",
    )
