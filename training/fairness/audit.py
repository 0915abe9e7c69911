"""`python -m training fairness`: the paper's Table 9 (DI and AOD per group) with bootstrap CIs.

Predictions (the CSV of `python -m shared predict` / `training evaluate`) are joined to
demographic labels by path relative to the dataset root; every row that does not join is counted
and listed. Figures follow AIF360's definitions with the favourable outcome as positive label.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .labels import (
    CLASSES,
    PAPER_GROUPS,
    GroupDef,
    Joined,
    LabelError,
    join,
    parse_group,
    read_labels,
)
from .metrics import FAV, PRIV, UNFAV, UNPRIV, Bootstrap, Cells, why_undefined


@dataclass
class GroupResult:
    definition: GroupDef
    cells: Cells  # point counts, (2 sides, 2 classes)
    boot: Cells  # resampled counts, (resamples, 2, 2)
    errors: np.ndarray  # rows of each side with no prediction (no face, unreadable...)
    outside: int  # scored rows with no value in this column
    notes: dict[str, str]


@dataclass
class Audit:
    favourable: str
    joined: Joined
    results: list[GroupResult]
    bootstrap: Bootstrap
    threshold: float | None
    class_counts: dict[str, int]
    overall: GroupResult  # every scored row on the "privileged" side, nothing on the other

    @property
    def unfavourable(self) -> str:
        return "fake" if self.favourable == "real" else "real"

    def detector_rates(self, cells: Cells) -> dict[str, np.ndarray]:
        """The detector's two errors in plain words, whichever outcome is favourable."""
        tpr, fpr = cells.tpr(), cells.fpr()
        if self.favourable == "real":
            return {"real_called_fake": 1 - tpr, "fake_called_real": fpr}
        return {"real_called_fake": fpr, "fake_called_real": 1 - tpr}


def run_audit(
    joined: Joined,
    groups: list[GroupDef],
    favourable: str = "real",
    resamples: int = 1000,
    seed: int = 0,
    threshold: float | None = None,
    progress: bool = True,
) -> Audit:
    if favourable not in CLASSES:
        raise LabelError(f"--favourable must be real or fake, not {favourable!r}.")
    rows = joined.rows
    scored = np.array([not r["error"] for r in rows], dtype=bool)
    truly_fav = np.array([r["true_class"] == favourable for r in rows], dtype=bool)
    judged_fav = np.array([r["judged"] == favourable for r in rows], dtype=bool)
    class_counts = {c: sum(r["true_class"] == c for r in rows if not r["error"]) for c in CLASSES}
    from tqdm import tqdm

    bar = tqdm(total=len(groups) + 1, desc="bootstrap", unit="group", disable=not progress)
    boot = Bootstrap(resamples=resamples, seed=seed, progress=bar)
    results = []
    everyone = GroupDef("all", None, frozenset(), "All", "")
    for gdef in [everyone, *groups]:
        if gdef is not everyone and gdef.column not in joined.attr_columns:
            bar.close()
            have = ", ".join(joined.attr_columns) or "none"
            raise LabelError(
                f"Group '{gdef.name}' needs a '{gdef.column}' label column; the labels have: "
                f"{have}."
            )
        if gdef is everyone:
            side = np.full(len(rows), PRIV, dtype=np.int8)
        else:
            side = gdef.sides([r[gdef.column] for r in rows])
        cells = Cells.from_rows(np.where(scored, side, -1), truly_fav, judged_fav)
        by_cell = [
            [judged_fav[scored & (side == s) & (truly_fav == (c == FAV))] for c in (FAV, UNFAV)]
            for s in (PRIV, UNPRIV)
        ]
        # The key ties each definition's stream to its name: adding a --group leaves the
        # other intervals unchanged.
        resampled = boot.resample(by_cell, key=zlib.crc32(gdef.name.encode()))
        errors = np.array([int(((~scored) & (side == s)).sum()) for s in (PRIV, UNPRIV)])
        names = (gdef.privileged_name, gdef.unprivileged_name)
        unfav = "fake" if favourable == "real" else "real"
        results.append(
            GroupResult(
                gdef,
                cells,
                resampled,
                errors,
                int((scored & (side < 0)).sum()),
                why_undefined(cells, names, favourable, unfav),
            )
        )
    bar.close()
    boot.progress = None
    return Audit(favourable, joined, results[1:], boot, threshold, class_counts, results[0])


def _run(args: argparse.Namespace) -> int:
    from .report import write_reports

    try:
        for p in args.predictions:
            if not p.is_file():
                raise LabelError(f"{p}: no such predictions file.")
        if args.resamples < 100:
            raise LabelError("--resamples must be at least 100 for a 95 % interval.")
        labels = read_labels(args.labels)
        joined = join(args.predictions, labels, args.base, args.threshold, args.truth_column)
        if not joined.rows:
            raise LabelError(
                f"No prediction row joined a label ({dict(joined.counts)}). Paths are matched "
                f"relative to each dataset root or, if relative, to --base {args.base}."
            )
        groups = [] if args.no_paper_groups else list(PAPER_GROUPS)
        groups += [parse_group(g, privileged=False) for g in args.group]
        groups += [parse_group(g, privileged=True) for g in args.privileged_group]
        if not groups:
            raise LabelError("No group definitions: drop --no-paper-groups or add --group.")
        audit = run_audit(
            joined,
            groups,
            args.favourable,
            args.resamples,
            args.seed,
            args.threshold,
            progress=not args.quiet,
        )
        written = write_reports(audit, args.out, args)
    except LabelError as exc:
        print(f"fairness: {exc}", file=sys.stderr)
        return 2
    print((args.out / "fairness.md").read_text().split("\n## Per group")[0])
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "fairness",
        help="audit predictions by age, gender and race (DI, AOD, bootstrap CIs)",
        description=(
            "Join a predictions CSV to demographic labels and compute, for the paper's six "
            "group definitions (gender; White vs others; Black vs others; age 0-2, 3-9, 70+ vs "
            "others) and any --group you add: per-group counts, selection rate, TPR, FPR, "
            "confusion counts, disparate impact and average odds difference (AIF360's "
            "definitions), each with a seeded 95 %% percentile bootstrap interval. Writes "
            "fairness.csv, fairness_groups.csv, fairness.md, fairness.tex, fairness.png, "
            "joined.csv and unjoined.csv to --out."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--predictions",
        type=Path,
        nargs="+",
        required=True,
        metavar="CSV",
        help="predictions CSV(s): path,face,x,y,w,h,p_fake,label,error[,true_label]; face 0 "
        "(the largest face) of each file is audited, further faces are counted and skipped",
    )
    p.add_argument(
        "--labels",
        type=Path,
        nargs="+",
        required=True,
        metavar="CSV_OR_DIR",
        help="FairFace CSV (file,age,gender,race) or its folder, a falsify pairs.csv or its "
        "folder, or a UTKFace folder (age_gender_race_*.jpg)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="report folder")
    p.add_argument(
        "--favourable",
        choices=CLASSES,
        default="real",
        help="the favourable outcome (AIF360's positive label): being judged real",
    )
    p.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="extra definition: VALUE (or V1|V2) unprivileged vs every other value, e.g. "
        "race=Indian; repeatable",
    )
    p.add_argument(
        "--privileged-group",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="extra definition with VALUE as the privileged side; repeatable",
    )
    p.add_argument("--no-paper-groups", action="store_true", help="only the --group definitions")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="judge fake when p_fake >= this instead of using the CSV's label column",
    )
    p.add_argument(
        "--truth-column",
        default=None,
        help="predictions column with each row's true class (real/fake); default: true_label "
        "if present, else the labels' class (FairFace/UTKFace are real photographs, pairs.csv "
        "fakes are fake), else a real/ or fake/ folder in the path",
    )
    p.add_argument(
        "--base",
        type=Path,
        default=Path.cwd(),
        help="folder that relative prediction paths are relative to",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
