"""The file table: every derivative file echoprep writes, one :class:`Output` each, by family.

One entry per file kind (stage, name, folder, level, entities, suffix, extension, sidecar,
description), grouped by the stage family that writes it; :data:`OUTPUTS` holds them by key.
The folder of each entry is read from the folder table (:mod:`echoprep.io.output_folders`, by
kind), never spelled here. Look-ups and path helpers: :mod:`echoprep.io.outputs`.
"""

from __future__ import annotations

from typing import Any

from echoprep.io.output_folders import folder_name
from echoprep.io.output_model import TEMPLATE, Output


def _in(kind: str) -> str:
    """The folder of a :data:`~echoprep.io.output_folders.FOLDERS` kind, as a template
    (``"glm"`` -> ``glmsingle-{nordic}-{combine}``)."""
    return folder_name(kind)


def _outputs() -> tuple[Output, ...]:
    o = Output
    # shared Output fields (typed Any: mypy cannot match a ** dict to each field's type)
    run: dict[str, Any] = {"level": "run"}
    anat: dict[str, Any] = {
        "folder": _in("anatomy"),
        "level": "subject",
        "datatype": "anat",
        "with_task": False,
    }
    grid: dict[str, Any] = {"folder": _in("spatial"), "level": "subject", "with_task": False}
    combine: dict[str, Any] = {"folder": _in("combine"), "level": "run", "spatial": True}
    glm: dict[str, Any] = {"folder": _in("glm"), "level": "session"}
    laion: dict[str, Any] = {"folder": _in("laion"), "level": "session"}
    # the cortical surface: per hemisphere ({hemi}), on fsnative and the template
    # ({surface_space}) beside the GLM's maps
    hemi: dict[str, Any] = {**anat, "extension": ".surf.gii"}
    on_surface = {"hemi": "{hemi}", "space": "{surface_space}"}
    surf: dict[str, Any] = {"folder": _in("glm"), "extension": ".func.gii", "suffix": "statmap"}
    laion_sub: dict[str, Any] = {
        "folder": _in("laion"),
        "level": "subject",
        "datatype": None,
        "spatial": True,
    }
    # fmt: off
    return (
        # NORDIC, per run and echo
        o("nordic", "bold", _in("nordic"), suffix="bold", extension=".nii.gz", **run,
          entities={"echo": "{echo}", "part": "mag", "desc": "nordic"},
          description="NORDIC-denoised magnitude series of one echo"),
        o("nordic", "gfactor", _in("nordic"), suffix="statmap", extension=".nii.gz", **run,
          entities={"echo": "{echo}", "desc": "nordicGfactor"},
          description="NORDIC noise map (g-factor) of one echo"),
        o("nordic", "removed", _in("nordic"), suffix="statmap", extension=".nii.gz", **run,
          entities={"echo": "{echo}", "desc": "nordicRemoved"},
          description="temporal standard deviation of what NORDIC removed"),
        # spatial preprocessing: per run, per subject (the functional grid), per echo
        o("spatial", "confounds", _in("spatial"), suffix="timeseries", extension=".tsv", **run,
          entities={"desc": "confounds"},
          description="head-motion parameters and framewise displacement"),
        o("spatial", "boldref", _in("spatial"), suffix="boldref", extension=".nii.gz", **run,
          description="motion reference volume of the run"),
        o("spatial", "xfm", _in("spatial"), suffix="xfm", extension=".npz", **run,
          entities={"desc": "geometry"},
          description="per-volume motion, distortion and alignment of the run"),
        o("spatial_reference", "boldref", suffix="boldref", extension=".nii.gz", **grid,
          entities={"desc": "reference"},
          description="the reference run's boldref, the target every run is aligned to"),
        o("spatial_subject", "boldref", suffix="boldref", extension=".nii.gz", **grid,
          entities={"space": "T1w"},
          description="the subject's functional grid, aligned to the T1w"),
        o("spatial_subject", "brain_mask", suffix="mask", extension=".nii.gz", **grid,
          entities={"space": "T1w", "desc": "brain"},
          description="anatomy brain mask on the functional grid"),
        o("spatial_subject", "xfm", suffix="xfm", extension=".txt", **grid,
          entities={"from": "boldref", "to": "T1w", "mode": "image"},
          description="boldref-to-T1w rigid transform (ITK text)"),
        o("preproc", "bold", _in("preproc"), suffix="bold", extension=".nii.gz", **run,
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
        o("confounds", "combine", _in("combine"), suffix="timeseries", extension=".tsv",
          **run, entities={"desc": "confounds"},
          description=f"the run's confounds ({_in('spatial')}/'s) beside its echo-handling series"),
        o("confounds", "preproc", _in("preproc"), suffix="timeseries", extension=".tsv",
          **run, entities={"desc": "confounds"},
          description=f"the run's confounds ({_in('spatial')}/'s) beside its resampled echoes"),
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
        o("glm_heldout", "means", suffix="statmap", extension=".nii.gz", **glm, spatial=True,
          entities={"stat": "effect", "desc": "HeldoutImagemeans"},
          description="held-out image means: each half of the runs fitted apart (z, one volume "
          "per split, half and image): the comparison's held-out fidelity"),
        o("glm_heldout", "volumes", suffix="volumes", extension=".tsv", **glm,
          entities={"desc": "HeldoutImagemeans"},
          description="one row per volume of the held-out image means: split, half, label, runs"),
        o("planted_glm", "betas", suffix="statmap", extension=".nii.gz", **glm, spatial=True,
          entities={"stat": "effect", "desc": "plantedBetas"},
          description="what the variant's single-trial betas contain of the responses planted "
          "into the session (percent signal change, one volume per trial): its frozen fit on "
          "half the difference of the series with them added and subtracted"),
        o("planted_glm", "betas_typeb", suffix="statmap", extension=".nii.gz", **glm,
          spatial=True, entities={"stat": "effect", "desc": "plantedBetasTypeB"},
          description="the same for the type-B fit the planted responses come from: its gain "
          "for them scales the comparison's estimate"),
        o("planted_design", "design", _in("planted"), "session", "design", ".npz",
          entities={"desc": "planted"},
          description="the planted responses of a comparison session: voxels, images, the "
          "response planted for each image (its odd-numbered presentations), the truth it is "
          "scored against (its even-numbered presentations), HRF and factor"),
        o("analysis_mask", "mask", _in("analysis-mask"), "session", "mask", ".nii.gz",
          entities={"desc": "analysis"}, spatial=True,
          description="session analysis mask shared by every variant"),
        # noise ceilings: per session, per subject over sessions
        o("noiseceiling", "nc", suffix="statmap", extension=".nii.gz", **glm, spatial=True,
          entities={"desc": "Noiseceiling"}, description="session noise ceiling (percent)"),
        o("noiseceiling", "allrep", _in("glm"), "subject", "statmap", ".nii.gz", spatial=True,
          entities={"desc": "NoiseceilingAllrep"},
          description="noise ceiling over every repeat of every session (percent)"),
        o("noiseceiling", "r2mean", _in("glm"), "subject", "statmap", ".nii.gz", spatial=True,
          entities={"stat": "rsquare", "desc": "R2mean"},
          description="mean R² over sessions (percent)"),
        o("noiseceiling", "ncsnr", _in("glm"), "subject", "statmap", ".nii.gz", spatial=True,
          entities={"desc": "Ncsnr"}, description="noise-ceiling SNR over sessions"),
        o("noiseceiling", "nrep", _in("glm"), "subject", "statmap", ".nii.gz", spatial=True,
          entities={"desc": "Noiseceiling{nrep}rep"},
          description="noise ceiling for an average of N repeats (percent)"),
        # the cortical surface (docs/surface.md): surfaces in T1w space, maps on fsnative and
        # fsaverage
        o("surface_anatomy", "xfm", suffix="xfm", extension=".txt", **anat,
          entities={"from": "fsnative", "to": "T1w", "mode": "image"},
          description="FreeSurfer surface (tkr-RAS) to T1w world, 4x4 RAS text matrix"),
        o("surface_anatomy", "white", suffix="white", **hemi, entities={"hemi": "{hemi}"},
          description="FreeSurfer white surface in T1w world coordinates (mm)"),
        o("surface_anatomy", "pial", suffix="pial", **hemi, entities={"hemi": "{hemi}"},
          description="FreeSurfer pial surface in T1w world coordinates (mm)"),
        o("surface_anatomy", "midthickness", suffix="midthickness", **hemi,
          entities={"hemi": "{hemi}"},
          description="midway between white and pial, T1w world coordinates (mm)"),
        o("surface_anatomy", "sphere", suffix="sphere", **hemi,
          entities={"hemi": "{hemi}", "desc": "reg"},
          description="FreeSurfer sphere.reg (registered to fsaverage)"),
        o("surface", "betas", **surf, level="session",
          entities={**on_surface, "stat": "effect", "desc": "SingletrialBetas"},
          description="single-trial betas (percent signal change) on the surface, one data "
          "array per trial; NaN outside the field of view or the mask"),
        o("surface", "nc", **surf, level="session",
          entities={**on_surface, "desc": "Noiseceiling"},
          description="session noise ceiling (percent) on the surface"),
        o("surface", "r2", **surf, level="session",
          entities={**on_surface, "stat": "rsquare", "desc": "R2"},
          description="cross-validated R² of the type-D model (percent) on the surface"),
        o("surface", "allrep", **surf, level="subject",
          entities={**on_surface, "desc": "NoiseceilingAllrep"},
          description="noise ceiling over every repeat of every session (percent) on the "
          "surface"),
        o("surface", "r2mean", **surf, level="subject",
          entities={**on_surface, "stat": "rsquare", "desc": "R2mean"},
          description="mean R² over sessions (percent) on the surface"),
        o("surface", "bold", _in("combine"), "run", "bold", ".func.gii",
          entities={**on_surface, "desc": "{combine}"},
          description="an echo-handling series on the surface (surface.bold), one data array "
          "per volume; NaN outside the field of view or the brain mask"),
        # ROIs
        o("rois", "mask", _in("rois"), "subject", "mask", ".nii.gz", spatial=True,
          entities={"res": "{res}", "label": "{label}"}, datatype="{category}",
          with_task=False, description="ROI mask on the functional grid"),
        o("rois", "table", suffix="summary", extension=".tsv", **glm,
          entities={"desc": "ROIs"}, description="NC and R² per ROI (percent)"),
        # comparison and reports
        o("comparison", "subject_table", _in("comparison"), "subject", "comparison", ".tsv",
          entities={"desc": "variants"}, sidecar=False, datatype=None,
          description="one subject's 2x3 comparison table"),
        o("comparison", "subject_bootstrap", _in("comparison"), "subject", "comparison", ".tsv",
          entities={"desc": "bootstrap"}, sidecar=False, datatype=None,
          description="one subject's held-out fidelity per variant and reference, bootstrap"),
        o("comparison", "subject_planted", _in("comparison"), "subject", "comparison", ".tsv",
          entities={"desc": "planted"}, sidecar=False, datatype=None,
          description="one subject's fidelity to the planted responses per variant, bootstrap"),
        o("comparison", "subject_transfer", _in("comparison"), "subject", "comparison", ".tsv",
          entities={"desc": "transfer"}, sidecar=False, datatype=None,
          description="planted against recovered image responses per variant (binned)"),
        o("comparison", "tsv", _in("comparison"), "group", "comparison", ".tsv", sidecar=False,
          entities={"desc": "variants"}, description="the group 2x3 comparison table"),
        o("comparison", "png", _in("comparison"), "group", "comparison", ".png", sidecar=False,
          entities={"desc": "variants"}, description="the comparison figure"),
        o("comparison", "svg", _in("comparison"), "group", "comparison", ".svg", sidecar=False,
          entities={"desc": "variants"}, description="the comparison figure (vector)"),
        o("comparison", "json", _in("comparison"), "group", "", ".json", sidecar=False,
          filename="recommended_variant.json", description="the recommended variant and why"),
        o("diagnostics", "tsv", _in("report"), "subject", "diagnostics", ".tsv", datatype=None,
          entities={"desc": "nordic"}, description="NORDIC diagnostics of one subject"),
        o("report", "html", _in("report"), "group", "", ".html", sidecar=False,
          filename="sub-{subject}.html", description="a subject's HTML report"),
        # the LAION-fMRI loader's layout (publish.laion): one variant, linked or copied
        o("publish", "betas", suffix="statmap", extension=".nii.gz", **laion, spatial=True,
          entities={"stat": "effect", "desc": "SingletrialBetas"},
          description="the published variant's single-trial betas (percent signal change), "
          "one volume per trial"),
        o("publish", "nc", suffix="statmap", extension=".nii.gz", **laion, spatial=True,
          entities={"desc": "Noiseceiling"},
          description="the published variant's session noise ceiling (percent)"),
        o("publish", "surface_betas", suffix="statmap", extension=".func.gii", **laion,
          entities={**on_surface, "stat": "effect", "desc": "SingletrialBetas"},
          description="the published variant's single-trial betas on the surface (surface."
          "betas), one data array per trial"),
        o("publish", "surface_nc", suffix="statmap", extension=".func.gii", **laion,
          entities={**on_surface, "desc": "Noiseceiling"},
          description="the published variant's session noise ceiling on the surface (percent)"),
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
        o("publish", "roi", _in("atlases"), "subject", "", ".nii.gz", datatype="rois",
          with_task=False, filename="{roi}.nii.gz",
          description="a ROI mask of the subject on the functional grid (1 inside), named by "
          "its label"),
    )
    # fmt: on


#: Every output, by :attr:`Output.key`.
OUTPUTS: dict[str, Output] = {o.key: o for o in _outputs()}

#: How messages name the GLM's trials table (``*_desc-SingletrialBetas_trials.tsv``).
TRIALS_NAME = "*_" + OUTPUTS["glm.trials"].file_name("")

__all__ = ["OUTPUTS", "TRIALS_NAME"]
