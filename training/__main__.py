"""`python -m training <command>`: each command lives in its own module with `register()`.

A command that refuses raises a `CommandError` (training/errors.py), caught here once: the
user reads `<command>: <sentence>` on stderr and the process exits 2. shared/'s errors (a model
folder that cannot be loaded, say) carry a sentence too and read the same.
"""

import argparse
import importlib
import sys

from shared.errors import FakeFacesError

from .errors import CommandError

# Command -> the module whose register(subparsers) adds its parser with `func=` set.
COMMANDS = {
    "prepare": "training.data.prepare",
    "chain": "training.data.chain",
    "train": "training.train",
    "evaluate": "training.evaluation.evaluate",
    "export": "training.export",
    "fuse": "training.views.fuse",
    "adapt": "training.views.adapt",
    "adapt-curve": "training.views.curve",
    "fairness": "training.fairness.audit",
    "falsify": "training.falsify.run",
    "compare": "training.evaluation.compare",
    "report": "training.evaluation.report",
    "feedback": "training.feedback.cli",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train, evaluate, export and audit the fake-face detector.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).register(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except (CommandError, FakeFacesError) as exc:
        print(f"{command_name(args)}: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2


def command_name(args: argparse.Namespace) -> str:
    """`train`, or `feedback pull` for a command with commands of its own."""
    sub = getattr(args, f"{args.command}_command", None)
    return f"{args.command} {sub}" if sub else args.command


if __name__ == "__main__":
    sys.exit(main())
