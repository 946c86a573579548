"""Every Markdown table of the READMEs and the docs has as many cells in each row as in its
header (a row pasted into the wrong table renders as a broken or shifted row)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = re.compile(r"`[^`]*`")


def cells(line: str) -> int:
    """Cells of one table row (pipes inside code spans or escaped do not count)."""
    text = CODE.sub("code", line.strip()).replace("\\|", "")
    return len(text.strip("|").split("|"))


def broken_rows(text: str) -> list[tuple[int, int, int]]:
    """``(line number, cells, header cells)`` of every table row whose cell count differs
    from its table's header."""
    out = []
    lines = text.splitlines()
    header = None
    for i, line in enumerate(lines):
        row = line.strip()
        if not row.startswith("|"):
            header = None
            continue
        if header is None:
            header = cells(row)
        elif cells(row) != header:
            out.append((i + 1, cells(row), header))
    return out


def test_the_check_finds_a_row_in_the_wrong_table():
    table = "| a | b |\n|---|---|\n| 1 | 2 |\n| 1 | `x | y` | 3 |\n\ntext\n| c |\n|---|\n| 4 |\n"
    assert broken_rows(table) == [(4, 3, 2)]


def test_every_table_row_has_its_headers_cells():
    docs = [p for p in sorted((ROOT / "docs").rglob("*.md")) if "_build" not in p.parts]
    files = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *docs]
    broken = {
        str(p.relative_to(ROOT)): rows
        for p in files
        if (rows := broken_rows(p.read_text(encoding="utf-8")))
    }
    assert broken == {}
