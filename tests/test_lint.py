"""Style is part of the suite: ruff's lint and format checks over the whole repository."""

import subprocess
import sys

from tests.conftest import ROOT


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_ruff_check():
    done = ruff("check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format():
    done = ruff("format", "--check", ".")
    assert done.returncode == 0, done.stdout + done.stderr
