"""The subject's anatomical images in the raw dataset: the candidates in the order one is
chosen, and the T1w of each subject (:func:`find_t1w`; the T2w: :mod:`echoprep.io.bids_refs`).

A subject may have several T1w images (a rescan, a prescan-normalised twin, MP2RAGE's UNI and
a denoised UNI named ``_T1w``): the first is taken, with a warning that names the others and
the setting that picks another (``anatomy.t1w``: entities the chosen one must have).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from echoprep.io.bids_checks import (
    NIFTI_EXTENSIONS,
    BidsFile,
    ImageHeader,
    ProblemLog,
    check_t1w_header,
    fmt_list,
)
from echoprep.io.bids_model import label_order
from echoprep.io.bids_selection import same_label


def anat_candidates(files: Sequence[BidsFile], suffix: str) -> dict[str, list[BidsFile]]:
    """Subject -> its ``anat/`` NIfTI images with ``suffix`` (``T1w``, ``T2w``), in the order
    the first one is chosen: ``sub-X/anat/`` first, then by session label, then by file name,
    numbers compared as numbers (:func:`~echoprep.io.bids_model.label_order`: ``ses-2`` before
    ``ses-10``, ``run-2`` before ``run-10``; an anatomy-only session such as ``ses-PrismaAnat``
    is a session like another)."""
    by_subject: dict[str, list[BidsFile]] = defaultdict(list)
    for f in files:
        if f.suffix == suffix and f.ext in NIFTI_EXTENSIONS and f.datatype == "anat":
            by_subject[f.entities["sub"]].append(f)
    return {
        sub: sorted(
            found,
            key=lambda f: (
                f.ent("ses") is not None,
                label_order(f.ent("ses")),
                label_order(f.path.name),
            ),
        )
        for sub, found in by_subject.items()
    }


def _has_entities(f: BidsFile, wanted: Mapping[str, str]) -> bool:
    """Whether ``f`` has every entity of ``wanted`` (labels as text; ``run: 2`` matches
    ``run-02``: :func:`~echoprep.io.bids_selection.same_label`)."""
    return all(same_label(f.ent(k), v) for k, v in wanted.items())


def _entities_text(f: BidsFile) -> str:
    """``{run: "02"}``: the config value that picks ``f`` (its entities other than sub)."""
    ents = [(k, v) for k, v in f.entities.items() if k != "sub"]
    return "{" + ", ".join(f'{k}: "{v}"' for k, v in ents) + "}"


def pick_anat(
    log: ProblemLog,
    sub: str,
    found: Sequence[BidsFile],
    wanted: Mapping[str, str] | None,
    suffix: str,
    warnings: list[str],
) -> BidsFile | None:
    """The subject's ``suffix`` image among ``found`` (:func:`anat_candidates`' order): the
    first with every entity of ``wanted`` (``anatomy.t1w``/``anatomy.t2w``; empty: any).
    Several: a warning names the one used, the others and the setting that picks another;
    ``wanted`` that none has: a problem listing them (None returned). None when ``found`` is
    empty."""
    key = f"anatomy.{suffix.lower()}"
    wanted = wanted or {}
    candidates = [f for f in found if _has_entities(f, wanted)]
    if found and not candidates:
        log.add(
            found[0].path,
            f"a {suffix} image of sub-{sub} with the entities of {key} "
            f"({', '.join(f'{k}-{v}' for k, v in wanted.items())})",
            f"{len(found)} {suffix} image(s), none with them: "
            f"{fmt_list((log.rel(f.path) for f in found), 3)}",
            f"set {key} to the entities of the one to use, e.g. --config "
            f"'anatomy={{{suffix.lower()}: {_entities_text(found[0])}}}', or to {{}} for the "
            "first",
        )
        return None
    if len(candidates) > 1:
        warnings.append(
            f"{log.rel(candidates[0].path)}: the {suffix} of sub-{sub}, the first of its "
            f"{len(candidates)} {suffix} images (sub-{sub}/anat/ first, then by session and "
            f"name); not used: {fmt_list((log.rel(f.path) for f in candidates[1:]), 3)}. To "
            f"use another, name its entities in {key}, e.g. --config "
            f"'anatomy={{{suffix.lower()}: {_entities_text(candidates[1])}}}'."
        )
    return candidates[0] if candidates else None


def find_t1w(
    log: ProblemLog,
    files: Sequence[BidsFile],
    subjects: Sequence[str],
    require: bool,
    header: Callable[[Path], ImageHeader],
    entities: Mapping[str, str] | None = None,
) -> tuple[dict[str, Path], list[str]]:
    """The T1w of each subject with its header checked, and the warnings of legal but
    unusual T1w headers and of subjects with several T1w images (:func:`pick_anat`, with
    ``entities``: ``anatomy.t1w``); a subject without one is a problem when ``require``."""
    t1w: dict[str, Path] = {}
    warnings: list[str] = []
    by_subject = anat_candidates(files, "T1w")
    for sub in subjects:
        found = by_subject.get(sub, [])
        if not found:
            if require:
                log.add(
                    f"sub-{sub}/anat/sub-{sub}_T1w.nii.gz",
                    f"a T1w image of sub-{sub} (sub-{sub}/anat/ or any sub-{sub}/ses-<label>/"
                    "anat/)",
                    "no *_T1w.nii[.gz] for this subject",
                    "add the T1w (a separate anatomical session such as ses-PrismaAnat is "
                    "fine), or keep the functional grid native, which needs no T1w "
                    "(--config 'spatial={output_space: native}')",
                )
            continue
        chosen = pick_anat(log, sub, found, entities, "T1w", warnings)
        if chosen is None:
            continue
        # everything the anatomy stage checks in the header; unusual but legal: warnings
        warnings += check_t1w_header(log, chosen.path, header(chosen.path))
        t1w[sub] = chosen.path
    return t1w, warnings


__all__ = ["anat_candidates", "find_t1w", "pick_anat"]
