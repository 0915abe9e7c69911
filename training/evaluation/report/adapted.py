"""The card's "Adapted" section: each engine `training adapt` taught the model after fitting,
from model.json's views.clip.adapted, with every validation source's rates before and after."""

from __future__ import annotations

from .read import table


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def _rates(report: dict) -> dict:
    before, after = report["valid"]["before"], report["valid"]["after"]
    rows = []
    for s in sorted(before):
        b, a = before[s], after.get(s, {})
        if "fakes" in b:
            rows.append(
                [f"{s} fakes caught, n={b['fakes']}", _pct(b["caught"]), _pct(a.get("caught"))]
            )
        if "reals" in b:
            rows.append(
                [
                    f"{s} reals called fake, n={b['reals']}",
                    _pct(b["called_fake"]),
                    _pct(a.get("called_fake")),
                ]
            )
    own = report["engine_caught_out_of_fold"]
    rows.append(
        [
            f"{report['engine']}: its faces caught (out of fold), n={report['faces']}",
            _pct(own["before"]),
            _pct(own["after"]),
        ]
    )
    if report.get("your_reals_called_fake") is not None:
        rows.append(
            [
                f"your real photos called fake (out of fold), n={report['reals']}",
                "—",
                _pct(report["your_reals_called_fake"]),
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
