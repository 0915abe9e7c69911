"""Hostile input at scale: a seeded run of hostile requests against the local host with Azurite.

The local host (python -m shared serve, waitress, models/default) and Azurite (feedback's
storage) run inside a network namespace whose only interface is loopback, so nothing a request
makes the server fetch can leave the machine. Requests, 4 at a time, are drawn from families:

- image: byte-mutated JPEG, PNG (8/16-bit, RGBA, palette), WebP, GIF and BMP, raw with their
  own or a lying Content-Type, or as multipart forms, some with broken framing;
- json: malformed, deep and huge JSON, and odd URLs (private, malformed, unreachable);
- feedback: forms built around real feedback tokens from this run (stored in Azurite), with
  tampered tokens, wrong labels, mismatched or mutated photos, odd encodings;
- method and path: wrong methods on every route, odd and over-long paths.

It prints the status mix per family, every 5xx other than 501-504 (none is allowed; 503 busy
and 502 fetch failed are answers), every error from /api/* that is not the JSON error shape
{"error": {"code", "message"}}, whether the server is alive at the end, and its peak RSS
(VmHWM). Exit 1 on any of those. Case i of seed s is the same request on every run, but for
feedback tokens (signed afresh by each host, so a tampered one can fail another way) and the
page's files (what odd paths find under frontend/dist).

    .venv/bin/python bench/fuzz.py [--requests 10000] [--seed 25] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.records import LABELS  # noqa: E402
from tests.azurite import start_azurite  # noqa: E402
from tests.conftest import LocalHost  # noqa: E402
from tests.test_hostile import (  # noqa: E402  (the test suite's mutations and raw client)
    HOSTILE_URLS,
    _multipart,
    _mutate,
    _seeds,
    fuzz_case,
    raw_request,
)

# Set by the re-exec inside the namespace, so the script knows it is there.
INSIDE = "FAKEFACES_FUZZ_NETNS"
# Content types that lie about the bytes they come with.
LIES = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/svg+xml",
    "text/plain",
    "text/html",
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "image/jpeg; charset=utf-8; boundary=x",
    "image/" + "x" * 300,
]
# Client socket timeout: a request that takes longer counts as a hang, not a pass.
TIMEOUT_S = 60
# Feedback's per-client limit, raised so forms reach parsing, token checks and storage
# (every request comes from 127.0.0.1); the limit itself has its own tests.
FEEDBACK_PER_MINUTE = "1000000"
# Photos analysed first for their feedback tokens: each can be stored once.
TOKENS = 60


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def only_loopback() -> list[str]:
    """The network interfaces of this process's namespace (/proc/net/dev is per namespace;
    /sys/class/net shows the namespace /sys was mounted in)."""
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":")[0].strip() for line in lines)


def reexec_in_namespace(argv: list[str]) -> int:
    """This script again, in a new network namespace with only `lo`, brought up."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        print("needs root, unshare and ip for the namespace (or --no-netns)", file=sys.stderr)
        return 2
    script = 'ip link set lo up && exec "$@"'
    command = ["unshare", "--net", "--", "sh", "-c", script, "sh", sys.executable, *argv]
    return subprocess.call(command, env={**os.environ, INSIDE: "1"})


def photo_seeds() -> dict[str, bytes]:
    """The test suite's small seeds (64×48 noise, a 160² face, with the metadata mutations
    like to break), and the astronaut's 512² portrait in every accepted format, so mutated
    photos that still decode go all the way through detection, landmarks and the model."""
    from skimage import data

    seeds = _seeds()
    face = Image.fromarray(data.astronaut())
    for fmt, kw in [("JPEG", {"quality": 90}), ("PNG", {}), ("WEBP", {}), ("GIF", {}), ("BMP", {})]:
        buf = io.BytesIO()
        (face.convert("P") if fmt == "GIF" else face).save(buf, format=fmt, **kw)
        seeds[f"{fmt.lower()}-portrait"] = buf.getvalue()
    return seeds


def lying(rng: random.Random, seeds: dict[str, bytes]) -> tuple[str, str, dict, bytes]:
    """An image (mutated or not) raw with a Content-Type of another kind, or as a form part
    that claims another format."""
    data = seeds[rng.choice(sorted(seeds))]
    if rng.random() < 0.7:
        data = _mutate(rng, data)
    if rng.random() < 0.5:
        return "POST", "/api/predict", {"Content-Type": rng.choice(LIES)}, data
    boundary = "lie"
    filename = rng.choice(["a.png", "a.gif", "a.svg", "../../a", "ä\x00.jpg"])
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
        f'filename="{filename}"\r\n'
        f"Content-Type: {rng.choice(LIES)}\r\n\r\n"
    ).encode("utf-8", "replace")
    body = part + data + f"\r\n--{boundary}--\r\n".encode()
    return (
        "POST",
        "/api/predict",
        {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        body,
    )


def form(fields: dict[str, str], image: bytes | None, boundary: str = "fb") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode(
            "utf-8", "replace"
        )
        for k, v in fields.items()
    ]
    if image is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n".encode()
            + image
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def feedback_case(
    rng: random.Random, tokens: list[tuple[str, bytes]]
) -> tuple[str, str, dict, bytes]:
    """A feedback post around a real token of this run: valid, tampered, or malformed."""
    token, photo = rng.choice(tokens)
    # Mostly well-formed, so most posts get past the form to the token, the photo and storage.
    label = rng.choice([*LABELS * 4, "", "REAL", "real ", "ñ" * 10, "x" * 5000])
    keep = rng.choice(["0"] * 4 + ["1"] * 4 + ["2", "", "yes"])
    shape = rng.randrange(10)
    if shape == 1:  # a token with characters changed or cut
        chars = list(token)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice("AZaz09-_.=~ ")
        token = "".join(chars)[: rng.choice([len(chars), rng.randrange(1, len(chars))])]
    elif shape == 2:  # not one of ours
        token = rng.choice(["", "x", "a.b", "e30.e30", "." * 3000, rng.randbytes(80).hex()])
    image = None
    if keep == "1" or rng.random() < 0.2:
        image = rng.choice([photo, photo, _mutate(rng, photo), b"", rng.randbytes(100)])
    fields = {"token": token, "label": label, "keep": keep}
    if keep == "1" and rng.random() < 0.3:
        fields["url"] = rng.choice(HOSTILE_URLS + ["http://127.0.0.1:9/a.jpg"])
        image = None
    if shape == 3:  # urlencoded, as curl -d sends it
        body = "&".join(f"{k}={v}" for k, v in fields.items()).encode("utf-8", "replace")
        return "POST", "/api/feedback", {"Content-Type": "application/x-www-form-urlencoded"}, body
    if shape == 4:  # the form's bytes, mutated
        ctype, body = _multipart(rng, form(fields, image))
        return "POST", "/api/feedback", {"Content-Type": ctype}, body
    if shape == 5:  # the wrong kind of body
        ctype = rng.choice(["application/json", "text/plain", "image/jpeg", ""])
        body = json.dumps(fields).encode() if rng.random() < 0.5 else (image or b"")
        return "POST", "/api/feedback", {"Content-Type": ctype} if ctype else {}, body
    body = form(fields, image)
    return "POST", "/api/feedback", {"Content-Type": "multipart/form-data; boundary=fb"}, body


def case(
    seed: int, index: int, seeds: dict[str, bytes], tokens: list[tuple[str, bytes]]
) -> tuple[str, str, str, dict, bytes]:
    """(family, method, path, headers, body) of case `index`: the same on every run."""
    rng = random.Random(seed * 7_919 + index)
    family = rng.choice(["suite"] * 6 + ["lying"] * 2 + ["feedback"] * 2)
    if family == "lying":
        return family, *lying(rng, seeds)
    if family == "feedback":
        return family, *feedback_case(rng, tokens)
    # The test suite's generator (image, multipart, json, path, method), seeded from this run.
    method, path, headers, body = fuzz_case(seed, index, seeds)
    ctype = headers.get("Content-Type", "").lower()
    if method != "POST" or not path.startswith("/api/predict"):
        kind = "method/path"
    else:
        kind = "json" if "json" in ctype else "multipart" if "multipart" in ctype else "image"
    return kind, method, path, headers, body


def api_error_shape(status: int, headers: dict, body: bytes, method: str) -> str | None:
    """None when an error answer has the JSON error shape, else what is wrong with it."""
    if not headers.get("content-type", "").startswith("application/json"):
        return f"Content-Type {headers.get('content-type')!r}"
    if method == "HEAD":
        return None
    try:
        err = json.loads(body)["error"]
        if not (isinstance(err["code"], str) and isinstance(err["message"], str)):
            return "code/message not strings"
    except (ValueError, KeyError, TypeError) as exc:
        return f"not the error shape: {type(exc).__name__} {body[:80]!r}"
    return None


def real_tokens(url: str, n: int = TOKENS) -> list[tuple[str, bytes]]:
    """Feedback tokens for real faces of this run, with the photo each was given for: `n`
    photos, as a token is taken once (a second post is 409 already_received)."""
    from skimage import data

    out = []
    for angle in range(n):
        img = Image.fromarray(data.astronaut()).rotate(angle / 4 - n / 8)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        photo = buf.getvalue()
        resp = requests.post(
            url + "/api/predict", files={"image": ("a.jpg", photo, "image/jpeg")}, timeout=60
        )
        resp.raise_for_status()
        out += [(f["feedback_token"], photo) for f in resp.json()["faces"]]
    return out


def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-fuzz-"))
    azurite = start_azurite(work / "azurite")
    host = None
    try:
        host = LocalHost(
            args.model,
            work / "host.log",
            AzureWebJobsStorage=azurite.connection_string,
            FAKEFACES_FEEDBACK_PER_MINUTE=FEEDBACK_PER_MINUTE,
            # The service's defaults, whatever the environment says.
            FAKEFACES_MAX_BYTES=str(20 * 2**20),
            FAKEFACES_MAX_CONCURRENT="2",
            FAKEFACES_QUEUE_TIMEOUT="10",
        )
        pid = host.proc.pid
        start_rss = rss_mb(pid, "VmRSS")
        seeds, tokens = photo_seeds(), real_tokens(host.url)
        statuses: dict[str, Counter] = {}
        bad_5xx: list[str] = []
        not_json: list[str] = []
        failures: list[str] = []
        lock = threading.Lock()
        deadline = time.monotonic() + args.max_seconds

        def one(index: int) -> None:
            if time.monotonic() > deadline:
                return
            family, method, path, headers, body = case(args.seed, index, seeds, tokens)
            where = f"case {index} ({family}): {method} {path[:60]}"
            try:
                status, got, payload = raw_request(host.url, method, path, headers, body)
            except (OSError, ValueError, IndexError) as exc:  # refused, reset, hung, garbled
                with lock:
                    statuses.setdefault(family, Counter())["no answer"] += 1
                    failures.append(f"{where}: {type(exc).__name__}: {exc}")
                return
            problem = None
            if status >= 400 and path.startswith("/api"):
                problem = api_error_shape(status, got, payload, method)
            with lock:
                statuses.setdefault(family, Counter())[status] += 1
                if status >= 500 and status not in (501, 502, 503, 504):
                    bad_5xx.append(f"{where} -> {status} {payload[:160]!r}")
                if problem:
                    not_json.append(f"{where} -> {status}: {problem}")

        begin = time.monotonic()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, range(args.requests)))
        took = time.monotonic() - begin
        try:
            alive = requests.get(host.url + "/api/health", timeout=30).status_code == 200
        except requests.RequestException:
            alive = False
        alive = alive and host.proc.poll() is None
        peak, end_rss = rss_mb(pid, "VmHWM"), rss_mb(pid, "VmRSS")
    finally:
        if host is not None:
            host.stop()
        azurite.stop()
    sent = sum(sum(c.values()) for c in statuses.values())
    total = sum(statuses.values(), Counter())
    print(
        f"# Fuzz: seed {args.seed}, {sent} of {args.requests} requests in {took:.0f} s "
        f"({os.cpu_count()} CPUs, {args.concurrency} at a time, interfaces: "
        f"{', '.join(only_loopback())})\n"
    )
    print("| family | requests | statuses |\n|---|---|---|")
    for family, counts in sorted([*statuses.items(), ("all", total)], key=lambda x: x[0] == "all"):
        mix = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str))
        print(f"| {family} | {sum(counts.values())} | {mix} |")
    checks = [
        (f"5xx other than 501-504: {len(bad_5xx)} (500: {total[500]})", not bad_5xx),
        (f"API errors not in the JSON error shape: {len(not_json)}", not not_json),
        (f"requests without an answer: {len(failures)}", not failures),
        ("server alive at the end (health 200)" if alive else "server NOT alive", alive),
        (
            f"serving RSS: {start_rss:.0f} MB at start, {end_rss:.0f} MB at end, "
            f"peak {peak:.0f} MB (bound {args.max_peak:.0f})",
            peak <= args.max_peak,
        ),
        (f"all {args.requests} requests sent", sent == args.requests),
    ]
    print()
    for text, ok in checks:
        print(f"- {text}: {'ok' if ok else 'FLAGGED'}")
    for line in (bad_5xx + not_json + failures)[:20]:
        print(f"  {line}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(ok for _, ok in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="It runs itself again under `unshare --net` (as root) unless --no-netns.",
    )
    parser.add_argument(
        "--requests", type=int, default=10_000, help="hostile requests to send (default 10000)"
    )
    parser.add_argument(
        "--seed", type=int, default=25, help="case i of a seed is the same request every run"
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="requests at a time (default %(default)s)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=1800, help="stop sending after this (default 1800)"
    )
    parser.add_argument(
        "--max-peak", type=float, default=500, help="peak RSS bound, MB (default 500)"
    )
    parser.add_argument(
        "--model", type=Path, default=ROOT / "models" / "default", help="(default models/default)"
    )
    parser.add_argument(
        "--no-netns", action="store_true", help="run where it is, without a namespace"
    )
    args = parser.parse_args()
    if not args.no_netns and os.environ.get(INSIDE) != "1":
        return reexec_in_namespace(sys.argv)
    if not args.no_netns and only_loopback() != ["lo"]:
        print(f"namespace sees {only_loopback()}, not only lo", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
