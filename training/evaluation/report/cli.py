"""`python -m training report`: build the card's context from its inputs, and the command."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ...data.sources import RESHARED_FROM
from .adapted import section_adapt_curve, section_adapted
from .beside import section_beside
from .fairface import FAIRFACE_DIR, face_found_gap, section_fairface, summarise_fairface
from .fairness import cross_check, section_fairness
from .leave_out import section_leave_out
from .model import (
    can_explain,
    section_comparison,
    section_curves,
    section_data,
    section_generators,
    section_operating_point,
)
from .read import ReportError, f3, num, read_json
from .render import render
from .scores import section_calibration, section_robustness, section_sources, section_test
from .stage import (
    BESIDE_DIR,
    BESIDE_FILES,
    COMPARISON_FILES,
    FAIRFACE_FILES,
    FAIRNESS_FILES,
    LEAVE_OUT_DIR,
    stage_folder,
    stage_leave_out,
    stage_runs,
)
from .views import section_views

# ../shared/data beside the repository, as everywhere else in the project.
DEFAULT_LABELS = (
    Path(__file__).resolve().parents[4] / "shared" / "data" / "fairface" / "fairface_label_val.csv"
)
NOT_MEASURED = "not measured"


def build(
    model_dir: Path,
    out: Path,
    fairness: Path | None = None,
    fairface_predictions: Path | None = None,
    comparison: Path | None = None,
    labels: Path | None = None,
    command: str = "",
    leave_out: list[Path] | None = None,
    beside: list[Path] | None = None,
) -> list[Path]:
    """The card of `model_dir` in `out` (MODEL_CARD.md and .html): every input checked, copied
    into `out` so the folder alone re-renders it, then each section read from its files."""
    spec_path = model_dir / "model.json"
    if not spec_path.is_file():
        raise ReportError(f"{model_dir}: no model.json there; is it a model folder of `export`?")
    doc = read_json(spec_path)
    _check_inputs(fairness, fairface_predictions, comparison, labels, leave_out, beside)
    out.mkdir(parents=True, exist_ok=True)
    staged = _stage(
        model_dir, out, fairness, fairface_predictions, comparison, labels, leave_out, beside
    )
    return render(_context(model_dir, out, doc, staged, command), out)


def _check_inputs(fairness, fairface_predictions, comparison, labels, leave_out, beside) -> None:
    """Refuse, naming it, a given input that is not there."""
    for given, flag in (
        (fairness, "--fairness"),
        (comparison, "--comparison"),
        *((folder, "--leave-source-out") for folder in leave_out or []),
        *((folder, "--beside") for folder in beside or []),
    ):
        if given is not None and not given.is_dir():
            raise ReportError(f"{flag} {given}: no such folder.")
    if fairface_predictions is not None and not fairface_predictions.is_file():
        raise ReportError(f"--fairface-predictions {fairface_predictions}: no such file.")
    if labels is not None and not labels.is_file():
        raise ReportError(f"--labels {labels}: no such file.")


def _stage(model_dir, out, fairness, fairface_predictions, comparison, labels, leave_out, beside):
    """Copy (or, for the FairFace predictions, summarise) each input into `out`, or keep what
    the model folder already holds: the folders every section then reads."""
    fair_dir = stage_folder(
        fairness, model_dir / "fairness", out / "fairness", FAIRNESS_FILES, "--fairness"
    )
    comp_dir = stage_folder(
        comparison, model_dir / "comparison", out / "comparison", COMPARISON_FILES, "--comparison"
    )
    lso_runs = stage_leave_out(leave_out or [], model_dir / LEAVE_OUT_DIR, out / LEAVE_OUT_DIR)
    beside_runs = stage_runs(
        beside or [], model_dir / BESIDE_DIR, out / BESIDE_DIR, BESIDE_FILES, "--beside"
    )
    if fairface_predictions is not None:
        use_labels = labels or (DEFAULT_LABELS if DEFAULT_LABELS.is_file() else None)
        summarise_fairface(fairface_predictions, use_labels, out / FAIRFACE_DIR)
        ff_dir = out / FAIRFACE_DIR
    else:
        ff_dir = stage_folder(
            None,
            model_dir / FAIRFACE_DIR,
            out / FAIRFACE_DIR,
            FAIRFACE_FILES,
            "--fairface-predictions",
        )
    return {
        "fairness": fair_dir,
        "comparison": comp_dir,
        "leave_out": lso_runs,
        "beside": beside_runs,
        "fairface": ff_dir,
    }


def _context(model_dir: Path, out: Path, doc: dict, staged: dict, command: str) -> dict:
    """Every section of the card, read from the model folder and the staged inputs."""
    test = section_test(model_dir, out)
    fairface = section_fairface(staged["fairface"])
    fair = section_fairness(staged["fairness"], out)
    inp = doc.get("input", {})
    scale, offset = num(inp.get("scale")), num(inp.get("offset"))
    return {
        "NM": NOT_MEASURED,
        "doc": doc,
        "name": doc.get("name", model_dir.name),
        "version": doc.get("version", ""),
        "threshold": f3(doc.get("threshold"), 4),
        "threshold_rule": doc.get("metrics", {}).get("valid", {}).get("threshold_rule", ""),
        "positive": doc.get("output", {}).get("positive_class", "fake"),
        "architecture": doc.get("architecture", ""),
        "params": doc.get("params", ""),
        "size": inp.get("size", ""),
        "color": {"gray": "grayscale (1 channel)", "rgb": "RGB (3 channels)"}.get(
            inp.get("color"), inp.get("color", "")
        ),
        "align_size": doc.get("align_size", ""),
        "scale": f"{scale:.8g}",
        "offset": f"{offset:g}",
        "unit_range": abs(scale - 1 / 255) < 1e-9 and offset == 0,
        "training": doc.get("training", {}),
        "generators": section_generators(doc),
        "operating_point": section_operating_point(doc),
        "data": section_data(doc, test["all"] if test else None, fairface),
        "test": test,
        "beside": section_beside(model_dir, staged["beside"]),
        "fairface": fairface,
        "sources": section_sources(model_dir, fairface),
        "curves": section_curves(model_dir, doc, out),
        "fairness": fair,
        "gap": face_found_gap(fairface, fair),
        "warnings": cross_check(fairface, fair),
        "explain": can_explain(model_dir),
        "explain_layer": (doc.get("explain") or {}).get("layer", ""),
        "comparison": section_comparison(staged["comparison"], out),
        "calibration": section_calibration(model_dir, doc, test, out),
        "robustness": section_robustness(model_dir),
        "reshared": _reshared(doc),
        "leave_out": section_leave_out(staged["leave_out"], out),
        "views": section_views(model_dir, doc),
        "adapted": section_adapted(doc),
        "adapt_curve": section_adapt_curve(model_dir, out),
        "command": command,
    }


def _reshared(doc: dict) -> bool:
    """Whether re-shared copies (`chain --steps reshare`) are among the operating point's
    sources, so were trained on and are held to it."""
    op = doc.get("operating_point") or doc.get("views", {}).get("operating_point") or {}
    return any(s in RESHARED_FROM for s in op.get("sources", {}))


def _command(args) -> str:
    parts = ["python", "-m", "training", "report", str(args.model_dir)]
    for flag, value in (
        ("--fairness", args.fairness),
        ("--fairface-predictions", args.fairface_predictions),
        ("--comparison", args.comparison),
        *(("--leave-source-out", folder) for folder in args.leave_source_out or []),
        *(("--beside", folder) for folder in args.beside or []),
        ("--labels", args.labels),
        ("--out", args.out),
    ):
        if value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def run(args) -> int:
    out = args.out or args.model_dir
    written = build(
        args.model_dir,
        out,
        args.fairness,
        args.fairface_predictions,
        args.comparison,
        args.labels,
        _command(args),
        args.leave_source_out,
        args.beside,
    )
    print("\n".join(str(p) for p in written))
    return 0


HELP = "render the model card (MODEL_CARD.md and a self-contained MODEL_CARD.html)"
DESCRIPTION = (
    "Render the model card of an exported model folder from its own files "
    "(model.json, eval/metrics.csv, eval/predictions.csv, eval/roc_pr.png, training/*) and "
    "the optional inputs below, which are copied (or summarised) into OUT/fairness, "
    "OUT/fairface, OUT/comparison, OUT/leave-source-out and OUT/beside first, so that "
    "`report MODEL_DIR` alone re-renders the same card later. The HTML has its CSS inline "
    "and every image as a data: URI (no script, no external load). A missing input makes "
    "its section say 'not measured'."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model_dir", type=Path, metavar="MODEL_DIR", help="model folder of `export`"
    )
    parser.add_argument(
        "--fairness",
        type=Path,
        metavar="DIR",
        help="a `fairness` audit folder (fairness.csv, fairness_groups.csv, fairness.png, ...)",
    )
    parser.add_argument(
        "--fairface-predictions",
        type=Path,
        metavar="CSV",
        help="`python -m shared predict` CSV of FairFace val (all real photos)",
    )
    parser.add_argument(
        "--comparison", type=Path, metavar="DIR", help="a `compare` folder (comparison.csv, ...)"
    )
    parser.add_argument(
        "--leave-source-out",
        type=Path,
        action="append",
        metavar="DIR",
        help="an `evaluate` output of the same recipe trained without a source, scored on the "
        "test splits (metrics.csv, evaluation.json); repeat it, one per held-out source. Kept in "
        "OUT/leave-source-out/<DIR's name>, which then holds these runs only; without it, the "
        "runs kept in MODEL_DIR/leave-source-out are used",
    )
    parser.add_argument(
        "--beside",
        type=Path,
        action="append",
        metavar="DIR",
        help="an `evaluate` output of an earlier model (the one shipped before, the paper's "
        "VGG-10) on the same test splits (metrics.csv, evaluation.json); repeat it. The card "
        "sets them beside this model, source by source, by DIR's name descending (name them by "
        "date: newest first); kept in OUT/beside/<DIR's name>, "
        "which then holds these only; without it, those kept in MODEL_DIR/beside are used",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        metavar="CSV",
        help="FairFace labels (file,age,gender,race) for the no-face rate per group "
        "(default ../shared/data/fairface/fairface_label_val.csv when present)",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="where the card and copies go (MODEL_DIR)"
    )
