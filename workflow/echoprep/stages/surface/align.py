"""The FreeSurfer surfaces in the T1w space (``echoprep surface anatomy``): alignment and GIFTI.

FreeSurfer's surfaces are in tkr-RAS, the surface coordinates of ``orig.mgz``;
``vox2ras @ inv(vox2ras_tkr)`` of that volume takes them to its scanner RAS, which is the T1w's
world when FreeSurfer ran on the same T1w. FreeSurfer may have run on another T1w (another
session, the other MP2RAGE image, a resliced copy), so with ``surface.alignment: refine`` a rigid
registration of ``orig.mgz`` (moving) to the anatomy stage's T1w (fixed, brain mask) checks and
refines that: ANTs (antspyx) rigid, Mattes mutual information, started at the identity.

``T1wFromFsnative = inv(OrigFromT1w) @ ScannerFromTkr`` is written as a 4×4 RAS text matrix
(``_from-fsnative_to-T1w_mode-image_xfm.txt``, the role of fMRIPrep's file of that name, in the
format of echoprep's other ``_xfm.txt``), and the white, pial and midthickness surfaces in T1w
world coordinates and ``sphere.reg`` (coordinates as FreeSurfer wrote them) as GIFTI with
sidecars. Heuristics warn, never refuse: a refinement of more than
:data:`WARN_SHIFT_MM` (FreeSurfer ran on another image?) and a midthickness surface less than
:data:`WARN_INSIDE` inside the brain mask are recorded in the sidecars' ``Warnings`` and logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from echoprep.adapters import ants
from echoprep.io.atomic import atomic_path
from echoprep.io.freesurfer import HEMIS, read_mesh, tkr_to_scanner, write_surface
from echoprep.io.images import StageInputError, load_image, load_mask_on_grid
from echoprep.io.sidecars import write_sidecar
from echoprep.kernels.surface import transform_size

log = logging.getLogger(__name__)

#: A refinement that moves the head centre more than this (mm) is recorded as a warning.
WARN_SHIFT_MM = 2.0
#: A midthickness surface with fewer vertices than this inside the (dilated) brain mask warns.
WARN_INSIDE = 0.9
#: Surfaces written per hemisphere: output name -> (FreeSurfer input, GIFTI structure).
SURFACE_OUTPUTS = {
    "white": ("white", "GrayWhite"),
    "pial": ("pial", "Pial"),
    "midthickness": ("", "MidThickness"),
    "sphere": ("sphere.reg", "Sphere"),
}
SOFTWARE = ("nibabel", "antspyx")


def _head_centre(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask)
    centre = idx.mean(axis=0) if idx.size else (np.asarray(mask.shape) - 1) / 2
    return affine[:3, :3] @ centre + affine[:3, 3]


def _inside_fraction(points: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> float:
    """Fraction of ``points`` (world mm) in ``mask`` dilated by one voxel."""
    grown = ndimage.binary_dilation(mask, iterations=1)
    inv = np.linalg.inv(affine)
    ijk = np.round(points @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(mask.shape)), axis=1)
    hits = np.zeros(len(points), bool)
    hits[inside] = grown[tuple(ijk[inside].T)]
    return float(hits.mean()) if len(points) else 0.0


def align_orig(
    orig: Path, t1w: Path, brain_mask: Path, *, refine: bool, seed: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """``OrigFromT1w`` (4×4: a T1w world point y is at ``M @ y`` in orig.mgz's scanner RAS) and
    the record of how it was found."""
    if not refine:
        return np.eye(4), {"Method": "header (FreeSurfer's geometry alone)"}
    t1_img = load_image(t1w, "preprocessed T1w")
    t1 = np.asarray(t1_img.dataobj, np.float32).reshape(t1_img.shape[:3])
    mask = load_mask_on_grid(
        brain_mask,
        t1_img,
        like_path=t1w,
        what="T1w brain mask",
        fix="Fix: rerun the anatomy rule (the mask and T1w come from one job).",
    )
    try:
        orig_img = nib.load(orig)
        data = np.asarray(orig_img.dataobj, np.float32)
    except Exception as exc:
        raise StageInputError(
            f"{orig}: expected FreeSurfer's orig.mgz; found an unreadable file ({exc}). Fix: "
            "rerun recon-all or copy the file again."
        ) from exc
    if data.ndim != 3:
        data = data.reshape(data.shape[:3])
    t0 = time.perf_counter()
    fit = ants.register_cross_modal(
        t1,
        np.asarray(t1_img.affine, float),
        data,
        np.asarray(orig_img.affine, float),
        fixed_mask=mask,
        init=np.eye(4),
        transform="DenseRigid",
        metric="mattes",
        seed=seed,
    )
    record = {
        "Method": "ANTs (antspyx) rigid (DenseRigid: every voxel), Mattes mutual information, "
        "T1w fixed (brain mask), orig.mgz moving, started at the identity",
        "Seed": int(seed),
        "Seconds": round(time.perf_counter() - t0, 2),
    }
    return fit.moving_from_fixed, record


def run_surface_anatomy(
    orig: str | Path,
    surfaces: Mapping[str, str | Path],
    t1w: str | Path,
    brain_mask: str | Path,
    outputs: Mapping[str, str | Path],
    *,
    alignment: str,
    seed: int = 1,
) -> dict[str, Path]:
    """Align a FreeSurfer subject to the T1w and write its surfaces as GIFTI (module docstring).

    Parameters
    ----------
    orig
        ``mri/orig.mgz``.
    surfaces
        ``<lh|rh>.<white|pial|sphere.reg>`` -> FreeSurfer surface file.
    t1w, brain_mask
        The anatomy stage's preprocessed T1w and brain mask.
    outputs
        ``xfm`` and ``<surface>_<L|R>`` (``white``, ``pial``, ``midthickness``, ``sphere``) ->
        path.
    alignment
        ``refine`` or ``header`` (config ``surface.alignment``).
    seed
        Seed (>= 1) of the registration's sampling.

    Returns
    -------
    dict
        Output key -> path written.
    """
    orig, t1w, brain_mask = Path(orig), Path(t1w), Path(brain_mask)
    missing = [
        f"{HEMIS[h]}.{s}"
        for h in HEMIS
        for s in ("white", "pial", "sphere.reg")
        if f"{HEMIS[h]}.{s}" not in surfaces
    ]
    if missing:
        raise StageInputError(f"surface anatomy: expected the surfaces {missing}; not given")
    scanner_from_tkr = tkr_to_scanner(orig)
    orig_from_t1w, record = align_orig(
        orig, t1w, brain_mask, refine=alignment == "refine", seed=seed
    )
    t1w_from_tkr = np.linalg.inv(orig_from_t1w) @ scanner_from_tkr
    mask_img = load_image(brain_mask, "brain mask")
    mask = np.asarray(mask_img.dataobj).reshape(mask_img.shape[:3]) > 0
    centre = _head_centre(mask, np.asarray(mask_img.affine, float))
    shift, angle = transform_size(np.linalg.inv(orig_from_t1w), centre)
    warnings: list[str] = []
    if shift > WARN_SHIFT_MM:
        warnings.append(
            f"the rigid refinement moves the brain's centre by {shift:.2f} mm and rotates by "
            f"{angle:.2f} deg: FreeSurfer ran on another T1w image (or another reconstruction); "
            "the refined alignment is used. Check the surfaces on the T1w in the report."
        )
    written: dict[str, Path] = {}
    inside: dict[str, float] = {}
    sources = [orig, *(Path(surfaces[k]) for k in sorted(surfaces)), t1w, brain_mask]
    for hemi, prefix in HEMIS.items():
        white, faces = read_mesh(surfaces[f"{prefix}.white"])
        pial, _ = read_mesh(surfaces[f"{prefix}.pial"])
        sphere, _ = read_mesh(surfaces[f"{prefix}.sphere.reg"])
        if not (white.shape == pial.shape == sphere.shape):
            raise StageInputError(
                f"{surfaces[f'{prefix}.white']}: expected white, pial and sphere.reg with one "
                f"vertex count; found {len(white)}, {len(pial)}, {len(sphere)}. Fix: rerun "
                "recon-all."
            )
        white_t1 = white @ t1w_from_tkr[:3, :3].T + t1w_from_tkr[:3, 3]
        pial_t1 = pial @ t1w_from_tkr[:3, :3].T + t1w_from_tkr[:3, 3]
        mid = (white_t1 + pial_t1) / 2
        inside[hemi] = round(_inside_fraction(mid, mask, np.asarray(mask_img.affine, float)), 4)
        if inside[hemi] < WARN_INSIDE:
            warnings.append(
                f"hemi-{hemi}: only {100 * inside[hemi]:.1f} % of the midthickness vertices lie "
                "in the T1w brain mask: FreeSurfer's subject may belong to another participant or "
                "the alignment failed. Check the surfaces on the T1w."
            )
        coords = {"white": white_t1, "pial": pial_t1, "midthickness": mid, "sphere": sphere}
        for name, (_, structure) in SURFACE_OUTPUTS.items():
            key = f"{name}_{hemi}"
            write_surface(coords[name], faces, outputs[key], anatomical=structure)
            written[key] = Path(outputs[key])
    for message in warnings:
        log.warning("%s", message)
    alignment_record = {
        "Alignment": alignment,
        "ScannerFromTkr": scanner_from_tkr.round(8).tolist(),
        "OrigFromT1w": orig_from_t1w.round(8).tolist(),
        "T1wFromFsnative": t1w_from_tkr.round(8).tolist(),
        "RefinementShiftMm": round(shift, 4),
        "RefinementRotationDeg": round(angle, 4),
        "MidthicknessInBrainMask": inside,
        "Registration": record,
        "Warnings": warnings,
    }
    xfm = Path(outputs["xfm"])
    with atomic_path(xfm) as tmp:
        np.savetxt(tmp, t1w_from_tkr, fmt="%.10f")
    written["xfm"] = xfm
    params = {"alignment": alignment, "seed": int(seed)}
    write_sidecar(
        xfm,
        sources=sources,
        parameters=params,
        extra={
            "Description": "T1wFromFsnative (4x4, RAS mm, text): a vertex at FreeSurfer "
            "surface coordinates x (tkr-RAS of orig.mgz) is at T1wFromFsnative @ x in the T1w "
            "world (the role of fMRIPrep's from-fsnative_to-T1w; a plain matrix, not an LTA)",
            "FromSpace": "fsnative",
            "ToSpace": "T1w",
            **alignment_record,
        },
        software=SOFTWARE,
    )
    for key, path in written.items():
        if key == "xfm":
            continue
        name, hemi = key.rsplit("_", 1)
        what = "sphere.reg (FreeSurfer's coordinates)" if name == "sphere" else f"{name} surface"
        write_sidecar(
            path,
            sources=sources,
            parameters=params,
            extra={
                "Description": f"FreeSurfer {what} of hemisphere {hemi}"
                + ("" if name == "sphere" else " in T1w world coordinates (mm)"),
                "Hemisphere": hemi,
                "Vertices": len(white),
                "SpatialReference": str(t1w),
                "Warnings": warnings,
            },
            software=SOFTWARE,
        )
    return written


__all__ = ["SURFACE_OUTPUTS", "WARN_INSIDE", "WARN_SHIFT_MM", "align_orig", "run_surface_anatomy"]
