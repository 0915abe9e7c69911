"""The fairness audit's sections (disparate impact and AOD per definition, the labelled fakes
by race) and the cross-check of the audit against the FairFace summary."""

from __future__ import annotations

from pathlib import Path

from .read import figure, interval, num, pct, read_csv, read_json, table


def section_fairness(folder: Path | None, out: Path) -> dict | None:
    if folder is None:
        return None
    defs = read_csv(
        folder / "fairness.csv",
        ["definition", "privileged", "unprivileged", "n_privileged", "n_unprivileged", "di"],
    )
    groups_path = folder / "fairness_groups.csv"
    groups = (
        read_csv(groups_path, ["definition", "group", "n", "errors", "rows"])
        if (groups_path.is_file())
        else []
    )
    meta = read_json(folder / "fairness.json") if (folder / "fairness.json").is_file() else {}
    notes = [
        f"{r['privileged']} vs {r['unprivileged']}: {r['note']}" for r in defs if r.get("note")
    ]
    group_head = ["Definition", "Group", "n scored", "No prediction"]
    group_head += ["Real called fake [95 % CI]", "Fake called real [95 % CI]"]
    # AIF360 calls the favourable outcome positive; say which way round it was measured.
    return {
        "favourable": meta.get("favourable", "real"),
        "predictions": ", ".join(meta.get("predictions", [])),
        "resamples": meta.get("resamples"),
        "counts": meta.get("counts", {}),
        "class_counts": meta.get("class_counts", {}),
        "di": table(
            ["Privileged", "Unprivileged", "n priv.", "n unpriv.", "DI [95 % CI]", "AOD [95 % CI]"],
            [_definition_row(r) for r in defs],
        ),
        "notes": notes,
        "groups": table(group_head, [_group_row(g) for g in groups]) if groups else None,
        "group_rows": groups,
        "figure": figure(folder / "fairness.png", out, "Disparate impact and AOD, 95 % intervals"),
        "sd_race": section_sd_race(folder, out),
    }


def _definition_row(r: dict) -> list:
    """One privileged/unprivileged definition: its DI and AOD with their intervals."""
    aod = interval(r.get("aod"), r.get("aod_lo"), r.get("aod_hi"))
    return [
        r["privileged"],
        r["unprivileged"],
        r["n_privileged"],
        r["n_unprivileged"],
        interval(r["di"], r.get("di_lo"), r.get("di_hi")),
        "undefined (no fakes)" if aod == "—" else aod,
    ]


def _group_row(g: dict) -> list:
    """One group: faces without a prediction, and each error rate with its interval."""
    rows_n = num(g["rows"])
    fake_called_real = (
        interval(
            g.get("fake_called_real"), g.get("fake_called_real_lo"), g.get("fake_called_real_hi")
        )
        if g.get("fake_called_real")
        else "n/a: no fakes"
    )
    return [
        g["definition"],
        g["group"],
        g["n"],
        f"{g['errors']} ({pct(num(g['errors']) / rows_n) if rows_n else '—'})",
        interval(
            g.get("real_called_fake"), g.get("real_called_fake_lo"), g.get("real_called_fake_hi")
        ),
        fake_called_real,
    ]


def section_sd_race(folder: Path, out: Path) -> dict | None:
    """The audit's labelled fakes by race (`fairness --fakes-labels`): catch rate, false alarms
    and AOD per race with intervals, and the largest catch-rate gap."""
    path = folder / "sd_race.csv"
    if not path.is_file():
        return None
    rows = read_csv(path, ["race", "n_fakes", "catch_rate", "n_reals", "false_alarm_rate", "aod"])

    def rate(r: dict, key: str) -> str:
        if not r[f"{key}_rate"]:
            return "—"
        lo, hi = pct(num(r[f"{key}_lo"])), pct(num(r[f"{key}_hi"]))
        return f"{pct(num(r[f'{key}_rate']))} [{lo}, {hi}]"

    body = [
        [
            r["race"] + ("" if r.get("compared") == "yes" else " †"),
            r["n_fakes"],
            rate(r, "catch") if r["n_fakes"] != "0" else "—",
            r["n_reals"],
            rate(r, "false_alarm") if r["n_reals"] != "0" else "—",
            interval(r["aod"], r["aod_lo"], r["aod_hi"]),
            r.get("aod_goal") or "—",
        ]
        for r in rows
    ]
    gap = next((r for r in rows if r.get("catch_gap_points")), None)
    return {
        "table": table(
            [
                "Race",
                "SD fakes",
                "Caught [95 % Wilson]",
                "Reals",
                "Called fake [95 % Wilson]",
                "AOD vs the other six [95 % CI]",
                "|AOD| ≤ 0.02",
            ],
            body,
        ),
        "gap": (
            f"{num(gap['catch_gap_points']):.1f} points "
            f"[{num(gap['catch_gap_lo']):.1f}, {num(gap['catch_gap_hi']):.1f}]: "
            f"{gap.get('catch_gap_goal', '')}"
        )
        if gap
        else "",
        "figure": figure(folder / "sd_race.png", out, "Catch and false-alarm rate per race"),
    }


def cross_check(fairface: dict | None, fairness: dict | None) -> list[str]:
    """The audit and the FairFace summary should describe the same predictions; say when not."""
    if not fairface or not fairness:
        return []
    whole = next((g for g in fairness["group_rows"] if g["definition"] == "all"), None)
    if whole is None or not whole.get("real_called_fake"):
        return []
    # Only the reals: an audit with labelled fakes (Stable Diffusion) scores those too.
    n, rate = int(num(whole.get("n_real") or whole["n"])), num(whole["real_called_fake"])
    if n == fairface["scored"] and abs(rate - fairface["fpr"]) < 5e-4:
        return []
    return [
        f"The fairness audit ({fairness['predictions'] or 'its predictions'}: {n} scored, "
        f"{rate:.4f} real called fake) and the FairFace predictions ({fairface['source']}: "
        f"{fairface['scored']} scored, {fairface['fpr']:.4f} called fake) disagree: they are "
        "probably of different models or thresholds; re-run the audit on the same predictions."
    ]
