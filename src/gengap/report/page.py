"""The HTML page: one self-contained file (plotly.js, styles, images and data inlined), which
opens with no network."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from importlib.resources import files
from typing import Any

from plotly.offline import get_plotlyjs

# Notes shown in full per part of the evaluation; the rest are folded away.
MAX_NOTES = 3


@dataclass
class Section:
    """One part of the report: an anchor ``id``, a ``title`` and its ``body`` (HTML)."""

    id: str
    title: str
    body: str


def note(text: str) -> str:
    """A visible remark, for what a section could not compute and why."""
    return f'<p class="note">{escape(text)}</p>'


def notes(evaluation: Any, *parts: str) -> str:
    """The notes an :class:`~gengap.report.evaluation.Evaluation` holds for ``parts`` (or
    a plain "not computed" when there is no evaluation at all)."""
    if evaluation is None:
        return note("not computed: the zoo was not evaluated")
    out = []
    for part in parts:
        texts = [f"{part}: {text}" if part not in ("ranking", "predictor") else text
                 for text in evaluation.notes.get(part, [])]
        out += [note(text) for text in texts[:MAX_NOTES]]
        if len(texts) > MAX_NOTES:  # one per measure can run to hundreds: fold the rest
            rest = "".join(f"<li>{escape(text)}</li>" for text in texts[MAX_NOTES:])
            out.append(f'<details class="note"><summary>{len(texts) - MAX_NOTES} more notes '
                       f"on {escape(part)}</summary><ul>{rest}</ul></details>")
    return "".join(out)


def assemble(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole page around ``sections``, with a table of contents."""
    here = files(__package__)
    style = here.joinpath("page.css").read_text()
    script = here.joinpath("page.js").read_text()
    nav = "".join(f'<a href="#{s.id}">{escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{s.id}"><h2>{escape(s.title)}</h2>{s.body}</section>' for s in sections
    )
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{style}</style>
<script>{get_plotlyjs()}</script>
</head>
<body>
<header><h1>{escape(title)}</h1><p class="subtitle">{subtitle}</p><nav>{nav}</nav></header>
<main>{body}</main>
<footer>Written by gengap on {made}. Hover over a point to see its run; click a table's
header to sort by it.</footer>
<script>{script}</script>
</body>
</html>
"""
