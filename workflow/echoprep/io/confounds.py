"""A run's confounds table again beside its BOLD series (rule ``confounds``).

nilearn's ``load_confounds`` and ``first_level_from_bids`` look for a series' confounds in the
series' own folder, under fMRIPrep's name (``<run>_desc-confounds_timeseries.tsv``, the BOLD
file's entities without ``space``, ``desc`` and ``echo``). The spatial stage writes the table
once per run in ``spatial/``; the rule ``confounds`` copies it, with a sidecar naming the
original, into ``combine-<nordic>/`` and (``spatial.keep_echoes``) ``preproc-<nordic>/``. A copy
of a few kilobytes, written inside the Snakemake process: no job to submit, and each derivative
folder stays usable on its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from echoprep.io.atomic import copy_file, write_text
from echoprep.io.bids_uri import localize
from echoprep.io.paths import sidecar_path
from echoprep.io.sidecars import write_sidecar

#: Keys of the source sidecar that :func:`echoprep.io.sidecars.write_sidecar` writes anew.
_REWRITTEN = ("Sources", "Parameters", "SoftwareVersions")


def copy_confounds(
    source: str | Path, outputs: Mapping[str, str | Path], log: str | Path | None = None
) -> list[Path]:
    """Copy a run's confounds table to each of ``outputs`` and describe each copy.

    Parameters
    ----------
    source
        The spatial stage's ``*_desc-confounds_timeseries.tsv`` (its sidecar beside it).
    outputs
        Output key -> path (the rule's outputs); the keys ending in ``_json`` are the copies'
        sidecars, written with them.
    log
        A file that gets one line per copy (the rule's log), or None.

    Returns
    -------
    list of Path
        The tables written.
    """
    source = Path(source)
    # the original's BIDS URIs as paths: written anew relative to each copy's folder
    recorded = localize(json.loads(sidecar_path(source).read_text()), sidecar_path(source))
    extra = {k: v for k, v in recorded.items() if k not in _REWRITTEN}
    extra["Description"] = (
        f"{recorded.get('Description', 'Confounds of the run')}. A copy of the spatial "
        "stage's table (Sources), beside this folder's series of the run, where nilearn's "
        "load_confounds looks for it"
    ).replace(".. ", ". ")
    written = []
    for key, path in outputs.items():
        if key.endswith("_json"):
            continue
        out = copy_file(source, path)
        write_sidecar(out, sources=[source], parameters=recorded.get("Parameters"), extra=extra)
        written.append(out)
    if log is not None:
        write_text(log, "".join(f"copied {source} to {out}\n" for out in written))
    return written


__all__ = ["copy_confounds"]
