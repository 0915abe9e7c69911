"""Fetch an image URL without letting the server be turned against its own network (SSRF).

Every connection, redirects included, is checked at the moment it is opened: the host name is
resolved once, every address it resolves to must be public, and the socket connects to exactly
the address that was checked (no second DNS lookup to rebind).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationParseError,
    NewConnectionError,
    ReadTimeoutError,
)

from .errors import BadRequest, FetchFailed, FetchTimeout, NotAnImage, TooLarge, UrlNotAllowed

MAX_REDIRECTS = 5
USER_AGENT = "fighting-fakes-fairly/0.1 (+image check)"
# Refused although Python's ipaddress calls them global (or does not flag them).
REFUSED = [
    ipaddress.ip_network(n)
    for n in (
        "168.63.129.16/32",  # Azure's platform address (wireserver), reachable from every VM
        "192.0.0.0/24",  # IETF protocol assignments, e.g. 192.0.0.192 (Oracle Cloud metadata)
        "2002::/16",  # 6to4: wraps any IPv4, private ones included
        "fec0::/10",  # site-local (deprecated, still routed inside some networks)
        "64:ff9b:1::/48",  # local-use NAT64
    )
]
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, Teredo, NAT64)."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]  # the client; ipaddress undoes its obfuscation
    if addr in NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if int(addr) >> 32 == 0 and int(addr) > 1:  # IPv4-compatible ::a.b.c.d (deprecated)
        return ipaddress.IPv4Address(int(addr))
    return None


def check_address(ip: str, allow_loopback: bool = False) -> None:
    """Raise UrlNotAllowed unless `ip` is a public unicast address (or loopback, if allowed)."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address):
        inner = embedded_ipv4(addr)
        if inner is not None:
            # A wrapped IPv4 address reaches whatever the IPv4 address reaches: check it, and
            # refuse the wrapper even so (mapped, loopback included, is never needed).
            check_address(str(inner), allow_loopback=False)
            raise UrlNotAllowed(
                f"The URL resolves to an IPv6 address wrapping IPv4 {inner} ({addr})."
            )
    if addr.is_loopback and allow_loopback:
        return
    if any(addr in net for net in REFUSED):
        raise UrlNotAllowed(
            f"The URL resolves to {addr}, a platform or special-purpose address; only public "
            "addresses can be fetched."
        )
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


class Deadline:
    """One fetch's time limit, enforced even on a read that is blocked: at the deadline every
    socket the fetch opened is shut down, which wakes a thread blocked in recv (closing the
    response from another thread does not), and no new connection is opened."""

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def track(self, sock: socket.socket) -> None:
        # A duplicate of the descriptor: TLS wrapping detaches the original socket object,
        # but a shutdown through any descriptor acts on the connection itself.
        dup = sock.dup()
        with self._lock:
            self._socks.append(dup)
            if self.expired:
                _shutdown(dup)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._socks:
                _shutdown(sock)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._socks:
                sock.close()
            self._socks.clear()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the other side
        sock.shutdown(socket.SHUT_RDWR)


def _checked_socket(
    conn: HTTPConnection, allow_loopback: bool, deadline: Deadline
) -> socket.socket:
    if deadline.expired:
        raise ConnectTimeoutError(conn, "The fetch ran out of time before connecting.")
    try:
        infos = socket.getaddrinfo(conn.host, conn.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed(f"The host {conn.host!r} could not be found.") from exc
    for *_, sockaddr in infos:
        check_address(sockaddr[0], allow_loopback)
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    limit = conn.timeout if isinstance(conn.timeout, int | float) else deadline.remaining()
    sock.settimeout(max(0.001, min(limit, deadline.remaining())))
    try:
        sock.connect(sockaddr)
        deadline.track(sock)
    except TimeoutError as exc:
        sock.close()
        raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out.") from exc
    except OSError as exc:
        sock.close()
        raise NewConnectionError(conn, f"Failed to connect to {conn.host}: {exc}") from exc
    return sock


def _session(allow_loopback: bool, deadline: Deadline) -> requests.Session:
    class Http(HTTPConnection):
        def _new_conn(self):
            return _checked_socket(self, allow_loopback, deadline)

    class Https(HTTPSConnection):
        def _new_conn(self):
            return _checked_socket(self, allow_loopback, deadline)

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
    # A compressed body could expand far past the byte cap; ask for it as stored.
    session.headers["Accept-Encoding"] = "identity"
    session.mount("http://", Adapter())
    session.mount("https://", Adapter())
    return session


def check_url(url: str) -> None:
    """Raise UrlNotAllowed for a scheme other than http(s) or no host, BadRequest for a URL
    that cannot be parsed (a bad IPv6 literal or port, a host name no resolver accepts)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (parsing the port is the check)
    except ValueError as exc:
        raise BadRequest(f"The URL is not valid ({exc}).") from exc
    if parts.scheme not in ("http", "https"):
        raise UrlNotAllowed(
            f"Only http and https URLs can be fetched, not {parts.scheme or 'this'}:."
        )
    if not host:
        raise UrlNotAllowed("The URL has no host name.")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise BadRequest("The URL contains spaces or control characters.")
    try:
        # What the resolver will be asked: labels of 1-63 characters, IDNA-encodable.
        host.encode("idna")
    except UnicodeError as exc:
        raise BadRequest(f"The URL's host name is not valid ({exc}).") from exc


def fetch_image(
    url: str,
    max_bytes: int,
    connect_timeout: float = 3.05,
    read_timeout: float = 10.0,
    allow_loopback: bool = False,
) -> bytes:
    """The body of an image URL, streamed and capped; every hop's address checked. The whole
    fetch, redirects and a slow body included, ends within `read_timeout` seconds."""
    if not isinstance(url, str) or not url.strip():
        raise UrlNotAllowed("The URL is empty.")
    url = url.strip()
    check_url(url)
    deadline = Deadline(read_timeout)
    session = _session(allow_loopback, deadline)
    first = True  # an unusable first URL is the client's fault (400), a bad redirect the server's
    # Redirects are followed by hand so each hop's scheme is checked before it is requested.
    try:
        for _ in range(MAX_REDIRECTS + 1):
            _prepare(url, first)
            try:
                resp = session.get(
                    url, stream=True, allow_redirects=False, timeout=(connect_timeout, read_timeout)
                )
            except (UnicodeError, ValueError, LocationParseError) as exc:
                # The URL itself was prepared above, so this is the answer's Location: requests
                # parses it even when not following redirects.
                raise FetchFailed("The image URL redirected to an invalid URL.") from exc
            if not resp.is_redirect:
                break
            location = resp.headers["location"]
            resp.close()
            first = False
            try:
                url = requests.compat.urljoin(url, location)
                check_url(url)
            except (ValueError, BadRequest) as exc:
                raise FetchFailed("The image URL redirected to an invalid URL.") from exc
        else:
            raise FetchFailed(f"The URL redirected more than {MAX_REDIRECTS} times.")
        with resp:
            return _read_image_body(resp, max_bytes, deadline)
    except requests.RequestException as exc:
        # requests reports a read timeout while streaming the body as a ConnectionError.
        if deadline.expired or isinstance(exc, requests.Timeout) or _is_timeout(exc):
            raise FetchTimeout("The image URL did not answer in time.") from exc
        if isinstance(exc, INVALID_URL) and first:
            raise BadRequest(f"The URL is not valid ({type(exc).__name__}).") from exc
        raise FetchFailed(f"The image URL could not be fetched ({type(exc).__name__}).") from exc
    finally:
        session.close()
        deadline.close()


def _prepare(url: str, first: bool) -> None:
    """Raise if requests cannot make a request of `url`: BadRequest for the client's own URL,
    FetchFailed for a redirect's."""
    try:
        requests.Request("GET", url).prepare()
    except (requests.RequestException, UnicodeError, ValueError, LocationParseError) as exc:
        if first:
            raise BadRequest(f"The URL is not valid ({type(exc).__name__}).") from exc
        raise FetchFailed("The image URL redirected to an invalid URL.") from exc


INVALID_URL = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.URLRequired,
)


def _is_timeout(exc: BaseException) -> bool:
    return any(isinstance(a, ReadTimeoutError) for a in exc.args)


def _read_image_body(resp: requests.Response, max_bytes: int, deadline: Deadline) -> bytes:
    """The body, capped in bytes and in time: a server dripping bytes is cut off at the
    deadline, whatever each single wait is."""
    if resp.status_code >= 400:
        raise FetchFailed(f"The image URL answered HTTP {resp.status_code}.")
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and not (ctype.startswith("image/") or ctype == "application/octet-stream"):
        raise NotAnImage(f"The URL returned {ctype}, not an image.")
    declared = resp.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(
            f"The image at the URL is {int(declared) / 2**20:.1f} MB; the limit is "
            f"{max_bytes / 2**20:.0f} MB."
        )
    body = bytearray()
    try:
        # As stored: a Content-Encoding the server sent anyway is not expanded here.
        for chunk in resp.raw.stream(64 * 1024, decode_content=False):
            body += chunk
            if len(body) > max_bytes:
                raise TooLarge(
                    f"The image at the URL is over the {max_bytes / 2**20:.0f} MB limit."
                )
            if deadline.expired:
                break
    except (requests.RequestException, HTTPError, OSError, ValueError) as exc:
        if deadline.expired:
            raise FetchTimeout("The image URL sent its data too slowly.") from exc
        raise FetchFailed("The image URL's connection broke while sending the image.") from exc
    if deadline.expired:
        raise FetchTimeout("The image URL sent its data too slowly.")
    return bytes(body)
