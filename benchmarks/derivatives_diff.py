"""Are two workflow output folders the same science? Every difference between them, listed.

For a change meant to alter cost only (compression, threads, I/O), run the same dataset and
config with the code before and after, then::

    .venv/bin/python benchmarks/derivatives_diff.py BEFORE/results AFTER/results

Compared, per relative path present in either folder:

- NIfTI (``.nii``, ``.nii.gz``): shape, data type, affine and the stored data after
  decompression, exactly; a file compressed in one folder and not in the other is compared the
  same way (its name differs by ``.gz``);
- JSON: equal after dropping what records the run rather than the result (wall and CPU
  timings, software versions, dates; :data:`VOLATILE_KEYS`);
- everything else (TSV, HTML, SVG, text): equal as text, and a log (``*.log``) is never
  compared.

Paths that name the run's own folders differ by construction: in JSON and text, the parent
folder of each output folder (where its ``bids``, ``results`` and ``work`` live) is replaced by
one token before comparing, as is every ``--alias BEFORE_PATH AFTER_PATH`` pair (e.g. the two
checkouts the runs used).

Printed: one line per difference (``only in BEFORE``, ``only in AFTER``, ``differs: ...``), then
``files_compared=<n> differences=<k>``; exit status 1 when any difference is found.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

#: JSON keys that record how a run went, not what it computed.
VOLATILE_KEYS = frozenset(
    {
        "ElapsedSeconds",
        "Timings_s",
        "SoftwareVersions",
        "DateCreated",
        "Date",
        "GeneratedAt",
        "WallSeconds",
        "Seconds",
        "TedanaSeconds",
    }
)
NIFTI = (".nii.gz", ".nii")


def _key(path: Path, root: Path) -> str:
    """Relative path with a NIfTI's ``.gz`` dropped (compressed and not compare as one)."""
    rel = path.relative_to(root).as_posix()
    return rel[:-3] if rel.endswith(".nii.gz") else rel


def _files(root: Path) -> dict[str, Path]:
    return {
        _key(p, root): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".log") and "/.snakemake/" not in p.as_posix()
    }


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _text(path: Path, aliases: list[str]) -> str:
    """The file's text with each alias path replaced by one token (longest first)."""
    text = path.read_text(errors="replace")
    for alias in sorted(aliases, key=len, reverse=True):
        text = text.replace(alias, "<RUN>")
    return text


def _json_paths(a: Any, b: Any, where: str = "") -> Iterator[str]:
    """Key paths at which two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            yield from _json_paths(a.get(k), b.get(k), f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _json_paths(x, y, f"{where}[{i}]")
    elif a != b:
        yield where or "."


def _nifti_difference(a: Path, b: Path) -> str | None:
    ia, ib = nib.load(a), nib.load(b)
    if ia.shape != ib.shape:
        return f"shape {ia.shape} != {ib.shape}"
    if ia.get_data_dtype() != ib.get_data_dtype():
        return f"data type {ia.get_data_dtype()} != {ib.get_data_dtype()}"
    if not np.array_equal(ia.affine, ib.affine):
        return "affine"
    da, db = np.asanyarray(ia.dataobj), np.asanyarray(ib.dataobj)
    if not np.array_equal(da, db, equal_nan=np.issubdtype(da.dtype, np.floating)):
        diff = np.abs(da.astype(np.float64) - db.astype(np.float64))
        return (
            f"data: {int(np.count_nonzero(diff > 0))} of {diff.size} values differ, "
            f"max |difference| {np.nanmax(diff):.3g}"
        )
    return None


def differences(before: Path, after: Path, aliases: list[tuple[str, str]] = ()) -> Iterator[str]:
    """One line per difference between the two folders (module doc)."""
    fa, fb = _files(before), _files(after)
    alias_a = [str(before.resolve().parent), *(a for a, _ in aliases)]
    alias_b = [str(after.resolve().parent), *(b for _, b in aliases)]
    for key in sorted(set(fa) | set(fb)):
        if key not in fb:
            yield f"only in BEFORE: {key}"
            continue
        if key not in fa:
            yield f"only in AFTER: {key}"
            continue
        a, b = fa[key], fb[key]
        if a.name.endswith(NIFTI):
            what = _nifti_difference(a, b)
        elif a.suffix == ".json":
            ja = _strip(json.loads(_text(a, alias_a)))
            jb = _strip(json.loads(_text(b, alias_b)))
            keys = list(_json_paths(ja, jb))
            what = (
                f"JSON at {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}" if keys else None
            )
        elif a.read_bytes() == b.read_bytes():
            what = None
        else:
            what = None if _text(a, alias_a) == _text(b, alias_b) else "text"
        if what:
            yield f"differs: {key}: {what}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument(
        "--alias",
        nargs=2,
        action="append",
        default=[],
        metavar=("BEFORE_PATH", "AFTER_PATH"),
        help="a path of the before run and its counterpart in the after run",
    )
    args = parser.parse_args(argv)
    count = 0
    for line in differences(args.before, args.after, [tuple(a) for a in args.alias]):
        print(line)
        count += 1
    n = len(set(_files(args.before)) | set(_files(args.after)))
    print(f"files_compared={n} differences={count}")
    return 1 if count else 0


if __name__ == "__main__":
    sys.exit(main())
