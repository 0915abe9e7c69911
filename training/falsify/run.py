"""`python -m training falsify`: demographically labelled fakes from a labelled real set.

The paper (§Methods) autoencoded FairFace faces through pixel2style2pixel into StyleGAN fakes
that keep each person's age, gender and race labels, so the detector's TPR and AOD can be
measured per group. Each real face is aligned with `shared/`'s FFHQ recipe (what pSp was trained
on), encoded, and written under --out with the same relative path; `pairs.csv` ties each fake to
its original and labels. Runs resume: finished files are skipped, and every failure is listed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import CommandError
from ..fairness.labels import MANIFEST, PAIRS_COLUMNS
from .encoder import Encoder, check_output
from .loader import load_encoder

FAILURE_COLUMNS = ["real_path", "status", "detail"]
OK = "ok"
# Outcomes a resumed run keeps; any other status (e.g. a line cut short by a crash) is redone.
FAILED = {"missing", "unreadable", "not_an_image", "too_large", "no_face", "encoder_error"}


class FalsifyError(CommandError, ValueError):
    """Bad input or a run that cannot continue; one sentence naming the file."""


@dataclass
class Item:
    real_path: str  # relative to the data root, e.g. val/12.jpg
    age: str
    gender: str
    race: str


@dataclass
class Summary:
    total: int
    skipped: int  # already done by an earlier run
    statuses: Counter  # this run's results
    out: Path

    def failures(self) -> int:
        return sum(v for k, v in self.statuses.items() if k != OK)


def read_items(data: Path, label_csvs: list[Path], split: str | None) -> list[Item]:
    items: list[Item] = []
    seen: set[str] = set()
    for path in label_csvs:
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                need = {"file", "age", "gender", "race"}
                if not need <= set(reader.fieldnames or []):
                    raise FalsifyError(
                        f"{path}: needs columns file,age,gender,race (FairFace's label CSV)."
                    )
                for row in reader:
                    rel = row["file"].strip().replace("\\", "/")
                    if split and not rel.startswith(split + "/"):
                        continue
                    if rel in seen:
                        continue
                    seen.add(rel)
                    items.append(Item(rel, row["age"], row["gender"], row["race"]))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise FalsifyError(f"{path}: cannot be read ({exc}).") from exc
    if not items:
        raise FalsifyError(
            f"No images listed in {', '.join(map(str, label_csvs))}"
            + (f" under split '{split}'." if split else ".")
        )
    return items


def subset(items: list[Item], limit: int | None, seed: int) -> list[Item]:
    """A seeded random subset, kept in the labels' order so runs and resumes agree."""
    if limit is None or limit >= len(items):
        return items
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


def _read_pairs(path: Path) -> dict[str, dict[str, str]]:
    """Rows of an earlier run; a line cut short by a crash is ignored (that file is redone)."""
    if not path.is_file():
        return {}
    done = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if None in row.values() or None in row or row.get("status") not in FAILED | {OK}:
                continue
            done[row["real_path"]] = row
    return done


def _check_manifest(out: Path, data: Path, encoder: Encoder) -> None:
    path = out / MANIFEST
    want = {"real_root": str(data.resolve()), "encoder": encoder.describe()}
    if path.is_file():
        try:
            have = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise FalsifyError(f"{path}: cannot be read ({exc}).") from exc
        if have.get("real_root") != want["real_root"]:
            raise FalsifyError(
                f"{out} holds fakes of {have.get('real_root')}, not {want['real_root']}: "
                "use another --out."
            )
        if have.get("encoder", {}).get("name") != encoder.name:
            raise FalsifyError(
                f"{out} holds fakes made by encoder {have.get('encoder', {}).get('name')!r}, "
                f"not {encoder.name!r}: use another --out so the two are not mixed."
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(want, indent=2) + "\n")


def _align(data: Path, item: Item, size: int) -> tuple[np.ndarray | None, str, str]:
    """(aligned uint8 array, status, detail); the largest face when there are several."""
    from shared.errors import FakeFacesError
    from shared.faces import detect_and_align
    from shared.images import load_image

    path = data / item.real_path
    if not path.is_file():
        return None, "missing", f"{path} does not exist"
    try:
        image = load_image(path)
    except FakeFacesError as exc:
        return None, exc.code, exc.message
    except OSError as exc:
        return None, "unreadable", str(exc)
    faces = detect_and_align(image, size=size)
    if not faces:
        return None, "no_face", "dlib found no face to align"
    return np.asarray(faces[0].aligned.convert("RGB")), OK, ""


def _save(arr: np.ndarray, dest: Path, quality: int) -> None:
    """Written under a temporary name and renamed, so a crash never leaves half a JPEG."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    Image.fromarray(arr).save(tmp, format="JPEG", quality=quality)
    os.replace(tmp, dest)


def _encode(encoder: Encoder, faces: list[np.ndarray]) -> list[tuple[np.ndarray | None, str]]:
    """Encode a batch; if the batch fails, each face alone, so one bad face fails alone."""
    try:
        outs = encoder.encode_batch(faces)
        if len(outs) != len(faces):
            raise ValueError(f"encoder returned {len(outs)} images for {len(faces)} faces")
        return [(check_output(o), "") for o in outs]
    except Exception:  # noqa: BLE001 — a plug-in encoder may raise anything; retried one by one
        if len(faces) == 1:
            try:
                return [(check_output(encoder.encode(faces[0])), "")]
            except Exception as exc:  # noqa: BLE001
                return [(None, f"{type(exc).__name__}: {exc}")]
        return [r for f in faces for r in _encode(encoder, [f])]


def falsify(
    data: Path,
    out: Path,
    encoder: Encoder,
    label_csvs: list[Path] | None = None,
    split: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    quality: int = 95,
    retry_failed: bool = False,
    progress: bool = True,
) -> Summary:
    from tqdm import tqdm

    items = _items(data, label_csvs, split, limit, seed)
    _check_manifest(out, data, encoder)
    pairs_path, failures_path = out / "pairs.csv", out / "failures.csv"
    previous = _read_pairs(pairs_path)
    todo = [it for it in items if not _finished(previous.get(it.real_path), out, retry_failed)]
    results: dict[str, dict[str, str]] = {k: v for k, v in previous.items()}
    details: dict[str, str] = {}
    statuses: Counter = Counter()
    # Start from a clean copy of what survived, then append as we go: a killed run keeps
    # everything it finished.
    _write_pairs(pairs_path, list(previous.values()))
    with pairs_path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=PAIRS_COLUMNS)
        bar = tqdm(
            total=len(todo), desc=f"falsify ({encoder.name})", unit="face", disable=not progress
        )
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            for row, detail in _falsify_batch(data, out, encoder, batch, quality):
                writer.writerow(row)
                results[row["real_path"]] = row
                statuses[row["status"]] += 1
                if detail:
                    details[row["real_path"]] = detail
            fh.flush()
            bar.update(len(batch))
        bar.close()
    _finish(items, results, details, pairs_path, failures_path)
    return Summary(len(items), len(items) - len(todo), statuses, out)


def _items(
    data: Path, label_csvs: list[Path] | None, split: str | None, limit: int | None, seed: int
) -> list[Item]:
    """The labelled faces asked for: the label CSVs' rows (by default every
    fairface_label_*.csv in `data`), under `split`, a seeded subset of `limit`."""
    if not data.is_dir():
        raise FalsifyError(f"--data {data}: no such folder.")
    label_csvs = label_csvs or sorted(data.glob("fairface_label_*.csv"))
    if not label_csvs:
        raise FalsifyError(f"{data}: no fairface_label_*.csv; pass --labels.")
    return subset(read_items(data, label_csvs, split), limit, seed)


def _finished(row: dict[str, str] | None, out: Path, retry_failed: bool) -> bool:
    """Whether an earlier run's row settles a face: a fake still on disk, or a failure that is
    not to be retried."""
    if row is None:
        return False
    if row["status"] == OK:
        return (out / row["fake_path"]).is_file()
    return not retry_failed


def _falsify_batch(
    data: Path, out: Path, encoder: Encoder, batch: list[Item], quality: int
) -> Iterator[tuple[dict[str, str], str]]:
    """Each face of `batch` aligned, the aligned ones encoded together, each fake saved: its
    pairs.csv row and the failure's detail ("" when none). Yielded one face at a time, so the
    caller records each row as soon as its fake is on disk."""
    aligned = [_align(data, it, encoder.input_size) for it in batch]
    ready = [i for i, (arr, _, _) in enumerate(aligned) if arr is not None]
    encoded = dict(zip(ready, _encode(encoder, [aligned[i][0] for i in ready]), strict=True))
    for i, item in enumerate(batch):
        arr, status, detail = aligned[i]
        fake_path = ""
        if arr is not None:
            fake, err = encoded[i]
            if fake is None:
                status, detail = "encoder_error", err
            else:
                fake_path = item.real_path
                _save(fake, out / fake_path, quality)
        row = {
            "real_path": item.real_path,
            "fake_path": fake_path,
            "age": item.age,
            "gender": item.gender,
            "race": item.race,
            "status": status,
        }
        yield row, detail


def _finish(items, results, details, pairs_path: Path, failures_path: Path) -> None:
    """Rewrite pairs.csv once, in the labels' order and one row per image, and list failures."""
    order = [it.real_path for it in items]
    extra = [k for k in results if k not in set(order)]  # from an earlier, larger run
    _write_pairs(pairs_path, [results[k] for k in order + extra])
    old = {}
    if failures_path.is_file():
        with failures_path.open(newline="") as fh:
            old = {r["real_path"]: r["detail"] for r in csv.DictReader(fh)}
    with failures_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FAILURE_COLUMNS)
        w.writeheader()
        for key in order + extra:
            if results[key]["status"] != OK:
                detail = details.get(key, old.get(key, ""))
                w.writerow({"real_path": key, "status": results[key]["status"], "detail": detail})


def _write_pairs(path: Path, rows: list[dict[str, str]]) -> None:
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=PAIRS_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    if args.quality < 1 or args.quality > 100:
        raise FalsifyError("--quality must be 1-100.")
    kwargs = {}
    if args.encoder == "psp":
        kwargs = dict(
            repo=args.psp_repo,
            checkpoint=args.psp_checkpoint,
            device=args.device,
            batch_size=args.batch_size,
            cuda_ops=args.psp_cuda_ops,
        )
    encoder = load_encoder(args.encoder, **kwargs)
    summary = falsify(
        args.data,
        args.out,
        encoder,
        args.labels,
        args.split,
        args.limit,
        args.seed,
        args.batch_size,
        args.quality,
        args.retry_failed,
        progress=not args.quiet,
    )
    made = summary.statuses[OK]
    print(
        f"{summary.total} faces: {summary.skipped} already done, {made} made now, "
        f"{summary.failures()} failed now "
        + (
            f"({', '.join(f'{k} {v}' for k, v in summary.statuses.items() if k != OK)})"
            if summary.failures()
            else ""
        )
    )
    print(f"pairs: {summary.out / 'pairs.csv'}; failures: {summary.out / 'failures.csv'}")
    return 0


HELP = "make labelled fakes of a labelled real set (pSp or a plug-in encoder)"
DESCRIPTION = (
    "Align each face of a FairFace-layout set with the shared FFHQ recipe, encode it "
    "into a generated face (pixel2style2pixel, or any Encoder class), and write the "
    "fake under --out with the same relative path (JPEG, like the Kaggle set). "
    "pairs.csv (real_path,fake_path,age,gender,race,status) keeps the labels; "
    "failures.csv lists faces that could not be aligned or encoded. Rerunning the "
    "same command resumes. Feed the fakes to `python -m shared predict` and the pairs "
    "to `python -m training fairness --labels OUT` for per-group TPR and AOD."
)
FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="DIR",
        help="the real set's root, e.g. ../shared/data/fairface",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the fakes go")
    parser.add_argument(
        "--labels",
        type=Path,
        nargs="+",
        default=None,
        metavar="CSV",
        help="label CSVs (file,age,gender,race); default DATA/fairface_label_*.csv",
    )
    parser.add_argument("--split", default=None, help="only files under this folder, e.g. val")
    parser.add_argument("--limit", type=int, default=None, help="a seeded random subset of N faces")
    parser.add_argument("--seed", type=int, default=0, help="seed of --limit's subset")
    parser.add_argument(
        "--encoder",
        default="psp",
        help="`psp` or `package.module:Class` (a training.falsify.encoder.Encoder)",
    )
    parser.add_argument(
        "--psp-repo",
        type=Path,
        default=None,
        metavar="DIR",
        help="checkout of github.com/eladrich/pixel2style2pixel",
    )
    parser.add_argument(
        "--psp-checkpoint",
        type=Path,
        default=None,
        metavar="FILE",
        help="psp_ffhq_encode.pt from the pixel2style2pixel README",
    )
    parser.add_argument(
        "--psp-cuda-ops",
        action="store_true",
        help="use pSp's compiled CUDA ops instead of the plain PyTorch ones",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (pSp)")
    parser.add_argument("--batch-size", type=int, default=8, help="faces encoded at once")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the fakes")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="retry faces an earlier run could not align or encode",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
