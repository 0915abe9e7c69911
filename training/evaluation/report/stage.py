"""Staging the inputs into OUT: the fairness audit, the recipe comparison, the FairFace summary
and the leave-source-out runs are copied beside the card, so that `report MODEL_DIR` re-renders
the same card from the model folder alone."""

from __future__ import annotations

import shutil
from pathlib import Path

from .read import ReportError

FAIRNESS_FILES = ["fairness.csv", "fairness_groups.csv", "fairness.md", "fairness.png"]
FAIRNESS_FILES += ["fairness.json", "sd_race.csv", "sd_race.md", "sd_race.png"]
COMPARISON_FILES = ["comparison.csv", "comparison.md", "comparison.png"]
# An `evaluate` output of the same recipe trained without a source, scored on that source.
LEAVE_OUT_FILES = [
    "metrics.csv",
    "metrics.md",
    "evaluation.json",
    "reliability.png",
    "views.json",
]
LEAVE_OUT_DIR = "leave-source-out"
# An `evaluate` output of an earlier model (the one before, the paper's VGG-10) on the same splits.
BESIDE_FILES = ["metrics.csv", "evaluation.json"]
BESIDE_DIR = "beside"
FAIRFACE_FILES = ["metrics.csv", "no_face_by_group.csv"]


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def stage_folder(given: Path | None, kept: Path, dest: Path, files: list[str], flag: str):
    """Copy a table folder into dest; a given folder must hold files[0]. Returns dest or None."""
    src = given if given is not None else kept
    if given is not None and not (given / files[0]).is_file():
        raise ReportError(f"{flag} {given}: no {files[0]} there.")
    if not (src / files[0]).is_file():
        return None
    if not _same(src, dest):
        if dest.exists():
            shutil.rmtree(dest)  # a stale file from an older input must not survive
        dest.mkdir(parents=True)
        for name in files:
            if (src / name).is_file():
                shutil.copy2(src / name, dest / name)
    return dest


def leave_out_runs(root: Path) -> dict[str, Path]:
    """The `evaluate` outputs kept in root, by name: every subfolder holding metrics.csv; in an
    older model folder (no such subfolder), root itself when it holds metrics.csv (name "")."""
    if not root.is_dir():
        return {}
    runs = {d.name: d for d in sorted(root.iterdir()) if (d / "metrics.csv").is_file()}
    if not runs and (root / "metrics.csv").is_file():
        runs[""] = root
    return runs


def stage_leave_out(given: list[Path], kept: Path, dest: Path) -> list[Path]:
    """The leave-source-out runs, staged as `stage_runs` does."""
    return stage_runs(given, kept, dest, LEAVE_OUT_FILES, "--leave-source-out")


def stage_runs(
    given: list[Path], kept: Path, dest: Path, files: list[str], flag: str
) -> list[Path]:
    """Copy `evaluate` outputs into dest/<name> (a given folder's name); returns the folders.

    Given folders make up the whole set: whatever else dest holds (an older run, the files of
    the old single-folder layout) is removed. A given folder that already is dest/<name> stays
    as it is. Without given folders, the runs kept in `kept` are used, copied when dest differs.
    Every file is read before anything is removed, so a source inside dest is never lost."""
    if given:
        runs: dict[str, Path] = {}
        for folder in given:
            if not (folder / "metrics.csv").is_file():
                raise ReportError(f"{flag} {folder}: no metrics.csv there.")
            other = runs.setdefault(folder.name, folder)
            if not _same(other, folder):
                raise ReportError(
                    f"{flag} {other} and {folder}: both would be kept as "
                    f"{dest.name}/{folder.name}; give folders of different names."
                )
    else:
        runs = leave_out_runs(kept)
        if not runs or _same(kept, dest):
            return [dest / name for name in sorted(runs)]
    in_place = {name for name, src in runs.items() if _same(src, dest / name)}
    copies = {
        name: {f: (src / f).read_bytes() for f in files if (src / f).is_file()}
        for name, src in runs.items()
        if name not in in_place
    }
    if dest.is_dir():
        for entry in dest.iterdir():  # stale runs and old-layout files must not survive
            if entry.name not in in_place:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    for name, files in copies.items():
        (dest / name).mkdir(parents=True, exist_ok=True)
        for f, data in files.items():
            (dest / name / f).write_bytes(data)
    return [dest / name for name in sorted(runs)]
