"""The one derivative path builder: BIDS entities in, file names and paths out.

Every file echoprep writes is named here, so that entity order and formatting are the same
everywhere (rules, stages, simulator, tests).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

#: BIDS entity order (BIDS specification, Appendix "Entity table"), extended with the
#: derivative entities echoprep writes (``from``/``to``/``mode`` for transforms, ``stat``
#: as LAION-fMRI uses it for statistical maps; ``hemi`` before ``space``, as BIDS orders them).
ENTITY_ORDER: tuple[str, ...] = (
    "sub",
    "ses",
    "task",
    "acq",
    "ce",
    "rec",
    "dir",
    "run",
    "echo",
    "part",
    "hemi",
    "from",
    "to",
    "mode",
    "space",
    "res",
    "label",
    "stat",
    "desc",
)

_LABEL = re.compile(r"^[A-Za-z0-9]+$")
#: A Snakemake wildcard such as ``{subject}`` is accepted as a label so that rule patterns
#: are built by the same functions as the concrete paths.
_WILDCARD = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")


def _is_label(text: str) -> bool:
    return bool(_LABEL.match(text) or _WILDCARD.match(text))


def bids_name(entities: Mapping[str, object], suffix: str, extension: str) -> str:
    """Build a BIDS file name from entities, in BIDS entity order.

    Parameters
    ----------
    entities
        Entity key to label, e.g. ``{"sub": "01", "ses": "01", "run": "01"}``. ``None``
        values are skipped. Labels are used as given (strings are not zero-padded), so the
        labels found in the input dataset are carried through unchanged.
    suffix
        The BIDS suffix, e.g. ``"bold"``, ``"T2starmap"``, ``"statmap"``.
    extension
        With or without the leading dot, e.g. ``".nii.gz"`` or ``"json"``.

    Returns
    -------
    str
        E.g. ``"sub-01_ses-01_task-images_run-01_desc-optcom_bold.nii.gz"``.

    Raises
    ------
    ValueError
        For an unknown entity or a label that is not alphanumeric.
    """
    unknown = set(entities) - set(ENTITY_ORDER)
    if unknown:
        raise ValueError(f"unknown BIDS entities {sorted(unknown)}; known are {list(ENTITY_ORDER)}")
    parts = []
    for key in ENTITY_ORDER:
        value = entities.get(key)
        if value is None:
            continue
        label = str(value)
        if not _is_label(label):
            raise ValueError(f"BIDS label for '{key}' must be alphanumeric, got {label!r}")
        parts.append(f"{key}-{label}")
    if not suffix or not _is_label(suffix):
        raise ValueError(f"BIDS suffix must be alphanumeric, got {suffix!r}")
    ext = extension if extension.startswith(".") else f".{extension}"
    return "_".join([*parts, suffix]) + ext


def bids_path(
    root: str | Path,
    entities: Mapping[str, object],
    suffix: str,
    extension: str,
    datatype: str | None = "func",
) -> Path:
    """Path of a file in a BIDS (derivative) dataset.

    ``root/sub-<sub>/[ses-<ses>/][<datatype>/]<bids_name>``. ``datatype=None`` puts the file
    directly in the subject (or session) folder.
    """
    folder = Path(root)
    if entities.get("sub") is not None:
        folder = folder / f"sub-{entities['sub']}"
        if entities.get("ses") is not None:
            folder = folder / f"ses-{entities['ses']}"
    if datatype:
        folder = folder / datatype
    return folder / bids_name(entities, suffix, extension)


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar that belongs to an image (``x.nii.gz`` → ``x.json``)."""
    p = Path(path)
    name = p.name
    for ext in (
        ".nii.gz",
        ".nii",
        ".tsv.gz",
        ".tsv",
        ".h5",
        ".func.gii",
        ".surf.gii",
        ".label.gii",
        ".shape.gii",
    ):
        if name.endswith(ext):
            return p.with_name(name[: -len(ext)] + ".json")
    return p.with_suffix(".json")


#: Entities that identify a run; every derivative entity echoprep adds comes after them.
RUN_ENTITIES: tuple[str, ...] = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run")


def run_prefix(entities: Mapping[str, object]) -> str:
    """File-name stem that identifies a run, e.g. ``"sub-01_ses-01_task-images_run-01"``."""
    return bids_name({k: v for k, v in entities.items() if k in RUN_ENTITIES}, "x", "").rsplit(
        "_", 1
    )[0]


def run_dir(entities: Mapping[str, object], datatype: str = "func") -> str:
    """Relative folder of a run's files, e.g. ``"sub-01/ses-01/func"``."""
    return (
        bids_path(".", dict(entities), "x", "", datatype=datatype)
        .parent.as_posix()
        .removeprefix("./")
    )
