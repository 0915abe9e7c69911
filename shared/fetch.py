"""Fetch an image URL without letting the server be turned against its own network (SSRF).

Every connection, redirects included, is checked at the moment it is opened: the host name is
resolved once, every address it resolves to must be public, and the socket connects to exactly
the address that was checked (no second DNS lookup to rebind).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError

from .errors import FetchFailed, FetchTimeout, NotAnImage, TooLarge, UrlNotAllowed

MAX_REDIRECTS = 5
USER_AGENT = "fighting-fakes-fairly/0.1 (+image check)"


def check_address(ip: str, allow_loopback: bool = False) -> None:
    """Raise UrlNotAllowed unless `ip` is a public unicast address (or loopback, if allowed)."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)
    if mapped is not None:
        raise UrlNotAllowed(f"The URL resolves to an IPv4-mapped IPv6 address ({addr}).")
    if addr.is_loopback and allow_loopback:
        return
    if not addr.is_global or addr.is_multicast or addr.is_reserved or addr.is_unspecified:
        kind = next(
            (
                k
                for k in ("loopback", "link_local", "private", "multicast", "reserved")
                if getattr(addr, f"is_{k}")
            ),
            "non-public",
        )
        raise UrlNotAllowed(
            f"The URL resolves to a {kind.replace('_', '-')} address ({addr}); only public "
            "addresses can be fetched."
        )


def _checked_socket(conn: HTTPConnection, allow_loopback: bool) -> socket.socket:
    try:
        infos = socket.getaddrinfo(conn.host, conn.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchFailed(f"The host {conn.host!r} could not be found.") from exc
    for *_, sockaddr in infos:
        check_address(sockaddr[0], allow_loopback)
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    sock.settimeout(conn.timeout if isinstance(conn.timeout, int | float) else None)
    try:
        sock.connect(sockaddr)
    except TimeoutError as exc:
        sock.close()
        raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out.") from exc
    except OSError as exc:
        sock.close()
        raise NewConnectionError(conn, f"Failed to connect to {conn.host}: {exc}") from exc
    return sock


def _session(allow_loopback: bool) -> requests.Session:
    class Http(HTTPConnection):
        def _new_conn(self):
            return _checked_socket(self, allow_loopback)

    class Https(HTTPSConnection):
        def _new_conn(self):
            return _checked_socket(self, allow_loopback)

    class HttpPool(HTTPConnectionPool):
        ConnectionCls = Http

    class HttpsPool(HTTPSConnectionPool):
        ConnectionCls = Https

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": HttpPool, "https": HttpsPool}

    session = requests.Session()
    session.trust_env = False  # a proxy from the environment would bypass the address check
    session.max_redirects = MAX_REDIRECTS
    session.headers["User-Agent"] = USER_AGENT
    session.mount("http://", Adapter())
    session.mount("https://", Adapter())
    return session


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UrlNotAllowed(
            f"Only http and https URLs can be fetched, not {parts.scheme or 'this'}:."
        )
    if not parts.hostname:
        raise UrlNotAllowed("The URL has no host name.")


def fetch_image(
    url: str,
    max_bytes: int,
    connect_timeout: float = 3.05,
    read_timeout: float = 10.0,
    allow_loopback: bool = False,
) -> bytes:
    """The body of an image URL, streamed and capped; every hop's address checked."""
    if not isinstance(url, str) or not url.strip():
        raise UrlNotAllowed("The URL is empty.")
    url = url.strip()
    check_url(url)
    session = _session(allow_loopback)
    # Redirects are followed by hand so each hop's scheme is checked before it is requested.
    try:
        for _ in range(MAX_REDIRECTS + 1):
            resp = session.get(
                url, stream=True, allow_redirects=False, timeout=(connect_timeout, read_timeout)
            )
            if not resp.is_redirect:
                break
            url = requests.compat.urljoin(url, resp.headers["location"])
            resp.close()
            check_url(url)
        else:
            raise FetchFailed(f"The URL redirected more than {MAX_REDIRECTS} times.")
        with resp:
            return _read_image_body(resp, max_bytes, time.monotonic() + read_timeout)
    except requests.RequestException as exc:
        # requests reports a read timeout while streaming the body as a ConnectionError.
        if isinstance(exc, requests.Timeout) or any(
            isinstance(a, ReadTimeoutError) for a in exc.args
        ):
            raise FetchTimeout("The image URL did not answer in time.") from exc
        raise FetchFailed(f"The image URL could not be fetched ({type(exc).__name__}).") from exc
    finally:
        session.close()


def _read_image_body(resp: requests.Response, max_bytes: int, deadline: float) -> bytes:
    """The body, capped in bytes and in time: the read timeout bounds each wait for data and,
    so that a server dripping bytes cannot hold a worker, the whole download too."""
    if resp.status_code >= 400:
        raise FetchFailed(f"The image URL answered HTTP {resp.status_code}.")
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and not (ctype.startswith("image/") or ctype == "application/octet-stream"):
        raise NotAnImage(f"The URL returned {ctype}, not an image.")
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(
            f"The image at the URL is {int(declared) / 2**20:.1f} MB; the limit is "
            f"{max_bytes / 2**20:.0f} MB."
        )
    body = bytearray()
    # A read blocks until a whole chunk or the end arrives; closing the response from a timer
    # is what ends a download still dripping in at the deadline.
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), resp.close)
    watchdog.start()
    try:
        for chunk in resp.iter_content(64 * 1024):
            body += chunk
            if len(body) > max_bytes:
                raise TooLarge(
                    f"The image at the URL is over the {max_bytes / 2**20:.0f} MB limit."
                )
    except (requests.RequestException, OSError, ValueError, AttributeError) as exc:
        if time.monotonic() >= deadline:
            raise FetchTimeout("The image URL sent its data too slowly.") from exc
        raise FetchFailed("The image URL's connection broke while sending the image.") from exc
    finally:
        watchdog.cancel()
    return bytes(body)
