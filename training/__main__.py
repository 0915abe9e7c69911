"""`python -m training <command>`: each command lives in its own module with `register()`."""

import argparse
import importlib
import sys

# Command -> the module whose register(subparsers) adds its parser with `func=` set.
COMMANDS = {
    "prepare": "training.data.prepare",
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
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
