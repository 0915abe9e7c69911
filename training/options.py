"""A command's options as a table: `register` reads a list of `option(...)` rows, each what
`add_argument` takes, plus the argument group it is listed under in `--help` (None: the
command's own options)."""

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
