"""The managed identity endpoint App Service and Functions give a worker (IDENTITY_ENDPOINT with
its IDENTITY_HEADER secret), on loopback: azure-identity's real ManagedIdentityCredential asks
it for tokens, as on Azure. Tokens are unsigned JWTs that Azurite's `--oauth basic` checks
(audience, issuer, lifetime); Azure's own would be signed by Entra, which Azurite cannot check.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

TENANT = "00000000-0000-0000-0000-000000000001"


def _b64(data: dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(audience: str, object_id: str, lifetime: int = 3600) -> str:
    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + lifetime,
        "oid": object_id,
        "tid": TENANT,
    }
    return f"{_b64({'alg': 'RS256', 'typ': 'JWT'})}.{_b64(claims)}.{_b64({'sig': 'none'})}"


class IdentityEndpoint:
    """GET /msi/token?api-version=2019-08-01&resource=...&client_id=... with the secret header
    -> a token for `resource` (or for `audience` when a test sets one, to be refused). Every
    request's query is kept in `asked` so a test can see which identity was asked for."""

    def __init__(self):
        self.secret = secrets.token_hex(16)
        self.audience: str | None = None
        self.asked: list[dict[str, str]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                endpoint.asked.append(query)
                if self.headers.get("X-IDENTITY-HEADER") != endpoint.secret:
                    return self._answer(401, {"error": "wrong or missing X-IDENTITY-HEADER"})
                if url.path != "/msi/token" or "resource" not in query:
                    return self._answer(400, {"error": "not a token request"})
                audience = endpoint.audience or query["resource"]
                client = query.get("client_id", "system-assigned")
                token = jwt(audience, object_id=f"oid-of-{client}")
                return self._answer(
                    200,
                    {
                        "access_token": token,
                        "expires_on": str(int(time.time()) + 3600),
                        "resource": query["resource"],
                        "token_type": "Bearer",
                        "client_id": client,
                    },
                )

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/msi/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def env(self) -> dict[str, str]:
        """What App Service sets for a worker's managed identity."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.secret}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
