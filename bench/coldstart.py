"""Cold start and memory of the deployment package, as a fresh worker meets its first request.

Each run is a new process of a clean Python 3.11 (a venv with nothing installed) that sees only
the zip unpacked into an empty folder (PYTHONPATH = .python_packages/lib/site-packages, as the
Functions worker sets it): import function_app, load every model (the CNN, the CLIP encoder,
YuNet, dlib's 68-point landmarks), answer the astronaut. No .pyc is written or read, as on
Azure, where the package is mounted read-only and azd ships no __pycache__. Medians over
--runs; memory is the process's resident set after the answer and its peak (VmRSS, VmHWM).

Not measured here: Azure fetching and mounting the package and starting its host, and a cold
disk (files are in this machine's page cache after the first run; the first run is shown).

    make package && .venv/bin/python bench/coldstart.py [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZIP = ROOT / "build" / "fighting-fakes-fairly.zip"
SITE = Path(".python_packages/lib/site-packages")

CHILD = r"""
import json, sys, time
start = time.perf_counter()
import function_app  # noqa: F401  (registers the routes, as the worker's indexing does)
from shared import api
from shared.faces import _models
imported = time.perf_counter()
api.model()
_models()
loaded = time.perf_counter()
photo = open(sys.argv[1], "rb").read()
status, answer = api.predict("image/jpeg", photo)
answered = time.perf_counter()
assert status == 200 and len(answer["faces"]) == 1, answer
mem = {}
for line in open("/proc/self/status"):
    key, _, value = line.partition(":")
    if key in ("VmRSS", "VmHWM"):
        mem[key] = int(value.split()[0]) / 1024
print(json.dumps({
    "import_s": imported - start,
    "load_s": loaded - imported,
    "first_answer_s": answered - loaded,
    "rss_mb": mem["VmRSS"],
    "peak_mb": mem["VmHWM"],
    "verdict": answer["verdict"],
}))
"""


def clean_python(folder: Path) -> Path:
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(folder)], check=True)
    return folder / "bin" / "python"


def astronaut(path: Path) -> Path:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="JPEG", quality=92)
    path.write_bytes(buf.getvalue())
    return path


def one_run(python: Path, photo: Path, package: Path) -> dict:
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(package / SITE),
        "PYTHONDONTWRITEBYTECODE": "1",
        "MALLOC_ARENA_MAX": "2",
    }
    began = time.perf_counter()
    done = subprocess.run(
        [str(python), "-c", CHILD, str(photo)],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"the package did not answer:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = wall  # interpreter start to exit, the whole cold start
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    if not ZIP.is_file():
        print(f"error: {ZIP} is not built: run `make package`", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "wwwroot"
        with zipfile.ZipFile(ZIP) as zf:
            zf.extractall(package)
        python = clean_python(Path(tmp) / "venv")
        photo = astronaut(Path(tmp) / "astronaut.jpg")
        runs = [one_run(python, photo, package) for _ in range(args.runs)]
    keys = ("process_s", "import_s", "load_s", "first_answer_s", "rss_mb", "peak_mb")
    print(f"package cold start, {args.runs} fresh processes (first run, then the median):")
    for key in keys:
        values = [r[key] for r in runs]
        unit = "MB" if key.endswith("_mb") else "s"
        median = statistics.median(values)
        print(f"  {key:15s} first {values[0]:7.2f} {unit}   median {median:7.2f} {unit}")
    print(f"  verdict on the astronaut: {runs[0]['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
