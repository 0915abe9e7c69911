"""`prepare SRC OUT`: detect and align every face image of a dataset with the serving code.

Each source image becomes OUT/<same relative path>.png: its largest face, FFHQ-aligned at
`--align-size` (PNG, so training sees the exact pixels serving would compute). A manifest CSV
records every image (aligned or why not); contact sheets show the failures.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

from tqdm import tqdm

from .datasets import MANIFEST_FIELDS, DataError, Record, read_source

SHEET_MAX = 48
_state: dict = {}


def _init_worker(detector: str) -> None:
    """Load the detector once per worker process, not once per image."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _state["detector"] = detector
    if detector == "mtcnn":
        from mtcnn import MTCNN

        _state["mtcnn"] = MTCNN()
    else:
        from shared.faces import _models

        _models()


def _faces_mtcnn(image, size: int) -> list[tuple[tuple[int, int, int, int], float, object]]:
    import numpy as np

    from shared.align import ffhq_align

    found = _state["mtcnn"].detect_faces(np.asarray(image))
    found.sort(key=lambda f: f["box"][2] * f["box"][3], reverse=True)
    out = []
    for f in found:
        k = f["keypoints"]
        aligned = ffhq_align(
            image, k["left_eye"], k["right_eye"], k["mouth_left"], k["mouth_right"], size=size
        )
        out.append((tuple(int(v) for v in f["box"]), float(f["confidence"]), aligned))
    return out


def _faces_serving(image, size: int) -> list[tuple[tuple[int, int, int, int], float, object]]:
    from shared.faces import detect_and_align

    return [
        (tuple(int(v) for v in f.box), float(f.score), f.aligned)
        for f in detect_and_align(image, size=size)
    ]


def align_one(job: tuple[str, str, Record, int]) -> dict[str, str]:
    """One source image -> its manifest row (and the aligned PNG when a face is found)."""
    from shared.errors import FakeFacesError
    from shared.images import load_image

    src_root, out_root, rec, size = job
    row = {
        "source": rec.rel,
        "output": "",
        "split": rec.split,
        "label": rec.label,
        "dataset": rec.source,
        "faces": "0",
        "status": "ok",
        "error": "",
        "x": "",
        "y": "",
        "w": "",
        "h": "",
        "score": "",
        **rec.attrs,
    }
    src = Path(src_root) / rec.rel
    try:
        image = load_image(src)
        finder = _faces_mtcnn if _state["detector"] == "mtcnn" else _faces_serving
        faces = finder(image, size)
    except FileNotFoundError:
        return {**row, "status": "missing", "error": "file not found"}
    except FakeFacesError as exc:
        return {**row, "status": exc.code, "error": exc.message}
    except Exception as exc:  # noqa: BLE001 - one bad image must not stop 140k others
        return {**row, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
    row["faces"] = str(len(faces))
    if not faces:
        return {**row, "status": "no_face", "error": "no face found"}
    box, score, aligned = faces[0]
    out_rel = Path(rec.rel).with_suffix(".png").as_posix()
    dest = Path(out_root) / out_rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    aligned.save(tmp, format="PNG")
    tmp.replace(dest)  # a killed run never leaves a half-written PNG behind
    row.update(
        output=out_rel,
        x=str(box[0]),
        y=str(box[1]),
        w=str(box[2]),
        h=str(box[3]),
        score=f"{score:.4f}",
    )
    return row


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise DataError(f"--shard {text!r}: write K/N, e.g. 1/4.") from None
    if not 1 <= k <= n:
        raise DataError(f"--shard {text!r}: K must be between 1 and N.")
    return k, n


def manifest_name(shard: tuple[int, int] | None) -> str:
    return "manifest.csv" if shard is None else f"manifest-{shard[0]}-of-{shard[1]}.csv"


def _read_done(path: Path, out: Path) -> dict[str, dict[str, str]]:
    """Rows already finished by an earlier (perhaps interrupted) run of this manifest."""
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        rows = {r["source"]: r for r in csv.DictReader(fh) if r.get("status")}
    return {s: r for s, r in rows.items() if r["status"] != "ok" or (out / r["output"]).is_file()}


def _forget_gone(src: Path, out: Path, done: dict[str, dict[str, str]]) -> int:
    """Drop rows (and aligned PNGs) of sources deleted since the last run: a photo removed at
    its owner's request (training feedback delete) must not live on in an aligned folder."""
    gone = [s for s in done if not (src / s).is_file()]
    for source in gone:
        output = done.pop(source).get("output")
        if output:
            (out / output).unlink(missing_ok=True)
    return len(gone)


def prepare(
    src: Path,
    out: Path,
    detector: str = "serving",
    workers: int | None = None,
    shard: tuple[int, int] | None = None,
    align_size: int = 256,
    limit: int | None = None,
    retry_failed: bool = False,
    quiet: bool = False,
) -> dict:
    """Align a dataset; returns the summary also written to OUT/prepare.json."""
    kind, records = read_source(src)
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise DataError(f"{out}: write the aligned set outside the source folder {src}.")
    records = _select(records, shard, limit)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / manifest_name(shard)
    done = _read_done(manifest, out)
    gone = _forget_gone(src, out, done)
    if retry_failed:
        done = {s: r for s, r in done.items() if r["status"] == "ok"}
    todo = [r for r in records if r.rel not in done]
    attr_keys = sorted({k for r in records for k in r.attrs})
    fields = MANIFEST_FIELDS + attr_keys
    workers = workers or os.cpu_count() or 1

    t0 = time.perf_counter()
    _align_all(src, out, todo, manifest, fields, done, detector, workers, align_size, quiet)
    elapsed = time.perf_counter() - t0
    rows = _rewrite_manifest(manifest, records, done, fields)

    status = {}
    for r in rows:
        status[r["status"]] = status.get(r["status"], 0) + 1
    several = sum(r["status"] == "ok" and int(r["faces"] or 0) > 1 for r in rows)
    sheets = contact_sheets(src, out, rows, shard)
    summary = {
        "source": str(src.resolve()),
        "kind": kind,
        "detector": detector,
        "align_size": align_size,
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "images": len(rows),
        "status": status,
        "several_faces_largest_kept": several,
        "processed_now": len(todo),
        "removed_gone": gone,
        "seconds": round(elapsed, 2),
        "workers": workers,
        "images_per_second": round(len(todo) / elapsed, 2) if todo and elapsed else None,
        "contact_sheets": sheets,
        # Unreadable files are skipped, never silently: name the first few.
        "unreadable": [
            f"{r['source']}: {r['error']}" for r in rows if r["status"] not in ("ok", "no_face")
        ][:10],
    }
    name = "prepare.json" if shard is None else f"prepare-{shard[0]}-of-{shard[1]}.json"
    (out / name).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _select(records: list[Record], shard: tuple[int, int] | None, limit: int | None):
    """The records this run aligns: every N-th from the K-th for shard K/N, then at most
    `limit` of them, evenly spread so a small sample still holds every split and class."""
    if shard:
        records = [r for i, r in enumerate(records) if i % shard[1] == shard[0] - 1]
    if limit and limit < len(records):
        step = len(records) / limit
        records = [records[int(i * step)] for i in range(limit)]
    return records


def _align_all(src, out, todo, manifest, fields, done, detector, workers, align_size, quiet):
    """Align `todo` on `workers` processes, each row appended to the manifest (and `done`) as it
    comes, so an interrupted run resumes where it stopped."""
    fresh = not manifest.is_file()
    with manifest.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fields, extrasaction="ignore")
        if fresh:
            writer.writeheader()
        if not todo:
            return
        ctx = mp.get_context("spawn")  # no fork after TensorFlow or dlib threads exist
        jobs = [(str(src), str(out), r, align_size) for r in todo]
        with ctx.Pool(min(workers, len(todo)), _init_worker, (detector,)) as pool:
            bar = tqdm(
                pool.imap_unordered(align_one, jobs, chunksize=4),
                total=len(jobs),
                desc=f"aligning ({detector}, {workers} workers)",
                unit="img",
                disable=quiet,
            )
            for row in bar:
                writer.writerow(row)
                fh.flush()
                done[row["source"]] = row


def _rewrite_manifest(manifest: Path, records, done: dict, fields: list[str]) -> list[dict]:
    """The manifest rewritten in source order, one line per image, so diffs and shards stay
    readable; returns its rows."""
    order = {r.rel: i for i, r in enumerate(records)}
    rows = sorted(done.values(), key=lambda r: order.get(r["source"], len(order)))
    tmp = manifest.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(manifest)
    return rows


def contact_sheets(
    src: Path, out: Path, rows: list[dict[str, str]], shard: tuple[int, int] | None
) -> dict[str, str]:
    """PNG grids of the source images where no face, or several faces, were found."""
    suffix = "" if shard is None else f"-{shard[0]}-of-{shard[1]}"
    groups = {
        "no_face": [r for r in rows if r["status"] == "no_face"],
        "several_faces": [r for r in rows if r["status"] == "ok" and int(r["faces"] or 0) > 1],
    }
    written = {}
    for name, group in groups.items():
        path = out / f"failures_{name}{suffix}.png"
        if not group:
            path.unlink(missing_ok=True)
            continue
        _sheet(src, group, path, f"{name.replace('_', ' ')}: {len(group)} image(s)")
        written[name] = path.name
    return written


def _sheet(src: Path, rows: list[dict[str, str]], path: Path, title: str, tile: int = 160) -> None:
    from PIL import Image, ImageDraw

    from shared.images import load_image

    shown = rows[:SHEET_MAX]
    cols = min(8, len(shown))
    nrows = (len(shown) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * tile, nrows * (tile + 14) + 20), "white")
    draw = ImageDraw.Draw(sheet)
    more = f" (first {len(shown)} shown)" if len(rows) > len(shown) else ""
    draw.text((4, 4), title + more, fill="black")
    for i, r in enumerate(shown):
        x0, y0 = (i % cols) * tile, 20 + (i // cols) * (tile + 14)
        try:
            img = load_image(src / r["source"])
        except Exception:  # noqa: BLE001 - an unreadable file is still listed
            continue
        factor = tile / max(img.size)
        thumb = img.resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))))
        sheet.paste(thumb, (x0, y0))
        if r["w"]:  # the face that was kept, when several were found
            x, y, w, h = (float(r[k]) * factor for k in ("x", "y", "w", "h"))
            draw.rectangle([x0 + x, y0 + y, x0 + x + w, y0 + y + h], outline="lime", width=2)
            draw.text((x0 + 3, y0 + 3), f"{r['faces']} faces", fill="yellow")
        draw.text((x0 + 2, y0 + tile), Path(r["source"]).name[:24], fill="black")
    sheet.save(path)


def alignment_drift(root: Path, count: int = 8) -> tuple[int, int] | None:
    """(largest pixel difference, faces compared) between a prepared folder's PNGs and what
    serving's code aligns from the same sources now; None when that cannot be compared
    (sources gone, or MTCNN alignment, which serving does not use).

    A model must be trained on exactly the crops serving will feed it: any change to
    shared/ alignment after `prepare` shows up here."""
    import numpy as np
    from PIL import Image

    from shared.faces import detect_and_align
    from shared.images import load_image

    from .datasets import prepare_info, read_prepared

    meta = prepare_info(root)
    if meta is None:
        return None
    src = Path(meta["source"])
    # "dlib" is what runs before YuNet recorded: checked too, and so found drifted.
    if meta.get("detector") not in ("serving", "dlib") or not src.is_dir():
        return None
    rows = [r for r in read_prepared(root).rows if r["status"] == "ok"]
    step = max(1, len(rows) // count)
    worst, compared = 0, 0
    for r in rows[::step][:count]:
        try:
            faces = detect_and_align(load_image(src / r["source"]), size=meta["align_size"])
        except (OSError, ValueError):
            continue
        if not faces:
            return 255, compared + 1  # serving finds no face where prepare found one
        now = np.asarray(faces[0].aligned.convert("RGB"), np.int16)
        with Image.open(root / r["output"]) as img:
            then = np.asarray(img.convert("RGB"), np.int16)
        worst = max(worst, int(np.abs(now - then).max()))
        compared += 1
    return (worst, compared) if compared else None


def run(args) -> int:
    src, out = Path(args.src), Path(args.out)
    shard = parse_shard(args.shard) if args.shard else None
    summary = prepare(
        src,
        out,
        args.detector,
        args.workers,
        shard,
        args.align_size,
        args.limit,
        args.retry_failed,
    )
    s = summary["status"]
    bad = {k: v for k, v in s.items() if k != "ok"}
    rate = summary["images_per_second"]
    print(
        f"{out}: {s.get('ok', 0)} of {summary['images']} images aligned"
        f" ({summary['several_faces_largest_kept']} with several faces: largest kept)"
        + (f"; skipped: {', '.join(f'{v} {k}' for k, v in bad.items())}" if bad else "")
        + (
            f"; {summary['processed_now']} processed now at {rate} img/s"
            f" with {summary['workers']} worker(s)"
            if rate
            else "; nothing left to do"
        )
        + (
            f"; {summary['removed_gone']} removed (source deleted)"
            if summary["removed_gone"]
            else ""
        )
    )
    for line in summary["unreadable"]:
        print(f"  skipped {src / line}")
    for sheet in summary["contact_sheets"].values():
        print(f"  contact sheet: {out / sheet}")
    return 0


HELP = "detect and align every face of a dataset (as serving does)"
DESCRIPTION = (
    "Detect and align every image of SRC with the serving code (shared/), in "
    "parallel, into OUT: OUT/<same path>.png (largest face, FFHQ-aligned), a manifest CSV "
    "(source, output, split, label, face count, status) and contact sheets of images with "
    "no face or several faces. SRC is the Kaggle 140k layout (with its CSVs), FairFace "
    "(with its CSVs), any folder with real/ and fake/ subfolders, or a plain image folder. "
    "Re-running skips finished files."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="dataset folder to align")
    parser.add_argument("out", help="output folder (created; must be outside SRC)")
    parser.add_argument(
        "--detector",
        choices=["serving", "mtcnn"],
        default="serving",
        help="serving's own path: YuNet boxes + dlib's 68 landmarks (default), or the mtcnn "
        "package's 5 keypoints with the same FFHQ alignment",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument(
        "--shard",
        metavar="K/N",
        help="only every N-th image, starting at the K-th "
        "(1-based), to split a large dataset over machines; each shard writes its own "
        "manifest-K-of-N.csv and training reads them all",
    )
    parser.add_argument("--align-size", type=int, default=256, help="aligned side in pixels (256)")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="only N images, spread evenly over the set (tests, benchmarks)",
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="retry images an earlier run could not align"
    )
