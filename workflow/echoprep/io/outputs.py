"""The output registry: every derivative echoprep writes, declared once.

Each :class:`Output` names one file kind: the derivative folder it lives in, its level (one per
run, session, subject or for the group), its BIDS entities, suffix and extension, whether it has
a JSON sidecar, and a one-line description. Rules (through :mod:`echoprep.plan`), stages, the
report and the tests ask this registry for paths; no other module spells an output name. See
``docs/architecture.md`` ("One output registry"). The module is over 700 lines because the
registry is one table of every output, one entry each: splitting it would scatter the names.

Paths are built from a ``key``: the ``(folder, stem)`` pair that identifies the run, session,
subject or group inside the derivative folder (:func:`run_key`, :func:`session_key`,
:func:`subject_key`, :func:`group_key`), then ``<stem>_<entities>_<suffix><extension>``. Any
value may be a Snakemake wildcard (``"{echo}"``), which gives the rule's output pattern.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echoprep.io.paths import bids_name, run_dir, run_prefix, sidecar_path

#: Levels an output can be written at.
LEVELS = ("run", "session", "subject", "group")

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
            return _substitute(self.filename, values)
        ents: dict[str, object] = {}
        if self.spatial and space:
            ents["space"] = space
        tokens: dict[str, str] = {}
        for ent, template in self.entities.items():
            value = _fill(template, values)
            if value is None:
                continue
            text = str(value)
            if "{" in text and not _PLACEHOLDER.fullmatch(text):
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
        folder = Path(out_dir) / _substitute(self.folder, values)
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
    whole = _PLACEHOLDER.fullmatch(template)
    if whole:
        value = values.get(whole.group(1), template)
        return None if value is None else str(value)
    return _substitute(template, values)


def _substitute(template: str, values: Mapping[str, object]) -> str:
    """Fill the ``{name}`` placeholders that have a value; the others stay (wildcards)."""

    def repl(m: re.Match[str]) -> str:
        return str(values.get(m.group(1), m.group(0)))

    return _PLACEHOLDER.sub(repl, template)


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


# ---------------------------------------------------------------------------------------------
# the registry

_GLM = "glmsingle-{nordic}-{combine}"
#: The folders the LAION-fMRI data loader (laion_fmri) reads below derivatives/ (publish stage).
LAION_GLM = "glmsingle-tedana"
LAION_ATLASES = "atlases"
#: The template space of the anatomy stage (nilearn's MNI152 2009 template).
TEMPLATE = "MNI152NLin2009aSym"


def _outputs() -> tuple[Output, ...]:
    o = Output
    # shared Output fields (typed Any: mypy cannot match a ** dict to each field's type)
    run: dict[str, Any] = {"level": "run"}
    anat: dict[str, Any] = {
        "folder": "anat",
        "level": "subject",
        "datatype": "anat",
        "with_task": False,
    }
    grid: dict[str, Any] = {"folder": "spatial", "level": "subject", "with_task": False}
    combine: dict[str, Any] = {"folder": "combine-{nordic}", "level": "run", "spatial": True}
    glm: dict[str, Any] = {"folder": _GLM, "level": "session"}
    laion: dict[str, Any] = {"folder": LAION_GLM, "level": "session"}
    laion_sub: dict[str, Any] = {
        "folder": LAION_GLM,
        "level": "subject",
        "datatype": None,
        "spatial": True,
    }
    # fmt: off
    return (
        # NORDIC, per run and echo
        o("nordic", "bold", "nordic", suffix="bold", extension=".nii.gz", **run,
          entities={"echo": "{echo}", "part": "mag", "desc": "nordic"},
          description="NORDIC-denoised magnitude series of one echo"),
        o("nordic", "gfactor", "nordic", suffix="statmap", extension=".nii.gz", **run,
          entities={"echo": "{echo}", "desc": "nordicGfactor"},
          description="NORDIC noise map (g-factor) of one echo"),
        o("nordic", "removed", "nordic", suffix="statmap", extension=".nii.gz", **run,
          entities={"echo": "{echo}", "desc": "nordicRemoved"},
          description="temporal standard deviation of what NORDIC removed"),
        # spatial preprocessing: per run, per subject (the functional grid), per echo
        o("spatial", "confounds", "spatial", suffix="timeseries", extension=".tsv", **run,
          entities={"desc": "confounds"},
          description="head-motion parameters and framewise displacement"),
        o("spatial", "boldref", "spatial", suffix="boldref", extension=".nii.gz", **run,
          description="motion reference volume of the run"),
        o("spatial", "xfm", "spatial", suffix="xfm", extension=".npz", **run,
          entities={"desc": "geometry"},
          description="per-volume motion, distortion and alignment of the run"),
        o("spatial_reference", "boldref", suffix="boldref", extension=".nii.gz", **grid,
          entities={"desc": "reference"},
          description="the reference run's boldref, the target every run is aligned to"),
        o("spatial_grid", "boldref", suffix="boldref", extension=".nii.gz", **grid,
          entities={"space": "T1w"},
          description="the subject's functional grid, aligned to the T1w"),
        o("spatial_grid", "brain_mask", suffix="mask", extension=".nii.gz", **grid,
          entities={"space": "T1w", "desc": "brain"},
          description="anatomy brain mask on the functional grid"),
        o("spatial_grid", "xfm", suffix="xfm", extension=".txt", **grid,
          entities={"from": "boldref", "to": "T1w", "mode": "image"},
          description="boldref-to-T1w rigid transform (ITK text)"),
        o("preproc", "bold", "preproc-{nordic}", suffix="bold", extension=".nii.gz", **run,
          entities={"echo": "{echo}", "desc": "preproc"}, spatial=True,
          description="one echo, motion/distortion corrected and resampled once"),
        # anatomy, per subject
        o("anatomy", "preproc", suffix="T1w", extension=".nii.gz", **anat,
          entities={"desc": "preproc"}, description="bias-corrected T1w"),
        o("anatomy", "brain_mask", suffix="mask", extension=".nii.gz", **anat,
          entities={"desc": "brain"}, description="T1w brain mask"),
        o("anatomy", "dseg", suffix="dseg", extension=".nii.gz", **anat,
          description="tissue classes (1 GM, 2 WM, 3 CSF)"),
        o("anatomy", "dseg_tsv", suffix="dseg", extension=".tsv", **anat, sidecar=False,
          description="look-up table of the tissue classes"),
        o("anatomy", "probseg_gm", suffix="probseg", extension=".nii.gz", **anat,
          entities={"label": "GM"}, description="grey-matter probability"),
        o("anatomy", "probseg_wm", suffix="probseg", extension=".nii.gz", **anat,
          entities={"label": "WM"}, description="white-matter probability"),
        o("anatomy", "probseg_csf", suffix="probseg", extension=".nii.gz", **anat,
          entities={"label": "CSF"}, description="CSF probability"),
        o("anatomy", "xfm_to_template", suffix="xfm", extension=".h5", **anat,
          entities={"from": "T1w", "to": TEMPLATE, "mode": "image"},
          description="T1w-to-template transform (ANTs composite)"),
        o("anatomy", "xfm_from_template", suffix="xfm", extension=".h5", **anat,
          entities={"from": TEMPLATE, "to": "T1w", "mode": "image"},
          description="template-to-T1w transform (ANTs composite)"),
        o("anatomy", "template_preproc", suffix="T1w", extension=".nii.gz", **anat,
          entities={"space": TEMPLATE, "desc": "preproc"},
          description="bias-corrected T1w in template space (QC)"),
        # echo handling, per run and variant
        o("combine", "bold", variant="single", suffix="bold", extension=".nii.gz", **combine,
          entities={"desc": "single"}, description="the single-echo baseline series"),
        o("combine", "bold", variant="optcom", suffix="bold", extension=".nii.gz", **combine,
          entities={"desc": "optcom"}, tool_name="desc-optcom_bold.nii.gz",
          description="tedana optimally combined series"),
        o("combine", "t2star", variant="optcom", suffix="T2starmap", extension=".nii.gz",
          **combine, tool_name="T2starmap.nii.gz", description="T2* map (s)"),
        o("combine", "s0", variant="optcom", suffix="S0map", extension=".nii.gz", **combine,
          tool_name="S0map.nii.gz",
          description="S0 map (arbitrary units)"),
        o("combine", "mask", variant="optcom", suffix="mask", extension=".nii.gz", **combine,
          entities={"desc": "adaptiveGoodSignal"}, tool_name="desc-adaptiveGoodSignal_mask.nii.gz",
          description="tedana adaptive mask: number of echoes with good signal per voxel"),
        o("combine", "bold", variant="denoised", suffix="bold", extension=".nii.gz", **combine,
          entities={"desc": "denoised"}, tool_name="desc-denoised_bold.nii.gz",
          description="tedana ICA-denoised series"),
        o("combine", "metrics", variant="denoised", suffix="metrics", extension=".tsv",
          **combine, entities={"desc": "tedana"}, tool_name="desc-tedana_metrics.tsv",
          description="tedana ICA component table with classifications"),
        o("combine", "mixing", variant="denoised", suffix="mixing", extension=".tsv",
          **combine, entities={"desc": "ICA"}, tool_name="desc-ICA_mixing.tsv",
          description="ICA mixing matrix (volumes x components)"),
        o("combine", "rejected", variant="denoised", suffix="timeseries", extension=".tsv",
          **combine, entities={"desc": "ICARejected"},
          description="time courses of the ICA components tedana rejected: regressors for the "
          "optcom series"),
        # the run's confounds beside its BOLD series, where nilearn looks (copies of spatial's)
        o("confounds", "combine", "combine-{nordic}", suffix="timeseries", extension=".tsv",
          **run, entities={"desc": "confounds"},
          description="the run's confounds (spatial/'s) beside its echo-handling series"),
        o("confounds", "preproc", "preproc-{nordic}", suffix="timeseries", extension=".tsv",
          **run, entities={"desc": "confounds"},
          description="the run's confounds (spatial/'s) beside its resampled echoes"),
        # GLMsingle, per session and variant
        o("glm", "betas", suffix="statmap", extension=".nii.gz", **glm, spatial=True,
          entities={"stat": "effect", "desc": "SingletrialBetas"},
          description="type-D single-trial betas (percent signal change), one per trial"),
        o("glm", "betas_typeb", suffix="statmap", extension=".nii.gz", **glm, spatial=True,
          entities={"stat": "effect", "desc": "SingletrialBetasTypeB"},
          description="type-B single-trial betas (least squares): the visual ROI's run-level "
          "test"),
        o("glm", "trials", suffix="trials", extension=".tsv", **glm,
          entities={"desc": "SingletrialBetas"},
          description="one row per beta volume: run_label, onset, label"),
        o("glm", "r2", suffix="statmap", extension=".nii.gz", **glm, spatial=True,
          entities={"stat": "rsquare", "desc": "R2"},
          description="cross-validated R² of the type-D model (percent)"),
        o("glm", "onoff_r2", suffix="statmap", extension=".nii.gz", **glm, spatial=True,
          entities={"stat": "rsquare", "desc": "OnoffR2"},
          description="R² of the on-off model (percent)"),
        o("glm", "hrfindex", suffix="dseg", extension=".nii.gz", **glm, spatial=True,
          entities={"desc": "HRFindex"}, description="library HRF chosen per voxel"),
        o("glm", "fracridge", suffix="statmap", extension=".nii.gz", **glm, spatial=True,
          entities={"desc": "Fracridge"}, description="ridge fraction chosen per voxel"),
        o("glm", "mask", suffix="mask", extension=".nii.gz", **glm, spatial=True,
          entities={"desc": "GLMsingle"}, description="voxels the GLM fitted"),
        o("glm", "summary", suffix="summary", extension=".json", **glm, sidecar=False,
          entities={"desc": "GLMsingle"}, description="fit summary: PCs, ridge, timings"),
        o("glm", "model", suffix="model", extension=".h5", **glm,
          entities={"desc": "GLMsingle"}, description="GLMsingle-style model file (glm.hdf5)"),
        o("heldout", "means", suffix="statmap", extension=".nii.gz", **glm, spatial=True,
          entities={"stat": "effect", "desc": "HeldoutImagemeans"},
          description="held-out image means: each half of the runs fitted apart (z, one volume "
          "per split, half and image): the comparison's held-out fidelity"),
        o("heldout", "volumes", suffix="volumes", extension=".tsv", **glm,
          entities={"desc": "HeldoutImagemeans"},
          description="one row per volume of the held-out image means: split, half, label, runs"),
        o("glm_mask", "mask", "glmsingle-analysis", "session", "mask", ".nii.gz",
          entities={"desc": "analysis"}, spatial=True,
          description="session analysis mask shared by every variant"),
        # noise ceilings: per session, per subject over sessions
        o("noiseceiling", "nc", suffix="statmap", extension=".nii.gz", **glm, spatial=True,
          entities={"desc": "Noiseceiling"}, description="session noise ceiling (percent)"),
        o("noiseceiling", "allrep", _GLM, "subject", "statmap", ".nii.gz", spatial=True,
          entities={"desc": "NoiseceilingAllrep"},
          description="noise ceiling over every repeat of every session (percent)"),
        o("noiseceiling", "r2mean", _GLM, "subject", "statmap", ".nii.gz", spatial=True,
          entities={"stat": "rsquare", "desc": "R2mean"},
          description="mean R² over sessions (percent)"),
        o("noiseceiling", "ncsnr", _GLM, "subject", "statmap", ".nii.gz", spatial=True,
          entities={"desc": "Ncsnr"}, description="noise-ceiling SNR over sessions"),
        o("noiseceiling", "nrep", _GLM, "subject", "statmap", ".nii.gz", spatial=True,
          entities={"desc": "Noiseceiling{nrep}rep"},
          description="noise ceiling for an average of N repeats (percent)"),
        # ROIs
        o("rois", "mask", "rois", "subject", "mask", ".nii.gz", spatial=True,
          entities={"res": "{res}", "label": "{label}"}, datatype="{category}",
          with_task=False, description="ROI mask on the functional grid"),
        o("rois", "table", suffix="summary", extension=".tsv", **glm,
          entities={"desc": "ROIs"}, description="NC and R² per ROI (percent)"),
        # comparison and reports
        o("comparison", "subject_table", "comparison", "subject", "comparison", ".tsv",
          entities={"desc": "variants"}, sidecar=False, datatype=None,
          description="one subject's 2x3 comparison table"),
        o("comparison", "subject_bootstrap", "comparison", "subject", "comparison", ".tsv",
          entities={"desc": "bootstrap"}, sidecar=False, datatype=None,
          description="one subject's held-out fidelity per variant and reference, bootstrap"),
        o("comparison", "tsv", "comparison", "group", "comparison", ".tsv", sidecar=False,
          entities={"desc": "variants"}, description="the group 2x3 comparison table"),
        o("comparison", "png", "comparison", "group", "comparison", ".png", sidecar=False,
          entities={"desc": "variants"}, description="the comparison figure"),
        o("comparison", "svg", "comparison", "group", "comparison", ".svg", sidecar=False,
          entities={"desc": "variants"}, description="the comparison figure (vector)"),
        o("comparison", "json", "comparison", "group", "", ".json", sidecar=False,
          filename="recommended_variant.json", description="the recommended variant and why"),
        o("diagnostics", "tsv", "reports", "subject", "diagnostics", ".tsv", datatype=None,
          entities={"desc": "nordic"}, description="NORDIC diagnostics of one subject"),
        o("report", "html", "reports", "group", "", ".html", sidecar=False,
          filename="sub-{subject}.html", description="a subject's HTML report"),
        # the LAION-fMRI loader's layout (publish.laion): one variant, linked or copied
        o("publish", "betas", suffix="statmap", extension=".nii.gz", **laion, spatial=True,
          entities={"stat": "effect", "desc": "SingletrialBetas"},
          description="the published variant's single-trial betas (percent signal change), "
          "one volume per trial"),
        o("publish", "nc", suffix="statmap", extension=".nii.gz", **laion, spatial=True,
          entities={"desc": "Noiseceiling"},
          description="the published variant's session noise ceiling (percent)"),
        o("publish", "trials", suffix="trials", extension=".tsv", **laion,
          entities={"desc": "SingletrialBetas"},
          description="one row per beta volume: run_label, onset, label"),
        o("publish", "mask", suffix="mask", extension=".nii.gz", **laion_sub,
          entities={"desc": "meanR2gt15mask"},
          description="voxels whose mean R² over sessions exceeds 15 % (uint8, 1 inside)"),
        o("publish", "allrep", suffix="statmap", extension=".nii.gz", **laion_sub,
          entities={"desc": "NoiseceilingAllrep"},
          description="noise ceiling over every repeat of every session (percent)"),
        o("publish", "nrep", suffix="statmap", extension=".nii.gz", **laion_sub,
          entities={"desc": "Noiseceiling{nrep}rep"},
          description="noise ceiling for an average of N repeats (percent)"),
        o("publish", "roi", LAION_ATLASES, "subject", "", ".nii.gz", datatype="rois",
          with_task=False, filename="{roi}.nii.gz",
          description="a ROI mask of the subject on the functional grid (1 inside), named by "
          "its label"),
    )
    # fmt: on


#: Every output, by :attr:`Output.key`.
OUTPUTS: dict[str, Output] = {o.key: o for o in _outputs()}


@dataclass(frozen=True)
class Folder:
    """A derivative folder: its name template, its ``dataset_description.json`` texts and the
    names the BIDS specification does not define (its ``.bidsignore``).

    ``{folder}`` in :attr:`title` is replaced by the folder's actual name
    (``glmsingle-nordic-optcom``).
    """

    template: str
    title: str
    description: str
    bidsignore: tuple[str, ...] = ()

    def name_of(self, folder: str) -> str:
        """The dataset ``Name`` of the folder called ``folder``."""
        return self.title.replace("{folder}", folder)

    def pattern(self) -> re.Pattern[str]:
        """A regular expression matching the folder names this template gives."""
        parts = _PLACEHOLDER.split(self.template)  # literal text and placeholder names alternate
        regex = "".join(
            re.escape(part) if i % 2 == 0 else "[A-Za-z0-9]+" for i, part in enumerate(parts)
        )
        return re.compile(regex)


_SPATIAL_DESCRIPTION = (
    "Slice timing, head motion (echo 2), fieldmap distortion correction, run and session "
    "alignment, BOLD->T1w registration and one cubic B-spline interpolation of every echo "
    "(echoprep.kernels.geometry)"
)
#: BIDS 1.10 has no name for transforms, motion reference volumes and confound tables, nor for
#: a subject-level functional mask without a task (func masks need ``task-``).
_SPATIAL_IGNORE = (
    "*_xfm.npz",
    "*_xfm.txt",
    "*_xfm.json",
    "*_boldref.*",
    "*_desc-confounds_timeseries.*",
    "sub-*/func/*_desc-brain_mask.*",
)

#: Every derivative folder (with a ``dataset_description.json``), by the name the ``describe``
#: command knows it by.
FOLDERS: dict[str, Folder] = {
    "nordic": Folder(
        "nordic",
        "echoprep NORDIC",
        "NORDIC thermal-noise denoising per echo (echoprep's own implementation)",
        ("*_statmap.*",),
    ),
    "combine": Folder(
        "combine-{nordic}",
        "echoprep echo handling ({folder})",
        "single-echo baseline, tedana optimal combination and ICA denoising",
        ("*_T2starmap.*", "*_S0map.*", "*_mixing.*", "*_metrics.*", "*_timeseries.*"),
    ),
    "spatial": Folder(
        "spatial", "echoprep spatial preprocessing", _SPATIAL_DESCRIPTION, _SPATIAL_IGNORE
    ),
    "preproc": Folder(
        "preproc-{nordic}", "echoprep spatial preprocessing", _SPATIAL_DESCRIPTION, _SPATIAL_IGNORE
    ),
    "anatomy": Folder(
        "anat",
        "echoprep anatomy",
        "T1w N4 bias correction (ANTs), brain mask (deepbet), tissue classes (ANTs Atropos) "
        f"and T1w<->{TEMPLATE} transforms (ANTs SyN)",
        ("*_xfm.h5", "*_xfm.json"),
    ),
    "glm": Folder(
        _GLM,
        "echoprep single-trial betas ({folder})",
        "GLMsingle FITHRF_GLMDENOISE_RR single-trial betas per session (echoprep's engine "
        "unless glm.engine is glmsingle) and noise ceilings (NSD ncsnr)",
        # statistical maps (betas, R², noise ceilings, held-out image means), ROI tables and
        # the held-out volume tables have no BIDS name yet
        ("*_statmap.*", "*_summary.*", "*_model.*", "*_trials.*", "*_volumes.*"),
    ),
    "analysis-mask": Folder(
        "glmsingle-analysis",
        "echoprep analysis masks ({folder})",
        "One mask per subject and session shared by every GLM variant fitted there: brain "
        "voxels with valid data in every run of every variant",
    ),
    "rois": Folder(
        "rois",
        "echoprep ROIs",
        "ROI masks on each subject's functional grid: user masks (nearest neighbour) and the "
        "visually responsive ROI (image trials vs the blank baseline, tested across runs)",
        # one folder per ROI category (sub-01/visual/), which is no BIDS datatype (the
        # validator matches folders without their trailing slash: "sub-*/*/" would not do)
        ("sub-*/*",),
    ),
    "comparison": Folder(
        "comparison",
        "echoprep preprocessing comparison",
        "NORDIC off/on x single echo/optcom/ICA-denoised: held-out fidelity of the single-trial "
        "betas, median noise ceiling in the visually responsive ROI and d', with the "
        "recommended variant",
        ("*_comparison.*", "recommended_variant.json"),
    ),
    "report": Folder(
        "reports",
        "echoprep reports",
        "One self-contained HTML quality report per subject: tSNR with and without NORDIC, "
        "T2*, head motion, R² and noise ceilings, ROI tables, the comparison",
        ("*.html", "*_diagnostics.*"),
    ),
    "laion": Folder(
        LAION_GLM,
        "echoprep single-trial betas, LAION-fMRI layout",
        "One variant (publish.variant) under the names the LAION-fMRI data loader reads: "
        "single-trial betas, trials, session noise ceilings per session; the meanR2gt15mask "
        "and the cross-session noise ceilings directly in each subject folder. Each file is a "
        "link to (or a copy of) the glmsingle-<variant> original named in its sidecar",
        ("*_statmap.*", "*_trials.*"),
    ),
    "atlases": Folder(
        LAION_ATLASES,
        "echoprep ROI masks, LAION-fMRI layout",
        "Every ROI mask of each subject (rois/) as sub-<label>/rois/<ROI label>.nii.gz, the "
        "name the LAION-fMRI data loader reads; each a link to (or a copy of) the original "
        "named in its sidecar",
        # a folder pattern without the trailing slash (bids-validator 3.0.2 matches it so)
        ("sub-*/rois",),
    ),
}


def folder_kind(folder: str) -> str:
    """The :data:`FOLDERS` name of a derivative folder's actual name (``combine-raw`` ->
    ``combine``).

    Raises
    ------
    KeyError
        For a folder echoprep does not write.
    """
    for kind, spec in FOLDERS.items():
        if spec.pattern().fullmatch(folder):
            return kind
    raise KeyError(f"{folder!r} is not a derivative folder echoprep writes")


def get(key: str) -> Output:
    """The output registered under ``key`` (``"glm.betas"``, ``"combine.optcom.t2star"``)."""
    try:
        return OUTPUTS[key]
    except KeyError:
        raise KeyError(f"no output {key!r}; registered: {sorted(OUTPUTS)}") from None


def stage_outputs(stage: str, variant: str | None = None) -> dict[str, Output]:
    """A stage's outputs by name (for ``combine``: of one variant)."""
    found = {o.name: o for o in OUTPUTS.values() if o.stage == stage and (o.variant == variant)}
    if not found:
        raise KeyError(f"no outputs registered for stage {stage!r} variant {variant!r}")
    return found


def paths_in(
    root: str | Path,
    stage: str,
    key: tuple[str, str],
    *,
    keys: Sequence[str] | None = None,
    space: str | None = None,
    variant: str | None = None,
    **values: object,
) -> dict[str, Path]:
    """Name -> path of the files a stage run by hand writes (tests, benchmarks, notebooks).

    Parameters
    ----------
    root
        The stage's own derivative folder (``<output_dir>/glmsingle-nordic-optcom``,
        ``<output_dir>/anat``), not ``output_dir``: paths are ``root/<key folder>/<name>``.
    stage, variant
        As in :func:`stage_outputs` (``variant`` only for ``combine``).
    key
        ``(folder, stem)`` of the run, session, subject or group (:func:`session_key`, etc.).
    keys
        Output names of the stage, in the order wanted; None: every output of the stage.
    space, **values
        As in :meth:`Output.file_name`.
    """
    outputs = stage_outputs(stage, variant)
    if unknown := [k for k in keys or () if k not in outputs]:
        raise KeyError(f"stage {stage!r} has no outputs {unknown}; it has {list(outputs)}")
    return {
        k: Path(root) / key[0] / outputs[k].file_name(key[1], space=space, **values)
        for k in (outputs if keys is None else keys)
    }


def path_in(
    root: str | Path,
    output: str,
    key: tuple[str, str],
    *,
    space: str | None = None,
    **values: object,
) -> Path:
    """:func:`paths_in` for one output.

    Parameters
    ----------
    root, key, space, **values
        As in :func:`paths_in` (``root``: the output's own folder, e.g. ``<output_dir>/anat``).
    output
        Its registry key (:func:`get`): ``"noiseceiling.nc"``, ``"preproc.bold"`` (``echo=2``).
    """
    return Path(root) / key[0] / get(output).file_name(key[1], space=space, **values)


def stage_table(
    stage: str, variant: str | None = None, level: str | None = None
) -> dict[str, tuple[str, dict[str, str], str]]:
    """``name -> (suffix, entities, extension)`` of a stage's outputs (fixed entities only:
    placeholders such as ``{echo}`` are left out)."""
    return {
        name: (
            o.suffix,
            {k: v for k, v in o.entities.items() if "{" not in v},
            o.extension,
        )
        for name, o in stage_outputs(stage, variant).items()
        if level is None or o.level == level
    }


def with_sidecars(paths: Mapping[str, str | Path], outputs: Mapping[str, Output]) -> dict[str, str]:
    """``name -> path`` plus ``name_json -> sidecar`` for the outputs that have one."""
    files: dict[str, str] = {}
    for name, path in paths.items():
        files[name] = str(path)
        if outputs[name].sidecar:
            files[f"{name}_json"] = str(sidecar_path(path))
    return files


#: How messages name the GLM's trials table (``*_desc-SingletrialBetas_trials.tsv``).
TRIALS_NAME = "*_" + OUTPUTS["glm.trials"].file_name("")

__all__ = [
    "FOLDERS",
    "LAION_ATLASES",
    "LAION_GLM",
    "LEVELS",
    "OUTPUTS",
    "TEMPLATE",
    "TRIALS_NAME",
    "Folder",
    "Output",
    "folder_kind",
    "get",
    "group_key",
    "path_in",
    "paths_in",
    "run_key",
    "session_key",
    "stage_outputs",
    "stage_table",
    "subject_key",
    "with_sidecars",
]
