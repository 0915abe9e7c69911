"""The card's "Adapted" section: each engine `training adapt` taught the model after fitting,
from model.json's views.clip.adapted, with every validation source's rates before and after."""

from __future__ import annotations

from .read import figure, pct, read_json, table


def _rates(report: dict) -> dict:
    before, after = report["valid"]["before"], report["valid"]["after"]
    rows = []
    for s in sorted(before):
        b, a = before[s], after.get(s, {})
        if "fake" in b:
            rows.append(
                [f"{s} fakes caught, n={b['fake']}", pct(b["caught"]), pct(a.get("caught"))]
            )
        if "real" in b:
            rows.append(
                [
                    f"{s} reals called fake, n={b['real']}",
                    pct(b["called_fake"]),
                    pct(a.get("called_fake")),
                ]
            )
    own = report["engine_caught_out_of_fold"]
    rows.append(
        [
            f"{report['engine']}: its faces caught (out of fold), n={report['faces']}",
            pct(own["before"]),
            pct(own["after"]),
        ]
    )
    if report.get("your_reals_called_fake") is not None:
        rows.append(
            [
                f"your real photos called fake (out of fold), n={report['reals']}",
                "—",
                pct(report["your_reals_called_fake"]),
            ]
        )
    t = report["threshold"]
    rows.append(["threshold", f"{t['before']:.4f}", f"{t['after']:.4f}"])
    return table(["validation split", "before", "after"], rows)


def section_adapted(doc: dict) -> list[dict]:
    taught = (doc.get("views") or {}).get("clip", {}).get("adapted", [])
    return [
        {
            "name": e["name"],
            "faces": e["faces"],
            "reals": e.get("reals", 0),
            "added": e.get("added", ""),
            "start": e.get("from", ""),
            "skipped": len(e.get("report", {}).get("skipped", {})),
            "table": _rates(e["report"]),
        }
        for e in taught
        if isinstance(e, dict) and "report" in e
    ]


def section_adapt_curve(model_dir, out) -> list[dict] | None:
    """`make adapt-curve` (adapt-curve/curve.json, its per-k summary, and curve.png): per
    held-out engine, its table; the plot with the first."""
    folder = model_dir / "adapt-curve"
    if not (folder / "curve.json").is_file():
        return None
    runs = read_json(folder / "curve.json")["runs"]
    head = [
        "faces taught",
        "its test fakes caught (mean, min–max)",
        "ROC-AUC vs every real",
        "worst real source kept",
        "worst drop of another engine",
        "refused",
    ]
    sections = []
    for run in runs:
        rows = [
            [
                r["k"] or "none",
                f"{pct(r['caught_mean'])} ({pct(r['caught_min'])}–{pct(r['caught_max'])})",
                f"{r['auc_mean']:.3f}",
                pct(r["worst_real_kept"]),
                f"{100 * r['worst_other_drop']:+.1f} pts",
                f"{r['refused']} of {r['draws']}",
            ]
            for r in run["summary"]
        ]
        sections.append(
            {
                "engine": run["engine"],
                "start": run["start"],
                "table": table(head, rows),
                "guard": _guard_table(run),
                "guard_k": run.get("guard_k"),
            }
        )
    sections[0]["figure"] = figure(folder / "curve.png", out, "Teaching a held-out engine")
    return sections


def _guard_table(run: dict) -> dict | None:
    """`adapt-curve --guard`: each real source left out of the bank, its test reals called fake
    after adapting, beside the model not taught at the threshold chosen without that source
    (what leaving it out costs by itself) and the model before."""
    if not run.get("guard"):
        return None
    rows = [
        [g["left_out"], "refused", "", "", "", ""]
        if "refused" in g
        else [
            g["left_out"],
            g["reals"],
            pct(g["called_fake"]),
            pct(g["called_fake_untaught"]) if "called_fake_untaught" in g else "",
            pct(g["called_fake_before"]),
            pct(g["caught"]),
        ]
        for g in run["guard"]
    ]
    head = ["left out of the bank", "its test reals", "called fake, adapted"]
    head += ["not taught, threshold without it", "before", "caught"]
    return table(head, rows)
