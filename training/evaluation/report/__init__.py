"""`report`: the model card, MODEL_CARD.md and a self-contained MODEL_CARD.html.

Every figure in the card is read from a file: the model folder's model.json, eval/ and training/,
plus the fairness audit, the FairFace predictions of the served path, the recipe comparison, the
leave-source-out runs and earlier models' evaluations, which are first copied (or, for the
predictions, summarised) into OUT/fairness, OUT/fairface, OUT/comparison,
OUT/leave-source-out/<run> and OUT/beside/<run> so that
`report MODEL_DIR` re-renders the same card from the model folder alone.
A missing input makes its section say "not measured"; nothing is filled in.

The card is built in this package's modules, one or two sections each; the package exports what
its users call: `build` (the card from a model folder: `adapt` re-renders an adapted model's
with it) and, for `python -m training report`, HELP, DESCRIPTION, `add_arguments` and `run`.
Everything else is imported from its module.
"""

from .cli import DESCRIPTION, HELP, add_arguments, build, run

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "build", "run"]
