"""The address rules of URL fetching (over HTTP in test_http.py)."""

import socket
import threading
import time

import pytest

from shared.errors import BadRequest, FetchFailed, FetchTimeout, UrlNotAllowed
from shared.fetch import check_address, check_url, embedded_ipv4, fetch_image


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:8.8.8.8",
        "ff02::1",
        "::",
        "168.63.129.16",  # Azure's platform address
        "192.0.0.192",  # Oracle Cloud's metadata address (192.0.0.0/24)
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2002:808:808::1",  # 6to4 of a public address: 6to4 is refused as a whole
        "fec0::1",  # site-local
        "::a00:1",  # IPv4-compatible 10.0.0.1
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::1",  # local-use NAT64
    ],
)
def test_non_public_addresses_are_refused(ip):
    with pytest.raises(UrlNotAllowed):
        check_address(ip)


@pytest.mark.parametrize("ip", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(ip):
    check_address(ip)


@pytest.mark.parametrize(
    "ip, inner",
    [
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("::a00:1", "10.0.0.1"),
        ("2002:a00:1::1", "10.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1"),
        ("64:ff9b::a00:1", "10.0.0.1"),
        ("2606:4700:4700::1111", None),
        ("::1", None),
    ],
)
def test_embedded_ipv4_is_found(ip, inner):
    import ipaddress

    found = embedded_ipv4(ipaddress.IPv6Address(ip))
    assert (str(found) if found else None) == inner


def test_loopback_setting_allows_loopback_only():
    check_address("127.0.0.1", allow_loopback=True)
    check_address("::1", allow_loopback=True)
    for ip in ("10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "::7f00:1", "2002:7f00:1::"):
        with pytest.raises(UrlNotAllowed):
            check_address(ip, allow_loopback=True)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.jpg",
        "gopher://x/",
        "data:image/png;base64,AAAA",
        "//x/a.jpg",
        "http:///a.jpg",
    ],
)
def test_only_http_and_https_with_a_host(url):
    with pytest.raises(UrlNotAllowed):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",  # regression: urlsplit's ValueError was a 500
        "http://" + "a" * 64 + ".example/x.jpg",  # regression: getaddrinfo's UnicodeError
        "http://a..b/x.jpg",
        "http://example.com:99999/x.jpg",
        "http://example.com:port/x.jpg",
        "http://exa mple.com/x.jpg",
        "http://example.com/\x00.jpg",
    ],
)
def test_invalid_urls_are_the_clients_fault(url):
    with pytest.raises(BadRequest):
        fetch_image(url, 1000)


class RawServer:
    """A loopback server that answers every connection with `script`: (bytes, pause) pairs,
    sent in order, so a test controls exactly how slowly each byte arrives."""

    def __init__(self, script: list[tuple[bytes, float]]):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/x.jpg"
        self.script = script
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            conn.recv(65536)
            try:
                for data, pause in self.script:
                    if self.stop.wait(pause):
                        return
                    conn.sendall(data)
            except OSError:
                pass  # the client gave up, as it should

    def close(self):
        self.stop.set()
        self.sock.close()


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"


@pytest.mark.parametrize(
    "script",
    [
        # the body, one byte every 0.1 s for 30 s: each wait is short, the whole is not
        [(HEAD, 0)] + [(b"\xff", 0.1)] * 300,
        # the status line and headers themselves dripping
        [(bytes([c]), 0.1) for c in HEAD * 10],
        # headers, then silence far longer than the deadline
        [(HEAD, 0), (b"\xff", 30)],
    ],
    ids=["drip-body", "drip-headers", "stall"],
)
def test_the_deadline_cuts_off_a_slow_server(script):
    """Regression: a server sending one byte a second held fetch_image(read_timeout=2) for
    20 s; the deadline must end the whole fetch, however the bytes trickle."""
    server = RawServer(script)
    try:
        start = time.monotonic()
        with pytest.raises(FetchTimeout):
            fetch_image(server.url, 10**6, read_timeout=1.0, allow_loopback=True)
        assert time.monotonic() - start < 1.8
    finally:
        server.close()


@pytest.mark.parametrize(
    "location", [b"http://[::1", b"http://\xff\xfe/x.jpg", b"http://" + b"a" * 70 + b"/"]
)
def test_a_malformed_redirect_is_the_servers_fault(location):
    """Regression: a Location of `http://[::1` or with non-UTF-8 bytes raised a 500."""
    reply = b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
    server = RawServer([(reply, 0)])
    try:
        with pytest.raises((FetchFailed, UrlNotAllowed)):
            fetch_image(server.url, 10**6, read_timeout=2.0, allow_loopback=True)
    finally:
        server.close()


def test_a_complete_body_within_the_deadline():
    body = b"\xff\xd8" + b"x" * 5000
    head = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 5002\r\n\r\n"
    server = RawServer([(head, 0), (body[:2000], 0.05), (body[2000:], 0.05)])
    try:
        assert fetch_image(server.url, 10**6, read_timeout=2.0, allow_loopback=True) == body
    finally:
        server.close()
