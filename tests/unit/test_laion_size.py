"""LAION-fMRI is 5 participants × 33 sessions (165 sessions, about 1,980 runs): no file of the
repository calls the 5 × 165 tree by that name (it is five times LAION-fMRI).

The 5 × 165 tree (9,900 runs, about 168,000 files) stays as a headroom test, named "five times
LAION-fMRI". Every sentence (and table row) of a tracked text file that names that tree and
LAION must call it five times LAION-fMRI; the figures of the real dataset (5 × 33) are free
to stand beside it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: How the 5 × 165 tree is written: its shape, its runs or files, 165 sessions per subject.
TREE = re.compile(
    r"5\s*(?:×|x|\\times)\s*(?:about\s+|~)?165\b|9,900\s+runs|16[89],\d{3}\s+(?:raw\s+)?files"
    r"|~?170,000|(?:×|x)\s*(?:about\s+)?165\s+sessions\s*(?:×|x)|subject's\s+165\s+sessions"
    r"|165\s+sessions\s+(?:per|each|a)\s+(?:subject|participant)",
    re.I,
)
#: What the tree is called where it is named.
NAME = re.compile(r"five\s+times\s+LAION|5\s*×\s*LAION|headroom", re.I)


def sentences(text: str) -> list[str]:
    """A text's sentences and table rows, each on one line (paragraphs joined, code kept)."""
    found = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        rows = [line for line in lines if line.lstrip().startswith("|")]
        found.extend(rows)
        prose = " ".join(line.strip().lstrip("#:").strip() for line in lines if line not in rows)
        found.extend(s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z`*(\[])", prose) if s)
    return found


def mislabelled(text: str) -> list[str]:
    """Sentences that name the 5 × 165 tree and LAION without calling it five times
    LAION-fMRI."""
    return [s for s in sentences(text) if TREE.search(s) and "LAION" in s and not NAME.search(s)]


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    files = []
    for name in listed:
        path = ROOT / name
        if not name or not path.is_file() or path.suffix in {".png", ".svg", ".gz", ".npz"}:
            continue
        try:
            path.read_text()
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def test_no_file_calls_the_5x165_tree_laion_fmri():
    files = _tracked_text_files()
    assert len(files) > 200
    found = {str(p.relative_to(ROOT)): hits for p in files if (hits := mislabelled(p.read_text()))}
    assert found == {}


def test_the_check_finds_the_old_sentences():
    """The README's former sentences are found; their corrected forms are not."""
    old = [
        "Priced with the table: a regular session is **1.46 CPU-hours**, LAION-fMRI (5 × 165\n"
        "sessions) **about 1,200 CPU-hours**, not the 4,600 that 825 comparison sessions cost.",
        "| LAION-fMRI, 5 × 165 sessions | 1,221 CPU-h | 809 CPU-h + 26 GPU-h |",
        "**The whole dataset.** LAION-fMRI is 5 subjects × about 165 sessions × 12 runs (9,900 "
        "runs,\n168,000 raw files).",
        "about 15 minutes for LAION-fMRI's ~170,000 files before any check.",
        "default ``1,16,64,165,5x165``, the last one LAION-fMRI's whole dataset.",
    ]
    for text in old:
        assert mislabelled(text), text
    new = [
        "| five times LAION-fMRI: 5 × 165 sessions (headroom test) | 1,221 CPU-h |",
        "LAION-fMRI is 5 participants × 33 sessions (165 sessions, 1,980 runs).",
        "``5x33`` is LAION-fMRI itself; ``5x165`` is five times LAION-fMRI (9,900 runs).",
    ]
    for text in new:
        assert not mislabelled(text), text


def _cost_table(path: Path) -> str:
    parts = path.read_text().split("<!-- cost-table -->")
    assert len(parts) == 3, f"{path}: expected one table between two <!-- cost-table --> lines"
    return parts[1].strip()


def test_the_readme_prices_laion_fmri_and_its_headroom_as_docs_resources_does():
    """The README's cost table is docs/resources.md's (measured by
    ``benchmarks/laion_dataset.py``), with a row for LAION-fMRI (5 × 33 sessions) and one for
    five times LAION-fMRI."""
    table = _cost_table(ROOT / "README.md")
    assert table == _cost_table(ROOT / "docs" / "resources.md")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "CPU-h" in line]
    assert any(r.startswith("| LAION-fMRI: 5 × 33 sessions") for r in rows), rows
    assert any(r.startswith("| five times LAION-fMRI: 5 × 165") for r in rows), rows
