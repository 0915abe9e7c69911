"""`python -m training <command>`: each command lives in its own module with `register()`."""

import argparse
import importlib
import sys

# Each module defines register(subparsers) that adds its parser with `func=` set.
COMMANDS = ["prepare", "train", "evaluate", "export", "fairness", "falsify", "compare", "report"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train, evaluate, export and audit the fake-face detector.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"training.{name}").register(sub)
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
