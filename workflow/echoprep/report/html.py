"""Self-contained HTML: figures inlined as base64 data URIs, inline CSS, no script, no network.

The page opens with the verdict (:mod:`echoprep.report.verdict`): one figure (an inline SVG)
and one sentence, then the summary lines, the warnings and the sections.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jinja2

if TYPE_CHECKING:
    from echoprep.report.verdict import FirstScreen

#: Kinds of image a data URI can carry.
MIME = {"png": "image/png", "svg": "image/svg+xml"}


def data_uri(content: bytes, kind: str = "png") -> str:
    """``data:<mime>;base64,...`` of an image's bytes."""
    return f"data:{MIME[kind]};base64,{base64.b64encode(content).decode('ascii')}"


@dataclass
class Section:
    """One section of the report.

    Attributes
    ----------
    title
        Heading.
    figures
        ``(caption, png bytes)`` pairs.
    tables
        ``(caption, header, rows)`` triples (cells are formatted with :func:`cell`).
    text
        Paragraphs (plain text, escaped).
    warnings
        Plain-text warnings shown in a highlighted box at the top of the section.
    missing
        Why the section has no content (shown instead).
    details
        ``(summary, text)`` pairs: plain text folded away in a ``<details>`` element (closed;
        the summary line opens it), e.g. the configuration.
    """

    title: str
    figures: list[tuple[str, bytes]] = field(default_factory=list)
    tables: list[tuple[str, Sequence[str], Sequence[Sequence[Any]]]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing: str | None = None
    details: list[tuple[str, str]] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return "".join(ch if ch.isalnum() else "-" for ch in self.title.lower()).strip("-")


def cell(value: Any) -> str:
    """Table cell text: floats with 2 decimals (NaN as n/a), others as text."""
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.2f}"
    return "n/a" if value is None else str(value)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1150px; padding: 1em 2em; color: #222; background: #fff; }
h1 { border-bottom: 2px solid #c44e52; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
nav a { margin-right: 1em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: .3em 0; }
.missing { color: #a33; font-style: italic; }
.summary { background: #f7f7fb; border-left: 4px solid #4c72b0; padding: .6em 1em; }
.warning { background: #fff4e5; border-left: 4px solid #dd8452; padding: .6em 1em;
           margin: .8em 0; }
.warning strong { color: #a34a00; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .8em; }
.table-wrap { overflow-x: auto; }
details { margin: .8em 0; }
summary { cursor: pointer; font-weight: 600; }
.verdict figure { margin: .4em 0 .2em; }
.verdict svg { display: block; max-width: 100%; height: auto; }
.verdict-sentence { font-size: 1.15em; font-weight: 600; margin: .3em 0 .4em; }
.verdict-caption { font-size: .85em; color: #555; margin: .3em 0; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p>{{ subtitle }}</p>
{% if verdict %}<div class="verdict" id="verdict">
{% if verdict.svg %}<figure id="verdict-figure">{{ verdict.svg | safe }}</figure>{% endif %}
<p class="verdict-sentence" id="verdict-sentence">{{ verdict.sentence }}</p>
{% if verdict.caption %}<p class="verdict-caption">{{ verdict.caption }}</p>{% endif %}
{% if verdict.rows %}<div class="table-wrap"><table><caption>The figure in numbers</caption>
<thead><tr>{% for h in verdict.header %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in verdict.rows %}
<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}
</tbody>
</table></div>{% endif %}
</div>{% endif %}
{% if summary %}<div class="summary">
{% for line in summary %}<p>{{ line }}</p>{% endfor %}
</div>{% endif %}
{% if warnings %}<div class="warning" role="alert"><p><strong>Warnings</strong></p>
{% for line in warnings %}<p>{{ line }}</p>{% endfor %}
</div>{% endif %}
<nav>{% for s in sections %}<a href="#{{ s.anchor }}">{{ s.title }}</a>{% endfor %}</nav>
{% for s in sections %}
<section id="{{ s.anchor }}">
<h2>{{ s.title }}</h2>
{% if s.missing %}<p class="missing">{{ s.missing }}</p>{% endif %}
{% if s.warnings %}<div class="warning" role="alert">
{% for w in s.warnings %}<p>{{ w }}</p>{% endfor %}
</div>{% endif %}
{% for p in s.text %}<p>{{ p }}</p>{% endfor %}
{% for caption, uri in s.uris %}
<figure><img src="{{ uri }}" alt="{{ caption }}"><figcaption>{{ caption }}</figcaption></figure>
{% endfor %}
{% for caption, header, rows in s.tables %}
<div class="table-wrap"><table><caption>{{ caption }}</caption>
<thead><tr>{% for h in header %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in rows %}
<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}
</tbody>
</table></div>
{% endfor %}
{% for summary, text in s.details %}
<details><summary>{{ summary }}</summary><pre>{{ text }}</pre></details>
{% endfor %}
</section>
{% endfor %}
<footer><p>{{ footer }}</p></footer>
</body>
</html>
"""


def render(
    title: str,
    sections: Sequence[Section],
    *,
    subtitle: str = "",
    summary: Sequence[str] = (),
    warnings: Sequence[str] = (),
    footer: str = "",
    verdict: FirstScreen | None = None,
) -> str:
    """The report as one HTML string.

    Parameters
    ----------
    title, subtitle, footer
        Page texts (escaped).
    sections
        In order; figures become ``<img src="data:image/png;base64,...">``.
    summary
        Lines of the box at the top.
    warnings
        Lines of the warning box below it (shown only when there are any).
    verdict
        The first screen, above the summary: the verdict figure (its ``svg``, inlined as
        given), the one ``sentence``, the ``caption`` and the figure in numbers (``header``,
        ``rows``); None: the page starts with the summary.
    """
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    view = [
        {
            "title": s.title,
            "anchor": s.anchor,
            "missing": s.missing,
            "text": s.text,
            "warnings": s.warnings,
            "uris": [(c, data_uri(png)) for c, png in s.figures],
            "tables": [
                (c, list(h), [[cell(v) for v in r] for r in rows]) for c, h, rows in s.tables
            ],
            "details": list(s.details),
        }
        for s in sections
    ]
    return env.from_string(_TEMPLATE).render(
        title=title,
        subtitle=subtitle,
        summary=list(summary),
        warnings=list(warnings),
        sections=view,
        footer=footer,
        verdict=None
        if verdict is None
        else {
            "svg": verdict.svg,  # drawn by echoprep (matplotlib): inlined unescaped
            "sentence": verdict.sentence,
            "caption": verdict.caption,
            "header": list(verdict.header),
            "rows": [list(r) for r in verdict.rows],
        },
    )


__all__ = ["Section", "cell", "data_uri", "render"]
