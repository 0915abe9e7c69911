"""`adapt`: teach a two-view model a new engine from a few dozen of its faces, in minutes.

The CNN and the CLIP view's head stay as they are. The engine gets a linear head of its own on the
same CLIP features, fitted against the real training photos kept in the model's bank
(training/views/bank.py), its few faces weighing as much as all of them; it is calibrated on the
validation reals and the engine's faces scored out of fold, and the answer becomes the larger of
the model's and the engine's (shared.clip.Engine). Every answer the model gave before can only
rise, so the only way to lose a known engine is the threshold, chosen again so that every real
validation source keeps at most 2 % called fake, and the engine alone at most 1 % of any; `adapt`
refuses a model that would lose more than 2 points of any known engine's catch there, or call
more than 2 % of the user's own reals fake.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared import clip
from shared.errors import FakeFacesError
from shared.model import SPEC_FILE, Model

from ..data.datasets import DataError
from ..evaluation.calibration import false_alarm_threshold
from ..options import FALSE_ALARM, add_false_alarm
from .bank import Bank, extended, read_bank
from .fit import Faces, _fit_logistic, fit_linear

MIN_FACES = 10
MAX_LOSS = 0.02  # the most of a known engine's validation catch an adaptation may cost
ENGINE_C = 0.1  # the engine head's inverse L2 strength on standardised features
FOLDS = 5
MIN_GAIN = 0.1  # an adaptation must catch at least this much more of the engine's faces
# The most of any real validation source the engine alone may call fake at the new threshold:
# half the operating point's 2 %, a margin for real photos the validation split does not hold.
# (Measured on Stable Diffusion held out: at 0.5 % ten faces caught 43 % of its test fakes, at 1 %
# 59 %, and every real test source kept at least 97.6 % at 1 %.)
ENGINE_FALSE_ALARM = 0.01
# Shifts of the calibrated engine logit tried, from none down to one that never fires.
SHIFTS = tuple(-0.25 * i for i in range(81))
NEW = "adapted: "  # the source name of the engine's faces in tables


class AdaptRefused(DataError):
    """The adapted model would not be safe to serve; the message says why, in one sentence."""


@dataclass
class NewFaces:
    """The engine's faces (or the user's reals): CLIP features and the CNN's P(fake)."""

    features: np.ndarray
    p_cnn: np.ndarray

    def __len__(self) -> int:
        return len(self.p_cnn)


@dataclass
class Adapted:
    engine: clip.Engine
    threshold: float
    report: dict


def _fold_ids(n: int, seed: int) -> np.ndarray:
    folds = min(FOLDS, n)
    return np.random.default_rng(seed).permutation(np.arange(n) % folds)


def _engine_faces(bank: Bank, fakes: NewFaces, reals: NewFaces | None, name: str) -> Faces:
    """The engine head's training set: the bank's real training photos (and the user's reals, a
    cell of their own) against the engine's faces; every (source, class) cell weighs the same."""
    f = bank.feature
    parts = [(bank.train_reals.features[f], bank.train_reals.rows)]
    if reals is not None and len(reals):
        parts.append(
            (reals.features, [{"dataset": f"{NEW}your reals", "label": "real"}] * len(reals))
        )
    parts.append((fakes.features, [{"dataset": NEW + name, "label": "fake"}] * len(fakes)))
    rows = [r for _, rs in parts for r in rs]
    x = np.concatenate([p for p, _ in parts]).astype(np.float32)
    y = np.array([1.0 if r["label"] == "fake" else 0.0 for r in rows])
    return Faces(rows, y, {f: x})


def _fit_engine(
    bank: Bank, fakes: NewFaces, reals: NewFaces | None, name: str, seed: int, say
) -> tuple[clip.LinearHead, np.ndarray, np.ndarray | None]:
    """(head on every face, out-of-fold logits of the engine's faces, and of the user's reals):
    each fold's faces scored by a head fitted without them, so calibration and the checks see
    what the head does on faces it was not fitted on."""
    fold_fake = _fold_ids(len(fakes), seed)
    fold_real = _fold_ids(len(reals), seed + 1) if reals is not None and len(reals) else None
    oof_fake = np.zeros(len(fakes))
    oof_real = np.zeros(len(reals)) if fold_real is not None else None
    folds = int(fold_fake.max()) + 1
    for k in say.bar(range(folds), "engine head, out of fold"):
        keep_f = NewFaces(fakes.features[fold_fake != k], fakes.p_cnn[fold_fake != k])
        keep_r = None
        if fold_real is not None:
            keep_r = NewFaces(reals.features[fold_real != k], reals.p_cnn[fold_real != k])
        head = fit_linear(_engine_faces(bank, keep_f, keep_r, name), bank.feature, ENGINE_C)
        oof_fake[fold_fake == k] = head.logit({bank.feature: fakes.features[fold_fake == k]})
        if fold_real is not None:
            oof_real[fold_real == k] = head.logit({bank.feature: reals.features[fold_real == k]})
    head = fit_linear(_engine_faces(bank, fakes, reals, name), bank.feature, ENGINE_C)
    return head, oof_fake, oof_real


def _calibrated(head: clip.LinearHead, valid_real_logit: np.ndarray, oof_fake: np.ndarray):
    """The head with Platt scaling folded in, fitted on the validation reals (not in its
    training) against the engine's out-of-fold logits, the two classes weighing the same."""
    x = np.concatenate([valid_real_logit, oof_fake])[:, None]
    y = np.concatenate([np.zeros(len(valid_real_logit)), np.ones(len(oof_fake))])
    w = np.where(y == 1, len(y) / (2 * len(oof_fake)), len(y) / (2 * len(valid_real_logit)))
    fitted = _fit_logistic(x, y, w, 1e4)
    s, t = max(float(fitted.coef_[0][0]), 1e-6), float(fitted.intercept_[0])
    return clip.LinearHead(head.feature, head.coef * s, head.intercept * s + t), (s, t)


def _catches(valid: Faces, p: np.ndarray, cut: float) -> dict[str, dict]:
    """Each validation source at `cut`: its reals called fake, its fakes caught (as export
    records the operating point)."""
    from ..evaluation.calibration import operating_sources

    return operating_sources(valid.y, np.asarray(p, np.float32), valid.sources, cut)


def with_engine(model: Model, engine: clip.Engine) -> Model:
    """`model` answering as it will once `engine` is in its model.json (a shallow copy)."""
    taught = copy.copy(model)
    taught.clip = dataclasses.replace(model.clip, engines=(*model.clip.engines, engine))
    return taught


def _shifted(head: clip.LinearHead, shift: float) -> clip.LinearHead:
    return clip.LinearHead(head.feature, head.coef, head.intercept + shift)


@dataclass
class _Setting:
    """One shift of the engine's logit: the threshold chosen again, what it costs the known
    engines, what it catches of the new one (out of fold) and of the user's reals."""

    shift: float
    cut: float
    lost: dict[str, float]
    caught: float
    reals_called_fake: float | None
    engine_false_alarm: float  # the worst real validation source, the engine alone
    broken: dict[str, float]  # real validation sources over the rate at the old threshold


def adapt_faces(
    model: Model,
    bank: Bank,
    fakes: NewFaces,
    name: str,
    reals: NewFaces | None = None,
    rate: float = FALSE_ALARM,
    seed: int = 0,
    say=None,
) -> Adapted:
    """The engine head, its threshold and the before/after report, or AdaptRefused.

    The engine is calibrated (Platt, out of fold), then shifted down until it is safe: once the
    threshold is chosen again, no known engine's validation catch drops more than 2 points, the
    engine alone calls at most 1 % of any real validation source fake, and the user's reals keep
    at most `rate` called fake. Among the safe shifts, the one catching the most of the engine's
    own faces out of fold."""
    say = say or Say(True)
    _check_teachable(model, fakes, name)
    valid = bank.valid
    head, oof_fake, oof_real = _fit_engine(bank, fakes, reals, name, seed, say)
    calibrated, platt = _calibrated(head, head.logit(valid.features)[valid.y == 0], oof_fake)
    threshold = model.spec.threshold
    before = model.score_views(np.empty(0), valid.p_cnn, valid.features).p_fake
    old = _catches(valid, before, threshold)
    has_reals = reals is not None and len(reals) > 0
    # The engine's own faces and the user's reals by their out-of-fold logits (Platt applied),
    # not by the calibrated head fitted on them, which would flatter it.
    logits = _Logits(
        base_valid=clip.logit(before),
        engine_valid=calibrated.logit(valid.features),
        base_fakes=_base_logit(model, bank.feature, fakes),
        engine_fakes=platt[0] * oof_fake + platt[1],
        base_reals=_base_logit(model, bank.feature, reals) if has_reals else None,
        engine_reals=platt[0] * oof_real + platt[1] if has_reals else None,
    )
    caught_before = float(np.mean(clip.sigmoid(logits.base_fakes) >= np.float32(threshold)))
    settings = _settings(valid, logits, old, threshold, rate)
    best = max(_safe(settings, rate), key=lambda s: (s.caught, s.shift), default=None)
    if best is None or best.caught - caught_before < MIN_GAIN:
        raise AdaptRefused(_why_not(name, settings[0] if settings else None, rate, caught_before))

    engine = clip.Engine(name, _shifted(calibrated, best.shift))
    # The threshold once more, from the answers exactly as serving will compute them.
    after = with_engine(model, engine).score_views(np.empty(0), valid.p_cnn, valid.features)
    cut, _, _ = false_alarm_threshold(valid.y, after.p_fake, valid.sources, rate)
    report = {
        "engine": name,
        "faces": len(fakes),
        "reals": len(reals) if has_reals else 0,
        "threshold": {"before": threshold, "after": cut},
        "calibration": {"slope": platt[0], "intercept": platt[1], "shift": best.shift},
        "engine_caught_out_of_fold": {"before": caught_before, "after": best.caught},
        "valid": {"before": old, "after": _catches(valid, after.p_fake, cut)},
    }
    if has_reals:
        report["your_reals_called_fake"] = best.reals_called_fake
    return Adapted(engine, cut, report)


def _check_teachable(model: Model, fakes: NewFaces, name: str) -> None:
    """Refuse before any fitting: too few faces to fit and calibrate out of fold, or a model
    without the CLIP view the engine's head reads."""
    if len(fakes) < MIN_FACES:
        raise AdaptRefused(
            f"only {len(fakes)} faces of {name} were found; at least {MIN_FACES} are needed to "
            "teach an engine."
        )
    if model.clip is None:
        raise AdaptRefused(f"{model.spec.name} has one view; only a two-view model can be adapted.")


@dataclass
class _Logits:
    """The model's logit (base_*) and the calibrated engine's (engine_*, before any shift) on
    the validation faces, the engine's faces and the user's reals (None without them): a shift
    moves only the engine's, so these are computed once for all the shifts tried."""

    base_valid: np.ndarray
    engine_valid: np.ndarray
    base_fakes: np.ndarray
    engine_fakes: np.ndarray
    base_reals: np.ndarray | None
    engine_reals: np.ndarray | None


def _base_logit(model: Model, feature: str, faces: NewFaces) -> np.ndarray:
    """The model's logit of faces it has no bank rows for, as serving would answer them."""
    return clip.logit(model.score_views(np.empty(0), faces.p_cnn, {feature: faces.features}).p_fake)


def _settings(
    valid: Faces, logits: _Logits, old: dict[str, dict], threshold: float, rate: float
) -> list[_Setting]:
    """What each shift in SHIFTS would do, the threshold chosen again for it; a shift at which
    no threshold keeps every real validation source within `rate` is left out."""
    real_src = np.where(valid.y == 0, np.array(valid.sources), "")
    real_sources = sorted(set(real_src) - {""})
    settings = []
    for shift in SHIFTS:
        after = clip.sigmoid(np.maximum(logits.base_valid, logits.engine_valid + shift))
        try:
            cut, _, _ = false_alarm_threshold(valid.y, after, valid.sources, rate)
        except ValueError:
            continue
        new = _catches(valid, after, cut)
        lost = {s: old[s]["caught"] - new[s]["caught"] for s in old if "caught" in old[s]}
        c32 = np.float32(cut)
        e_fakes = logits.engine_fakes + shift
        caught = float(np.mean(clip.sigmoid(np.maximum(logits.base_fakes, e_fakes)) >= c32))
        fa = None
        if logits.base_reals is not None:
            e_reals = logits.engine_reals + shift
            fa = float(np.mean(clip.sigmoid(np.maximum(logits.base_reals, e_reals)) >= c32))
        at_old = _catches(valid, after, threshold)
        broken = {
            s: r["called_fake"]
            for s, r in at_old.items()
            if "called_fake" in r and r["called_fake"] > max(rate, old[s]["called_fake"])
        }
        fired = clip.sigmoid(logits.engine_valid + shift) >= c32
        engine_fa = max(float(np.mean(fired[real_src == s])) for s in real_sources)
        settings.append(_Setting(shift, cut, lost, caught, fa, engine_fa, broken))
    return settings


def _safe(settings: list[_Setting], rate: float) -> list[_Setting]:
    """The settings within every limit: known engines' catch, the engine alone on real
    validation sources, the user's reals."""
    return [
        s
        for s in settings
        if max(s.lost.values(), default=0.0) <= MAX_LOSS + 1e-9
        and s.engine_false_alarm <= ENGINE_FALSE_ALARM + 1e-9
        and (s.reals_called_fake is None or s.reals_called_fake <= rate)
    ]


def _why_not(name: str, calibrated: _Setting | None, rate: float, caught_before: float) -> str:
    """The one sentence a refusal says, from what the calibrated engine (no shift) would do."""
    gain = f"before catching {100 * MIN_GAIN:.0f} points more of {name}'s faces"
    if caught_before > 1 - MIN_GAIN:
        return (
            f"the model already catches {caught_before:.0%} of {name}'s faces: there is nothing "
            "to teach; nothing was written."
        )
    if calibrated is None:
        return f"no threshold keeps every real validation source with {name} taught."
    if calibrated.reals_called_fake is not None and calibrated.reals_called_fake > rate:
        return (
            f"teaching {name} would call {calibrated.reals_called_fake:.0%} of your real photos "
            f"fake (at most {rate:.0%} allowed) {gain}: its faces are too close to them to tell "
            "apart; nothing was written."
        )
    lost = {s: d for s, d in calibrated.lost.items() if d > MAX_LOSS + 1e-9}
    broken = ", ".join(f"{v:.0%} of {s}" for s, v in sorted(calibrated.broken.items()))
    if lost:
        worst = ", ".join(f"{s} by {100 * d:.1f} points" for s, d in sorted(lost.items()))
        why = f" (it would call {broken}'s real validation photos fake)" if broken else ""
        return (
            f"teaching {name} would raise the threshold{why} and lower the catch of engines the "
            f"model already knows ({worst}; at most {100 * MAX_LOSS:.0f} allowed) {gain}; "
            "nothing was written."
        )
    if broken:
        return (
            f"teaching {name} would break the operating point: it would call {broken}'s real "
            f"validation photos fake (at most {rate:.0%} allowed) {gain}; nothing was written."
        )
    return (
        f"teaching {name} would not catch {100 * MIN_GAIN:.0f} points more of its faces than the "
        f"model's {caught_before:.0%} without costing engines it already knows more than "
        f"{100 * MAX_LOSS:.0f} points; nothing was written."
    )


class Say:
    """Progress bars and lines on stderr, or nothing with --quiet."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __call__(self, *a) -> None:
        if not self.quiet:
            print(*a, file=sys.stderr)

    def bar(self, items, desc: str):
        from tqdm import tqdm

        return tqdm(items, desc=desc, unit="step", disable=self.quiet)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def faces_in(folder: Path, model: Model, feature: str, say: Say) -> tuple[NewFaces, dict]:
    """Every photo under `folder`, decoded, detected and aligned by shared/ as serving does, its
    largest face scored by the CNN and described by the CLIP encoder; and what was skipped."""
    from shared.faces import detect_and_align
    from shared.images import load_image
    from shared.model import to_input

    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder.")
    if (folder / "real").is_dir() and (folder / "fake").is_dir():
        raise DataError(
            f"{folder} holds real/ and fake/ (as `training feedback pull` writes): pass "
            f"--fakes {folder / 'fake'} and --reals {folder / 'real'}."
        )
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(
            f"{folder}: no photos there (looked for {', '.join(sorted(IMAGE_SUFFIXES))})."
        )
    feats, p_cnn, skipped = [], [], {}
    for path in say.bar(files, f"faces in {folder.name}"):
        try:
            found = detect_and_align(load_image(path), size=model.spec.align_size)
        except (FakeFacesError, OSError) as exc:
            skipped[str(path.relative_to(folder))] = getattr(exc, "message", str(exc))
            continue
        if not found:
            skipped[str(path.relative_to(folder))] = "no face found"
            continue
        aligned = found[0].aligned
        p_cnn.append(model.predict(to_input(aligned, model.spec)[None])[0])
        rgb = np.asarray(aligned.convert("RGB"), np.uint8)[None]
        feats.append(model.clip.encoder.features(rgb)[feature][0])
    dim = clip.DIMS[feature]
    x = np.stack(feats) if feats else np.zeros((0, dim), np.float32)
    return NewFaces(x, np.asarray(p_cnn, np.float32)), skipped


def write_adapted(
    model: Model, bank: Bank, adapted: Adapted, reals: NewFaces | None, out: Path
) -> None:
    """OUT: the model folder copied, its model.json naming the engine (under views.clip.adapted,
    generators.learned and a new threshold), its bank holding the user's reals too, and its card
    re-rendered with an "Adapted" section."""
    from ..evaluation.report import build

    shutil.copytree(model.dir, out, ignore=shutil.ignore_patterns("MODEL_CARD.*"))
    doc = json.loads((out / SPEC_FILE).read_text())
    added = time.strftime("%Y-%m-%d")
    report = adapted.report
    name = adapted.engine.name
    clip_doc = doc["views"]["clip"]
    clip_doc["bank"] = extended(bank, out, _as_faces(reals, bank.feature))
    clip_doc.setdefault("adapted", []).append(
        {
            **adapted.engine.to_json(),
            "faces": report["faces"],
            "reals": report["reals"],
            "added": added,
            "from": f"{doc['name']} {doc['version']}",
            "report": report,
        }
    )
    learned = doc.setdefault("generators", {}).setdefault("learned", [])
    learned.append(f"{name} (taught later with {report['faces']} faces, {added})")
    # report["valid"]["after"] is each validation source at the new threshold, as serving
    # answers with the engine (calibration.operating_sources): the operating point itself.
    after = report["valid"]["after"]
    doc["operating_point"] = {
        **doc.get("operating_point", {}),
        "threshold": adapted.threshold,
        "worst_false_alarm": max(r["called_fake"] for r in after.values() if "called_fake" in r),
        "sources": after,
    }
    doc["threshold"] = adapted.threshold
    doc["version"] = f"{doc['version']}+{len(clip_doc['adapted'])}"
    (out / SPEC_FILE).write_text(json.dumps(doc, indent=2) + "\n")
    build(out, out, command=f"python -m training adapt (from {model.dir})")


def _as_faces(reals: NewFaces | None, feature: str) -> Faces | None:
    if reals is None or not len(reals):
        return None
    rows = [{"dataset": f"{NEW}your reals", "label": "real"}] * len(reals)
    return Faces(rows, np.zeros(len(reals)), {feature: reals.features})


def run(args) -> int:
    started = time.time()
    model_dir, out = Path(args.model), Path(args.out)
    say = Say(args.quiet)
    if out.exists() and (out.resolve() == model_dir.resolve() or any(out.iterdir())):
        raise DataError(f"--out {out} already holds files: adapt writes a new model folder.")
    model = Model(model_dir)
    if model.clip is None:
        raise DataError(f"{model_dir}: a one-view model; only a two-view model can be adapted.")
    bank = read_bank(model_dir, model.spec.extra["views"]["clip"].get("bank"))
    if args.name in {e.name for e in model.clip.engines}:
        raise DataError(f"{model_dir} was already taught {args.name!r}: name this one otherwise.")
    fakes, skipped = faces_in(Path(args.fakes), model, bank.feature, say)
    reals = None
    if args.reals:
        reals, skipped_reals = faces_in(Path(args.reals), model, bank.feature, say)
        skipped.update({f"reals/{k}": v for k, v in skipped_reals.items()})
    adapted = adapt_faces(model, bank, fakes, args.name, reals, args.false_alarm, args.seed, say)
    adapted.report["skipped"] = skipped
    adapted.report["seconds"] = round(time.time() - started, 1)
    try:
        write_adapted(model, bank, adapted, reals, out)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # never leave half a model folder
        raise
    r = adapted.report
    print(
        f"{out}: taught {args.name} with {r['faces']} faces ({len(skipped)} photos skipped); "
        f"its faces caught out of fold {r['engine_caught_out_of_fold']['before']:.0%} -> "
        f"{r['engine_caught_out_of_fold']['after']:.0%}; threshold "
        f"{r['threshold']['before']:.3f} -> {r['threshold']['after']:.3f}; "
        f"{time.time() - started:.0f} s."
    )
    return 0


HELP = "teach a two-view model a new engine from a folder of its faces"
DESCRIPTION = (
    "Teach a two-view model a new engine from a few dozen of its faces, without "
    "retraining: every photo under --fakes is detected and aligned as serving does, the "
    "engine gets a linear head on the CLIP features against the model's real training "
    "photos (kept in its adapt_bank.npz), calibrated out of fold, and the threshold is "
    "chosen again so that every real validation source keeps at most --false-alarm called "
    "fake. Refused, with nothing written, when fewer than 10 faces are found, when a known "
    "engine's validation catch would drop by more than 2 points, or when more than "
    "--false-alarm of --reals would be called fake. Writes a complete model folder, with "
    'the engine in model.json and an "Adapted" section in its card; the model given is '
    "never changed. Reviewed feedback works as input: `training feedback pull --out DIR`, "
    "then --fakes DIR/fake --reals DIR/real."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="models/default",
        metavar="DIR",
        help="the two-view model to start from (models/default)",
    )
    parser.add_argument(
        "--fakes",
        required=True,
        metavar="DIR",
        help="photos made by the new engine (any size; searched recursively)",
    )
    parser.add_argument(
        "--reals",
        metavar="DIR",
        help="real photos of the same kind, if you have them: the engine is told "
        "apart from them too, and refused if it calls too many of them fake",
    )
    parser.add_argument(
        "--name", required=True, help='the engine, as the page will name it, e.g. "Midjourney v6"'
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="the adapted model folder (new)"
    )
    add_false_alarm(parser)
    parser.add_argument("--seed", type=int, default=0, help="the out-of-fold split's seed (0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
