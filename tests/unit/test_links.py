"""No broken relative link in the README, the changelog, the benchmarks' README and the
documentation's pages, offline.

Every Markdown link ``[text](target)`` that is not a URL must name a file or folder of the
checkout, and its ``#anchor`` (or a page's own ``(#anchor)``) a heading of the target page, as
GitHub and MyST (``myst_heading_anchors``) make them; every MyST ``{doc}`` role must name a
page of ``docs/``. Links in code (fenced blocks, inline code) are text, not links. The
generated references (``docs/reference/``, written by the site's build) are checked by the
build itself (tests/unit/test_docs_site.py).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = (
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "benchmarks" / "README.md",
    *sorted(DOCS.glob("*.md")),
)
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^()\s]+)\)")
IMAGE = re.compile(r"!\[[^\]\n]*\]\(([^()\s]+)\)")
DOC_ROLE = re.compile(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`")


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code (their brackets are no links)."""
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub and MyST make it: lower case, punctuation dropped, spaces
    to hyphens."""
    text = re.sub(r"[`*_]|\{[a-z]+\}", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings (outside code blocks); a repeated heading gets
    ``-1``, ``-2``... as on GitHub."""
    text = re.sub(r"^(```|~~~).*?^\1", "", page.read_text(), flags=re.M | re.S)
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.M):
        base = slug(heading)
        name, n = base, 0
        while name in found:
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT)) if ROOT in page.parents else page.name


def broken_links(page: Path) -> list[str]:
    """Every broken relative link, image and ``{doc}`` role of ``page``."""
    text = page.read_text()
    prose = _prose(text)
    problems = []
    for target in [*LINK.findall(prose), *IMAGE.findall(prose)]:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto:
        path_part, _, anchor = target.partition("#")
        where = (page.parent / path_part).resolve() if path_part else page
        if not where.exists():
            problems.append(f"{_name(page)}: {target}: no such file")
            continue
        if anchor and where.suffix == ".md" and anchor not in anchors(where):
            problems.append(f"{_name(page)}: {target}: no heading #{anchor}")
    for name in DOC_ROLE.findall(text):
        doc = (page.parent / name).with_suffix(".md")
        if page.parent != DOCS and DOCS not in page.parents:
            problems.append(f"{_name(page)}: {{doc}}`{name}` outside docs/")
        elif not doc.is_file() and not name.startswith("reference/"):
            problems.append(f"{_name(page)}: {{doc}}`{name}`: no such page")
    return problems


def test_no_broken_relative_link_in_the_readme_and_the_docs():
    assert len(PAGES) > 20
    checked = sum(len(LINK.findall(_prose(p.read_text()))) for p in PAGES)
    assert checked > 40, checked
    problems = [problem for page in PAGES for problem in broken_links(page)]
    assert problems == []


def test_the_check_finds_a_missing_file_a_missing_heading_and_a_missing_page(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## The verdict: why\n")
    page.write_text(
        "# Page\n\n[ok](other.md#the-verdict-why) [same](#page) `[code](nowhere.md)`\n"
        "[gone](missing.md) [anchor](other.md#no-such) [self](#nothing) {doc}`nowhere`\n"
        "```\n[fenced](missing-too.md)\n```\n"
    )
    problems = broken_links(page)
    assert len(problems) == 4, problems
    assert any("missing.md: no such file" in p for p in problems)
    assert any("no heading #no-such" in p for p in problems)
    assert any("no heading #nothing" in p for p in problems)
    assert any("outside docs/" in p for p in problems)


def test_anchors_are_githubs():
    assert slug("Running on a SLURM cluster") == "running-on-a-slurm-cluster"
    assert slug("8. GPU (optional)") == "8-gpu-optional"
    assert slug("`glm.device`: cuda") == "glmdevice-cuda"
