"""MP2RAGE UNI noise background: detect it and set it to 0 before N4 and brain extraction.

An MP2RAGE ``UNI`` T1w has salt-and-pepper noise outside the head, uniform over the whole
intensity range (:mod:`echoprep.kernels.head_mask`). N4 then fits a bias field to the noise
(its Otsu head mask takes much of the background) and scales parts of the brain by up to
3-4×, which ruins the tissue classes; brain extraction and registration suffer too. Measured
effect and method: docs/anatomy.md.

What :func:`prepare_background` does, by ``anatomy.uni_background``:

* ``auto`` (default): the noise background is set to 0 when the border of the field of view
  looks like one (:func:`~echoprep.kernels.head_mask.looks_like_noise_background`). When the
  T1w's sidecar does not say MP2RAGE / UNI, that is a heuristic's guess: a warning (logged,
  in every sidecar's ``Warnings``), never a refusal. An MPRAGE-like T1w is left untouched (its
  outputs are those of a stage without this step).
* ``suppress``: the voxels without signal are set to 0 whatever the border looks like.
* ``keep``: nothing is changed; a noise background gives a warning.

Every anatomy sidecar records what was decided and why under ``Background``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.io.paths import sidecar_path
from echoprep.kernels import head_mask

log = logging.getLogger(__name__)

#: Sidecar fields that name the sequence or the image (searched for "MP2RAGE" / "UNI").
_SEQUENCE_FIELDS = (
    "PulseSequenceType",
    "PulseSequenceDetails",
    "SequenceName",
    "SeriesDescription",
    "ProtocolName",
)


def sidecar_says_uni(t1w_path: str | Path) -> str | None:
    """Why the T1w's JSON sidecar marks it as an MP2RAGE UNI image, or None.

    Parameters
    ----------
    t1w_path
        The T1w NIfTI file; its sidecar is the ``.json`` of the same name (absent or
        unreadable: None; discovery checks sidecars).

    Returns
    -------
    str or None
        E.g. ``"ImageType has UNI"`` or ``"PulseSequenceType 'MP2RAGE'"``; None when nothing
        says so (an image named ``INV1``/``INV2`` is not a UNI).
    """
    try:
        side = json.loads(sidecar_path(t1w_path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(side, dict):
        return None
    image_type = side.get("ImageType")
    if isinstance(image_type, list) and any(str(v).upper() == "UNI" for v in image_type):
        return "ImageType has UNI"
    for key in _SEQUENCE_FIELDS:
        value = str(side.get(key, ""))
        upper = value.upper()
        if "INV1" in upper or "INV2" in upper:
            return None
        if "MP2RAGE" in upper or "_UNI" in upper:
            return f"{key} {value!r}"
    return None


def prepare_background(
    t1w_path: str | Path,
    data: np.ndarray,
    voxel_volume_mm3: float,
    mode: str,
    warnings: list[str],
) -> tuple[np.ndarray, dict[str, Any]]:
    """The T1w with its noise background set to 0 when ``mode`` and the image call for it.

    Parameters
    ----------
    t1w_path
        The T1w file (for its sidecar and the messages).
    data
        The T1w, shape (x, y, z), float32.
    voxel_volume_mm3
        Volume of one voxel, mm³.
    mode
        ``"auto"``, ``"suppress"`` or ``"keep"`` (``anatomy.uni_background``).
    warnings
        Legal but unusual findings are appended (and logged).

    Returns
    -------
    data
        ``data`` itself when nothing was suppressed, else a float32 copy with the voxels
        outside :func:`~echoprep.kernels.head_mask.signal_mask` set to 0; shape (x, y, z).
    record
        For the sidecars (``Background``): ``Mode``, ``SidecarSaysUNI`` (the reason or None),
        the border statistics, ``NoiseBackground`` (the heuristic's verdict), ``Suppressed``,
        and when suppressed the signal mask's record and ``Method``.
    """
    name = Path(t1w_path).name
    reason = sidecar_says_uni(t1w_path)
    stats = head_mask.background_statistics(data)
    noisy = head_mask.looks_like_noise_background(stats)
    record: dict[str, Any] = {"Mode": mode, "SidecarSaysUNI": reason, **stats}
    record["NoiseBackground"] = noisy
    looks = (
        f"{name}: the background looks like an MP2RAGE UNI's: noise over the whole intensity "
        f"range outside the head (border of the field of view: median roughness "
        f"{stats['BorderRoughness']:.2f} >= {head_mask.NOISE_ROUGHNESS}, median intensity "
        f"{stats['BorderBrightness']:.2f} of the 99th percentile >= {head_mask.NOISE_BRIGHTNESS})"
    )
    suppress = mode == "suppress" or (mode == "auto" and noisy)
    if mode == "keep" and noisy:
        _warn(
            warnings,
            f"{looks}; kept as it is (anatomy.uni_background: keep): N4, the brain mask and the "
            "tissue classes may suffer. Fix: set anatomy.uni_background: auto.",
        )
    elif mode == "auto" and noisy and reason is None:
        _warn(
            warnings,
            f"{looks}, though its sidecar does not say MP2RAGE or UNI; the voxels without "
            "signal were set to 0 before N4 and brain extraction (anatomy.uni_background: "
            "auto). If the image is not a UNI, check the brain mask, or set "
            "anatomy.uni_background: keep.",
        )
    elif reason is not None and not noisy:
        log.info("%s: sidecar says MP2RAGE UNI (%s) but the background is clean", name, reason)
    record["Suppressed"] = False
    if not suppress:
        return data, record
    mask, mask_record = head_mask.signal_mask(data, voxel_volume_mm3, noise=noisy)
    if not mask.any():
        _warn(
            warnings,
            f"{name}: no voxel with signal was found to keep (anatomy.uni_background: {mode}); "
            "the T1w is used as it is.",
        )
        return data, record | mask_record
    rough = (
        f"3x3x3 median of the neighbour roughness above {head_mask.ROUGH_THRESHOLD} or "
        if noisy
        else ""
    )
    method = (
        f"voxels without signal set to 0: {rough}3x3x3 mean intensity below "
        f"{head_mask.DARK_FRACTION} of the 99th percentile, then an opening, the connected "
        f"pieces of at least {head_mask.MIN_PIECE_FRACTION} of the largest, holes under "
        f"{head_mask.MAX_HOLE_ML} ml filled (echoprep.kernels.head_mask)"
    )
    record |= mask_record | {"Suppressed": True, "Method": method}
    log.info(
        "%s: noise background set to 0 (%d voxels with signal kept, %s)",
        name,
        mask_record["SignalVoxels"],
        reason or "detected from the image",
    )
    return np.where(mask, data, np.float32(0)).astype(np.float32), record


def _warn(warnings: list[str], message: str) -> None:
    log.warning("%s", message)
    warnings.append(message)


__all__ = ["prepare_background", "sidecar_says_uni"]
