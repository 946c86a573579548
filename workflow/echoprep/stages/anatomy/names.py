"""Names of the anatomy outputs, the template's label and the folder's dataset description."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from echoprep.io.outputs import TEMPLATE, stage_outputs, stage_table

#: What :data:`TEMPLATE` is, for the sidecars.
TEMPLATE_INFO: dict[str, str] = {
    "Name": TEMPLATE,
    "Description": "ICBM 2009a Nonlinear Symmetric MNI152 template as bundled with nilearn "
    "(mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a, skull-stripped and rescaled to 0-1; 1 mm grid "
    "197x233x189, corner voxel at (-98, -134, -72) mm): the T1 is the registration target, the "
    "GM/WM probability maps and CSF = smoothed brain mask (T1 > 0.2, nilearn's) - GM - WM the "
    "tissue priors",
    "Source": "nilearn.datasets.load_mni152_template / load_mni152_gm_template / "
    "load_mni152_wm_template / load_mni152_brain_mask",
}

#: Output key -> (suffix, derivative entities, extension), from the output registry.
#: Subject-level names: ``sub-<label>/anat/sub-<label>_<entities>_<suffix><ext>``.
OUTPUTS: dict[str, tuple[str, dict[str, str], str]] = stage_table("anatomy")

#: Keys every call must write; the others are written when their key is given.
REQUIRED_OUTPUTS = ("preproc", "brain_mask", "dseg")

#: Keys written by default by the workflow (``template_preproc`` is an optional QC image).
DEFAULT_OUTPUTS = tuple(k for k in OUTPUTS if k != "template_preproc")


# ---------------------------------------------------------------------------------------------
# names


def output_paths(
    root: str | Path, subject: str, keys: Sequence[str] | None = None
) -> dict[str, Path]:
    """Paths of the anatomy outputs of one subject.

    Parameters
    ----------
    root
        The derivative folder (e.g. ``<out>/anat``).
    subject
        Subject label without ``sub-`` (a Snakemake wildcard such as ``{subject}`` works too).
    keys
        Keys of :data:`OUTPUTS`; None gives :data:`DEFAULT_OUTPUTS`.

    Returns
    -------
    dict
        Key → path, e.g. ``preproc`` → ``root/sub-01/anat/sub-01_desc-preproc_T1w.nii.gz``.
    """
    outputs = stage_outputs("anatomy")
    out = {}
    for key in keys if keys is not None else DEFAULT_OUTPUTS:
        folder, stem = outputs[key].subject_key(subject)
        out[key] = Path(root) / folder / outputs[key].file_name(stem)
    return out


__all__ = [
    "DEFAULT_OUTPUTS",
    "OUTPUTS",
    "REQUIRED_OUTPUTS",
    "TEMPLATE",
    "TEMPLATE_INFO",
    "output_paths",
]
