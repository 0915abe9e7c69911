"""Write an audit as CSV (the numbers), Markdown (to read), LaTeX (Table 9's shape) and a PNG."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np

from .metrics import FAV, PRIV, SIDES, UNFAV, UNPRIV

SUMMARY_COLUMNS = [
    "definition", "column", "privileged", "unprivileged", "favourable",
    "n_privileged", "n_unprivileged", "errors_privileged", "errors_unprivileged", "outside",
    "di", "di_lo", "di_hi", "aod", "aod_lo", "aod_hi", "note",
]  # fmt: skip
RATES = ["selection_rate", "tpr", "fpr", "real_called_fake", "fake_called_real"]


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


def markdown(audit, summary: list[dict], groups: list[dict], args: argparse.Namespace) -> str:
    fav, unfav = audit.favourable, audit.unfavourable
    c = audit.joined.counts
    n_fake, n_real = audit.class_counts["fake"], audit.class_counts["real"]
    judged_by = (
        f"p_fake ≥ {audit.threshold:g}" if audit.threshold is not None else "the CSV's label"
    )
    lines = [
        "# Fairness audit",
        "",
        f"- Predictions: {', '.join(str(p) for p in args.predictions)}",
        f"- Labels: {', '.join(str(p) for p in args.labels)}",
        f"- Favourable outcome: **judged {fav}** (AIF360's positive label). Privileged group: "
        "the Table 9 row name (Male, White, Non-Black, Non-Child, Non-Senior).",
        f"- Judgement: {judged_by}. Audited face: face 0 (the largest) of each file.",
        f"- Intervals: 95 % percentile bootstrap, {audit.bootstrap.resamples} resamples, seed "
        f"{audit.bootstrap.seed}, rows resampled within each (group × true class) cell.",
        "",
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
    lines += [
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
    lines += [
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
    return "\n".join(lines)


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
    paths["md"].write_text(markdown(audit, summary, groups, args))
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
    paths["json"].write_text(json.dumps(settings, indent=2) + "\n")
    return list(paths.values())
