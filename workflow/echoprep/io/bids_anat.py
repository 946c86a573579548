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


def anat_candidates(files: Sequence[BidsFile], suffix: str) -> dict[str, list[BidsFile]]:
    """Subject -> its ``anat/`` NIfTI images with ``suffix`` (``T1w``, ``T2w``), in the order
    the first one is chosen: ``sub-X/anat/`` first, then by session label (as text), then by
    file name (an anatomy-only session such as ``ses-PrismaAnat`` is a session like another)."""
    by_subject: dict[str, list[BidsFile]] = defaultdict(list)
    for f in files:
        if f.suffix == suffix and f.ext in NIFTI_EXTENSIONS and f.datatype == "anat":
            by_subject[f.entities["sub"]].append(f)
    return {
        sub: sorted(
            found, key=lambda f: (f.ent("ses") is not None, f.ent("ses") or "", f.path.name)
        )
        for sub, found in by_subject.items()
    }


def _has_entities(f: BidsFile, wanted: Mapping[str, str]) -> bool:
    """Whether ``f`` has every entity of ``wanted`` (labels as text; ``run: 2`` matches
    ``run-02``)."""

    def same(label: str | None, value: str) -> bool:
        if label is None:
            return False
        if label.isdigit() and value.isdigit():
            return int(label) == int(value)
        return label == value

    return all(same(f.ent(k), v) for k, v in wanted.items())


def _entities_text(f: BidsFile) -> str:
    """``{run: "02"}``: the config value that picks ``f`` (its entities other than sub)."""
    ents = [(k, v) for k, v in f.entities.items() if k != "sub"]
    return "{" + ", ".join(f'{k}: "{v}"' for k, v in ents) + "}"


def find_t1w(
    log: ProblemLog,
    files: Sequence[BidsFile],
    subjects: Sequence[str],
    require: bool,
    header: Callable[[Path], ImageHeader],
    entities: Mapping[str, str] | None = None,
) -> tuple[dict[str, Path], list[str]]:
    """The T1w of each subject with its header checked, and the warnings of legal but
    unusual T1w headers and of subjects with several T1w images; a subject without one is a
    problem when ``require``.

    Among several, the first of those with every entity of ``entities``
    (``anatomy.t1w``; none: all) in the order of :func:`anat_candidates`; a warning names
    it, the others and the setting that picks another. ``entities`` that none of a
    subject's T1w images have is a problem naming them.
    """
    t1w: dict[str, Path] = {}
    warnings: list[str] = []
    wanted = dict(entities or {})
    by_subject = anat_candidates(files, "T1w")
    for sub in subjects:
        found = by_subject.get(sub, [])
        candidates = [f for f in found if _has_entities(f, wanted)]
        if found and not candidates:
            log.add(
                found[0].path,
                f"a T1w image of sub-{sub} with the entities of anatomy.t1w "
                f"({', '.join(f'{k}-{v}' for k, v in wanted.items())})",
                f"{len(found)} T1w image(s), none with them: "
                f"{fmt_list((log.rel(f.path) for f in found), 3)}",
                f"set anatomy.t1w to the entities of the one to use, e.g. "
                f"--config 'anatomy={{t1w: {_entities_text(found[0])}}}', or to {{}} for the "
                "first",
            )
            continue
        if not candidates:
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
        path = candidates[0].path
        if len(candidates) > 1:
            others = fmt_list((log.rel(f.path) for f in candidates[1:]), 3)
            warnings.append(
                f"{log.rel(path)}: the T1w of sub-{sub}, the first of its {len(candidates)} "
                f"T1w images (sub-{sub}/anat/ first, then by session and name); not used: "
                f"{others}. To use another, name its entities in anatomy.t1w, e.g. --config "
                f"'anatomy={{t1w: {_entities_text(candidates[1])}}}'."
            )
        # everything the anatomy stage checks in the header; unusual but legal: warnings
        warnings += check_t1w_header(log, path, header(path))
        t1w[sub] = path
    return t1w, warnings


__all__ = ["anat_candidates", "find_t1w"]
