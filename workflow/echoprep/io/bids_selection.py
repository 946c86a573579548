"""Which runs and labels the config selects: ``exclude_runs`` and configured entity labels.

The config names runs by BIDS entities joined by ``_`` (``exclude_runs``) and anatomy images
by entities (``anatomy.t1w``, ``anatomy.t2w``). A configured label matches a file's label as
text, or as a number where both are digits (``run-3`` names ``run-03``): BIDS indices need no
zero padding, and users write them either way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from echoprep.io.bids_checks import ACQUISITION_ENTITIES, BidsFile, ProblemLog, fmt_list

logger = logging.getLogger("echoprep.io.bids")


#: Entities that name runs in the config key ``exclude_runs``.
RUN_SELECTION_ENTITIES = ("sub", "ses", "task", *ACQUISITION_ENTITIES, "run")


def same_label(label: str | None, value: str) -> bool:
    """Whether an entity's label (``None``: the file lacks the entity) is the configured
    ``value``: as text, or as numbers where both are digits (``3`` is ``03``: BIDS indices
    need no zero padding, and users write them either way)."""
    if label is None:
        return False
    if label.isdigit() and value.isdigit():
        return int(label) == int(value)
    return label == value


def exclude_listed_runs(
    log: ProblemLog, files: list[BidsFile], exclude_runs: Sequence[str]
) -> list[BidsFile]:
    """``files`` without those of the runs ``exclude_runs`` names (config ``exclude_runs``).

    An entry names runs by entities joined by ``_`` (``sub-01_ses-02_run-03``, or
    ``sub-01_ses-02`` for a whole session); a file matches when it has every entity given
    (numbers as numbers: ``run-3`` names ``run-03``, :func:`same_label`).
    Malformed entries are problems; entries that match nothing are logged as a warning.
    """
    if not exclude_runs:
        return files
    patterns: list[tuple[str, dict[str, str]]] = []
    for entry in exclude_runs:
        text = str(entry).strip()
        parsed: dict[str, str] = {}
        bad = []
        for token in (t for t in re.split(r"[_/]", text) if t):
            key, sep, value = token.partition("-")
            if sep and value and key in RUN_SELECTION_ENTITIES:
                parsed[key] = value
            else:
                bad.append(token)
        if bad or not parsed:
            log.add(
                "config exclude_runs",
                f"runs named by entities ({', '.join(RUN_SELECTION_ENTITIES)}) joined by _, "
                "e.g. sub-01_ses-02_run-03",
                repr(text),
                "write each entry as <entity>-<label> pairs from the run's file names, e.g. "
                "--config 'exclude_runs=[sub-01_ses-02_run-03]'",
            )
            continue
        patterns.append((text, parsed))
    used: set[str] = set()
    kept = []
    for f in files:
        hit = next(
            (
                text
                for text, ents in patterns
                if all(same_label(f.ent(k), v) for k, v in ents.items())
            ),
            None,
        )
        if hit is None:
            kept.append(f)
        else:
            used.add(hit)
    unused = [text for text, _ in patterns if text not in used]
    if unused:
        logger.warning("exclude_runs names no run of the selected data: %s", fmt_list(unused))
    return kept


__all__ = ["RUN_SELECTION_ENTITIES", "exclude_listed_runs", "same_label"]
