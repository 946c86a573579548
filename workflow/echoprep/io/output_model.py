"""The output model: what one derivative file is (:class:`Output`) and the keys that place it.

An :class:`Output` names one file kind of the registry (:mod:`echoprep.io.outputs`): its
derivative folder, level, BIDS entities, suffix and extension, sidecar and description. Paths
are built from a ``key``: the ``(folder, stem)`` pair that identifies the run, session, subject
or group inside the derivative folder (:func:`run_key`, :func:`session_key`,
:func:`subject_key`, :func:`group_key`), then ``<stem>_<entities>_<suffix><extension>``. Any
value may be a Snakemake wildcard (``"{echo}"``), which gives the rule's output pattern.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from echoprep.io.paths import bids_name, run_dir, run_prefix

#: Levels an output can be written at.
LEVELS = ("run", "session", "subject", "group")

#: A ``{name}`` placeholder (a Snakemake wildcard, or a value filled when a name is built).
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: The template space of the anatomy stage (nilearn's MNI152 2009 template).
TEMPLATE = "MNI152NLin2009aSym"


@dataclass(frozen=True)
class Output:
    """One kind of derivative file.

    Attributes
    ----------
    stage
        The stage (rule family) that writes it, e.g. ``"glm"``.
    name
        Its key within the stage, e.g. ``"betas"``; ``stage.name`` is unique.
    folder
        Derivative folder below ``output_dir``; may hold ``{nordic}``/``{combine}``.
    level
        ``run``, ``session``, ``subject`` or ``group``.
    suffix, extension
        BIDS suffix and extension (with the dot).
    entities
        Derivative entities after the key's stem, in BIDS order when built. Values may hold
        placeholders (``"{echo}"``, ``"Noiseceiling{nrep}rep"``) filled by :meth:`path`.
    spatial
        True: the name carries ``space-<label>`` when the functional grid has a space.
    sidecar
        True: a JSON sidecar ``<name>.json`` is written next to it.
    datatype
        Folder below the subject/session (``func``, ``anat``, ``{category}``), or None.
    filename
        A fixed file name instead of a BIDS one (``recommended_variant.json``).
    variant
        For the echo-handling outputs: the combine variant (single, optcom, denoised).
    tool_name
        The name the external tool writing it gives the file in its working folder (tedana's
        ``bidsv1.5.0`` convention), which the stage renames to ours.
    with_task
        For subject-level outputs: the stem carries ``task-<label>`` (``sub-01_task-images``).
    description
        What it holds (one line, with units).
    """

    stage: str
    name: str
    folder: str
    level: str
    suffix: str
    extension: str
    entities: Mapping[str, str] = field(default_factory=dict)
    spatial: bool = False
    sidecar: bool = True
    datatype: str | None = "func"
    filename: str | None = None
    variant: str | None = None
    with_task: bool = True
    tool_name: str | None = None
    description: str = ""

    @property
    def key(self) -> str:
        """``stage.name`` (``stage.variant.name`` for echo-handling outputs)."""
        parts = [self.stage, self.variant, self.name]
        return ".".join(p for p in parts if p)

    def file_name(self, stem: str, *, space: str | None = None, **values: object) -> str:
        """The file name for a key's stem (``sub-01_ses-01_task-images_run-01``).

        Parameters
        ----------
        stem
            The key's stem (may be a wildcard pattern).
        space
            Space label (only for ``spatial`` outputs); None: no ``space`` entity.
        **values
            Values of the placeholders in :attr:`entities` (``echo=1``, ``nrep="{nrep}"``).
        """
        if self.filename:
            return substitute(self.filename, values)
        ents: dict[str, object] = {}
        if self.spatial and space:
            ents["space"] = space
        tokens: dict[str, str] = {}
        for ent, template in self.entities.items():
            value = _fill(template, values)
            if value is None:
                continue
            text = str(value)
            if "{" in text and not PLACEHOLDER.fullmatch(text):
                # a wildcard inside a label ("Noiseceiling{nrep}rep"): bids_name accepts only
                # whole wildcards, so stand in an alphanumeric token and put the wildcard back
                token = f"X{len(tokens)}placeholderX"
                tokens[token] = text
                text = token
            ents[ent] = text
        name = bids_name(ents, self.suffix, self.extension)
        for token, text in tokens.items():
            name = name.replace(token, text)
        return f"{stem}_{name}" if stem else name

    def path(
        self,
        out_dir: str | Path,
        key: tuple[str, str],
        *,
        space: str | None = None,
        **values: object,
    ) -> Path:
        """``out_dir/<folder>/<key folder>/<file name>``.

        Parameters
        ----------
        out_dir
            The workflow's ``output_dir``.
        key
            ``(folder, stem)`` from :func:`run_key`, :func:`session_key`, :func:`subject_key` or
            :func:`group_key` (wildcard patterns allowed).
        space
            As in :meth:`file_name`.
        **values
            ``nordic``/``combine`` for the folder, ``category`` for the datatype, and the
            entity placeholders.
        """
        folder = Path(out_dir) / substitute(self.folder, values)
        sub_folder, stem = key
        if sub_folder:
            folder = folder / sub_folder
        return folder / self.file_name(stem, space=space, **values)

    def subject_key(
        self, subject: str, task: str | None = None, **values: object
    ) -> tuple[str, str]:
        """The key of a subject-level output: its datatype folder (``anat``, ``func``, a ROI
        category) and a stem with the task when :attr:`with_task`."""
        datatype = _fill(self.datatype, values) if self.datatype else None
        return subject_key(subject, task if self.with_task else None, datatype)


def _fill(template: str, values: Mapping[str, object]) -> str | None:
    """Fill ``{name}`` placeholders; a template that is only a placeholder whose value is None
    gives None (entity left out)."""
    whole = PLACEHOLDER.fullmatch(template)
    if whole:
        value = values.get(whole.group(1), template)
        return None if value is None else str(value)
    return substitute(template, values)


def substitute(template: str, values: Mapping[str, object]) -> str:
    """Fill the ``{name}`` placeholders that have a value; the others stay (wildcards)."""

    def repl(m: re.Match[str]) -> str:
        return str(values.get(m.group(1), m.group(0)))

    return PLACEHOLDER.sub(repl, template)


# ---------------------------------------------------------------------------------------------
# keys


def run_key(entities: Mapping[str, object] | None = None) -> tuple[str, str]:
    """``(run_dir, run_prefix)`` of a run's entities; None: the wildcard pattern."""
    if entities is None:
        return "{run_dir}", "{run_prefix}"
    return run_dir(entities), run_prefix(entities)


def session_key(subject: str | None, session: str | None, task: str) -> tuple[str, str]:
    """``(folder, stem)`` of a session, e.g. ``("sub-01/ses-01/func",
    "sub-01_ses-01_task-images")``; ``subject=None``: the wildcard pattern."""
    if subject is None:
        return "{ses_dir}", "{ses_prefix}"
    folder = f"sub-{subject}/ses-{session}/func" if session else f"sub-{subject}/func"
    stem = f"sub-{subject}_ses-{session}_task-{task}" if session else f"sub-{subject}_task-{task}"
    return folder, stem


def subject_key(
    subject: str, task: str | None = None, datatype: str | None = "func"
) -> tuple[str, str]:
    """``(folder, stem)`` of a subject: ``("sub-01/func", "sub-01_task-images")``; without a
    task the stem is ``sub-01``; ``datatype=None`` puts files directly in the subject folder."""
    folder = f"sub-{subject}/{datatype}" if datatype else f"sub-{subject}"
    stem = f"sub-{subject}_task-{task}" if task else f"sub-{subject}"
    return folder, stem


def group_key(task: str | None = None) -> tuple[str, str]:
    """``("", "task-<task>")``: group files directly in their derivative folder."""
    return "", f"task-{task}" if task else ""


__all__ = [
    "LEVELS",
    "PLACEHOLDER",
    "TEMPLATE",
    "Output",
    "group_key",
    "run_key",
    "session_key",
    "subject_key",
    "substitute",
]
