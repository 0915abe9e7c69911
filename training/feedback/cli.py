"""`python -m training feedback review|pull|delete|purge`: the maintainer's side of feedback.

Feedback from the page is untrusted input: it reaches training only through `review` (a person
accepts, relabels or rejects each record) and `pull` (reviewed photos -> a real/-fake/ folder
that `prepare` reads). `delete` answers a user's deletion request; `purge` applies retention.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .connect import (
    FeedbackError,
    app_settings,
    check_receipt,
    configured,
    open_store,
    unreachable,
)


def _store(args):
    cfg = app_settings()
    # Resolved here, not as argparse defaults, so --help never fails on a bad setting.
    args.table = args.table or cfg.feedback_table
    args.container = args.container or cfg.feedback_container
    return open_store(args.connection, args.table, args.container)


def run_review(args) -> int:
    from .decisions import summary

    store = _store(args)
    if args.sheet:
        from .sheet import write_sheet

        pending = store.records("pending")
        if not pending:
            print("no pending feedback: nothing to review.")
            return 0
        out = Path(args.sheet)
        pages = write_sheet(store, pending, out)
        print(f"{len(pending)} pending record(s), numbered on {', '.join(map(str, pages))}.")
        print(
            f"Fill in the decision column of {out / 'review.csv'} (accept, real, fake, unsure, "
            "reject; empty skips), then run:\n"
            f"  python -m training feedback review --apply {out / 'review.csv'}"
        )
        return 0
    if args.apply:
        from .sheet import read_decisions

        decisions, skipped = read_decisions(Path(args.apply), store.records())
        for record, (review, label) in decisions:
            store.set_review(record, review, label)
        decided = [(record, review) for record, (review, _) in decisions]
    else:
        from .review import walk

        def say(text: str) -> None:
            print(text, flush=True)

        decided, skipped = walk(store, store.records("pending"), input, say)
    print(summary(decided, skipped, store.records()))
    return 0


def run_pull(args) -> int:
    from .pull import pull

    out = Path(args.out)
    done = pull(_store(args), out, quiet=args.quiet)
    n = done["by_label"]
    print(
        f"{out}: {done['photos']} reviewed photo(s) ({n['real']} real, {n['fake']} fake): "
        f"{done['written']} written, {done['already']} already there, "
        f"{done['removed']} removed (no longer reviewed in, or deleted)."
    )
    for receipt in done["missing"]:
        print(f"  left out {receipt}: its kept photo is missing from storage", file=sys.stderr)
    for receipt in done["mismatched"]:
        print(
            f"  left out {receipt}: the stored photo's SHA-256 is not the analysed photo's",
            file=sys.stderr,
        )
    for receipt in done["other_face"]:
        print(
            f"  left out {receipt}: it is about another face than the photo's largest, the "
            "only one prepare aligns",
            file=sys.stderr,
        )
    if done["photos"]:
        # prepare drops what left DIR since its last run, so the same ALIGNED folder can follow it.
        print(f"next: python -m training prepare {out} ALIGNED_DIR")
    return 0


def run_delete(args) -> int:
    receipt = check_receipt(args.receipt)
    store = _store(args)
    if not store.delete(receipt):
        raise FeedbackError(
            f"no feedback is stored under receipt {receipt} in table {args.table} "
            "(already deleted, or never stored)."
        )
    print(
        f"deleted feedback {receipt} (record and any kept photo); re-run `feedback pull` "
        "on pulled folders to remove their copy."
    )
    return 0


def run_purge(args) -> int:
    days = args.days if args.days is not None else app_settings().feedback_retention_days
    if days < 0:
        raise FeedbackError(f"--days {days}: a retention period cannot be negative.")
    n = _store(args).purge(days)
    print(f"purged {n} feedback record(s) older than {days} days (with their kept photos).")
    return 0


def _storage_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("storage (as the app reads it)")
    g.add_argument(
        "--connection",
        metavar="CS",
        help="storage connection string (default: $AzureWebJobsStorage; "
        "UseDevelopmentStorage=true means Azurite on 127.0.0.1)",
    )
    g.add_argument(
        "--table",
        default=None,
        help="table of feedback records (default: $FAKEFACES_FEEDBACK_TABLE or feedback)",
    )
    g.add_argument(
        "--container",
        default=None,
        help="blob container of kept photos "
        "(default: $FAKEFACES_FEEDBACK_CONTAINER or feedback-photos)",
    )


HELP = "review, pull, delete and purge the page's feedback"
DESCRIPTION = (
    'The page\'s "Is this right?" feedback, stored in Azure Table and Blob '
    "storage (Azurite locally). Nothing a user sends trains a model until a person has "
    "reviewed it: `review` accepts, relabels or rejects each pending record, `pull` writes "
    "the reviewed photos as a real/-fake/ folder for `prepare`. `delete` removes one "
    "record and its photo (a user's request by receipt), `purge` everything past retention."
)


@dataclass(frozen=True)
class Action:
    """One of feedback's actions, said as `python -m training` says a command: its help line,
    its description, its own options and what it runs."""

    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _review_arguments(parser: argparse.ArgumentParser) -> None:
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--sheet",
        metavar="DIR",
        help="write DIR/sheet.png, DIR/photos/ and DIR/review.csv instead of asking",
    )
    how.add_argument(
        "--apply",
        metavar="CSV",
        help="apply a filled-in review.csv: decision accept, real, fake, unsure, reject or "
        "empty (skip); nothing changes unless every row is valid",
    )


def _pull_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write (created)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _delete_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("receipt", help="the receipt the page showed (32 hexadecimal characters)")


def _purge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--days",
        type=int,
        default=None,
        help="retention in days (default: $FAKEFACES_FEEDBACK_RETENTION_DAYS or 365)",
    )


ACTIONS = {
    "review": Action(
        help="accept, relabel or reject pending feedback",
        description="Walk through pending feedback in the terminal: each record's facts, its "
        "kept photo written to a temporary file (path printed; removed when the review ends), "
        "then one key per line on stdin: a accept the user's label, r real, f fake, u unsure, "
        "x reject, s skip, q quit. Or --sheet DIR: a numbered contact sheet (DIR/sheet.png) "
        "and DIR/review.csv to fill in, applied with --apply. Ends with the counts decided "
        "and the agreement between users and reviewers per user label.",
        add_arguments=_review_arguments,
        run=run_review,
    ),
    "pull": Action(
        help="reviewed photos -> DIR/real, DIR/fake for `prepare`",
        description="Write every accepted or relabelled record labelled real or fake that has "
        "a kept photo to DIR/real/<receipt>.<ext> or DIR/fake/<receipt>.<ext>, with "
        "DIR/feedback.csv (receipt, label, user_label, review, model, p_fake, sha256, face, "
        "file). Each photo's SHA-256 is checked against its record. Feedback on any face but "
        "a photo's largest is left out (prepare aligns only the largest). Re-running skips "
        "photos already there and removes those whose record was since deleted, rejected or "
        "relabelled. Then: python -m training prepare DIR ALIGNED (which also drops what left "
        "DIR since its last run, so a deleted photo leaves ALIGNED too), and train with --data "
        "ALIGNED beside the usual data.",
        add_arguments=_pull_arguments,
        run=run_pull,
    ),
    "delete": Action(
        help="delete one record and its photo (a user's deletion request)",
        description="Delete the feedback record with this receipt and its kept photo, if any.",
        add_arguments=_delete_arguments,
        run=run_delete,
    ),
    "purge": Action(
        help="delete records (and photos) older than the retention period",
        description="Delete every feedback record, and its kept photo, older than --days.",
        add_arguments=_purge_arguments,
        run=run_purge,
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="feedback_command", required=True, metavar="ACTION")
    for name, action in ACTIONS.items():
        p = actions.add_parser(name, help=action.help, description=action.description)
        action.add_arguments(p)
        # Every action reaches the same storage; --help lists it after the action's own options.
        _storage_args(p)


def run(args: argparse.Namespace) -> int:
    """Run the action named; storage that fails after connecting becomes a FeedbackError
    naming it (which `python -m training` prints in one sentence, exit 2)."""
    from azure.core.exceptions import AzureError

    from shared.errors import FakeFacesError

    try:
        return ACTIONS[args.feedback_command].run(args)
    except (FakeFacesError, AzureError) as exc:
        raise FeedbackError(unreachable(configured(args.connection))) from exc
