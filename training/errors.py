"""The one kind of error a training command ends with.

Each package's refusals derive from `CommandError` (`DataError`, `ReportError`, `LabelError`, …):
a sentence the user can act on, naming the file or option at fault. `python -m training` catches
it once (training/__main__.py), prints `<command>: <sentence>` on stderr and exits 2; anything else
is a bug and keeps its traceback.
"""


class CommandError(Exception):
    """A refusal stated in one sentence that names the file or option at fault."""
