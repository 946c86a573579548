"""Names of the ground-truth files (``<dataset>/derivatives/truth``) and their sidecars.

Layout (all names from :func:`echoprep.io.paths.bids_path`)::

    derivatives/truth/dataset_description.json
    derivatives/truth/sub-01/anat/sub-01_space-T1w_desc-truthBrain_mask.nii.gz   (T1w grid)
    derivatives/truth/sub-01/anat/sub-01_space-T1w_desc-truth_dseg.nii.gz        (T1w grid)
    derivatives/truth/sub-01/anat/sub-01_from-bold_to-T1w_desc-truth_xfm.json    BOLD → T1w pose
    derivatives/truth/sub-01/anat/sub-01_from-bold_to-T1w_mode-image_desc-truth_xfm.txt  (ITK)
    derivatives/truth/sub-01/ses-01/func/   (functional grid = the raw BOLD grid, motion-free)
        sub-01_ses-01_desc-truth_T2starmap.nii.gz            T2*, s
        sub-01_ses-01_desc-truth_S0map.nii.gz                S0, magnitude units
        sub-01_ses-01_desc-truthBrain_mask.nii.gz
        sub-01_ses-01_desc-truthGM_mask.nii.gz
        sub-01_ses-01_desc-truthGfactor_statmap.nii.gz       g-factor (noise SD = sigma * g)
        sub-01_ses-01_desc-truth_fieldmap.nii.gz             B0 off-resonance, Hz
        sub-01_ses-01_desc-truthVSM_statmap.nii.gz           voxel shift along j (if distorted)
        sub-01_ses-01_label-<roi>_desc-truth_mask.nii.gz     ROI masks (visual, calcarine, frontal)
        sub-01_ses-01_task-images_desc-truthActive_mask.nii.gz
        sub-01_ses-01_task-images_desc-truthHRFpeak_statmap.nii.gz                  s
        sub-01_ses-01_task-images_stat-effect_desc-truthBetas_statmap.nii.gz       4D, s^-1
        sub-01_ses-01_task-images_desc-truth_trials.tsv      session, run, onset, label, beta_index
        sub-01_ses-01_task-images_desc-truthS_statmap.nii.gz                        s^-1
        sub-01_ses-01_task-images_desc-truthT_statmap.nii.gz                        s^-1
        sub-01_ses-01_task-images_desc-truthNoiseceiling_statmap.nii.gz             %
        sub-01_ses-01_task-images_stat-effect_desc-truthImageMeans_statmap.nii.gz  4D, s^-1
        sub-01_ses-01_task-images_desc-truth_images.tsv      volume_index, image, label, n_repeats
        sub-01_ses-01_task-images_run-01_desc-truth_motion.tsv   (only with motion)

Every image has a JSON sidecar stating its units and meaning.

Spaces and conventions (stated again in the sidecars; :mod:`.geometry`):

- The functional truth maps are on the raw BOLD grid with the head in its motion-free position
  and undistorted ("BOLD world"). Volume t of a run shows the head moved by the rigid transform
  ``M_t`` of its row in the motion TSV (``x -> c + R (x - c) + d``, :func:`.geometry.rigid_matrix`;
  relative to volume 0: ``M_t @ inv(M_0)``); the SBRef of a run is in the position of volume 0.
  Fieldmap images (magnitude1/2, phasediff) are in the motion-free position and undistorted.
- Distortion (when simulated): a spin at voxel (i, j, k) of the motion-free head appears at
  (i, j + vsm, k) in the raw BOLD and SBRef, ``vsm = -TotalReadoutTime * fieldmap_hz`` (PE
  ``j-``), its magnitude divided by ``1 + d vsm / dj`` (the phase of a voxel is the
  magnitude-weighted mean of the phases landing in it). With motion the field moves with the
  head: the shift of volume t is the VSM moved by ``M_t``.
- The T1w is in another pose: a head point at BOLD-world ``x`` is at T1w-world ``P x``
  (``Matrix`` of the xfm JSON, RAS mm); the T1w truth masks are in that pose on the T1w grid.
  The ITK file (``mode-image``) resamples a BOLD-world image onto a T1w grid with ANTs /
  SimpleITK (it maps T1w LPS points to BOLD LPS points, ``inv(P)``).
"""

from __future__ import annotations

from pathlib import Path

from echoprep.io.paths import bids_path

TRUTH_SUBDIR = ("derivatives", "truth")
ROI_NAMES = ("visual", "calcarine", "frontal")
TASK = "images"

#: key -> (entities beyond sub/ses, suffix, extension)
_SESSION_FILES: dict[str, tuple[dict[str, str], str, str]] = {
    "T2star": ({"desc": "truth"}, "T2starmap", ".nii.gz"),
    "S0": ({"desc": "truth"}, "S0map", ".nii.gz"),
    "brain_mask": ({"desc": "truthBrain"}, "mask", ".nii.gz"),
    "gm_mask": ({"desc": "truthGM"}, "mask", ".nii.gz"),
    "g_factor": ({"desc": "truthGfactor"}, "statmap", ".nii.gz"),
    "fieldmap_hz": ({"desc": "truth"}, "fieldmap", ".nii.gz"),
    "vsm": ({"desc": "truthVSM"}, "statmap", ".nii.gz"),
    "active_mask": ({"task": TASK, "desc": "truthActive"}, "mask", ".nii.gz"),
    "hrf_peak": ({"task": TASK, "desc": "truthHRFpeak"}, "statmap", ".nii.gz"),
    "betas": ({"task": TASK, "stat": "effect", "desc": "truthBetas"}, "statmap", ".nii.gz"),
    "trials": ({"task": TASK, "desc": "truth"}, "trials", ".tsv"),
    "s": ({"task": TASK, "desc": "truthS"}, "statmap", ".nii.gz"),
    "t": ({"task": TASK, "desc": "truthT"}, "statmap", ".nii.gz"),
    "nc": ({"task": TASK, "desc": "truthNoiseceiling"}, "statmap", ".nii.gz"),
    "image_means": (
        {"task": TASK, "stat": "effect", "desc": "truthImageMeans"},
        "statmap",
        ".nii.gz",
    ),
    "images": ({"task": TASK, "desc": "truth"}, "images", ".tsv"),
}


_GRID = "the raw BOLD grid of the subject (motion-free head position)"
_BETA_UNITS = "s^-1 (peak R2* decrease of the trial response)"

#: key -> sidecar content of the truth files (Units and meaning).
DESCRIPTIONS: dict[str, dict[str, str]] = {
    "T2star": {
        "Units": "s",
        "Description": f"True T2* (1/R2*), partial-volume mixed, on {_GRID}; 0 without signal",
    },
    "S0": {
        "Units": "arbitrary",
        "Description": "True S0 (signal at TE = 0, coil sensitivity included) in the units "
        "of the stored part-mag images",
    },
    "brain_mask": {"Type": "Brain", "Description": f"Brain fraction >= 0.5 on {_GRID}"},
    "gm_mask": {"Description": "Brain mask and grey-matter fraction >= 0.5"},
    "g_factor": {
        "Units": "1",
        "Description": "g-factor: thermal noise SD per real/imaginary channel = NoiseSigma * g "
        "(magnitude units)",
    },
    "fieldmap_hz": {
        "Units": "Hz",
        "Description": f"True static B0 off-resonance of the head on {_GRID}, undistorted; "
        "smooth and defined on the whole grid (it acts where there is signal). It is in the "
        "phase as 2 pi f TE and, when the BOLD is distorted, shifts it along PE by the truth "
        "VSM = -TotalReadoutTime * f (voxels, PhaseEncodingDirection j-)",
    },
    "vsm": {
        "Units": "voxels",
        "Description": f"True voxel-shift map of the EPI distortion, on {_GRID}: the spin at "
        "voxel (i, j, k) of the motion-free head appears at (i, j + vsm, k) in the raw BOLD "
        "and SBRef (all echoes, magnitude and phase); vsm = PhaseEncodingSign * "
        "TotalReadoutTime * fieldmap_hz. Intensities are divided by the Jacobian 1 + d vsm/dj "
        "(each source voxel's magnitude is spread over the interval its edges map to; the "
        "magnitude of every PE column is conserved; the phase of a voxel is the "
        "magnitude-weighted mean of the phases landing in it; shifts wrap around along j). "
        "Positive = "
        "towards +j = world +y (anterior; the grid is RAS without obliquity), so the "
        "displacement in mm is vsm * the voxel size along y. With head motion the field "
        "moves with the head: volume t is distorted by this map moved by the volume's rigid "
        "transform (the frequency drift shifts the phase only). Written only when the "
        "dataset is distorted",
    },
    "active_mask": {
        "Description": "Voxels with an evoked response: grey-matter fraction >= 0.3, "
        "MNI y < -60 mm, MNI z > -20 mm (the same voxels as label-visual)",
    },
    "hrf_peak": {
        "Units": "s",
        "Description": "Peak time of the voxel's impulse HRF (double gamma); the simulation "
        "uses the nearest library peak (LibraryPeaks)",
    },
    "s": {
        "Units": _BETA_UNITS,
        "Description": "True across-image SD s(v) of the image-specific mean response "
        "(population SD over the session's images, ddof 0); 0 outside the active mask",
    },
    "t": {
        "Units": _BETA_UNITS,
        "Description": "True trial-to-trial SD t(v) of single-trial betas around their image "
        "mean; 0 outside the active mask",
    },
    "nc": {
        "Units": "%",
        "Description": "True noise ceiling of repeat-averaged responses: "
        "100 s^2 / (s^2 + t^2 mean_c(1/n_c)), n_c = showings of image c in the session; the "
        "single-trial ceiling replaces mean_c(1/n_c) by 1. 0 outside the active mask",
        "NoiseCeilingType": "repeat-averaged",
    },
    "betas": {
        "Units": _BETA_UNITS,
        "Description": "True single-trial betas, one volume per image trial in chronological "
        "order (row beta_index of the trials TSV): the peak R2* decrease of the trial's "
        "response (HRF convolved with the 2.5 s image, peak 1); positive = activation; "
        "0 outside the active mask",
    },
    "image_means": {
        "Units": _BETA_UNITS,
        "Description": "True image means mu(v, image) (the expected single-trial beta of each "
        "image, without trial-to-trial variability), one volume per image in the order of the "
        "images TSV (row volume_index); the across-image SD per voxel is the truth S map; "
        "0 outside the active mask. ResponseModel: the simulation's response model",
    },
    "images": {
        "Description": "Images of the session, one row per volume of the truth image means",
        "volume_index": {"Description": "0-based volume index in the truth image means"},
        "image": {"Description": "image number"},
        "label": {"Description": "stim_name of the image in the events files"},
        "n_repeats": {"Description": "showings of the image in the session"},
    },
    "trials": {
        "Description": "Image trials of the session in chronological order (blanks excluded); "
        "row i is volume i of the truth betas",
        "beta_index": {"Description": "0-based volume index in the truth betas"},
        "label": {"Description": "stim_name of the trial"},
        "onset": {"Units": "s"},
        "n_repeats": {"Description": "showings of the image in the session"},
    },
    "T1w_brain_mask": {
        "Type": "Brain",
        "Description": "True brain mask (fraction >= 0.5), T1w grid",
    },
    "T1w_dseg": {"Description": "True tissue labels on the T1w grid (largest fraction in brain)"},
}

#: Description of the BOLD → T1w pose transform (JSON data file and the ITK text file).
POSE_DESCRIPTION = (
    "True rigid transform between the BOLD world (scanner RAS mm of the functional session, "
    "head in its motion-free position: the pose of the functional truth maps) and the T1w world "
    "(scanner RAS mm of the T1w, whose head is in another pose). Matrix P (4x4, row-major, RAS "
    "mm, homogeneous): a head point at BOLD-world x is at T1w-world P @ [x, 1]. "
    "P x = c + R (x - c) + d: R rotates by RotationAngleDeg about RotationAxis through "
    "RotationCenter c, d = Translation. InverseMatrix = inv(P) maps T1w world to BOLD world "
    "(to sample a BOLD-grid image at T1w voxel centres y: BOLD voxel = inv(A_bold) inv(P) y). "
    "The ITK/ANTs file (mode-image, LPS, AffineTransform_double_3_3, centre 0) is the "
    "resampling transform of a BOLD-world image onto a T1w-world grid: it maps T1w LPS points "
    "to BOLD LPS points, i.e. inv(P) in LPS (antsApplyTransforms -i bold -r T1w -t it)."
)


def truth_root(root: str | Path) -> Path:
    """``<root>/derivatives/truth``."""
    return Path(root).joinpath(*TRUTH_SUBDIR)


def motion_path(root: str | Path, subject: str, session: str, run: str) -> Path:
    """Truth motion TSV of one run."""
    ents = {"sub": subject, "ses": session, "task": TASK, "run": run, "desc": "truth"}
    return bids_path(truth_root(root), ents, "motion", ".tsv", "func")


def run_field_path(root: str | Path, subject: str, session: str, run: str) -> Path:
    """Truth off-resonance of every volume of one run (4D, Hz, scanner frame: the field that
    distorted the volume; written only with field dynamics)."""
    ents = {"sub": subject, "ses": session, "task": TASK, "run": run, "desc": "truth"}
    return bids_path(truth_root(root), ents, "fieldmap", ".nii.gz", "func")


def vsm_path(root: str | Path, subject: str, session: str) -> Path:
    """Truth voxel-shift map of a session (written only when the BOLD is distorted)."""
    ents, suffix, ext = _SESSION_FILES["vsm"]
    return bids_path(truth_root(root), {"sub": subject, "ses": session} | ents, suffix, ext)


def pose_paths(root: str | Path, subject: str) -> tuple[Path, Path]:
    """The BOLD → T1w pose truth of a subject: the JSON (matrices) and the ITK text file."""
    ents = {"sub": subject, "from": "bold", "to": "T1w", "desc": "truth"}
    troot = truth_root(root)
    return (
        bids_path(troot, ents, "xfm", ".json", "anat"),
        bids_path(troot, ents | {"mode": "image"}, "xfm", ".txt", "anat"),
    )


def artifact_path(root: str | Path, subject: str, session: str, run: str) -> Path:
    """Truth TSV of one run's non-BOLD (S0) artefact time course."""
    ents = {"sub": subject, "ses": session, "task": TASK, "run": run, "desc": "truthArtifact"}
    return bids_path(truth_root(root), ents, "timeseries", ".tsv", "func")


def _resolve_session(root: Path, subject: str, session: str | None) -> str:
    if session is not None:
        return session
    found = sorted(
        p.name[4:] for p in (truth_root(root) / f"sub-{subject}").glob("ses-*") if p.is_dir()
    )
    if len(found) > 1:
        raise ValueError(
            f"sub-{subject} has sessions {found} under {truth_root(root)}; pass session="
        )
    return found[0] if found else "01"


def truth_paths(root: str | Path, subject: str, session: str | None = None) -> dict:
    """Paths of the ground-truth files of a subject (and session).

    Parameters
    ----------
    root
        The simulated raw dataset (the folder given to ``simulate_dataset``).
    subject
        Subject label, e.g. ``"01"``.
    session
        Session label; ``None`` picks the only session (``"01"`` when none is written yet).

    Returns
    -------
    dict
        Keys ``T2star``, ``S0``, ``brain_mask``, ``gm_mask``, ``active_mask``, ``g_factor``,
        ``fieldmap_hz``, ``hrf_peak``, ``betas``, ``trials``, ``s``, ``t``, ``nc``,
        ``image_means`` (4D true image means, one volume per image), ``images`` (their TSV),
        ``roi_visual``, ``roi_calcarine``, ``roi_frontal``, ``T1w_brain_mask``, ``T1w_dseg``,
        ``bold_to_T1w`` (JSON: ``Matrix`` P, BOLD world → T1w world, RAS mm, and
        ``InverseMatrix``), ``bold_to_T1w_itk`` (the same pose as an ITK/ANTs resampling
        transform of BOLD-world images onto T1w grids) (each a :class:`~pathlib.Path`);
        ``vsm``: the truth voxel-shift map (Path), or None when the BOLD is not distorted;
        ``motion``: the per-run motion TSVs in run order (list of Path), or None when the
        session was simulated without motion; ``artifact``: the per-run TSVs of the non-BOLD
        artefact (column ``artifact``, unit SD; the fractional S0 change per voxel is that
        course times the ``ARTIFACT_SD``-scaled CSF/edge map).
    """
    troot = truth_root(root)
    ses = _resolve_session(Path(root), subject, session)
    base = {"sub": subject, "ses": ses}
    out: dict = {
        key: bids_path(troot, base | ents, suffix, ext, "func")
        for key, (ents, suffix, ext) in _SESSION_FILES.items()
    }
    for name in ROI_NAMES:
        out[f"roi_{name}"] = bids_path(
            troot, base | {"label": name, "desc": "truth"}, "mask", ".nii.gz", "func"
        )
    anat = {"sub": subject, "space": "T1w"}
    out["T1w_brain_mask"] = bids_path(
        troot, anat | {"desc": "truthBrain"}, "mask", ".nii.gz", "anat"
    )
    out["T1w_dseg"] = bids_path(troot, anat | {"desc": "truth"}, "dseg", ".nii.gz", "anat")
    out["bold_to_T1w"], out["bold_to_T1w_itk"] = pose_paths(root, subject)
    if not out["vsm"].exists():
        out["vsm"] = None
    folder = out["T2star"].parent
    pattern = f"sub-{subject}_ses-{ses}_task-{TASK}_run-*_desc-truth_motion.tsv"
    motion = sorted(folder.glob(pattern))
    out["motion"] = motion or None
    pattern = f"sub-{subject}_ses-{ses}_task-{TASK}_run-*_desc-truthArtifact_timeseries.tsv"
    out["artifact"] = sorted(folder.glob(pattern))
    return out
