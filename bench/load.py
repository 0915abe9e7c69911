"""Load benchmark: the local host (python -m shared serve) under concurrent uploads of real photos.

For each concurrency (1, 4, 16 by default) it runs for a fixed time on loopback only, then
stops by itself: throughput, latency p50/p95, status counts, the serving process's RSS over
time, and /api/health latency probed alongside (its p95 should stay <= 100 ms). Every 503 must
be `busy` with a Retry-After header; anything else >= 500 counts as an error.

    .venv/bin/python bench/load.py [--seconds 60] [--concurrency 1 4 16] [--model DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import FAIRFACE, LocalHost  # noqa: E402  (the launcher the tests use)

MAX_REQUESTS = 20_000  # per concurrency level, whatever the time: the run is bounded in count too


def photos(limit: int = 12) -> list[bytes]:
    """Real photos as JPEG: scikit-image's astronaut, and FairFace val photos if present."""
    from skimage import data

    out = []
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="JPEG", quality=90)
    out.append(buf.getvalue())
    val = FAIRFACE / "val"
    if val.is_dir():
        out += [p.read_bytes() for p in sorted(val.glob("*.jpg"))[: limit - 1]]
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_level(url: str, pid: int, images: list[bytes], concurrency: int, seconds: float) -> dict:
    stop = time.monotonic() + seconds
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter = Counter()
    problems: list[str] = []
    rss: list[tuple[float, float]] = []
    health: list[float] = []
    sent = [0]

    def worker(n: int) -> None:
        session = requests.Session()
        i = n
        while time.monotonic() < stop:
            with lock:
                if sent[0] >= MAX_REQUESTS:
                    return
                sent[0] += 1
            data = images[i % len(images)]
            i += concurrency
            t = time.perf_counter()
            try:
                resp = session.post(
                    url + "/api/predict",
                    data=data,
                    headers={"Content-Type": "image/jpeg"},
                    timeout=60,
                )
            except requests.RequestException as exc:
                with lock:
                    statuses["connection error"] += 1
                    problems.append(repr(exc))
                continue
            ms = (time.perf_counter() - t) * 1000
            with lock:
                statuses[resp.status_code] += 1
                if resp.status_code in (200, 422):
                    latencies.append(ms)
                if resp.status_code == 503 and not (
                    resp.json()["error"]["code"] == "busy" and resp.headers.get("Retry-After")
                ):
                    problems.append(f"503 without busy/Retry-After: {resp.text[:100]}")
                elif resp.status_code >= 500 and resp.status_code != 503:
                    problems.append(f"{resp.status_code}: {resp.text[:100]}")

    def monitor() -> None:
        session = requests.Session()
        begin = time.monotonic()
        while time.monotonic() < stop:
            rss.append((time.monotonic() - begin, rss_mb(pid)))
            t = time.perf_counter()
            session.get(url + "/api/health", timeout=30)
            health.append((time.perf_counter() - t) * 1000)
            time.sleep(0.2)

    begin = time.monotonic()
    with ThreadPoolExecutor(concurrency + 1) as pool:
        futures = [pool.submit(worker, n) for n in range(concurrency)]
        futures.append(pool.submit(monitor))
        for f in futures:
            f.result()
    wall = time.monotonic() - begin
    done = statuses[200] + statuses[422]
    return {
        "concurrency": concurrency,
        "seconds": wall,
        "throughput": done / wall,
        "p50": pct(latencies, 50),
        "p95": pct(latencies, 95),
        "statuses": dict(statuses),
        "health_p50": pct(health, 50),
        "health_p95": pct(health, 95),
        "rss": rss,
        "problems": problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "default")
    args = parser.parse_args()

    images = photos()
    log = Path(tempfile.mkdtemp(prefix="bench-load-")) / "host.log"
    # The service's defaults, whatever the environment says (loopback only: 127.0.0.1).
    host = LocalHost(
        args.model,
        log,
        FAKEFACES_MAX_BYTES=str(20 * 2**20),
        FAKEFACES_MAX_CONCURRENT="2",
        FAKEFACES_QUEUE_TIMEOUT="10",
    )
    results = []
    try:
        for level in args.concurrency:
            results.append(run_level(host.url, host.proc.pid, images, level, args.seconds))
    finally:
        host.stop()

    print(f"# Load ({os.cpu_count()} CPUs, {len(images)} real photos, {args.seconds:.0f} s each)\n")
    print(
        "| concurrency | answers/s | p50 ms | p95 ms | statuses | health p50 ms | "
        "health p95 ms | RSS min–max MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        mem = [m for _, m in r["rss"]]
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items(), key=str))
        print(
            f"| {r['concurrency']} | {r['throughput']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | "
            f"{statuses} | {r['health_p50']:.1f} | {r['health_p95']:.1f} | "
            f"{min(mem):.0f}–{max(mem):.0f} |"
        )
    print("\nRSS over time (s: MB), every ~10th sample:")
    for r in results:
        samples = r["rss"][:: max(1, len(r["rss"]) // 10)]
        print(f"- c={r['concurrency']}: " + ", ".join(f"{t:.0f}: {m:.0f}" for t, m in samples))
    problems = [p for r in results for p in r["problems"]]
    worst_health = max(r["health_p95"] for r in results)
    print(
        f"\nhealth p95 <= 100 ms: worst {worst_health:.1f} -> "
        f"{'met' if worst_health <= 100 else 'NOT met'}"
    )
    print(f"errors other than 503 busy with Retry-After: {len(problems)}")
    for p in problems[:10]:
        print(f"  {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
