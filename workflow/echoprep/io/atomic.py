"""The one atomic writer: every output is written under a temporary name and renamed.

A job killed half-way leaves no half-written output under the final name, so Snakemake (and a
user) never mistakes it for a finished one. The temporary name is fixed per output (hidden, next
to it), so the rerun of a killed job replaces what the killed one left.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Extensions kept at the end of the temporary name, because the writer infers the format
#: from it (nibabel: compression; numpy: ``.npz`` appended otherwise; pandas: compression).
_FORMAT_EXTENSIONS = (".nii.gz", ".nii", ".npz", ".gz", ".h5")


@contextmanager
def atomic_path(out: str | Path) -> Iterator[Path]:
    """A temporary path next to ``out``; renamed to ``out`` when the block succeeds.

    Parameters
    ----------
    out
        The final path; its folder is created.

    Yields
    ------
    Path
        ``.<name>.tmp[<ext>]`` in the same folder (same file system, so the rename is atomic),
        ending in the format extension of ``out``; a leftover of a killed run is removed
        first, and the file is removed if the block raises.

    Examples
    --------
    >>> with atomic_path("x.tsv") as tmp:  # doctest: +SKIP
    ...     table.to_csv(tmp, sep="\\t")
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ext = next((e for e in _FORMAT_EXTENSIONS if out.name.endswith(e)), "")
    # one fixed name per output: a job killed while writing leaves it behind, and the rerun
    # of that job (Snakemake reruns it: its output is missing) overwrites and renames it
    tmp = out.with_name(f".{out.name}.tmp{ext}")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(out: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically; returns ``out``."""
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(out)


def write_bytes(out: str | Path, data: bytes) -> Path:
    """Write bytes atomically; returns ``out``."""
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return Path(out)


def copy_file(src: str | Path, out: str | Path) -> Path:
    """Copy ``src`` to ``out`` atomically (contents only, not permissions); returns ``out``."""
    with atomic_path(out) as tmp:
        shutil.copyfile(src, tmp)
    return Path(out)


__all__ = ["atomic_path", "copy_file", "write_bytes", "write_text"]
