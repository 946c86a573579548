"""The response model of the simulation: spatial structure of the evoked response and the noise mix.

A :class:`ResponseModel` says how the image-specific response and the trial-to-trial
variability are spread over voxels, how strong the evoked response is, and how much thermal
and physiological noise there is. It is a parameter of
:func:`echoprep.simulate.simulate_dataset` (``response=``, a model or a name of
:data:`REGIMES`) and is recorded in the truth (``ResponseModel`` in the sidecar of the true
image means). :data:`DEFAULT` reproduces the simulator as it was before the model existed, to
the byte.

For active voxel v and image c (:func:`.design.single_trial_betas`)::

    z(v, c) = sum_k sqrt(lam_k) w_k(v) f_k(c) + sd_vox * n(v, c)   then standardised per voxel
    mu(v, c) = A a(v) (1 + kappa z(v, c))                            true image means, s^-1
    beta(v, trial) = mu(v, c) + t(v) (sqrt(1 - q) e(v, trial) + sqrt(q) g_trial(v))

- ``w_k``: ``n_features`` smooth unit-variance random fields (sums of plane waves,
  :func:`.anatomy.random_field`) whose wavelength is drawn per field from
  ``feature_wavelength_mm``; ``f_k(c)`` standard-normal latent features of the image (the same
  for every subject); ``lam_k = (k + 1) ** -feature_spectrum`` (k = 0, 1, ...): the image
  space's variance spectrum (0 = flat; 2 = steep, nearly one-dimensional).
- ``n``: voxel-specific (spatially white) standard normal; ``sd_vox`` is set so that, averaged
  over voxels, a fraction ``voxel_fraction`` of the across-image variance of ``z`` is
  voxel-specific and ``1 - voxel_fraction`` (:attr:`ResponseModel.smooth_fraction`) spatially
  smooth. The correlation of a plane-wave field of wavelength L between two points r mm apart
  is ``sin(k r) / (k r)``, k = 2 pi / L: it falls to 0.5 at r ~ 0.30 L (15-30 mm: 4.5-9 mm).
  The 7T GE-BOLD point spread (~2 mm FWHM) corresponds to L ~ 6-7 mm.
- ``a(v)``: the mean evoked amplitude map of the anatomy (:data:`.anatomy.AMPLITUDE`,
  0.7 s^-1, modulated), scaled by ``A = amplitude_scale``; ``kappa`` = across-image SD /
  mean amplitude.
- ``e``: voxel-specific standard normal; ``g_trial``: one smooth unit-variance random field per
  trial (wavelength ``trial_wavelength_mm``), so a fraction ``trial_smooth_fraction = q`` of
  the trial-to-trial variance is spatially smooth (shared by neighbouring voxels).
- Noise (:func:`.signal.build_run`): the thermal noise SD is ``thermal_scale`` times the
  preset's ``noise_sigma`` (the tSNR of grey matter at echo 2 is ~31 at 1.0 and ~8 at 4.5),
  the physiological ΔR2* (4 low-rank components with 40 mm spatial maps) ``physio_scale``
  times :data:`.signal.PHYSIO_SD`; 0 switches it off.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Expected fraction of the across-image variance of the default model that is voxel-specific:
#: 8 unit-variance smooth features plus a voxel-specific SD of 0.7 (0.49 / 8.49 = 5.8 %).
_DEFAULT_VOXEL_FRACTION = 0.49 / 8.49


@dataclass(frozen=True)
class ResponseModel:
    """How the simulated response and noise are structured (see :mod:`.response`).

    Attributes
    ----------
    name
        Short name (recorded in the truth).
    description
        One line: what the regime represents.
    amplitude_scale
        Multiplies the mean evoked amplitude map a(v) (1.0: peak ΔR2* ~0.7 s^-1, 1-3 % at
        echo 2).
    kappa
        Across-image SD of the true image means relative to a(v) (``s = kappa * A * a``).
    n_features
        Number of latent image features (dimensionality of the smooth image-specific part).
    feature_spectrum
        Exponent p of the feature variances ``(k + 1) ** -p``; 0 = all equal.
    feature_wavelength_mm
        Range of the wavelengths (mm) of the smooth feature fields, one drawn per field.
    voxel_fraction
        Expected fraction (over voxels) of the across-image variance that is voxel-specific,
        in [0, 1].
    trial_smooth_fraction
        Fraction of the trial-to-trial variance that is spatially smooth, in [0, 1].
    trial_wavelength_mm
        Wavelength of the smooth trial-to-trial fields, mm.
    thermal_scale
        Multiplies the preset's thermal noise SD (> 0).
    physio_scale
        Multiplies the physiological ΔR2* SD (>= 0).
    """

    name: str = "default"
    description: str = "the simulator's default: 8 smooth image features, white trial noise"
    amplitude_scale: float = 1.0
    kappa: float = 0.5
    n_features: int = 8
    feature_spectrum: float = 0.0
    feature_wavelength_mm: tuple[float, float] = (15.0, 30.0)
    voxel_fraction: float = _DEFAULT_VOXEL_FRACTION
    trial_smooth_fraction: float = 0.0
    trial_wavelength_mm: float = 20.0
    thermal_scale: float = 1.0
    physio_scale: float = 1.0

    def __post_init__(self) -> None:
        checks = [
            ("amplitude_scale", self.amplitude_scale > 0, "> 0"),
            ("kappa", self.kappa > 0, "> 0"),
            ("n_features", self.n_features >= 0, ">= 0"),
            ("voxel_fraction", 0 <= self.voxel_fraction <= 1, "in [0, 1]"),
            ("trial_smooth_fraction", 0 <= self.trial_smooth_fraction <= 1, "in [0, 1]"),
            ("trial_wavelength_mm", self.trial_wavelength_mm > 0, "> 0"),
            ("thermal_scale", self.thermal_scale > 0, "> 0"),
            ("physio_scale", self.physio_scale >= 0, ">= 0"),
            (
                "feature_wavelength_mm",
                0 < self.feature_wavelength_mm[0] <= self.feature_wavelength_mm[1],
                "(low, high) with 0 < low <= high",
            ),
        ]
        for key, ok, want in checks:
            if not ok:
                raise ValueError(
                    f"ResponseModel {self.name!r}: expected {key} {want}; found "
                    f"{getattr(self, key)!r}. Fix: pass a valid value"
                )
        if self.n_features == 0 and self.voxel_fraction < 1:
            raise ValueError(
                f"ResponseModel {self.name!r}: expected voxel_fraction 1 without image "
                f"features; found n_features 0 and voxel_fraction {self.voxel_fraction}. "
                "Fix: set voxel_fraction=1.0 or n_features >= 1"
            )

    @property
    def smooth_fraction(self) -> float:
        """Expected fraction of the across-image variance that is spatially smooth."""
        return 1.0 - self.voxel_fraction

    @property
    def feature_variances(self) -> np.ndarray:
        """Variance of each latent feature, ``(k + 1) ** -feature_spectrum``, shape (F,)."""
        return np.arange(1, self.n_features + 1, dtype=np.float64) ** -self.feature_spectrum

    @property
    def voxel_sd(self) -> float:
        """SD of the voxel-specific part of ``z`` (before standardisation).

        ``sd**2 / (sum(lam) + sd**2) = voxel_fraction``; rounded to 12 digits (so the default
        gives 0.7 exactly); ``inf`` when everything is voxel-specific.
        """
        if self.voxel_fraction >= 1:
            return math.inf
        total = float(self.feature_variances.sum())
        return round(math.sqrt(total * self.voxel_fraction / (1 - self.voxel_fraction)), 12)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (tuples as lists)."""
        out = dataclasses.asdict(self)
        out["feature_wavelength_mm"] = list(self.feature_wavelength_mm)
        return out


def image_responses(
    model: ResponseModel,
    weights: np.ndarray,
    features: np.ndarray,
    voxel_noise: np.ndarray,
) -> np.ndarray:
    """Standardised image-specific response ``z`` of each voxel to each image.

    Parameters
    ----------
    model
        The response model.
    weights
        Smooth feature fields evaluated at the voxels, shape (V, F) (unit variance over space).
    features
        Latent features of the images, shape (F, C), standard normal.
    voxel_noise
        Voxel-specific standard-normal draws, shape (V, C).

    Returns
    -------
    numpy.ndarray
        (V, C) float64, mean 0 and SD 1 over images per voxel (ddof 0).
    """
    sd = model.voxel_sd
    if math.isinf(sd):
        z = np.asarray(voxel_noise, np.float64)
    else:
        if model.feature_spectrum != 0:
            features = features * np.sqrt(model.feature_variances)[:, None]
        z = weights @ features
        if sd > 0:
            z = z + sd * voxel_noise
    return (z - z.mean(axis=1, keepdims=True)) / z.std(axis=1, keepdims=True)


def trial_noise(model: ResponseModel, white: np.ndarray, smooth: np.ndarray | None) -> np.ndarray:
    """Unit-variance trial-to-trial deviations: voxel-specific and smooth parts mixed.

    Parameters
    ----------
    white
        Voxel-specific standard-normal draws, shape (V, N) float32.
    smooth
        Smooth unit-variance fields, one per trial, evaluated at the voxels, shape (V, N); may
        be None when ``model.trial_smooth_fraction`` is 0.

    Returns
    -------
    numpy.ndarray
        (V, N) float32: ``white`` itself when nothing is smooth, else
        ``sqrt(1 - q) white + sqrt(q) smooth``.
    """
    q = model.trial_smooth_fraction
    if q == 0:
        return white
    if smooth is None:
        raise ValueError("trial_noise: smooth fields are needed when trial_smooth_fraction > 0")
    return (np.sqrt(1 - q) * white + np.sqrt(q) * smooth).astype(np.float32)


#: The default model (reproduces the simulator's historical output byte for byte).
DEFAULT = ResponseModel()

#: Named regimes for the NORDIC/noise-ceiling comparison; see each ``description``. Measured with
#: ``benchmarks/regimes_echo2.py`` (regime preset, seed 0, echo 2, type-D betas; raw -> NORDIC):
#: default NC 10.0 -> 0.9 %, r with the true image means 0.345 -> 0.357; smooth NC 14.2 ->
#: 18.1 % (type B 7.7 -> 16.4 %), r 0.406 -> 0.421; strong NC 23.1 -> 21.2 % (type B 20.0 ->
#: 39.8 %), r 0.527 -> 0.451.
#: Strong low-dimensional responses at low tSNR; ``strong_mid`` is the same at less thermal noise.
_STRONG = ResponseModel(
    name="strong",
    description="strong (x10), low-dimensional (4 features, 1/f) smooth image responses at "
    "low tSNR (~7)",
    amplitude_scale=10.0,
    n_features=4,
    feature_spectrum=1.0,
    voxel_fraction=0.1,
    thermal_scale=4.5,
)

REGIMES: dict[str, ResponseModel] = {
    "default": DEFAULT,
    "smooth": ResponseModel(
        name="smooth",
        description="image responses and trial variability almost all spatially smooth "
        "(8-16 mm wavelengths, 16 features, 1/f spectrum), amplitude x2.5, tSNR ~16",
        amplitude_scale=2.5,
        n_features=16,
        feature_spectrum=1.0,
        feature_wavelength_mm=(8.0, 16.0),
        voxel_fraction=0.02,
        trial_smooth_fraction=0.9,
        trial_wavelength_mm=12.0,
        thermal_scale=2.0,
    ),
    "strong": _STRONG,
    "voxel": ResponseModel(
        name="voxel",
        description="image-specific responses mostly voxel-specific (90 % of the variance), "
        "white trial variability, default noise",
        voxel_fraction=0.9,
    ),
    "lowdim": ResponseModel(
        name="lowdim",
        description="strong (x6), low-dimensional (4 features, 1/f) smooth image responses, "
        "white trial variability, low tSNR (~7): NORDIC truly helps",
        amplitude_scale=6.0,
        n_features=4,
        feature_spectrum=1.0,
        voxel_fraction=0.0,
        trial_smooth_fraction=0.0,
        thermal_scale=4.5,
    ),
    "lowdim_shared": ResponseModel(
        name="lowdim_shared",
        description="strong (x6), two-dimensional smooth image responses, half of the trial "
        "variability smooth, low tSNR (~7): on echo 2 alone NORDIC raises NC while the betas "
        "get worse; through the whole 2x3 NORDIC is about even with optcom",
        amplitude_scale=6.0,
        n_features=2,
        feature_spectrum=1.0,
        voxel_fraction=0.0,
        trial_smooth_fraction=0.5,
        thermal_scale=4.5,
    ),
    "smooth_lowdim": ResponseModel(
        name="smooth_lowdim",
        description="strong (x5), three-dimensional (1/f^1.5) image responses smooth over "
        "10-20 mm, 30 % of the trial variability smooth, tSNR ~8 (meant for short sessions, "
        "4 runs): NORDIC truly helps, and the reference's own image-locked errors matter",
        amplitude_scale=5.0,
        n_features=3,
        feature_spectrum=1.5,
        feature_wavelength_mm=(10.0, 20.0),
        voxel_fraction=0.05,
        trial_smooth_fraction=0.3,
        trial_wavelength_mm=15.0,
        thermal_scale=4.2,
    ),
    "modest": ResponseModel(
        name="modest",
        description="the default's eight smooth image features at twice the amplitude, "
        "thermal noise x2.5 (tSNR ~12), half the physiological noise: meant to be one where "
        "NORDIC helps, but at 12 runs (seed 0) NORDIC cost 0.00-0.12 in r while raising the "
        "noise ceiling",
        amplitude_scale=2.0,
        thermal_scale=2.5,
        physio_scale=0.5,
    ),
    "strong_mid": dataclasses.replace(
        _STRONG,
        name="strong_mid",
        description="the strong (x10), low-dimensional (4 features, 1/f) smooth image "
        "responses of `strong` at a moderate tSNR (~12, thermal noise x2.5 instead of x4.5): "
        "meant to be one where NORDIC truly helps by 0.02-0.05 in r (6 runs, two sessions: "
        "nordic-optcom 0.023, 0.041 and 0.012 above raw-optcom at seeds 0, 1 and 2)",
        thermal_scale=2.5,
    ),
    "thermal": ResponseModel(
        name="thermal",
        description="the default response without physiological noise (thermal-only residual)",
        physio_scale=0.0,
    ),
}


def resolve(response: ResponseModel | str | None) -> ResponseModel:
    """A :class:`ResponseModel` from a model, a name of :data:`REGIMES` or None (default).

    Raises
    ------
    ValueError
        Unknown regime name.
    """
    if response is None:
        return DEFAULT
    if isinstance(response, ResponseModel):
        return response
    if response not in REGIMES:
        raise ValueError(
            f"unknown response regime {response!r}; expected one of {sorted(REGIMES)}. Fix: "
            "pick one of them or pass a ResponseModel"
        )
    return REGIMES[response]
