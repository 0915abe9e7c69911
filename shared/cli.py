"""`python -m shared predict`: the serving pipeline over files and folders, one CSV row per face."""

from __future__ import annotations

import base64
import csv
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from .errors import FakeFacesError
from .model import Model
from .pipeline import analyze
from .settings import Settings

COLUMNS = ["path", "face", "x", "y", "w", "h", "p_fake", "label", "error"]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}


def image_paths(paths: list[Path]) -> Iterator[Path]:
    """Files as given; folders walked recursively for image files, in sorted order."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            yield path


class Overlays:
    """Writes each face's Grad-CAM overlay as DIR/<file stem>-face<N>.png, never overwriting
    one written earlier in the same run (two photos may share a name in different folders)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.used: set[str] = set()
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, path: Path, face: int, url: str) -> Path:
        name, n = f"{path.stem}-face{face}", 1
        while name in self.used:
            n += 1
            name = f"{path.stem}-{n}-face{face}"
        self.used.add(name)
        target = self.folder / f"{name}.png"
        target.write_bytes(base64.b64decode(url.split(",", 1)[1]))
        return target


def rows_for(
    path: Path, model: Model, settings: Settings, overlays: Overlays | None = None
) -> list[dict]:
    """The CSV rows of one file: one per face, or one with `error` set."""
    try:
        answer = analyze(path.read_bytes(), model, settings, explain=overlays is not None)
    except FakeFacesError as exc:
        return [{"path": str(path), "error": exc.code}]
    except OSError:
        return [{"path": str(path), "error": "unreadable"}]
    if overlays is not None:
        for i, face in enumerate(answer["faces"]):
            overlays.write(path, i, face["explanation"]["overlay"])
    return [
        {
            "path": str(path),
            "face": i,
            **face["box"],
            "p_fake": face["p_fake"],
            "label": face["label"],
            "error": "",
        }
        for i, face in enumerate(answer["faces"])
    ]


def predict(
    paths: list[Path],
    model_dir: Path | None,
    csv_path: Path | None,
    explain_dir: Path | None = None,
) -> int:
    settings = Settings.from_env()
    model = Model(model_dir or settings.model_dir)
    if explain_dir is not None:
        model.require_explain()
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"error: {missing[0]} does not exist.", file=sys.stderr)
        return 2
    files = list(image_paths(paths))
    overlays = Overlays(explain_dir) if explain_dir is not None else None
    if csv_path:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(csv_path, "w", newline="") if csv_path else sys.stdout  # noqa: SIM115
    try:
        writer = csv.DictWriter(out, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        for path in tqdm(files, desc="predict", unit="img", disable=None, file=sys.stderr):
            writer.writerows(rows_for(path, model, settings, overlays))
    finally:
        if csv_path:
            out.close()
    return 0
