"""README and docs/: every relative link resolves, and the README carries no dated heading.

The README is for users; measurements and history live in docs/, dated by file name. A link to a
heading of a Markdown file must name a heading that file has (GitHub's anchors), so a renamed
section, or a model card re-rendered without it, fails here rather than in a reader's browser.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6}) +(.+?) *#*$")
MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
DATE = re.compile(
    rf"\b(\d{{1,2}} ({MONTHS})|({MONTHS}) \d{{1,2}}|\d{{4}}-\d{{2}}-\d{{2}}|(since|until|on) "
    rf"\d{{1,2}}\b)",
    re.IGNORECASE,
)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def headings(path: Path) -> list[str]:
    return [m.group(2) for m in map(HEADING.match, prose(path.read_text())) if m]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in headings(path):
        slug = anchor(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def links(path: Path) -> list[str]:
    text = "\n".join(re.sub(r"`[^`]*`", "", line) for line in prose(path.read_text()))
    return [m.group(1) for m in LINK.finditer(text)]


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path):
    broken = []
    for target in links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: no such heading in {file.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_headings_carry_no_date():
    dated = [h for h in headings(ROOT / "README.md") if DATE.search(h)]
    assert not dated, f"dated README headings (dates go in docs/ file names): {dated}"


def test_the_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block and text.index("```sh") < text.index("\n## ")
    assert [line.split()[:2] for line in block.group(1).splitlines()] == [
        ["make", "serve"],
        ["make", "test"],
    ]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^serve:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_the_checks_catch_what_they_are_for(tmp_path: Path):
    """A date in a heading and a link to a missing heading are both found."""
    assert DATE.search("The default model since 3 December: two views")
    assert DATE.search("How it was chosen (27 November, three sources)")
    assert not DATE.search("Training (`python -m training`)")
    assert anchor('Feedback: "Is this right?"') == "feedback-is-this-right"
    assert anchor("Training (`python -m training`)") == "training-python--m-training"
    page = tmp_path / "page.md"
    page.write_text("# A\n\n```sh\n# not a heading\n```\n\n## B: c (d)\n\n## A\n")
    assert anchors(page) == {"a", "b-c-d", "a-1"}
    assert headings(page) == ["A", "B: c (d)", "A"]
