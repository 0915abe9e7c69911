"""Write an audit as CSV (the numbers), Markdown (to read), LaTeX (Table 9's shape) and a PNG."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np

from .labels import BLEND, FAIRFACE_RACES, PACIFIC
from .metrics import AOD_GOAL, FAV, GAP_GOAL, POOLED, PRIV, SD_SCHEME, SIDES, UNFAV, UNPRIV

SUMMARY_COLUMNS = [
    "definition", "column", "privileged", "unprivileged", "favourable",
    "n_privileged", "n_unprivileged", "errors_privileged", "errors_unprivileged", "outside",
    "di", "di_lo", "di_hi", "aod", "aod_lo", "aod_hi", "note",
]  # fmt: skip
RATES = ["selection_rate", "tpr", "fpr", "real_called_fake", "fake_called_real"]
SD_COLUMNS = [
    "race", "compared", "n_fakes", "fake_errors", "caught", "catch_rate", "catch_lo",
    "catch_hi", "n_reals", "real_errors", "false_alarms", "false_alarm_rate", "false_alarm_lo",
    "false_alarm_hi", "aod", "aod_lo", "aod_hi", "aod_goal", "catch_gap_points",
    "catch_gap_lo", "catch_gap_hi", "catch_gap_goal", "note",
]  # fmt: skip


def _num(x: float, digits: int = 4) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(x: float, lo: float, hi: float, digits: int = 3) -> str:
    if not math.isfinite(x):
        return "—"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{x:.{digits}f}"
    return f"{x:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _rate(row: dict, name: str) -> str:
    return _ci(row[name], row[f"{name}_lo"], row[f"{name}_hi"])


def summary_rows(audit) -> list[dict]:
    out = []
    for r in audit.results:
        d = r.definition
        di, aod = float(r.cells.disparate_impact()), float(r.cells.average_odds_difference())
        di_lo, di_hi = audit.bootstrap.interval(r.boot.disparate_impact())
        aod_lo, aod_hi = audit.bootstrap.interval(r.boot.average_odds_difference())
        size = r.cells.size()
        out.append(
            {
                "definition": d.name,
                "column": d.column,
                "privileged": d.privileged_name,
                "unprivileged": d.unprivileged_name,
                "favourable": audit.favourable,
                "n_privileged": int(size[PRIV]),
                "n_unprivileged": int(size[UNPRIV]),
                "errors_privileged": int(r.errors[PRIV]),
                "errors_unprivileged": int(r.errors[UNPRIV]),
                "outside": r.outside,
                "di": di, "di_lo": di_lo, "di_hi": di_hi,
                "aod": aod, "aod_lo": aod_lo, "aod_hi": aod_hi,
                "note": " ".join(r.notes.values()),
            }
        )  # fmt: skip
    return out


def group_rows(audit) -> list[dict]:
    """Per-group rows; the first is every scored row together (definition "all")."""
    fav, unfav = audit.favourable, audit.unfavourable
    out = []
    for r in [audit.overall, *audit.results]:
        d = r.definition
        point = {"selection_rate": r.cells.selection_rate(), "tpr": r.cells.tpr()}
        point |= {"fpr": r.cells.fpr(), **audit.detector_rates(r.cells)}
        boot = {"selection_rate": r.boot.selection_rate(), "tpr": r.boot.tpr()}
        boot |= {"fpr": r.boot.fpr(), **audit.detector_rates(r.boot)}
        conf = r.cells.confusion()
        sides = ((PRIV, d.privileged_name), (UNPRIV, d.unprivileged_name))
        for s, name in sides if r is not audit.overall else sides[:1]:
            row = {
                "definition": d.name if r is not audit.overall else "all",
                "side": "all" if r is audit.overall else SIDES[s],
                "group": name,
                "rows": int(r.cells.size()[s] + r.errors[s]),
                "errors": int(r.errors[s]),
                "error_rate": float(r.errors[s] / max(1, r.cells.size()[s] + r.errors[s])),
                "n": int(r.cells.size()[s]),
                f"n_{fav}": int(r.cells.n[s, FAV]),
                f"n_{unfav}": int(r.cells.n[s, UNFAV]),
                f"judged_{fav}": int(r.cells.k[s].sum()),
                **{k: int(v[s]) for k, v in conf.items()},
            }
            for rate in RATES:
                lo, hi = audit.bootstrap.interval(boot[rate][:, s])
                row |= {rate: float(point[rate][s]), f"{rate}_lo": lo, f"{rate}_hi": hi}
            out.append(row)
    return out


def _write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    columns = columns or (list(rows[0]) if rows else [])
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: _num(v, 6) if isinstance(v, float) else v for k, v in row.items()})


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _judged_by(audit) -> str:
    return f"p_fake ≥ {audit.threshold:g}" if audit.threshold is not None else "the CSV's label"


def markdown(audit, summary: list[dict], groups: list[dict], args: argparse.Namespace) -> str:
    """fairness.md: what was joined and how, the rows, Table 9 (DI and AOD) and every group."""
    return "\n".join(
        _md_intro(audit, args)
        + _md_rows(audit, groups)
        + _md_table9(summary)
        + _md_groups(audit, groups)
    )


def _md_intro(audit, args: argparse.Namespace) -> list[str]:
    """The inputs, the favourable outcome, the judgement and the intervals."""
    fav = audit.favourable
    return [
        "# Fairness audit",
        "",
        f"- Predictions: {', '.join(str(p) for p in args.predictions)}",
        f"- Labels: {', '.join(str(p) for p in args.labels)}"
        + (
            f"; labelled fakes: {audit.sd.fakes.csv} (splits {', '.join(audit.sd.fakes.splits)})"
            if audit.sd is not None
            else ""
        ),
        f"- Favourable outcome: **judged {fav}** (AIF360's positive label). Privileged group: "
        "the Table 9 row name (Male, White, Non-Black, Non-Child, Non-Senior).",
        f"- Judgement: {_judged_by(audit)}. Audited face: face 0 (the largest) of each file.",
        f"- Intervals: 95 % percentile bootstrap, {audit.bootstrap.resamples} resamples, seed "
        f"{audit.bootstrap.seed}, rows resampled within each (group × true class) cell.",
        "",
    ]


def _md_rows(audit, groups: list[dict]) -> list[str]:
    """How the prediction rows joined the labels, the overall rates, what had no prediction,
    and which rates a one-class label set leaves undefined."""
    fav, unfav = audit.favourable, audit.unfavourable
    c = audit.joined.counts
    n_fake, n_real = audit.class_counts["fake"], audit.class_counts["real"]
    lines = [
        "## Rows",
        "",
        f"{c['rows']} prediction rows: {c['joined']} joined a label "
        f"({c['scored']} scored, {c['error']} without a prediction), "
        f"{c['extra_face']} extra faces (face ≥ 1) skipped, {c['duplicate']} duplicates skipped, "
        f"{c['no_label']} with no label, {c['ambiguous']} ambiguous (same relative path under "
        f"two roots), {c['no_true_class']} with no true class"
        + (
            f", {c['class_conflict']} whose true_label overrode the labels' class"
            if c["class_conflict"]
            else ""
        )
        + (
            f", {c['fake_split_excluded']} fakes of a split left out by --fake-splits"
            if c["fake_split_excluded"]
            else ""
        )
        + ". Unjoined rows are listed in unjoined.csv; every joined row is in joined.csv.",
        "",
        f"Scored rows by true class: {n_real} real, {n_fake} fake. Overall, real photos judged "
        f"fake: {_rate(groups[0], 'real_called_fake')}; fakes judged real: "
        f"{_rate(groups[0], 'fake_called_real')} (95 % CI).",
    ]
    errs = [r["error"] for r in audit.joined.rows if r["error"]]
    if errs:
        kinds = {e: errs.count(e) for e in sorted(set(errs))}
        lines.append(
            "Rows without a prediction (excluded from the rates, counted per group as `errors`): "
            + ", ".join(f"{k} {v}" for k, v in kinds.items())
            + "."
        )
    if n_fake == 0 or n_real == 0:
        missing = "fake" if n_fake == 0 else "real"
        undefined = "FPR" if missing == unfav else "TPR"
        lines += [
            "",
            f"**The labelled set has no {missing} images** (FairFace and UTKFace are all real "
            f"photographs), so {undefined} (rate judged {fav} among truly {missing}) is undefined "
            f"and average odds difference is left empty. The per-group "
            f"`{'real_called_fake' if missing == 'fake' else 'fake_called_real'}` rate (with "
            "intervals) and disparate impact are computed on what exists. For TPR and AOD, add "
            "labelled fakes: `python -m training falsify` writes them with the same labels.",
        ]
    return lines


def _md_table9(summary: list[dict]) -> list[str]:
    """Table 9: DI and AOD of each privileged/unprivileged pair, with intervals and notes."""
    lines = [
        "",
        "## Table 9: disparate impact and average odds difference",
        "",
        "DI = P(judged fav | unprivileged) / P(judged fav | privileged), parity 1.0 "
        "(the four-fifths rule flags < 0.8). AOD = ½[(FPR_u − FPR_p) + (TPR_u − TPR_p)], "
        "parity 0.0.",
        "",
    ]
    rows = [
        [
            s["privileged"], s["unprivileged"], s["n_privileged"], s["n_unprivileged"],
            _ci(s["di"], s["di_lo"], s["di_hi"]), _ci(s["aod"], s["aod_lo"], s["aod_hi"]),
        ]
        for s in summary
    ]  # fmt: skip
    lines.append(
        _md_table(["Privileged", "Unprivileged", "n priv", "n unpriv", "DI [95 % CI]",
                   "AOD [95 % CI]"], rows)
    )  # fmt: skip
    notes = [f"- {s['privileged']} vs {s['unprivileged']}: {s['note']}" for s in summary
             if s["note"]]  # fmt: skip
    if notes:
        lines += ["", "Notes:", *notes]
    return lines


def _md_groups(audit, groups: list[dict]) -> list[str]:
    """Every group's counts and rates, with intervals, and the plot."""
    fav, unfav = audit.favourable, audit.unfavourable
    lines = [
        "",
        "## Per group",
        "",
        f"TPR = P(judged {fav} | truly {fav}), FPR = P(judged {fav} | truly {unfav}) "
        f"(favourable-positive, as AIF360). In the detector's words: real_called_fake = "
        "P(judged fake | real), fake_called_real = P(judged real | fake). `errors`: rows with "
        "no prediction (e.g. no face found).",
        "",
    ]
    head = ["Definition", "Group", "n", "no prediction", "TP", "FP", "TN", "FN", "Selection",
            "TPR", "FPR", "Real called fake", "Fake called real"]  # fmt: skip
    body = [
        [
            g["definition"], g["group"], g["n"], f"{g['errors']} ({g['error_rate']:.1%})",
            g["tp"], g["fp"], g["tn"], g["fn"],
            *(_ci(g[r], g[f"{r}_lo"], g[f"{r}_hi"]) for r in RATES),
        ]
        for g in groups
    ]  # fmt: skip
    lines += [_md_table(head, body), "", "![DI and AOD with 95 % intervals](fairness.png)", ""]
    return lines


def latex(summary: list[dict], audit) -> str:
    def cell(x, lo, hi):
        if not math.isfinite(x):
            return "--"
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return f"{x:.3f}"
        return f"{x:.3f} [{lo:.3f}, {hi:.3f}]"

    def esc(text: str) -> str:
        return text.replace("&", r"\&").replace("%", r"\%").replace("_", r"\_")

    body = [
        f"{esc(s['privileged'])} & {esc(s['unprivileged'])} & "
        f"{cell(s['di'], s['di_lo'], s['di_hi'])} & {cell(s['aod'], s['aod_lo'], s['aod_hi'])} \\\\"
        for s in summary
    ]
    return "\n".join(
        [
            "% Generated by `python -m training fairness`; needs \\usepackage{booktabs}.",
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{Disparate impact (DI) and average odds difference (AOD) by privileged "
            f"group; favourable outcome: judged {audit.favourable}. Brackets: 95\\,\\% bootstrap "
            f"interval ({audit.bootstrap.resamples} resamples). -- = undefined.}}",
            "\\label{tab:fairness}",
            "\\begin{tabular}{llcc}",
            "\\toprule",
            "Privileged & Unprivileged & DI & AOD \\\\",
            "\\midrule",
            *body,
            "\\bottomrule",
            "\\end{tabular}",
            "\\end{table}",
            "",
        ]
    )


def chart(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{s['privileged']}\nvs {s['unprivileged']}" for s in summary]
    y = np.arange(len(summary))[::-1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.7 * len(summary) + 1.6), sharey=True)
    for ax, key, parity, title in (
        (axes[0], "di", 1.0, "Disparate impact (parity 1.0)"),
        (axes[1], "aod", 0.0, "Average odds difference (parity 0.0)"),
    ):
        ax.axvline(parity, color="black", lw=1)
        if key == "di":
            ax.axvspan(0.8, 1.25, color="tab:green", alpha=0.08, label="four-fifths band")
        for yi, s in zip(y, summary, strict=True):
            x, lo, hi = s[key], s[f"{key}_lo"], s[f"{key}_hi"]
            if not math.isfinite(x):
                ax.text(
                    parity,
                    yi,
                    " undefined",
                    va="center",
                    ha="center",
                    color="grey",
                    fontsize=8,
                    backgroundcolor="white",
                )
                continue
            err = [[x - lo], [hi - x]] if math.isfinite(lo) and math.isfinite(hi) else None
            ax.errorbar(x, yi, xerr=err, fmt="o", color="tab:blue", capsize=4)
        if not any(math.isfinite(s[key]) for s in summary):
            ax.set_xlim(parity - 0.3, parity + 0.3)
        ax.set_ylim(-0.6, len(summary) - 0.4)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, names, fontsize=8)
    axes[0].legend(loc="lower right", fontsize=7)
    fig.suptitle(f"Fairness by group, favourable = judged {summary[0]['favourable']}; 95 % CIs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def goal_verdict(x: float, lo: float, hi: float, limit: float) -> str:
    """Whether |x| <= limit: "met"/"not met" when the interval agrees, else says it does not."""
    if not math.isfinite(x):
        return "undefined"
    ok = abs(x) <= limit
    word = "met" if ok else "not met"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return word
    settled = (-limit <= lo and hi <= limit) if ok else (lo > limit or hi < -limit)
    return word if settled else f"{word} (CI crosses ±{limit:g})"


def sd_rows(audit) -> list[dict]:
    """sd_race.csv: one row per race label, the pooled seven carrying the catch-rate gap."""
    sd, interval = audit.sd, audit.bootstrap.interval
    out = []
    for r in sd.rows:
        c_lo, c_hi = r.catch_ci()
        f_lo, f_hi = r.false_alarm_ci()
        row = {
            "race": r.race,
            "compared": "yes" if r.compared else "pooled" if r.race == POOLED else "no",
            "n_fakes": r.fakes, "fake_errors": r.fake_errors, "caught": r.caught,
            "catch_rate": r.catch, "catch_lo": c_lo, "catch_hi": c_hi,
            "n_reals": r.reals, "real_errors": r.real_errors, "false_alarms": r.false_alarms,
            "false_alarm_rate": r.false_alarm, "false_alarm_lo": f_lo, "false_alarm_hi": f_hi,
            "aod": float("nan"), "aod_lo": float("nan"), "aod_hi": float("nan"), "aod_goal": "",
            "catch_gap_points": float("nan"), "catch_gap_lo": float("nan"),
            "catch_gap_hi": float("nan"), "catch_gap_goal": "",
            "note": " ".join(r.notes),
        }  # fmt: skip
        if r.compared:
            lo, hi = interval(r.aod_boot)
            verdict = goal_verdict(r.aod, lo, hi, AOD_GOAL)
            row |= {"aod": r.aod, "aod_lo": lo, "aod_hi": hi, "aod_goal": verdict}
        elif r.race == POOLED:
            lo, hi = interval(sd.gap_boot)
            row |= {
                "catch_gap_points": sd.gap, "catch_gap_lo": lo, "catch_gap_hi": hi,
                "catch_gap_goal": goal_verdict(sd.gap, lo, hi, GAP_GOAL),
            }  # fmt: skip
        else:
            row["note"] = "Not compared: FairFace has no reals of this label."
        out.append(row)
    return out


def _pct(x: float, lo: float, hi: float) -> str:
    if not math.isfinite(x):
        return "—"
    return f"{x:.1%} [{lo:.1%}, {hi:.1%}]".replace("%", " %")


def sd_section(audit, rows: list[dict], heading: str = "##") -> list[str]:
    """The per-race SD table, its goals and how to read them (Markdown lines)."""
    sd = audit.sd
    fav = audit.favourable
    splits = ", ".join(sd.fakes.splits)
    pooled = next(r for r in rows if r["race"] == POOLED)
    seven = [r for r in rows if r["compared"] == "yes"]
    sizes = [r["n_fakes"] for r in seven]
    lines = [
        f"{heading} Stable Diffusion fakes by race",
        "",
        f"Fakes: Stable Diffusion 2.1 faces from SDFD ({sd.fakes.csv}), splits **{splits}** "
        f"(`--fake-splits`; the shipped model trains on stable-diffusion/train, so only valid "
        f"and test are unseen by it). {sd.left_out} prediction(s) of fakes from other splits "
        "were left out. Reals: the joined real photos with a FairFace race label. Catch rate "
        "= fakes judged fake; false-alarm rate = reals judged fake; both with 95 % Wilson "
        "intervals. Rows with no prediction (e.g. no face found) are counted, not scored.",
        "",
        f"AOD scheme: {SD_SCHEME}; AIF360's definition with favourable outcome = judged {fav}, "
        "unprivileged minus privileged: AOD = ½[(FPR_race − FPR_rest) + (TPR_race − TPR_rest)]"
        f" (TPR = P(judged {fav} | truly {fav}), FPR = P(judged {fav} | truly "
        f"{audit.unfavourable}))"
        + (
            ", i.e. ½[(catch_rest − catch_race) + (false-alarm_rest − false-alarm_race)]"
            if fav == "real"
            else ""
        )
        + f". Interval: 95 % percentile bootstrap ({audit.bootstrap.resamples} resamples, seed "
        f"{audit.bootstrap.seed}) within each (side × true class) cell.",
        "",
        f"{PACIFIC} and `{BLEND}: A + B` fakes are counted on their own rows but left out of "
        "every comparison (the AODs, the pooled row, the gap, and the race definitions of the "
        "main table): FairFace has no such reals and a blended prompt has no single race.",
        "",
    ]
    head = ["Race", "SD fakes", "no pred.", "Catch rate [95 % Wilson]", "Reals", "no pred.",
            "False-alarm rate [95 % Wilson]", "AOD vs other six [95 % CI]",
            f"|AOD| ≤ {AOD_GOAL:g}"]  # fmt: skip
    body = []
    for r in rows:
        name = r["race"] if r["compared"] != "no" else f"{r['race']} †"
        body.append(
            [
                name, r["n_fakes"], r["fake_errors"],
                _pct(r["catch_rate"], r["catch_lo"], r["catch_hi"]),
                r["n_reals"], r["real_errors"],
                _pct(r["false_alarm_rate"], r["false_alarm_lo"], r["false_alarm_hi"]),
                _ci(r["aod"], r["aod_lo"], r["aod_hi"]), r["aod_goal"] or "—",
            ]
        )  # fmt: skip
    lines += [_md_table(head, body), "", "† counted, not compared.", ""]
    lines += _sd_verdicts(sd, pooled, seven, sizes)
    notes = [f"- {r['race']}: {r['note']}" for r in rows if r["note"] and r["compared"] == "yes"]
    if notes:
        lines += ["", "Notes:", *notes]
    return lines


def _sd_verdicts(sd, pooled: dict, seven: list[dict], sizes: list[int]) -> list[str]:
    """The bullets under the per-race table: the largest catch-rate gap, the AOD goal, and how
    far so few fakes a race can be trusted."""
    lines = []
    hi_race, lo_race = sd.gap_races
    gap = pooled
    if math.isfinite(gap["catch_gap_points"]):
        by = {r["race"]: r for r in seven}
        lines.append(
            f"- **Largest catch-rate gap across the seven races: {gap['catch_gap_points']:.1f} "
            f"points** ({hi_race} {by[hi_race]['catch_rate'] * 100:.1f} % − {lo_race} "
            f"{by[lo_race]['catch_rate'] * 100:.1f} %; 95 % bootstrap CI "
            f"{_num(gap['catch_gap_lo'], 1)}–{_num(gap['catch_gap_hi'], 1)} points). Goal "
            f"≤ {GAP_GOAL:g} points: **{gap['catch_gap_goal']}**. The largest of seven noisy "
            "rates minus the smallest is biased upwards, and so is its interval."
        )
    else:
        lines.append("- Largest catch-rate gap: undefined (fewer than two races have SD fakes).")
    met = [r["race"] for r in seven if r["aod_goal"] == "met"]
    lines.append(
        f"- |AOD| ≤ {AOD_GOAL:g}: settled as met for {len(met)} of {len(FAIRFACE_RACES)} races"
        + (f" ({', '.join(met)})" if met else "")
        + "; 'met'/'not met' alone means the 95 % interval agrees, '(CI crosses …)' means "
        "only the point estimate says so."
    )
    if pooled["n_fakes"] == 0:
        lines.append(
            "- **No prediction joined an SD fake** of these splits: run `python -m shared "
            "predict` on stable-diffusion/valid and stable-diffusion/test (one CSV with the "
            "reals, or a second --predictions CSV)."
        )
    else:
        some = [n for n in sizes if n]
        none = len(sizes) - len(some)
        lines.append(
            f"- **The intervals are wide**: {pooled['n_fakes']} scored SD fakes across the "
            f"seven races ({min(some)}–{max(some)} per race"
            + (f"; {none} race(s) have none" if none else "")
            + "). A 5-point gap or a 0.02 AOD cannot be confirmed with this many; treat the "
            "verdicts as a first look."
        )
    return lines


def sd_markdown(audit, rows: list[dict], args: argparse.Namespace) -> str:
    judged_by = _judged_by(audit)
    lines = [
        "# Fairness audit: Stable Diffusion fakes by race",
        "",
        f"- Predictions: {', '.join(str(p) for p in args.predictions)}",
        f"- Labels: {', '.join(str(p) for p in args.labels)}; fakes: {audit.sd.fakes.csv}",
        f"- Judgement: {judged_by}. Audited face: face 0 (the largest) of each file.",
        "",
        *sd_section(audit, rows),
        "",
        "![Catch and false-alarm rate per race, 95 % Wilson intervals](sd_race.png)",
        "",
    ]
    return "\n".join(lines)


def sd_chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.arange(len(rows))[::-1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(rows) + 1.8), sharey=True)
    for ax, key, title in (
        (axes[0], "catch", "SD catch rate (fakes called fake)"),
        (axes[1], "false_alarm", "False-alarm rate (reals called fake)"),
    ):
        rate = "catch_rate" if key == "catch" else "false_alarm_rate"
        for yi, r in zip(y, rows, strict=True):
            x, lo, hi = r[rate], r[f"{key}_lo"], r[f"{key}_hi"]
            if not math.isfinite(x):
                ax.text(0.5, yi, "no rows", va="center", ha="center", color="grey", fontsize=8)
                continue
            color = "tab:blue" if r["compared"] == "yes" else "grey"
            err = [[max(0.0, x - lo)], [max(0.0, hi - x)]]
            ax.errorbar(x, yi, xerr=err, fmt="o", color=color, capsize=4)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    names = [
        f"{r['race']} ({r['n_fakes']} / {r['n_reals']})" + ("" if r["compared"] != "no" else " †")
        for r in rows
    ]
    axes[0].set_yticks(y, names, fontsize=8)
    fig.suptitle(
        "By race: 95 % Wilson intervals (n fakes / n reals; † counted, not compared)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(audit, out: Path, args: argparse.Namespace) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    summary, groups = summary_rows(audit), group_rows(audit)
    paths = {k: out / f for k, f in (
        ("csv", "fairness.csv"), ("groups", "fairness_groups.csv"), ("md", "fairness.md"),
        ("tex", "fairness.tex"), ("png", "fairness.png"), ("joined", "joined.csv"),
        ("unjoined", "unjoined.csv"), ("json", "fairness.json"),
    )}  # fmt: skip
    _write_csv(paths["csv"], summary, SUMMARY_COLUMNS)
    _write_csv(paths["groups"], groups)
    _write_csv(paths["joined"], audit.joined.rows, audit.joined.columns)
    _write_csv(paths["unjoined"], audit.joined.unjoined, ["predictions", "path", "reason"])
    md = markdown(audit, summary, groups, args)
    if audit.sd is not None:
        sd = sd_rows(audit)
        part = "\n".join(sd_section(audit, sd)) + "\n\n![SD by race](sd_race.png)\n\n"
        head, sep, tail = md.partition("## Per group")
        md = head + part + sep + tail
        sd_paths = {k: out / f"sd_race.{k}" for k in ("md", "csv", "png")}
        _write_csv(sd_paths["csv"], sd, SD_COLUMNS)
        sd_paths["md"].write_text(sd_markdown(audit, sd, args))
        sd_chart(sd, sd_paths["png"])
        paths |= {f"sd_{k}": v for k, v in sd_paths.items()}
    paths["md"].write_text(md)
    paths["tex"].write_text(latex(summary, audit))
    chart(summary, paths["png"])
    settings = {
        "predictions": [str(p) for p in args.predictions],
        "labels": [str(p) for p in args.labels],
        "favourable": audit.favourable,
        "threshold": audit.threshold,
        "resamples": audit.bootstrap.resamples,
        "seed": audit.bootstrap.seed,
        "counts": dict(audit.joined.counts),
        "class_counts": audit.class_counts,
    }
    if audit.sd is not None:
        settings |= {
            "fakes_labels": str(audit.sd.fakes.csv),
            "fake_splits": list(audit.sd.fakes.splits),
        }
    paths["json"].write_text(json.dumps(settings, indent=2) + "\n")
    return list(paths.values())
