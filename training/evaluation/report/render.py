"""Rendering the card's context with the Jinja templates into MODEL_CARD.md and .html."""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"  # training/templates


def _inline(text, html: bool):
    """`code` and **bold**, the only inline markup the card's prose and cells use."""
    from markupsafe import Markup, escape

    text = re.sub(r"\s*\n\s*", " ", str(text) if not html else str(escape(text))).strip()
    if not html:
        return text
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return Markup(text)


def render(context: dict, out: Path) -> list[Path]:
    import jinja2

    written = []
    for fmt in ("md", "html"):
        html = fmt == "html"
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=html,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.filters["inline"] = lambda t, h=html: _inline(t, h)
        env.filters["mdcell"] = lambda t: str(t).replace("|", r"\|").replace("\n", " ")
        text = env.get_template("model_card.j2").render(fmt=fmt, **context)
        text = re.sub(r"\n{3,}", "\n\n", text)
        path = out / f"MODEL_CARD.{fmt}"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
