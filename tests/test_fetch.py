"""The address rules of URL fetching (over HTTP in test_http.py)."""

import pytest

from shared.errors import UrlNotAllowed
from shared.fetch import check_address, check_url


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
    ],
)
def test_non_public_addresses_are_refused(ip):
    with pytest.raises(UrlNotAllowed):
        check_address(ip)


@pytest.mark.parametrize("ip", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(ip):
    check_address(ip)


def test_loopback_setting_allows_loopback_only():
    check_address("127.0.0.1", allow_loopback=True)
    check_address("::1", allow_loopback=True)
    for ip in ("10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1"):
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
