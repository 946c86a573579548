"""Synthetic head anatomy on the functional and T1w grids, from the MNI152 templates.

The brain comes from nilearn's packaged MNI152 (2009a) T1, grey- and white-matter templates
(no download). Each subject is the template under a random similarity transform (scales
0.92–0.97, rotations ≤ 3°, shifts ≤ 2 mm), surrounded by a synthetic head: an outer CSF layer
(0–2 mm from the brain), skull (2–6 mm) and scalp (6–11 mm). World coordinates are scanner
coordinates (RAS, mm). The "BOLD world" is that of the functional session, with the head in
its motion-free position (the pose of the functional ground truth); the T1w comes from another
session, so its head sits in another pose: :func:`t1w_pose` draws, per subject, a rigid
transform from the BOLD world to the T1w world (a rotation of 3–7° about a random axis through
the head centre and a shift of 4–9 mm in a random direction).

The B0 off-resonance (:attr:`SubjectAnatomy.b0_hz`, Hz) is head-fixed and smooth, defined on
the whole grid (it matters only where there is signal): a 15 Hz-SD random field plus
susceptibility lobes at 7T strength (:data:`B0_LOBES`), -260 Hz under the orbitofrontal
cortex (air in the sinuses) and +150 Hz at each inferior temporal lobe (ear canals),
Gaussian with 12 mm SD; in the brain it spans about -230 to +150 Hz. With LAION's readout
(TotalReadoutTime 21.4 ms, 46.7 Hz per voxel, :mod:`.acquisition`) the EPI voxel shift is
up to 5–6 voxels (9–10 mm) in orbitofrontal and ventral temporal cortex, below one voxel in
95 % of the brain (median 0.25 voxel), with a Jacobian between about 0.5 and 1.5 (no folds).

Tissue parameters at 7T (S0 relative to grey matter, T2* in s):

========  =====  ======
tissue    S0     T2*
========  =====  ======
GM        1.00   0.028
WM        0.85   0.024
CSF       1.20   0.060
skull     0.08   0.005
scalp     0.75   0.020
========  =====  ======

Partial-volume voxels get ``S0 = Σ p_i S0_i`` and the S0-weighted mean ``R2*``, so the signal of
every voxel decays mono-exponentially with the truth ``T2* = 1/R2*``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage

from echoprep.simulate import seeds
from echoprep.simulate.geometry import axis_angle, rotation
from echoprep.simulate.presets import Preset
from echoprep.simulate.response import ResponseModel, resolve

#: Grey-matter S0 in magnitude units (before the coil sensitivity).
S0_GM = 3000.0

#: tissue -> (relative S0, T2* in s)
TISSUES: dict[str, tuple[float, float]] = {
    "gm": (1.00, 0.028),
    "wm": (0.85, 0.024),
    "csf": (1.20, 0.060),
    "skull": (0.08, 0.005),
    "scalp": (0.75, 0.020),
}

#: Outer edges of the head layers, mm from the brain surface.
CSF_EDGE_MM, SKULL_EDGE_MM, SCALP_EDGE_MM = 2.0, 6.0, 11.0

#: Visual ROI / active region: grey matter posterior to MNI y = -60 mm, above z = -20 mm.
ACTIVE_Y_MM, ACTIVE_Z_MM = -60.0, -20.0

#: Peak ΔR2* amplitude scale of the evoked response, s^-1.
AMPLITUDE = 0.7

#: Across-image SD of the response as a fraction of its mean amplitude (s = KAPPA * a).
KAPPA = 0.5

#: How the ROI masks are defined (MNI coordinates of the subject's voxels, mm).
ROI_DEFINITIONS = {
    "visual": "brain, grey-matter fraction >= 0.3, MNI y < -60, MNI z > -20 (= active mask)",
    "calcarine": "visual and |MNI x| < 20, MNI y < -70, -10 < MNI z < 20",
    "frontal": "brain, grey-matter fraction >= 0.3, MNI y > 20 (no evoked response)",
}

#: Susceptibility lobes of the B0 field: (MNI centre in mm, peak in Hz); Gaussian, SD B0_LOBE_MM.
B0_LOBES: tuple[tuple[tuple[float, float, float], float], ...] = (
    ((0.0, 35.0, -25.0), -260.0),
    ((45.0, -15.0, -30.0), 150.0),
    ((-45.0, -15.0, -30.0), 150.0),
)
B0_LOBE_MM = 12.0
#: SD of the smooth random part of the B0 field, Hz.
B0_RANDOM_HZ = 15.0

#: Range of the T1w pose: rotation angle (degrees, random axis) and shift length (mm).
T1W_POSE_DEG = (3.0, 7.0)
T1W_POSE_MM = (4.0, 9.0)

#: Labels of the T1w tissue segmentation.
DSEG_LABELS = {0: "background", 1: "GM", 2: "WM", 3: "CSF"}

_HEAD_CENTER_Y = -17.0
_T1W_EXTENT_MM = (184.0, 220.0, 184.0)
_T1W_CENTER_MM = (0.0, _HEAD_CENTER_Y, 10.0)


@dataclass(frozen=True)
class Grid:
    """A regular voxel grid: ``shape`` and a RAS ``affine`` (voxel index → world mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def voxel_size(self) -> float:
        """Isotropic voxel size, mm."""
        return float(self.affine[0, 0])

    @property
    def center(self) -> np.ndarray:
        """World coordinates of the grid centre, mm, shape (3,)."""
        return self.affine[:3, :3] @ ((np.array(self.shape) - 1) / 2) + self.affine[:3, 3]

    def world(self) -> np.ndarray:
        """World coordinates of every voxel centre, shape (nx, ny, nz, 3), mm, float64."""
        ijk = np.stack(np.meshgrid(*[np.arange(n) for n in self.shape], indexing="ij"), -1)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]


def make_grid(shape: tuple[int, int, int], voxel_size: float, center: tuple[float, ...]) -> Grid:
    """An isotropic RAS grid of ``shape`` whose centre is at ``center`` (mm)."""
    affine = np.diag([voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = np.asarray(center, float) - (np.asarray(shape) - 1) / 2 * voxel_size
    return Grid(tuple(int(n) for n in shape), affine)


def functional_grid(preset: Preset) -> Grid:
    """The functional slab: its top edge at ``preset.slab_top_mm``, centred on the head in x/y."""
    fov_z = preset.fov_mm[2]
    center = (0.0, _HEAD_CENTER_Y, preset.slab_top_mm - fov_z / 2)
    return make_grid(preset.shape, preset.voxel_size, center)


def t1w_grid(preset: Preset) -> Grid:
    """The T1w grid: whole head at ``preset.t1w_voxel_size``."""
    vs = preset.t1w_voxel_size
    shape = tuple(round(e / vs) for e in _T1W_EXTENT_MM)
    return make_grid(shape, vs, _T1W_CENTER_MM)


# ---------------------------------------------------------------------------------------------
# smooth random fields


@dataclass(frozen=True)
class FourierField:
    """A smooth, zero-mean, unit-variance random field (a sum of random plane waves).

    Resolution independent: the same field can be evaluated on any grid.
    """

    wavevectors: np.ndarray  # (n, 3), rad/mm
    phases: np.ndarray  # (n,)

    def __call__(self, coords: np.ndarray) -> np.ndarray:
        """Evaluate at ``coords`` of shape (..., 3) (mm); returns shape (...), float32."""
        flat = coords.reshape(-1, 3)
        out = np.empty(flat.shape[0], np.float32)
        scale = np.float32(np.sqrt(2.0 / len(self.phases)))
        k = self.wavevectors.T.astype(np.float32)
        ph = self.phases.astype(np.float32)
        step = 131072
        for a in range(0, flat.shape[0], step):
            arg = flat[a : a + step].astype(np.float32) @ k + ph
            out[a : a + step] = scale * np.cos(arg).sum(axis=1)
        return out.reshape(coords.shape[:-1])


def random_field(rng: np.random.Generator, wavelength_mm: float, n: int = 24) -> FourierField:
    """Draw a :class:`FourierField` with features of about ``wavelength_mm``."""
    directions = rng.standard_normal((n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    k = 2 * np.pi / wavelength_mm * rng.uniform(0.7, 1.3, n)
    return FourierField(directions * k[:, None], rng.uniform(0, 2 * np.pi, n))


# ---------------------------------------------------------------------------------------------
# templates


@lru_cache(maxsize=1)
def _mni_1mm() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """nilearn's MNI152 T1, GM, WM and brain mask at 1 mm (float32) and their affine."""
    from nilearn import datasets

    loaders = {
        "t1": datasets.load_mni152_template,
        "gm": datasets.load_mni152_gm_template,
        "wm": datasets.load_mni152_wm_template,
        "brain": datasets.load_mni152_brain_mask,
    }
    maps, affine = {}, None
    for key, load in loaders.items():
        img = load(resolution=1)
        maps[key] = np.asarray(img.get_fdata(dtype=np.float32))
        affine = img.affine
    return maps, np.asarray(affine, float)


def _block_mean(arr: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return arr
    n = [s // f * f for s in arr.shape]
    a = arr[: n[0], : n[1], : n[2]]
    return a.reshape(n[0] // f, f, n[1] // f, f, n[2] // f, f).mean(axis=(1, 3, 5))


def _base_affine(affine_1mm: np.ndarray, f: int, pad: int = 0) -> np.ndarray:
    """Affine of a block-mean-by-``f`` grid (then padded by ``pad`` base voxels)."""
    aff = affine_1mm.copy()
    aff[:3, :3] *= f
    aff[:3, 3] = affine_1mm[:3, 3] + (f - 1) / 2 - pad * f
    return aff


@lru_cache(maxsize=4)
def _template_at(voxel_size: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Template maps pre-filtered for sampling at ``voxel_size`` mm (partial-volume fractions)."""
    maps, aff1 = _mni_1mm()
    f = max(1, int(voxel_size // 1.8))
    extra = np.sqrt(max(0.0, (0.425 * voxel_size) ** 2 - (0.425 * f) ** 2 * (f > 1))) / f
    out = {}
    for key, arr in maps.items():
        base = _block_mean(arr, f)
        out[key] = ndimage.gaussian_filter(base, extra, mode="constant") if extra > 0.3 else base
    return out, _base_affine(aff1, f)


@lru_cache(maxsize=1)
def _brain_distance() -> tuple[np.ndarray, np.ndarray]:
    """Distance from the MNI brain surface (mm, 0 inside), on a padded 2 mm grid, and affine."""
    maps, aff1 = _mni_1mm()
    f, pad = 2, 16
    brain = np.pad(_block_mean(maps["brain"], f) >= 0.5, pad)
    dist = ndimage.distance_transform_edt(~brain, sampling=f)
    dist = np.maximum(dist - f / 2, 0.0).astype(np.float32)
    return dist, _base_affine(aff1, f, pad)


def _sample(arr: np.ndarray, affine: np.ndarray, mni: np.ndarray, cval: float) -> np.ndarray:
    """Trilinear sample of ``arr`` at MNI mm coordinates ``mni`` (..., 3); float32 (...)."""
    inv = np.linalg.inv(affine)
    ijk = mni.reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3]
    vals = ndimage.map_coordinates(arr, ijk.T, order=1, mode="constant", cval=cval)
    return vals.reshape(mni.shape[:-1]).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1 + np.tanh(0.5 * x))).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# subjects


def subject_transform(seed: int, subject: int) -> np.ndarray:
    """BOLD world (scanner, motion-free head) mm → MNI mm, a 4×4 similarity transform drawn
    for this subject."""
    r = seeds.rng(seed, subject, seeds.ANATOMY, 0)
    scale = r.uniform(0.92, 0.97, 3)
    angles = np.deg2rad(r.uniform(-3.0, 3.0, 3))
    shift = r.uniform(-2.0, 2.0, 3)
    world_from_mni = np.eye(4)
    world_from_mni[:3, :3] = rotation(angles) @ np.diag(scale)
    world_from_mni[:3, 3] = shift
    return np.linalg.inv(world_from_mni)


def tissue_fractions(grid: Grid, mni_from_world: np.ndarray) -> dict[str, np.ndarray]:
    """Partial-volume fractions of every tissue on ``grid``, each shape ``grid.shape``.

    Keys: ``brain`` (GM+WM+CSF inside the brain mask), ``gm``, ``wm``, ``csf`` (ventricles and
    sulci plus the outer CSF layer), ``skull``, ``scalp``, ``t1`` (template T1 intensity, 0–1),
    ``mni`` (MNI coordinates of each voxel, shape (..., 3), mm).
    """
    world = grid.world()
    mni = world @ mni_from_world[:3, :3].T + mni_from_world[:3, 3]
    maps, aff = _template_at(grid.voxel_size)
    brain = np.clip(_sample(maps["brain"], aff, mni, 0.0), 0, 1)
    gm = np.clip(_sample(maps["gm"], aff, mni, 0.0), 0, 1)
    wm = np.clip(_sample(maps["wm"], aff, mni, 0.0), 0, 1)
    total = gm + wm
    over = total > brain
    gm[over] *= brain[over] / total[over]
    wm[over] *= brain[over] / total[over]
    csf_in = np.clip(brain - gm - wm, 0, 1)
    dist_map, dist_aff = _brain_distance()
    d = _sample(dist_map, dist_aff, mni, 100.0)
    w = max(0.5, 0.3 * grid.voxel_size)
    outside = 1 - brain
    a = _sigmoid((CSF_EDGE_MM - d) / w)
    b = _sigmoid((SKULL_EDGE_MM - d) / w)
    c = _sigmoid((SCALP_EDGE_MM - d) / w)
    return {
        "brain": brain,
        "gm": gm,
        "wm": wm,
        "csf": csf_in + outside * a,
        "skull": outside * np.clip(b - a, 0, 1),
        "scalp": outside * np.clip(c - b, 0, 1),
        "t1": np.clip(_sample(maps["t1"], aff, mni, 0.0), 0, 1),
        "mni": mni.astype(np.float32),
    }


@dataclass
class SubjectAnatomy:
    """Everything static about one subject on the functional grid (arrays of ``grid.shape``).

    Attributes
    ----------
    grid
        The functional grid.
    fractions
        Tissue fractions (see :func:`tissue_fractions`).
    s0
        Proton-density-and-coil weighted signal at TE = 0, magnitude units.
    r2s
        R2* = 1/T2*, s^-1 (0 outside the head).
    phase0
        Coil-combined phase at TE = 0, rad.
    b0_hz
        Off-resonance, Hz (smooth, on the whole grid; it acts only where there is signal).
    gfactor
        Parallel-imaging noise amplification (1.0–1.6).
    brain_mask, gm_mask, head_mask, active
        Boolean masks. ``active``: voxels with an evoked response (visual grey matter).
    amplitude
        Mean evoked peak ΔR2* decrease a(v), s^-1 (0 outside ``active``).
    trial_ratio
        t(v)/s(v), the trial-to-trial SD relative to the across-image SD.
    hrf_peak
        Peak time of the voxel's impulse HRF, s.
    rois
        Named boolean ROI masks.
    feature_fields
        Spatial tuning fields (evaluated on the active voxels by the design).
    """

    grid: Grid
    fractions: dict[str, np.ndarray]
    s0: np.ndarray
    r2s: np.ndarray
    phase0: np.ndarray
    b0_hz: np.ndarray
    gfactor: np.ndarray
    brain_mask: np.ndarray
    gm_mask: np.ndarray
    head_mask: np.ndarray
    active: np.ndarray
    amplitude: np.ndarray
    trial_ratio: np.ndarray
    hrf_peak: np.ndarray
    rois: dict[str, np.ndarray] = field(default_factory=dict)
    feature_fields: list[FourierField] = field(default_factory=list)

    @property
    def t2s(self) -> np.ndarray:
        """T2* in s (0 where there is no signal)."""
        with np.errstate(divide="ignore"):
            return np.where(self.r2s > 0, 1.0 / np.maximum(self.r2s, 1e-6), 0.0).astype(np.float32)


def subject_anatomy(
    preset: Preset, seed: int, subject: int, response: ResponseModel | str | None = None
) -> SubjectAnatomy:
    """Build the static anatomy and physiology maps of subject number ``subject``.

    ``response`` (:mod:`.response`, default :data:`.response.DEFAULT`) sets the number and
    wavelengths of the smooth image-feature fields (the last draws of the subject's anatomy
    stream, so nothing else depends on it).
    """
    model = resolve(response)
    grid = functional_grid(preset)
    fr = tissue_fractions(grid, subject_transform(seed, subject))
    mni = fr["mni"]
    world = grid.world()
    r = seeds.rng(seed, subject, seeds.ANATOMY, 1)

    # tissue signal
    s0_rel = sum(fr[k] * TISSUES[k][0] for k in TISSUES)
    rate = sum(fr[k] * TISSUES[k][0] / TISSUES[k][1] for k in TISSUES)
    has = s0_rel > 1e-3
    r2s = np.where(has, rate / np.maximum(s0_rel, 1e-3), 0.0).astype(np.float32)

    # scanner-fixed fields (world coordinates)
    rad = np.linalg.norm(world - grid.center, axis=-1)
    coil = np.clip(
        0.9 + 0.3 * np.exp(-(rad**2) / (2 * 70.0**2)) + 0.12 * random_field(r, 140)(world), 0.6, 1.6
    )
    gfac = np.clip(
        1.0 + 0.5 * np.exp(-(rad**2) / (2 * 55.0**2)) + 0.06 * random_field(r, 100)(world), 1.0, 1.6
    )
    phase0 = (0.5 + 1.5 * random_field(r, 220)(world)).astype(np.float32)

    # head-fixed fields (MNI coordinates)
    b0 = B0_RANDOM_HZ * random_field(r, 120)(mni)
    for centre, amp in B0_LOBES:
        dist2 = np.sum((mni - np.array(centre)) ** 2, axis=-1)
        b0 = b0 + amp * np.exp(-dist2 / (2 * B0_LOBE_MM**2))
    hrf_peak = np.clip(5.25 + 0.6 * random_field(r, 35)(mni), 4.0, 6.5)
    trial_ratio = np.clip(np.exp(np.log(1.1) + 0.35 * random_field(r, 30)(mni)), 0.5, 2.5)
    modulation = np.clip(1 + 0.3 * random_field(r, 25)(mni), 0.5, 1.5)
    wl = model.feature_wavelength_mm
    features = [random_field(r, r.uniform(*wl)) for _ in range(model.n_features)]

    brain_mask = fr["brain"] >= 0.5
    gm_mask = brain_mask & (fr["gm"] >= 0.5)
    head_mask = s0_rel > 0.02
    visual = (
        brain_mask & (fr["gm"] >= 0.3) & (mni[..., 1] < ACTIVE_Y_MM) & (mni[..., 2] > ACTIVE_Z_MM)
    )
    amplitude = np.where(visual, AMPLITUDE * (0.5 + 0.5 * fr["gm"]) * modulation, 0.0)
    x, y, z = mni[..., 0], mni[..., 1], mni[..., 2]
    rois = {
        "visual": visual,
        "calcarine": visual & (np.abs(x) < 20) & (y < -70) & (z > -10) & (z < 20),
        "frontal": brain_mask & (fr["gm"] >= 0.3) & (y > 20),
    }
    return SubjectAnatomy(
        grid=grid,
        fractions=fr,
        s0=(S0_GM * coil * s0_rel).astype(np.float32),
        r2s=r2s,
        phase0=phase0,
        b0_hz=b0.astype(np.float32),
        gfactor=gfac.astype(np.float32),
        brain_mask=brain_mask,
        gm_mask=gm_mask,
        head_mask=head_mask,
        active=visual,
        amplitude=amplitude.astype(np.float32),
        trial_ratio=trial_ratio.astype(np.float32),
        hrf_peak=hrf_peak.astype(np.float32),
        rois=rois,
        feature_fields=features,
    )


def t1w_pose(seed: int, subject: int) -> tuple[np.ndarray, dict[str, list[float] | float]]:
    """The rigid transform from the BOLD world to the T1w world of a subject.

    A point of the head at ``x`` (BOLD world: functional session, motion-free head) is at
    ``P @ [x, 1]`` in the T1w scanner. ``P`` rotates by an angle drawn from
    :data:`T1W_POSE_DEG` about a random axis through the T1w grid centre ``c`` and then shifts
    by a vector of random direction and a length drawn from :data:`T1W_POSE_MM`:
    ``P x = c + R (x - c) + d``. Drawn from the stream (seed, subject, POSE) only.

    Returns
    -------
    matrix
        (4, 4) float64 ``P`` (RAS mm → RAS mm).
    params
        ``RotationAxis`` (unit vector), ``RotationAngleDeg``, ``RotationCenter`` (mm),
        ``Translation`` (mm): the parameters of ``P``.
    """
    r = seeds.rng(seed, subject, seeds.POSE)
    axis = r.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = float(r.uniform(*T1W_POSE_DEG))
    direction = r.standard_normal(3)
    shift = direction / np.linalg.norm(direction) * r.uniform(*T1W_POSE_MM)
    c = np.asarray(_T1W_CENTER_MM, float)
    rot = axis_angle(axis, np.deg2rad(angle))
    matrix = np.eye(4)
    matrix[:3, :3] = rot
    matrix[:3, 3] = c - rot @ c + shift
    params: dict[str, list[float] | float] = {
        "RotationAxis": axis.tolist(),
        "RotationAngleDeg": angle,
        "RotationCenter": c.tolist(),
        "Translation": shift.tolist(),
    }
    return matrix, params


def t1w_image(
    preset: Preset, seed: int, subject: int
) -> tuple[Grid, np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic T1w of a subject (MPRAGE-like contrast, bias field, skull and scalp, noise).

    The head is in the T1w pose (:func:`t1w_pose`): the T1w voxel at world ``y`` shows the
    head point at BOLD-world ``inv(P) y``. The bias field is scanner-fixed.

    Returns
    -------
    grid
        The T1w grid.
    image
        int16 array of ``grid.shape`` (WM about 1000).
    brain_mask
        bool, the true brain mask on the T1w grid.
    dseg
        uint8 tissue labels (:data:`DSEG_LABELS`).

    The brain mask and labels are on the T1w grid in the T1w pose.
    """
    grid = t1w_grid(preset)
    pose, _ = t1w_pose(seed, subject)
    mni_from_world = subject_transform(seed, subject) @ np.linalg.inv(pose)
    r = seeds.rng(seed, subject, seeds.T1W)
    bias_field = random_field(r, 200)
    intensity = np.empty(grid.shape, np.float32)
    brain_mask = np.empty(grid.shape, bool)
    dseg = np.empty(grid.shape, np.uint8)
    step = 24  # slices at a time: bounds memory at 1 mm
    for z0 in range(0, grid.shape[2], step):
        z1 = min(z0 + step, grid.shape[2])
        aff = grid.affine.copy()
        aff[:3, 3] = grid.affine[:3, :3] @ [0, 0, z0] + grid.affine[:3, 3]
        slab = Grid((grid.shape[0], grid.shape[1], z1 - z0), aff)
        fr = tissue_fractions(slab, mni_from_world)
        world = slab.world()
        bias = np.exp(0.15 * bias_field(world) + 0.1 * (world[..., 2] - 10.0) / 90.0)
        csf_in = np.clip(fr["brain"] - fr["gm"] - fr["wm"], 0, 1)
        csf_out = np.clip(fr["csf"] - csf_in, 0, 1)
        clean = fr["t1"] + 0.08 * csf_out + 0.04 * fr["skull"] + 0.7 * fr["scalp"]
        intensity[..., z0:z1] = 1150.0 * clean * bias
        brain_mask[..., z0:z1] = fr["brain"] >= 0.5
        dseg[..., z0:z1] = np.argmax(np.stack([fr["gm"], fr["wm"], csf_in]), axis=0) + 1
    dseg[~brain_mask] = 0
    sigma = 12.0
    noisy = np.hypot(
        intensity + sigma * r.standard_normal(grid.shape), sigma * r.standard_normal(grid.shape)
    )
    image = np.clip(np.round(noisy), 0, 32767).astype(np.int16)
    return grid, image, brain_mask, dseg
