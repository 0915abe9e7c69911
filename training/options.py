"""A command's options as a table: its `add_arguments` reads a list of `option(...)` rows, each
what `add_argument` takes, plus the argument group it is listed under in `--help` (None: the
command's own options). And the options that mean the same in more than one command, defined
once here."""

from __future__ import annotations

import argparse


def option(*flags: str, group: str | None = None, **keywords) -> tuple:
    return group, flags, keywords


def add_options(parser: argparse.ArgumentParser, options: list[tuple]) -> None:
    """Add the rows in order (their order is --help's), each group created where it first
    appears."""
    groups = {None: parser}
    for group, flags, keywords in options:
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        groups[group].add_argument(*flags, **keywords)


# train's two checkpoints in a run folder: best.keras (lowest validation loss) and last.keras.
CHECKPOINTS = ["best", "last"]


def add_checkpoint(parser: argparse.ArgumentParser, help: str) -> None:
    """--checkpoint of a run folder (evaluate, export); `help` words it for the command."""
    parser.add_argument("--checkpoint", choices=CHECKPOINTS, default="best", help=help)


# The largest share of any real validation source a two-view model may call fake.
FALSE_ALARM = 0.02


def add_false_alarm(parser: argparse.ArgumentParser) -> None:
    """--false-alarm of a two-view model's operating point: fuse sets it, adapt sets it again
    by the same rule, so the two read it alike."""
    parser.add_argument(
        "--false-alarm",
        type=float,
        default=FALSE_ALARM,
        metavar="RATE",
        help=f"the largest share of any real validation source called fake ({FALSE_ALARM})",
    )
