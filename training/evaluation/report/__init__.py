"""`report`: the model card, MODEL_CARD.md and a self-contained MODEL_CARD.html.

Every figure in the card is read from a file: the model folder's model.json, eval/ and training/,
plus the fairness audit, the FairFace predictions of the served path, the recipe comparison, the
leave-source-out runs and earlier models' evaluations, which are first copied (or, for the
predictions, summarised) into OUT/fairness, OUT/fairface, OUT/comparison,
OUT/leave-source-out/<run> and OUT/beside/<run> so that
`report MODEL_DIR` re-renders the same card from the model folder alone.
A missing input makes its section say "not measured"; nothing is filled in.

The card is built in the modules below, by section; this package re-exports their names, and
`register` for `python -m training report`.
"""

from __future__ import annotations

from ...fairness.metrics import wilson
from .beside import section_beside
from .cli import DEFAULT_LABELS, NOT_MEASURED, build, register
from .fairface import (
    ATTRIBUTES,
    FAIRFACE_DIR,
    FAIRFACE_FIELDS,
    PREDICT_COLUMNS,
    face_found_gap,
    section_fairface,
    summarise_fairface,
)
from .fairness import cross_check, section_fairness, section_sd_race
from .leave_out import section_leave_out
from .model import (
    can_explain,
    section_comparison,
    section_curves,
    section_data,
    section_generators,
    section_operating_point,
)
from .read import ReportError, f3, f4, figure, interval, num, pct, read_csv, read_json, table
from .render import TEMPLATES, render
from .scores import section_calibration, section_robustness, section_sources, section_test
from .stage import (
    BESIDE_DIR,
    BESIDE_FILES,
    COMPARISON_FILES,
    FAIRFACE_FILES,
    FAIRNESS_FILES,
    LEAVE_OUT_DIR,
    LEAVE_OUT_FILES,
    leave_out_runs,
    stage_folder,
    stage_leave_out,
    stage_runs,
)

__all__ = [
    "ATTRIBUTES",
    "BESIDE_DIR",
    "BESIDE_FILES",
    "COMPARISON_FILES",
    "DEFAULT_LABELS",
    "FAIRFACE_DIR",
    "FAIRFACE_FIELDS",
    "FAIRFACE_FILES",
    "FAIRNESS_FILES",
    "LEAVE_OUT_DIR",
    "LEAVE_OUT_FILES",
    "NOT_MEASURED",
    "PREDICT_COLUMNS",
    "ReportError",
    "TEMPLATES",
    "build",
    "can_explain",
    "cross_check",
    "f3",
    "f4",
    "face_found_gap",
    "figure",
    "interval",
    "leave_out_runs",
    "num",
    "pct",
    "read_csv",
    "read_json",
    "register",
    "render",
    "section_beside",
    "section_calibration",
    "section_comparison",
    "section_curves",
    "section_data",
    "section_fairface",
    "section_fairness",
    "section_generators",
    "section_leave_out",
    "section_operating_point",
    "section_robustness",
    "section_sd_race",
    "section_sources",
    "section_test",
    "stage_folder",
    "stage_leave_out",
    "stage_runs",
    "summarise_fairface",
    "table",
    "wilson",
]
