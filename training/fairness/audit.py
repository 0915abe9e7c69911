"""`python -m training fairness`: the paper's Table 9 (DI and AOD per group) with bootstrap CIs.

Predictions (the CSV of `python -m shared predict` / `training evaluate`) are joined to
demographic labels by path relative to the dataset root; every row that does not join is counted
and listed. Figures follow AIF360's definitions with the favourable outcome as positive label.

With `--fakes-labels` (SDFD's Stable Diffusion faces with their prompted race) the audit also has
labelled fakes: per FairFace race, the SD catch rate and the false-alarm rate on real photos with
Wilson intervals, AOD of each race against the other six with a bootstrap interval, and the
largest catch-rate gap between races (sd_race.md / .csv / .png).
"""

from __future__ import annotations

import argparse
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..options import add_options, option
from .labels import (
    BLEND,
    CLASSES,
    FAIRFACE_RACES,
    PACIFIC,
    PAPER_GROUPS,
    SD_SPLITS,
    SPLIT_EXCLUDED,
    FakeLabels,
    GroupDef,
    Joined,
    LabelError,
    join,
    parse_group,
    parse_splits,
    race_group,
    read_labels,
    read_sd_labels,
)
from .metrics import (
    FAV,
    POOLED,
    PRIV,
    UNFAV,
    UNPRIV,
    Bootstrap,
    Cells,
    why_undefined,
    wilson,
)


@dataclass
class GroupResult:
    definition: GroupDef
    cells: Cells  # point counts, (2 sides, 2 classes)
    boot: Cells  # resampled counts, (resamples, 2, 2)
    errors: np.ndarray  # rows of each side with no prediction (no face, unreadable...)
    outside: int  # scored rows with no value in this column
    notes: dict[str, str]


@dataclass
class RaceRow:
    """One row of the SD per-race table: SD fakes and real photos of one race label."""

    race: str
    compared: bool  # one of FairFace's seven (Pacific Islander, Blend and the pool are not)
    fakes: int  # scored SD fakes
    fake_errors: int  # SD fakes with no prediction (no face found, unreadable)
    caught: int  # fakes judged fake
    reals: int  # scored real photos
    real_errors: int
    false_alarms: int  # reals judged fake
    aod: float = float("nan")
    aod_boot: np.ndarray | None = None
    catch_boot: np.ndarray | None = None  # resampled catch rate of this race's fakes
    notes: list[str] = field(default_factory=list)

    @property
    def catch(self) -> float:
        return self.caught / self.fakes if self.fakes else float("nan")

    @property
    def false_alarm(self) -> float:
        return self.false_alarms / self.reals if self.reals else float("nan")

    def catch_ci(self) -> tuple[float, float]:
        return wilson(self.caught, self.fakes)

    def false_alarm_ci(self) -> tuple[float, float]:
        return wilson(self.false_alarms, self.reals)


@dataclass
class SdRace:
    fakes: FakeLabels
    rows: list[RaceRow]  # FairFace's seven, the seven pooled, Pacific Islander, Blend
    gap: float  # largest minus smallest catch rate over the seven, in points
    gap_boot: np.ndarray
    gap_races: tuple[str, str]  # (highest, lowest) catch rate
    left_out: int  # predictions of SD fakes of splits not audited


@dataclass
class Audit:
    favourable: str
    joined: Joined
    results: list[GroupResult]
    bootstrap: Bootstrap
    threshold: float | None
    class_counts: dict[str, int]
    overall: GroupResult  # every scored row on the "privileged" side, nothing on the other
    sd: SdRace | None = None

    @property
    def unfavourable(self) -> str:
        return "fake" if self.favourable == "real" else "real"

    def detector_rates(self, cells: Cells) -> dict[str, np.ndarray]:
        """The detector's two errors in plain words, whichever outcome is favourable."""
        tpr, fpr = cells.tpr(), cells.fpr()
        if self.favourable == "real":
            return {"real_called_fake": 1 - tpr, "fake_called_real": fpr}
        return {"real_called_fake": fpr, "fake_called_real": 1 - tpr}


def _score(
    side: np.ndarray,
    scored: np.ndarray,
    truly_fav: np.ndarray,
    judged_fav: np.ndarray,
    boot: Bootstrap,
    name: str,
) -> tuple[Cells, Cells]:
    """Point counts and their stratified bootstrap for one PRIV/UNPRIV split of the rows."""
    cells = Cells.from_rows(np.where(scored, side, -1), truly_fav, judged_fav)
    by_cell = [
        [judged_fav[scored & (side == s) & (truly_fav == (c == FAV))] for c in (FAV, UNFAV)]
        for s in (PRIV, UNPRIV)
    ]
    # The key ties each definition's stream to its name: adding a --group leaves the
    # other intervals unchanged.
    return cells, boot.resample(by_cell, key=zlib.crc32(name.encode()))


def run_sd_race(joined: Joined, fakes: FakeLabels, favourable: str, boot: Bootstrap) -> SdRace:
    """SD fakes (true class fake, with `sd_race`) and real photos with a FairFace race, by race.

    AOD per race follows SD_SCHEME with AIF360's sign (unprivileged minus privileged) and the
    audit's bootstrap; Pacific Islander and Blend fakes are counted but compared with nothing.
    """
    m = _SdRows.of(joined.rows, favourable)
    compared = np.isin(m.group, FAIRFACE_RACES) & (m.sd | m.real)
    out = [_race_row(m, race, compared, favourable, boot) for race in FAIRFACE_RACES]
    out.append(m.counts(None, compared))
    out += [m.counts(race, m.group == race) for race in (PACIFIC, BLEND)]
    gap, gap_boot, order = _catch_gap(out[: len(FAIRFACE_RACES)], boot)
    return SdRace(fakes, out, gap, gap_boot, order, joined.counts[SPLIT_EXCLUDED])


@dataclass
class _SdRows:
    """The joined rows as masks, one entry per row: an SD fake, a real photo with a FairFace
    race, its race group ("" for neither), scored, judged fake, truly and judged favourable."""

    sd: np.ndarray
    real: np.ndarray
    group: np.ndarray
    scored: np.ndarray
    judged_fake: np.ndarray
    truly_fav: np.ndarray
    judged_fav: np.ndarray

    @classmethod
    def of(cls, rows: list[dict], favourable: str) -> _SdRows:
        sd = np.array([bool(r.get("sd_race")) and r["true_class"] == "fake" for r in rows], bool)
        real = np.array(
            [r["true_class"] == "real" and r.get("race") in FAIRFACE_RACES for r in rows], bool
        )
        group = np.array(
            [
                (race_group(r["sd_race"]) or "") if f else (r["race"] if t else "")
                for r, f, t in zip(rows, sd, real, strict=True)
            ],
            dtype=object,
        )
        return cls(
            sd=sd,
            real=real,
            group=group,
            scored=np.array([not r["error"] for r in rows], dtype=bool),
            judged_fake=np.array([r["judged"] == "fake" for r in rows], dtype=bool),
            truly_fav=np.array([r["true_class"] == favourable for r in rows], dtype=bool),
            judged_fav=np.array([r["judged"] == favourable for r in rows], dtype=bool),
        )

    def counts(self, race: str | None, in_group: np.ndarray) -> RaceRow:
        """The row's counts of the rows in `in_group` (race None: the pooled row)."""
        f, t, scored = in_group & self.sd, in_group & self.real, self.scored
        return RaceRow(
            race=race or POOLED,
            compared=race in FAIRFACE_RACES,
            fakes=int((f & scored).sum()),
            fake_errors=int((f & ~scored).sum()),
            caught=int((f & scored & self.judged_fake).sum()),
            reals=int((t & scored).sum()),
            real_errors=int((t & ~scored).sum()),
            false_alarms=int((t & scored & self.judged_fake).sum()),
        )


def _race_row(
    m: _SdRows, race: str, compared: np.ndarray, favourable: str, boot: Bootstrap
) -> RaceRow:
    """One of FairFace's seven: its counts, AOD against the other six with its bootstrap, the
    resampled catch rate of its fakes, and why an interval says less than it seems to."""
    row = m.counts(race, m.group == race)
    side = np.where(compared, np.where(m.group == race, UNPRIV, PRIV), -1)
    cells, resampled = _score(side, m.scored, m.truly_fav, m.judged_fav, boot, f"sd race: {race}")
    row.aod = float(cells.average_odds_difference())
    row.aod_boot = resampled.average_odds_difference()
    fake_cls = UNFAV if favourable == "real" else FAV
    k = resampled.k[:, UNPRIV, fake_cls]
    n = resampled.n[:, UNPRIV, fake_cls]
    caught = (n - k) if favourable == "real" else k
    row.catch_boot = np.where(n > 0, caught / np.maximum(n, 1), np.nan)
    unfav = "fake" if favourable == "real" else "real"
    names = ("the other six", race)
    row.notes = [
        v for key, v in why_undefined(cells, names, favourable, unfav).items() if key == "aod"
    ]
    flat = [
        f"all {size} {what} {did[0] if hits else did[1]}"
        for size, hits, what, did in (
            (row.fakes, row.caught, "fakes", ("caught", "missed")),
            (row.reals, row.false_alarms, "reals", ("called fake", "called real")),
        )
        if size and hits in (0, size)
    ]
    if flat:
        row.notes.append(
            f"The AOD interval gets no spread from cells judged all one way ({'; '.join(flat)}"
            "); their Wilson intervals show that uncertainty."
        )
    return row


def _catch_gap(rows: list[RaceRow], boot: Bootstrap) -> tuple[float, np.ndarray, tuple[str, str]]:
    """The largest catch-rate gap between the races with fakes, in points, its bootstrap and
    (highest, lowest) race; undefined (nan) with fewer than two such races."""
    present = [r for r in rows if r.fakes]
    if len(present) < 2:
        return float("nan"), np.full(boot.resamples, np.nan), ("", "")
    rates = np.array([r.catch for r in present])
    gap = float((rates.max() - rates.min()) * 100)
    stacked = np.stack([r.catch_boot for r in present], axis=1)
    gap_boot = (stacked.max(axis=1) - stacked.min(axis=1)) * 100
    return gap, gap_boot, (present[int(rates.argmax())].race, present[int(rates.argmin())].race)


def run_audit(
    joined: Joined,
    groups: list[GroupDef],
    favourable: str = "real",
    resamples: int = 1000,
    seed: int = 0,
    threshold: float | None = None,
    progress: bool = True,
    fakes: FakeLabels | None = None,
) -> Audit:
    if favourable not in CLASSES:
        raise LabelError(f"--favourable must be real or fake, not {favourable!r}.")
    rows = joined.rows
    scored = np.array([not r["error"] for r in rows], dtype=bool)
    truly_fav = np.array([r["true_class"] == favourable for r in rows], dtype=bool)
    judged_fav = np.array([r["judged"] == favourable for r in rows], dtype=bool)
    class_counts = {c: sum(r["true_class"] == c for r in rows if not r["error"]) for c in CLASSES}
    from tqdm import tqdm

    extra = len(FAIRFACE_RACES) if fakes is not None else 0
    bar = tqdm(total=len(groups) + 1 + extra, desc="bootstrap", unit="group", disable=not progress)
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
        cells, resampled = _score(side, scored, truly_fav, judged_fav, boot, gdef.name)
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
    sd = run_sd_race(joined, fakes, favourable, boot) if fakes is not None else None
    bar.close()
    boot.progress = None
    return Audit(favourable, joined, results[1:], boot, threshold, class_counts, results[0], sd)


def run(args: argparse.Namespace) -> int:
    from .report import write_reports

    for p in args.predictions:
        if not p.is_file():
            raise LabelError(f"{p}: no such predictions file.")
    if args.resamples < 100:
        raise LabelError("--resamples must be at least 100 for a 95 % interval.")
    labels = read_labels(args.labels)
    fakes = None
    if args.fakes_labels is not None:
        splits = parse_splits(args.fake_splits)
        fakes = read_sd_labels(args.fakes_labels, labels, splits)
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
        fakes=fakes,
    )
    written = write_reports(audit, args.out, args)
    print((args.out / "fairness.md").read_text().split("\n## Per group")[0])
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


# `fairness`'s options, in --help's order.
OPTIONS = [
    option(
        "--predictions",
        type=Path,
        nargs="+",
        required=True,
        metavar="CSV",
        help="predictions CSV(s): path,face,x,y,w,h,p_fake,label,error[,true_label]; face 0 "
        "(the largest face) of each file is audited, further faces are counted and skipped",
    ),
    option(
        "--labels",
        type=Path,
        nargs="+",
        required=True,
        metavar="CSV_OR_DIR",
        help="FairFace CSV (file,age,gender,race) or its folder, a falsify pairs.csv or its "
        "folder, or a UTKFace folder (age_gender_race_*.jpg)",
    ),
    option(
        "--fakes-labels",
        type=Path,
        default=None,
        metavar="DIR_OR_CSV",
        help="the stable-diffusion folder (or its sdfd_labels.csv: path,race,who,prompt, path "
        "relative to the folder): predictions of its images join as fakes with their race. "
        "Pacific Islander and 'Blend: A + B' fakes are counted and reported on their own rows "
        "but left out of every race comparison (FairFace has no such reals); predict the "
        "FairFace reals and these fakes into one CSV or pass both CSVs to --predictions",
    ),
    option(
        "--fake-splits",
        default=",".join(SD_SPLITS),
        metavar="SPLIT[,SPLIT]",
        help="which stable-diffusion splits count as audited fakes; predictions of other splits "
        "are counted as left out. The default leaves out train, which the shipped model "
        "trained on",
    ),
    option("--out", type=Path, required=True, metavar="DIR", help="report folder"),
    option(
        "--favourable",
        choices=CLASSES,
        default="real",
        help="the favourable outcome (AIF360's positive label): being judged real",
    ),
    option(
        "--group",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="extra definition: VALUE (or V1|V2) unprivileged vs every other value, e.g. "
        "race=Indian; repeatable",
    ),
    option(
        "--privileged-group",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="extra definition with VALUE as the privileged side; repeatable",
    ),
    option("--no-paper-groups", action="store_true", help="only the --group definitions"),
    option("--resamples", type=int, default=1000, help="bootstrap resamples"),
    option("--seed", type=int, default=0, help="bootstrap seed"),
    option(
        "--threshold",
        type=float,
        default=None,
        help="judge fake when p_fake >= this instead of using the CSV's label column",
    ),
    option(
        "--truth-column",
        default=None,
        help="predictions column with each row's true class (real/fake); default: true_label "
        "if present, else the labels' class (FairFace/UTKFace are real photographs, pairs.csv "
        "fakes are fake), else a real/ or fake/ folder in the path",
    ),
    option(
        "--base",
        type=Path,
        help="folder that relative prediction paths are relative to",
    ),
    option("--quiet", action="store_true", help="no progress bar"),
]


HELP = "audit predictions by age, gender and race (DI, AOD, bootstrap CIs)"
DESCRIPTION = (
    "Join a predictions CSV to demographic labels and compute, for the paper's six "
    "group definitions (gender; White vs others; Black vs others; age 0-2, 3-9, 70+ vs "
    "others) and any --group you add: per-group counts, selection rate, TPR, FPR, "
    "confusion counts, disparate impact and average odds difference (AIF360's "
    "definitions), each with a seeded 95 % percentile bootstrap interval. Writes "
    "fairness.csv, fairness_groups.csv, fairness.md, fairness.tex, fairness.png, "
    "joined.csv and unjoined.csv to --out. FairFace is all real, so TPR and AOD need "
    "labelled fakes: --fakes-labels adds Stable Diffusion fakes with their prompted "
    "race and writes sd_race.md, sd_race.csv and sd_race.png (per FairFace race: SD "
    "catch rate and false-alarm rate on the real photos with 95 % Wilson intervals, "
    "AOD of each race against the other six with a bootstrap interval, the largest "
    "catch-rate gap between races; goals |AOD| <= 0.02 and a gap <= 5 points)."
)
FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, OPTIONS)
    # --base defaults to the working directory when the command is set up, not imported.
    parser.set_defaults(base=Path.cwd())
