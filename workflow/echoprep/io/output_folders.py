"""The derivative folders: each folder's name, its dataset description and its ``.bidsignore``.

:data:`FOLDERS` is the one place a derivative folder's name is written
(``tests/unit/test_outputs_registry.py`` fails on a folder name spelled anywhere else in the
package or the rules): the file table (:mod:`echoprep.io.output_files`), the log names
(:mod:`echoprep.io.rule_logs`), the plan's list of described folders and the report read it
through :func:`folder_name` or :attr:`Folder.template`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from echoprep.io.output_model import PLACEHOLDER, TEMPLATE, substitute


@dataclass(frozen=True)
class Folder:
    """A derivative folder: its name template, its ``dataset_description.json`` texts, the
    names the BIDS specification does not define (its ``.bidsignore``), the config sections
    that shape its files and the pages of docs/ behind its methods (both named by its
    README).

    ``{folder}`` in :attr:`title` is replaced by the folder's actual name
    (``glmsingle-nordic-optcom``).
    """

    template: str
    title: str
    description: str
    bidsignore: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()
    docs: tuple[str, ...] = ("docs/architecture.md",)

    def name_of(self, folder: str) -> str:
        """The dataset ``Name`` of the folder called ``folder``."""
        return self.title.replace("{folder}", folder)

    def pattern(self) -> re.Pattern[str]:
        """A regular expression matching the folder names this template gives."""
        parts = PLACEHOLDER.split(self.template)  # literal text and placeholder names alternate
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
#: command knows it by (its kind). The one place a folder name is spelled: every other module
#: reads the name here (:func:`folder_name`, :attr:`Folder.template`).
FOLDERS: dict[str, Folder] = {
    "nordic": Folder(
        "nordic",
        "echoprep NORDIC",
        "NORDIC thermal-noise denoising per echo (echoprep's own implementation)",
        ("*_statmap.*",),
        sections=("nordic",),
        docs=("docs/nordic.md",),
    ),
    "combine": Folder(
        "combine-{nordic}",
        "echoprep echo handling ({folder})",
        "single-echo baseline, tedana optimal combination and ICA denoising",
        # (and the series on the surfaces, surface.bold)
        ("*_T2starmap.*", "*_S0map.*", "*_mixing.*", "*_metrics.*", "*_timeseries.*", "*_hemi-*"),
        sections=("single_echo", "optcom", "tedana"),
    ),
    "spatial": Folder(
        "spatial",
        "echoprep spatial preprocessing",
        _SPATIAL_DESCRIPTION,
        _SPATIAL_IGNORE,
        sections=("spatial",),
    ),
    "preproc": Folder(
        "preproc-{nordic}",
        "echoprep spatial preprocessing",
        _SPATIAL_DESCRIPTION,
        _SPATIAL_IGNORE,
        sections=("spatial",),
    ),
    "anatomy": Folder(
        "anat",
        "echoprep anatomy",
        "T1w N4 bias correction (ANTs), brain mask (deepbet), tissue classes (ANTs Atropos) "
        f"and T1w<->{TEMPLATE} transforms (ANTs SyN)",
        # the surfaces and their transform (surface.*: BIDS 1.10 names no surface derivative)
        ("*_xfm.h5", "*_xfm.json", "*_xfm.txt", "*_hemi-*"),
        sections=("anatomy",),
    ),
    "glm": Folder(
        "glmsingle-{nordic}-{combine}",
        "echoprep single-trial betas ({folder})",
        "GLMsingle FITHRF_GLMDENOISE_RR single-trial betas per session (echoprep's engine "
        "unless glm.engine is glmsingle) and noise ceilings (NSD ncsnr)",
        # statistical maps (betas, R², noise ceilings, held-out image means), ROI tables and
        # the held-out volume tables have no BIDS name yet
        ("*_statmap.*", "*_summary.*", "*_model.*", "*_trials.*", "*_volumes.*"),
        sections=("glm",),
        docs=("docs/glm.md", "docs/noise-ceiling.md"),
    ),
    "analysis-mask": Folder(
        "glmsingle-analysis",
        "echoprep analysis masks ({folder})",
        "One mask per subject and session shared by every GLM variant fitted there: brain "
        "voxels with valid data in every run of every variant",
        sections=("glm",),
        docs=("docs/glm.md",),
    ),
    "rois": Folder(
        "rois",
        "echoprep ROIs",
        "ROI masks on each subject's functional grid: user masks (nearest neighbour) and the "
        "visually responsive ROI (image trials vs the blank baseline, tested across runs)",
        # one folder per ROI category (sub-01/visual/), which is no BIDS datatype (the
        # validator matches folders without their trailing slash: "sub-*/*/" would not do)
        ("sub-*/*",),
        sections=("rois",),
        docs=("docs/glm.md", "docs/comparison.md"),
    ),
    "comparison": Folder(
        "comparison",
        "echoprep preprocessing comparison",
        "NORDIC off/on x single echo/optcom/ICA-denoised: held-out fidelity of the single-trial "
        "betas, median noise ceiling in the visually responsive ROI and d', with the "
        "recommended variant",
        ("*_comparison.*", "recommended_variant.json"),
        sections=("comparison",),
        docs=("docs/comparison.md",),
    ),
    "planted": Folder(
        "planted",
        "echoprep planted responses",
        "responses planted into the raw echoes of each comparison session (a small copy of the "
        "session's own image responses, measured at each image's odd-numbered presentations), "
        "against which every variant of the comparison is measured",
        # the design (arrays and their sidecar): no BIDS name
        ("*_design.*",),
        sections=("comparison",),
        docs=("docs/comparison.md",),
    ),
    "report": Folder(
        "reports",
        "echoprep reports",
        "One self-contained HTML quality report per subject: tSNR with and without NORDIC, "
        "T2*, head motion, R² and noise ceilings, ROI tables, the comparison",
        ("*.html", "*_diagnostics.*"),
        sections=("report",),
    ),
    "laion": Folder(
        "glmsingle-tedana",
        "echoprep single-trial betas, LAION-fMRI layout",
        "One variant (publish.variant) under the names the LAION-fMRI data loader reads: "
        "single-trial betas, trials, session noise ceilings per session; the meanR2gt15mask "
        "and the cross-session noise ceilings directly in each subject folder. Each file is a "
        "link to (or a copy of) the glmsingle-<variant> original named in its sidecar",
        ("*_statmap.*", "*_trials.*"),
    ),
    "atlases": Folder(
        "atlases",
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


#: The folders the LAION-fMRI data loader (laion_fmri) reads below derivatives/ (publish stage).
LAION_GLM = FOLDERS["laion"].template
LAION_ATLASES = FOLDERS["atlases"].template


def folder_name(kind: str, **values: object) -> str:
    """The name of a :data:`FOLDERS` folder, its placeholders filled from ``values``
    (``folder_name("combine", nordic="raw")`` -> ``combine-raw``); a placeholder without a
    value stays a wildcard (``combine-{nordic}``).

    Raises
    ------
    KeyError
        For a kind :data:`FOLDERS` does not have.
    """
    try:
        spec = FOLDERS[kind]
    except KeyError:
        raise KeyError(f"no derivative folder kind {kind!r}; known: {sorted(FOLDERS)}") from None
    return substitute(spec.template, values)


__all__ = [
    "FOLDERS",
    "LAION_ATLASES",
    "LAION_GLM",
    "Folder",
    "folder_kind",
    "folder_name",
]
