"""Anatomical contrasts beyond the MPRAGE-like T1w: an MP2RAGE ``UNI`` T1w and a T2w.

LAION-fMRI's anatomy comes from a separate 3T session (``ses-PrismaAnat``, no BOLD): an
MP2RAGE T1w (the ``UNI`` image) and a T2w aligned to it. Both images here are on the T1w grid
(:func:`.anatomy.t1w_grid`) with the head in the T1w pose (:func:`.anatomy.t1w_pose`), so the
truth brain mask and tissue labels of the T1w describe them too. Documented in
docs/anatomy.md.

**MP2RAGE UNI** (:func:`mp2rage_uni`). The sequence gives two gradient-echo images after one
inversion, ``S1`` (TI1, signed: tissue not yet recovered is negative) and ``S2`` (TI2); the UNI
image is ``Re(S1 conj(S2)) / (|S1|^2 + |S2|^2)``, in [-0.5, 0.5]. Receive sensitivity, proton
density and T2* cancel in the ratio, so UNI is nearly bias-free. Per tissue the noise-free
ratio ``r = S1/S2`` follows from a UNI value (``u = r / (1 + r^2)``, :data:`UNI_VALUES`: WM
bright, GM darker, CSF dark, scalp fat bright) and ``S2`` from a relative signal
(:data:`INV2_SIGNAL`); partial-volume voxels mix ``S1`` and ``S2`` (complex sums), and both get
complex Gaussian noise of SD :data:`MP2RAGE_SIGMA`. Where there is no signal (air, most of the
skull) the ratio of two independent complex Gaussian noises is **uniformly distributed over
[-0.5, 0.5]**: the salt-and-pepper background of every UNI image, as bright as the brain on
average. Stored like a scanner's UNI as uint16 ``round((u + 0.5) * 4095)`` in 0..4095.

**T2w** (:func:`t2w_image`): T2-weighted (SPACE-like) contrast, CSF brightest, GM above WM,
scalp fat moderate, skull dark; a smooth receive bias of its own, Rician noise; int16.

Random draws come only from their own streams (:data:`.seeds.MP2RAGE`, :data:`.seeds.T2W`):
the default dataset (MPRAGE T1w, no T2w) draws nothing here and stays byte-identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from echoprep.simulate import seeds
from echoprep.simulate.anatomy import (
    Grid,
    random_field,
    subject_transform,
    t1w_grid,
    t1w_pose,
    tissue_fractions,
)
from echoprep.simulate.presets import Preset

#: T1w kinds of :func:`echoprep.simulate.simulate_dataset` (``t1w_kind``).
T1W_KINDS = ("mprage", "mp2rage")

#: Noise-free UNI value per tissue, in [-0.5, 0.5] (3T MP2RAGE, TI 0.7 / 2.5 s).
UNI_VALUES: dict[str, float] = {
    "wm": 0.20,
    "gm": 0.02,
    "csf": -0.38,
    "skull": 0.0,
    "scalp": 0.30,
}
#: Relative magnitude of the second inversion image (proton density, T1 recovered) per tissue.
INV2_SIGNAL: dict[str, float] = {
    "wm": 0.72,
    "gm": 0.85,
    "csf": 1.0,
    "skull": 0.03,
    "scalp": 0.9,
}
#: SD of the complex noise of each inversion image (real and imaginary parts), in units of
#: :data:`INV2_SIGNAL` (INV2 SNR about 28 in grey matter).
MP2RAGE_SIGMA = 0.03
#: Largest stored UNI value (12-bit, as Siemens writes UNI images).
UNI_MAX = 4095

#: Relative T2w signal per tissue (CSF > GM > WM; fat in the scalp moderate; skull dark).
T2W_VALUES: dict[str, float] = {
    "csf": 1.0,
    "gm": 0.45,
    "wm": 0.32,
    "skull": 0.03,
    "scalp": 0.55,
}
#: T2w intensity of CSF, and the Rician noise SD (stored units).
T2W_SCALE, T2W_SIGMA = 1400.0, 12.0

_STEP = 24  # T1w-grid slices at a time: bounds memory at 1 mm


def _slabs(preset: Preset, seed: int, subject: int) -> Iterator[tuple[int, int, Grid, dict]]:
    """The T1w grid in slabs of :data:`_STEP` slices: (z0, z1, slab grid, tissue fractions),
    with the head in the T1w pose (as :func:`.anatomy.t1w_image`)."""
    grid = t1w_grid(preset)
    pose, _ = t1w_pose(seed, subject)
    mni_from_world = subject_transform(seed, subject) @ np.linalg.inv(pose)
    for z0 in range(0, grid.shape[2], _STEP):
        z1 = min(z0 + _STEP, grid.shape[2])
        aff = grid.affine.copy()
        aff[:3, 3] = grid.affine[:3, :3] @ [0, 0, z0] + grid.affine[:3, 3]
        slab = Grid((grid.shape[0], grid.shape[1], z1 - z0), aff)
        yield z0, z1, slab, tissue_fractions(slab, mni_from_world)


def _layers(fr: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Tissue fractions of the five layers: GM, WM, CSF (in the brain and the outer layer),
    skull, scalp."""
    return {k: fr[k] for k in ("gm", "wm", "csf", "skull", "scalp")}


def _truth(fr: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The truth brain mask and labels of a slab (as :func:`.anatomy.t1w_image`)."""
    brain = fr["brain"] >= 0.5
    csf_in = np.clip(fr["brain"] - fr["gm"] - fr["wm"], 0, 1)
    dseg = (np.argmax(np.stack([fr["gm"], fr["wm"], csf_in]), axis=0) + 1).astype(np.uint8)
    dseg[~brain] = 0
    return brain, dseg


def uni_ratio(u: np.ndarray | float) -> np.ndarray:
    """The real ratio ``r = S1/S2`` (in [-1, 1]) whose UNI value ``r / (1 + r^2)`` is ``u``.

    Parameters
    ----------
    u
        UNI values in [-0.5, 0.5], any shape.

    Returns
    -------
    numpy.ndarray
        ``r`` of the same shape, float64 (the root of ``u r^2 - r + u = 0`` with ``|r| <= 1``).
    """
    u = np.asarray(u, float)
    safe = np.where(np.abs(u) < 1e-12, 1.0, u)
    root = (1.0 - np.sqrt(np.clip(1.0 - 4.0 * safe**2, 0.0, None))) / (2.0 * safe)
    return np.where(np.abs(u) < 1e-12, 0.0, root)


def uni_from_inversions(s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """The MP2RAGE UNI combination ``Re(S1 conj(S2)) / (|S1|^2 + |S2|^2)``.

    Parameters
    ----------
    s1, s2
        Complex images of the first and second inversion, one shape.

    Returns
    -------
    numpy.ndarray
        float64 in [-0.5, 0.5], same shape (0 where both are 0).
    """
    num = np.real(s1 * np.conj(s2))
    den = np.abs(s1) ** 2 + np.abs(s2) ** 2
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def mp2rage_uni(
    preset: Preset, seed: int, subject: int
) -> tuple[Grid, np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic MP2RAGE UNI T1w of a subject: the T1w grid and pose, noise background.

    Returns
    -------
    grid
        The T1w grid (:func:`.anatomy.t1w_grid`).
    image
        uint16, ``grid.shape``, 0..4095 (``round((UNI + 0.5) * 4095)``): WM about 2900, GM
        about 2100, CSF about 500; outside the head uniform over 0..4095.
    brain_mask
        bool, ``grid.shape``: the true brain mask (the MPRAGE T1w's).
    dseg
        uint8, ``grid.shape``: true tissue labels (:data:`.anatomy.DSEG_LABELS`).
    """
    grid = t1w_grid(preset)
    r = seeds.rng(seed, subject, seeds.MP2RAGE)
    image = np.empty(grid.shape, np.uint16)
    brain_mask = np.empty(grid.shape, bool)
    dseg = np.empty(grid.shape, np.uint8)
    ratio = {k: float(uni_ratio(v)) for k, v in UNI_VALUES.items()}
    for z0, z1, slab, fr in _slabs(preset, seed, subject):
        layers = _layers(fr)
        s2 = sum(p * INV2_SIGNAL[k] for k, p in layers.items())
        s1 = sum(p * INV2_SIGNAL[k] * ratio[k] for k, p in layers.items())
        shape = slab.shape
        noise = MP2RAGE_SIGMA * r.standard_normal((4, *shape))
        uni = uni_from_inversions(s1 + noise[0] + 1j * noise[1], s2 + noise[2] + 1j * noise[3])
        image[..., z0:z1] = np.clip(np.round((uni + 0.5) * UNI_MAX), 0, UNI_MAX)
        brain_mask[..., z0:z1], dseg[..., z0:z1] = _truth(fr)
    return grid, image, brain_mask, dseg


def t2w_image(preset: Preset, seed: int, subject: int) -> tuple[Grid, np.ndarray]:
    """Synthetic T2w of a subject on the T1w grid, in the T1w pose (aligned to the T1w).

    Returns
    -------
    grid
        The T1w grid.
    image
        int16, ``grid.shape``: CSF about 1400, GM about 630, WM about 450 (times a smooth
        receive bias within about ±20 %), Rician noise of SD 12 (the background).
    """
    grid = t1w_grid(preset)
    r = seeds.rng(seed, subject, seeds.T2W)
    bias_field = random_field(r, 200)
    image = np.empty(grid.shape, np.int16)
    for z0, z1, slab, fr in _slabs(preset, seed, subject):
        world = slab.world()
        bias = np.exp(0.12 * bias_field(world) - 0.08 * (world[..., 2] - 10.0) / 90.0)
        clean = T2W_SCALE * sum(p * T2W_VALUES[k] for k, p in _layers(fr).items()) * bias
        noise = T2W_SIGMA * r.standard_normal((2, *slab.shape))
        noisy = np.hypot(clean + noise[0], noise[1])
        image[..., z0:z1] = np.clip(np.round(noisy), 0, 32767).astype(np.int16)
    return grid, image


# ---------------------------------------------------------------------------------------------
# sidecars (what dcm2niix writes for a Siemens Prisma, less the identifying fields)


def anatomy_sidecar(base: dict[str, Any], kind: str, anat_session: str | None) -> dict[str, Any]:
    """Sidecar of a simulated anatomical image.

    Parameters
    ----------
    base
        The MPRAGE T1w sidecar (:func:`.acquisition.t1w_sidecar`): the common fields.
    kind
        ``"mprage"`` (``base`` as it is), ``"mp2rage"`` (the UNI image) or ``"t2w"``.
    anat_session
        The anatomy-only session's label, or None: in such a session the scanner model reads
        ``"Prisma"`` as dcm2niix writes it.

    Returns
    -------
    dict
        The sidecar; for ``mp2rage`` with the BIDS MP2RAGE fields (``RepetitionTimeExcitation``,
        ``RepetitionTimePreparation``, ``InversionTime`` and ``FlipAngle`` of both inversions,
        ``NumberShots``) and ``ImageType`` naming ``UNI``.
    """
    side = dict(base)
    if anat_session is not None:
        side["ManufacturersModelName"] = "Prisma"
        side["SoftwareVersions"] = "syngo MR XA30"
        side["ReceiveCoilName"] = "HeadNeck_64"
    if kind == "mp2rage":
        side |= {
            "SeriesDescription": "t1_mp2rage_sag_p3_UNI_Images",
            "ProtocolName": "t1_mp2rage_sag_p3",
            "ImageType": ["DERIVED", "PRIMARY", "M", "UNI", "ND"],
            "PulseSequenceType": "MP2RAGE",
            "PulseSequenceDetails": "%SiemensSeq%\\tfl",
            "SequenceName": "*tfl3d1_16",
            "ScanningSequence": "GR\\IR",
            "SequenceVariant": "SK\\SP\\MP",
            "RepetitionTime": 5.0,
            "RepetitionTimePreparation": 5.0,
            "RepetitionTimeExcitation": 0.0072,
            "InversionTime": [0.7, 2.5],
            "FlipAngle": [4, 5],
            "NumberShots": 176,
            "EchoTime": 0.00296,
            "Description": "simulated MP2RAGE UNI: round((UNI + 0.5) * 4095), UNI in "
            "[-0.5, 0.5]; noise-only voxels are uniform over 0..4095",
        }
    elif kind == "t2w":
        side |= {
            "SeriesDescription": "t2_space_sag_p2_iso",
            "ProtocolName": "t2_space_sag_p2_iso",
            "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND", "NORM"],
            "PulseSequenceType": "SPACE",
            "PulseSequenceDetails": "%SiemensSeq%\\tse_vfl",
            "SequenceName": "*spcR_282ns",
            "ScanningSequence": "SE",
            "SequenceVariant": "SK\\SP\\OSP",
            "RepetitionTime": 3.2,
            "EchoTime": 0.564,
            "FlipAngle": 120,
            "EchoTrainLength": 282,
        }
        side.pop("InversionTime", None)
    elif kind != "mprage":
        raise ValueError(f"anatomy_sidecar: unknown kind {kind!r}")
    return side


__all__ = [
    "INV2_SIGNAL",
    "MP2RAGE_SIGMA",
    "T1W_KINDS",
    "T2W_VALUES",
    "UNI_MAX",
    "UNI_VALUES",
    "anatomy_sidecar",
    "mp2rage_uni",
    "t2w_image",
    "uni_from_inversions",
    "uni_ratio",
]
