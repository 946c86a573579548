"""The planted responses of one comparison session (``echoprep planted design``).

Reads the type-B betas of the visual ROI's source fit (plain least squares: amplitudes are not
shrunk), their trials, every fitted variant's HRF choice and fit mask, the analysis mask and
the visual ROI, and writes the design (:data:`DESIGN_KEYS`): the voxels that receive a planted
response (analysis mask and every fit), each image's planted response (its own, at its
odd-numbered presentations), the truth it is scored against (its even-numbered ones), the
consensus HRF and the planting factor. docs/comparison.md, "Responses planted in your data".
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.io.atomic import atomic_path
from echoprep.io.events import read_trials
from echoprep.io.images import StageInputError, check_same_grid, load_image, load_mask_on_grid
from echoprep.io.sidecars import write_sidecar
from echoprep.kernels.planted import (
    consensus_hrf,
    half_means,
    planting_amplitude,
)

log = logging.getLogger(__name__)

#: Arrays of a design file.
DESIGN_KEYS = (
    "voxels",
    "shape",
    "affine",
    "images",
    "planted",
    "truth",
    "hrf",
    "factor",
    "te_ref",
    "stimdur",
    "roi",
)
#: Fewest images shown at least twice for a planting.
MIN_IMAGES = 10
_GRID_ATOL = 1e-4


def read_design(path: str | Path) -> dict[str, Any]:
    """The arrays of a design file (:data:`DESIGN_KEYS`), labels as str."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except Exception as exc:  # numpy raises several types for unreadable files
        raise StageInputError(
            f"{p}: expected a planted design (echoprep planted design); found an unreadable file "
            f"({exc}). Fix: delete it and rerun the planted_design rule."
        ) from exc
    missing = [k for k in DESIGN_KEYS if k not in out]
    if missing:
        raise StageInputError(
            f"{p}: expected the arrays {list(DESIGN_KEYS)}; missing {missing}. Fix: rerun the "
            "planted_design rule with this version of echoprep."
        )
    out["images"] = out["images"].astype(str)
    return out


def make_design(
    reference: str | Path,
    trials: str | Path,
    hrf_maps: Sequence[str | Path],
    fit_masks: Sequence[str | Path],
    mask: str | Path,
    roi: str | Path,
    output: str | Path,
    *,
    te_ref: float,
    stimdur: float,
    amplitude: float | None = None,
) -> dict[str, Any]:
    """Choose and write a session's planted responses.

    Parameters
    ----------
    reference
        4D type-B betas (one volume per trial, % signal change) of the visual ROI's source
        fit.
    trials
        That fit's trials table (``label`` per beta volume, in volume order).
    hrf_maps, fit_masks
        Every fitted variant's HRF index map and fit mask (same order).
    mask, roi
        The session's analysis mask and the subject's visual ROI (same grid).
    output
        The design file (``.npz``; a JSON sidecar beside it).
    te_ref
        Echo time of the reference's series, s (the single echo's).
    stimdur
        Stimulus duration of the fits, s.
    amplitude
        Planting factor; None: :func:`echoprep.kernels.planted.planting_amplitude` over the
        ROI.

    Returns
    -------
    dict
        The design's arrays and ``path``.
    """
    ref_path = Path(reference)
    ref = load_image(ref_path, "type-B betas (x, y, z, trials)", ndim=4)
    fix = "Fix: every map of a session must share its functional grid (rerun the GLM rules)."
    voxels = load_mask_on_grid(
        mask, ref, like_path=ref_path, what="analysis mask", fix=fix, atol=_GRID_ATOL
    )
    if len(hrf_maps) != len(fit_masks) or not hrf_maps:
        raise StageInputError(
            f"{ref_path}: expected one HRF map per fit mask; found {len(hrf_maps)} and "
            f"{len(fit_masks)}. Fix: pass --hrf and --fit-mask once per fitted variant."
        )
    hrfs = []
    for h_path, m_path in zip(hrf_maps, fit_masks, strict=True):
        voxels &= load_mask_on_grid(
            m_path, ref, like_path=ref_path, what="GLM fit mask", fix=fix, atol=_GRID_ATOL
        )
        img = load_image(h_path, "HRF index map")
        check_same_grid(
            img,
            ref,
            path=Path(h_path),
            ref_path=ref_path,
            what="HRF index map",
            fix=fix,
            atol=_GRID_ATOL,
        )
        hrfs.append(np.asarray(img.dataobj).reshape(img.shape[:3]))
    roi_mask = load_mask_on_grid(
        roi, ref, like_path=ref_path, what="visual ROI", fix=fix, atol=_GRID_ATOL
    )
    table = read_trials(trials, required=("label",), fix="Fix: rerun the GLM stage.")
    data = np.asanyarray(ref.dataobj)
    if data.shape[3] != len(table):
        raise StageInputError(
            f"{ref_path}: expected one beta volume per row of {trials} ({len(table)}); found "
            f"{data.shape[3]}. Fix: rerun the GLM rules of the session."
        )
    betas = np.asarray(data[voxels], np.float64)
    finite = np.isfinite(betas).all(axis=1)
    voxels[tuple(np.argwhere(voxels)[~finite].T)] = False
    betas = betas[finite]
    labels = table["label"].astype(str).to_numpy()
    images, half_a, half_b = half_means(betas, labels)
    if images.size < MIN_IMAGES:
        # legal data (a design without repeats): nothing is planted, and the comparison ranks
        # this session by the held-out fidelity
        log.warning(
            "%s: %d images shown twice or more (at least %d are needed to plant responses); "
            "nothing is planted in this session and its comparison uses the held-out fidelity",
            trials,
            images.size,
            MIN_IMAGES,
        )
        images = images[:0]
        half_a, half_b = half_a[:, :0], half_b[:, :0]
    in_roi = roi_mask[voxels]
    if not images.size:
        factor = 0.0
    elif amplitude is None:
        use = in_roi if in_roi.any() else np.ones_like(in_roi)
        factor = planting_amplitude(half_a[use], half_b[use])
    else:
        factor = float(amplitude)
    hrf = consensus_hrf(np.stack([h[voxels] for h in hrfs]))
    design = {
        "voxels": np.argwhere(voxels).astype(np.int32),
        "shape": np.asarray(voxels.shape, np.int32),
        "affine": np.asarray(ref.affine, np.float64),
        "images": images.astype(str),
        "planted": half_a.astype(np.float32),
        "truth": half_b.astype(np.float32),
        "hrf": hrf.astype(np.int16),
        "factor": np.float64(factor),
        "te_ref": np.float64(te_ref),
        "stimdur": np.float64(stimdur),
        "roi": in_roi,
    }
    out = Path(output)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **design)
    write_sidecar(
        out,
        sources=[
            ref_path,
            Path(trials),
            *map(Path, hrf_maps),
            *map(Path, fit_masks),
            Path(mask),
            Path(roi),
        ],
        parameters={"amplitude": amplitude},
        extra={
            "Description": "responses planted into the session's raw echoes: for each image, "
            "a small copy of its own response at its odd-numbered presentations as estimated by "
            "the visual ROI's source fit (type-B betas, % signal change); scored against its "
            "even-numbered presentations",
            "PlantingFactor": factor,
            "Images": int(images.size),
            "Voxels": int(voxels.sum()),
            "ROIVoxels": int(in_roi.sum()),
            "ReferenceEchoTime": te_ref,
            "StimulusDuration": stimdur,
            "HRF": "per voxel the median of the fitted variants' library HRF choices",
            "Arrays": {k: _ARRAYS[k] for k in DESIGN_KEYS},
        },
    )
    log.info(
        "planted design: %d images, %d voxels (%d in the ROI), factor %.3f",
        images.size,
        int(voxels.sum()),
        int(in_roi.sum()),
        factor,
    )
    return {**design, "path": out}


_ARRAYS: Mapping[str, str] = {
    "voxels": "(V, 3) voxel indices on the functional grid of the planted voxels",
    "shape": "(3,) the functional grid's shape",
    "affine": "(4, 4) the functional grid's affine",
    "images": "(I,) labels of the images that receive a planted response",
    "planted": "(V, I) planted response, % signal change at ReferenceEchoTime, before the "
    "planting factor",
    "truth": "(V, I) the image's even-numbered presentations: the truth scored against",
    "hrf": "(V,) library HRF index of the planted time course",
    "factor": "planting factor: the series carry factor x planted",
    "te_ref": "echo time of the reference series, s",
    "stimdur": "stimulus duration, s",
    "roi": "(V,) bool: voxel in the visual ROI",
}

__all__ = ["DESIGN_KEYS", "MIN_IMAGES", "make_design", "read_design"]
