"""`adapt-curve`: how many faces of a new engine `adapt` needs, measured on engines held out.

For each left-out engine, start from the two-view model trained without it (its CNN and its
CLIP view; `make leave-source-out`), adapt it with k of that engine's training faces (several
draws of each k), and score every source's test split: the engine's catch at the adapted
operating point and its ROC-AUC against every real test photo, each real source's share kept,
and every other engine's catch. The faces come from the prepared folders (aligned by serving's
code, as `adapt` aligns a folder of photos) with their cached CLIP features.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from shared.model import Model

from ..data.datasets import DataError, read_prepared, source_of
from ..data.sources import left_out
from ..evaluation.calibration import false_alarm_threshold
from ..options import FALSE_ALARM
from .adapt import AdaptRefused, NewFaces, adapt_faces, with_engine
from .bank import Bank, read_bank
from .fit import Faces
from .fuse import load_faces
from .measure import source_rates

GOALS = {10: 0.5, 50: 0.8}  # the issue's: share of the engine's test fakes caught with k faces
GUARD_K = 50  # faces taught when the guard is measured with a real source left out


def _measure(model: Model, test, engine: str, cut: float) -> dict:
    p = model.score_views(np.empty(0), test.p_cnn, test.features).p_fake
    rates = source_rates(test, p, cut)
    return {
        "caught": rates[engine]["caught"],
        "auc": rates[engine]["auc_vs_every_real"],
        "kept": {s: r["kept"] for s, r in rates.items() if "kept" in r},
        "others": {s: r["caught"] for s, r in rates.items() if "caught" in r and s != engine},
    }


def curve_for(
    start_dir: Path,
    engine: str,
    prepared: list,
    ks: list[int],
    draws: int,
    quiet: bool,
    guard_k: int = 0,
) -> dict:
    start = Model(start_dir)
    if start.clip is None:
        raise DataError(f"{start_dir}: a one-view model; the curve starts from a two-view one.")
    views = start.spec.extra["views"]
    bank = read_bank(start_dir, views["clip"].get("bank"))
    if engine in set(bank.valid.sources):
        raise DataError(f"{start_dir} was fitted with {engine}: start from a model without it.")
    enc = views["clip"]["encoder"]
    others = {source_of(r) for p in prepared for r in p.rows} - {engine}
    pool = load_faces(prepared, "train", start.clip.encoder, enc["sha256"], start, others, quiet)
    fake = pool.y == 1
    feats, p_cnn = pool.features[bank.feature][fake], pool.p_cnn[fake]
    test = load_faces(prepared, "test", start.clip.encoder, enc["sha256"], start, set(), quiet)
    points = [{"k": 0, "draw": 0, **_measure(start, test, engine, start.spec.threshold)}]
    from tqdm import tqdm

    bar = tqdm(total=len(ks) * draws, desc=f"adapting to {engine}", disable=quiet)
    for k in ks:
        if k > len(feats):
            raise DataError(f"{engine} has {len(feats)} training fakes, fewer than k={k}.")
        for draw in range(draws):
            pick = np.random.default_rng([k, draw]).choice(len(feats), k, replace=False)
            began = time.time()
            point = {"k": k, "draw": draw}
            try:
                got = adapt_faces(
                    start, bank, NewFaces(feats[pick], p_cnn[pick]), engine, seed=draw
                )
                taught = with_engine(start, got.engine)
                point.update(_measure(taught, test, engine, got.threshold), threshold=got.threshold)
            except AdaptRefused as exc:
                point.update(_measure(start, test, engine, start.spec.threshold), refused=str(exc))
            point["seconds"] = round(time.time() - began, 2)
            points.append(point)
            bar.update(1)
    bar.close()
    run = {"engine": engine, "start": f"{start.spec.name} {start.spec.version}", "points": points}
    if guard_k:
        run["guard_k"] = k = min(guard_k, len(feats))
        pick = np.random.default_rng([k, 0]).choice(len(feats), k, replace=False)
        run["guard"] = guard_for(start, bank, NewFaces(feats[pick], p_cnn[pick]), test, engine)
    return run


def _subset(faces: Faces, keep: np.ndarray) -> Faces:
    p_cnn = None if faces.p_cnn is None else faces.p_cnn[keep]
    rows = [r for r, k in zip(faces.rows, keep, strict=True) if k]
    return Faces(rows, faces.y[keep], {k: v[keep] for k, v in faces.features.items()}, p_cnn)


def without(bank: Bank, source: str) -> Bank:
    """The bank as if the model had never been fitted on `source`'s photos, nor on the
    processed copies of them (chained, re-shared), which are the same photos."""
    train = np.array([not left_out(s, {source}) for s in bank.train_reals.sources])
    valid = np.array([not left_out(s, {source}) for s in bank.valid.sources])
    return Bank(bank.feature, _subset(bank.train_reals, train), _subset(bank.valid, valid))


def guard_for(start: Model, bank: Bank, fakes: NewFaces, test, engine: str) -> list[dict]:
    """The guard as it is used: real photos of a kind the model's bank does not hold. For each
    real source, adapt with that source out of the bank (its validation photos out of the guard
    too), then score its test reals at the adapted threshold: the false alarms a user meets on
    photos unlike any the guard checked. Beside it, the model not taught at the threshold
    chosen without that source's validation photos: what leaving the source out costs by
    itself, so that what the engine's head adds can be told apart."""
    rows = []
    test_reals = {s for s, y in zip(test.sources, test.y, strict=True) if y == 0}
    p_before = start.score_views(np.empty(0), test.p_cnn, test.features).p_fake
    before = source_rates(test, p_before, start.spec.threshold)
    for source in sorted(set(bank.train_reals.sources) & test_reals):
        row: dict = {"left_out": source}
        try:
            unseen = without(bank, source)
            got = adapt_faces(start, unseen, fakes, engine, rate=FALSE_ALARM)
            taught = with_engine(start, got.engine)
            p = taught.score_views(np.empty(0), test.p_cnn, test.features).p_fake
            rates = source_rates(test, p, got.threshold)
            row.update(
                called_fake=1 - rates[source]["kept"],
                called_fake_before=1 - before[source]["kept"],
                called_fake_untaught=_untaught(start, unseen, test, p_before)[source],
                reals=rates[source]["reals"],
                caught=rates[engine]["caught"],
            )
        except AdaptRefused as exc:
            row["refused"] = str(exc)
        rows.append(row)
    return rows


def _untaught(start: Model, bank: Bank, test, p_test: np.ndarray) -> dict[str, float]:
    """Each real test source called fake by the model not taught, at the threshold its bank's
    validation photos choose (the start model's own, unless a binding source is left out)."""
    v = bank.valid
    p_valid = start.score_views(np.empty(0), v.p_cnn, v.features).p_fake
    cut, _, _ = false_alarm_threshold(v.y, p_valid, v.sources, FALSE_ALARM)
    rates = source_rates(test, p_test, cut)
    return {s: 1 - r["kept"] for s, r in rates.items() if "kept" in r}


def _summary(run: dict) -> list[dict]:
    """Per k: the mean and range over draws of each figure the table shows."""
    base = run["points"][0]
    rows = []
    for k in sorted({p["k"] for p in run["points"]}):
        pts = [p for p in run["points"] if p["k"] == k]
        caught = [p["caught"] for p in pts]
        worst_kept = [min(p["kept"].values()) for p in pts]
        drop = [
            max((base["others"][s] - c for s, c in p["others"].items()), default=0.0) for p in pts
        ]
        rows.append(
            {
                "k": k,
                "caught_mean": float(np.mean(caught)),
                "caught_min": float(np.min(caught)),
                "caught_max": float(np.max(caught)),
                "auc_mean": float(np.mean([p["auc"] for p in pts])),
                "worst_real_kept": float(np.min(worst_kept)),
                "worst_other_drop": float(np.max(drop)),
                "refused": sum("refused" in p for p in pts),
                "draws": len(pts),
                "seconds": float(np.median([p.get("seconds", 0.0) for p in pts])),
            }
        )
    return rows


def markdown(runs: list[dict]) -> str:
    lines = []
    for run in runs:
        lines += [
            f"### {run['engine']}, from {run['start']} (trained without it)",
            "",
            "| faces taught | its test fakes caught (mean, min–max) | ROC-AUC vs every real | "
            "worst real source kept | worst drop of another engine | refused | s per adapt |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in run["summary"]:
            span = f"{100 * r['caught_min']:.1f}–{100 * r['caught_max']:.1f}"
            lines.append(
                f"| {r['k'] or 'none'} | {100 * r['caught_mean']:.1f} % ({span}) | "
                f"{r['auc_mean']:.3f} | "
                f"{100 * r['worst_real_kept']:.1f} % | {100 * r['worst_other_drop']:+.1f} pts | "
                f"{r['refused']} of {r['draws']} | {r['seconds']:.1f} |"
            )
        lines.append("")
        if run.get("guard"):
            lines += [
                f"The guard with one real source left out of the bank ({run['engine']}, "
                f"{run['guard_k']} faces taught): that source's test reals called fake",
                "",
                "| left out of the bank | its test reals | called fake, adapted | "
                f"not taught, threshold without it | before | {run['engine']} caught |",
                "|---|---|---|---|---|---|",
            ]
            for g in run["guard"]:
                if "refused" in g:
                    lines.append(f"| {g['left_out']} | refused: {g['refused']} | | | | |")
                    continue
                lines.append(
                    f"| {g['left_out']} | {g['reals']} | {100 * g['called_fake']:.1f} % | "
                    f"{100 * g['called_fake_untaught']:.1f} % | "
                    f"{100 * g['called_fake_before']:.1f} % | {100 * g['caught']:.1f} % |"
                )
            lines.append("")
    return "\n".join(lines)


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for run in runs:
        rows = run["summary"]
        ks = [r["k"] for r in rows]
        mean = np.array([r["caught_mean"] for r in rows]) * 100
        lo = mean - np.array([r["caught_min"] for r in rows]) * 100
        hi = np.array([r["caught_max"] for r in rows]) * 100 - mean
        refused = sum(r["refused"] for r in rows)
        label = run["engine"]
        if refused:
            label += f" ({refused} of {sum(r['draws'] for r in rows[1:])} refused: unchanged)"
        ax.errorbar(ks, mean, yerr=[lo, hi], marker="o", capsize=3, label=label)
    for k, goal in GOALS.items():
        ax.plot([k], [100 * goal], "k_", markersize=18)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xticks(sorted({r["k"] for run in runs for r in run["summary"]}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("faces of the engine taught (0: the model trained without it)")
    ax.set_ylabel("its test fakes caught at the operating point (%)")
    ax.set_ylim(0, 102)
    ax.set_title(
        "Teaching a held-out engine with `training adapt`\n(bars: min–max over draws; "
        "dashes: the goals)"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args) -> int:
    prepared = [read_prepared(d) for d in args.data]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for item in args.run:
        engine, sep, start = item.partition("=")
        if not sep:
            raise DataError(f"--run {item}: write it SOURCE=MODEL_DIR.")
        guard = GUARD_K if args.guard else 0
        runs.append(curve_for(Path(start), engine, prepared, args.k, args.draws, args.quiet, guard))
    for r in runs:
        r["summary"] = _summary(r)  # per k: the card's table, curve.md and the plot
    (out / "curve.json").write_text(json.dumps({"runs": runs, "goals": GOALS}, indent=2) + "\n")
    text = markdown(runs)
    (out / "curve.md").write_text(text)
    plot(runs, out / "curve.png")
    if not args.quiet:
        print(text)
    return 0


HELP = "measure `adapt` on engines held out: catch against faces taught"
DESCRIPTION = (
    "For each --run SOURCE=MODEL_DIR (a two-view model fitted without SOURCE), "
    "adapt it with k of SOURCE's training fakes (--draws draws of each k) and score every "
    "test split: SOURCE's catch at the adapted operating point, its ROC-AUC against every "
    "real test photo, each real source's share kept and every other engine's catch. "
    "Writes OUT/curve.json, curve.md and curve.png."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        action="append",
        required=True,
        metavar="SOURCE=MODEL_DIR",
        help="a left-out source and the two-view model fitted without it (repeat)",
    )
    parser.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="DIR",
        help="prepared folder (repeat), the left-out sources' included",
    )
    parser.add_argument(
        "--k", type=int, nargs="+", default=[10, 25, 50, 100], help="faces taught (10 25 50 100)"
    )
    parser.add_argument("--draws", type=int, default=3, help="draws of each k (3)")
    parser.add_argument(
        "--guard",
        action="store_true",
        help=f"also adapt with {GUARD_K} faces once per real source left out of the bank and "
        "report that source's test reals called fake (the guard on photos it never checked)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the curve")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or table")
