"""Experimental design: trials, slice timing, voxel-specific HRFs and single-trial betas.

Trials last ``trial_duration`` (3 s: image 2.5 s + 0.5 s gap) and follow each other without
jitter after ``lead_in`` seconds of baseline; the run ends with at least ``min_tail`` seconds of
baseline. Every image of a session is shown 2 or 3 times, its repeats in different runs where
there are enough runs; ``trial_type`` is ``new`` at an image's first showing in the session,
``old`` afterwards, ``blank`` for the ~8 % trials without an image. Image numbers continue across
sessions (session k shows images ``(k-1)*n+1 .. k*n``); with ``shared_images`` every session of
a subject shows session 1's images ``1 .. n``, each session in its own order, run assignment and
repeat counts, and the true image means of a subject are the same in all its sessions (only the
trial-to-trial variability and the noise are the session's own).

HRFs are double gammas (SPM shape, shape parameters 6 and 16, undershoot ratio 1/6) whose time
axis is stretched so the impulse response peaks at 4–6.5 s (20 library entries); the response
to a trial is that HRF convolved with the 2.5 s image boxcar, normalised to a peak of 1. The
single-trial beta is therefore the peak ΔR2* decrease (s^-1) of the trial's response.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import special

from echoprep.simulate import seeds
from echoprep.simulate.anatomy import SubjectAnatomy, random_field
from echoprep.simulate.presets import Preset
from echoprep.simulate.response import ResponseModel, image_responses, resolve, trial_noise

#: Impulse-HRF peak times of the library, s.
HRF_PEAKS = np.linspace(4.0, 6.5, 20)
#: Time step of the HRF tables, s.
HRF_DT = 0.05
_HRF_LENGTH = 50.0


def slice_timing(nz: int, multiband: int, tr: float) -> np.ndarray:
    """Acquisition time of each slice within the TR (s), shape (nz,).

    Multiband: slices ``s, s + nz/mb, s + 2 nz/mb`` are excited together; the ``nz/mb``
    excitations are interleaved (0, 2, 4, ..., 1, 3, 5, ...) and evenly spaced over the TR.
    """
    shots = nz // multiband
    order = [*range(0, shots, 2), *range(1, shots, 2)]
    rank = np.empty(shots, int)
    rank[order] = np.arange(shots)
    return np.round(rank[np.arange(nz) % shots] * tr / shots, 6)


def _double_gamma(t: np.ndarray) -> np.ndarray:
    t = np.maximum(t, 0)
    return (t**5 * np.exp(-t) / special.gamma(6)) - (t**15 * np.exp(-t) / special.gamma(16)) / 6


@lru_cache(maxsize=8)
def hrf_table(stim_duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Trial responses of the HRF library.

    Returns
    -------
    times
        Time after trial onset, s, shape (n_t,).
    table
        Response to a ``stim_duration`` boxcar for each library HRF (:data:`HRF_PEAKS`),
        shape (20, n_t), peak 1.
    """
    fine = np.arange(0, 40, 0.001)
    peak0 = fine[np.argmax(_double_gamma(fine))]
    times = np.arange(0, _HRF_LENGTH, HRF_DT)
    box = np.ones(round(stim_duration / HRF_DT))
    rows = []
    for peak in HRF_PEAKS:
        h = _double_gamma(times * peak0 / peak)
        resp = np.convolve(h, box)[: len(times)]
        rows.append(resp / resp.max())
    return times, np.array(rows)


def hrf_index(hrf_peak: np.ndarray) -> np.ndarray:
    """Library entry (0–19) nearest to each peak time (s)."""
    return np.abs(np.asarray(hrf_peak)[..., None] - HRF_PEAKS).argmin(axis=-1)


def session_design(
    preset: Preset,
    n_runs: int,
    seed: int,
    subject: int,
    session: int,
    shared_images: bool = False,
) -> pd.DataFrame:
    """All trials of one session in chronological order.

    Parameters
    ----------
    preset
        The dataset preset (trials per run, blanks, timing).
    n_runs
        Runs of the session.
    seed, subject, session
        The session's random stream (order of the images, their runs and repeat counts, the
        trial order).
    shared_images
        Show the images of session 1 (``1 .. n``) instead of the session's own
        (``(session-1)*n+1 .. session*n``); the order, runs and repeat counts are still drawn
        from the session's own stream. Session 1 is the same either way.

    Returns
    -------
    pandas.DataFrame
        Columns ``run`` (1-based int), ``onset`` (s from the run's first volume), ``duration``
        (s), ``trial_type`` (new/old/blank), ``stim_name`` (``img0042`` or ``n/a``), ``image``
        (int image number, -1 for blanks), ``n_repeats`` (showings of that image in the session,
        0 for blanks).
    """
    r = seeds.rng(seed, subject, session, seeds.DESIGN)
    n_img = preset.images_for_runs(n_runs)
    per_run = preset.image_trials_per_run
    total = n_runs * per_run
    first = 1 if shared_images else (session - 1) * n_img + 1
    images = first + r.permutation(n_img)
    repeats = np.full(n_img, 2)
    repeats[: total - 2 * n_img] = 3
    runs_of: list[list[int]] = [[] for _ in range(n_runs)]
    pointer = int(r.integers(n_runs))
    for img, rep in zip(images, repeats, strict=True):
        for j in range(rep):
            runs_of[(pointer + j) % n_runs].append(int(img))
        pointer += rep
    n_rep = dict(zip(images.tolist(), repeats.tolist(), strict=True))
    rows = []
    seen: set[int] = set()
    for run in range(n_runs):
        trials = np.array(runs_of[run] + [-1] * preset.blank_trials_per_run)
        trials = trials[r.permutation(len(trials))]
        for i, img in enumerate(trials.tolist()):
            if img < 0:
                ttype, name = "blank", "n/a"
            else:
                ttype, name = ("old" if img in seen else "new"), f"img{img:04d}"
                seen.add(img)
            rows.append(
                {
                    "run": run + 1,
                    "onset": round(preset.lead_in + i * preset.trial_duration, 3),
                    "duration": preset.stim_duration,
                    "trial_type": ttype,
                    "stim_name": name,
                    "image": img,
                    "n_repeats": n_rep.get(img, 0),
                }
            )
    return pd.DataFrame(rows)


def image_features(seed: int, image_ids: np.ndarray, n_features: int) -> np.ndarray:
    """Latent features of each image, shape (n_features, n_images); the same for all subjects."""
    return np.stack(
        [seeds.rng(seed, 0, seeds.IMAGE, int(i)).standard_normal(n_features) for i in image_ids],
        axis=1,
    )


def single_trial_betas(
    anatomy: SubjectAnatomy,
    design: pd.DataFrame,
    seed: int,
    subject: int,
    session: int,
    response: ResponseModel | str | None = None,
    shared_images: bool = False,
) -> dict[str, np.ndarray]:
    """True single-trial betas of a session on the active voxels.

    ``beta(v, trial) = mu(v, image) + t(v) * eps``, ``mu(v, image) = A a(v) (1 + kappa z(v,
    image))`` with ``z`` standardised over the session's images per voxel (mean 0, SD 1,
    ddof 0, :func:`.response.image_responses`), so the across-image SD of ``mu`` is exactly
    ``s(v) = kappa * A * a(v)``; ``t(v) = s(v) * trial_ratio(v)``; ``eps`` unit-variance,
    voxel-specific or partly spatially smooth (:func:`.response.trial_noise`). ``A``
    (``amplitude_scale``), ``kappa`` and the spatial structure come from ``response``
    (:mod:`.response`; default :data:`.response.DEFAULT`: ``A = 1``, ``kappa = 0.5``, white
    ``eps``). The anatomy must have been built with the same model (its feature fields).

    The image features ``f`` depend on the seed and the image only, the feature fields ``w``
    and ``a(v)`` on the subject; the voxel-specific part ``n(v, image)`` of ``z`` is drawn from
    the session's stream (``BETAS``), so without ``shared_images`` an image's true mean would
    depend on the session that shows it (each image is shown in one session only then). With
    ``shared_images`` (every session shows session 1's images, :func:`session_design`) it is
    drawn from session 1's stream in every session: ``mu`` is then the same, bit for bit, in
    every session of the subject, while ``eps`` stays the session's own. Session 1 and
    every session without ``shared_images`` are unchanged.

    Parameters
    ----------
    anatomy
        The subject's anatomy (built with the same response model).
    design
        The session's trials (:func:`session_design`).
    seed, subject, session
        The session's random streams.
    response
        Response model, a name of :data:`.response.REGIMES` or None (default model).
    shared_images
        The session shows session 1's images (``design`` made with ``shared_images``): take
        the voxel-specific image responses from session 1's stream.

    Returns
    -------
    dict
        ``betas`` (n_active, n_image_trials) s^-1, in the chronological order of the image
        trials of ``design``; ``s`` and ``t`` (n_active,) s^-1; ``mu`` (n_active, n_images)
        s^-1, the true image means; ``images`` (n_images,) the image numbers of the columns of
        ``mu``.
    """
    model = resolve(response)
    r = seeds.rng(seed, subject, session, seeds.BETAS)
    mni = anatomy.fractions["mni"][anatomy.active].astype(np.float64)
    n_act = mni.shape[0]
    if len(anatomy.feature_fields) != model.n_features:
        raise ValueError(
            f"single_trial_betas: expected an anatomy with {model.n_features} feature fields "
            f"(response model {model.name!r}); found {len(anatomy.feature_fields)}. Fix: build "
            "the anatomy with the same response model"
        )
    weights = np.stack([f(mni) for f in anatomy.feature_fields], axis=1).reshape(n_act, -1)
    trials = design[design["image"] >= 0]
    images = np.unique(trials["image"].to_numpy())
    feats = image_features(seed, images, weights.shape[1])
    voxel_noise = r.standard_normal((n_act, len(images)))
    if shared_images and session != 1:
        # the subject's image responses, as session 1 drew them (the same images, sorted);
        # the session's own draw above is kept so its trial noise below is drawn as always
        first = seeds.rng(seed, subject, 1, seeds.BETAS)
        voxel_noise = first.standard_normal((n_act, len(images)))
    z = image_responses(model, weights, feats, voxel_noise)
    a = anatomy.amplitude[anatomy.active].astype(np.float64)
    if model.amplitude_scale != 1:
        a = a * model.amplitude_scale
    s = model.kappa * a
    t = s * anatomy.trial_ratio[anatomy.active]
    mu = (a[:, None] * (1 + model.kappa * z)).astype(np.float32)
    col = np.searchsorted(images, trials["image"].to_numpy())
    white = r.standard_normal((len(a), len(trials)), dtype=np.float32)
    smooth = None
    if model.trial_smooth_fraction > 0:
        rt = seeds.rng(seed, subject, session, seeds.TRIALS)
        smooth = np.empty_like(white)
        for j in range(len(trials)):
            smooth[:, j] = random_field(rt, model.trial_wavelength_mm)(mni)
    betas = trial_noise(model, white, smooth)
    betas *= t[:, None].astype(np.float32)
    betas += mu[:, col]
    return {
        "betas": betas,
        "s": s.astype(np.float32),
        "t": t.astype(np.float32),
        "mu": mu,
        "images": images,
    }


def response_matrix(preset: Preset, onsets: np.ndarray, slice_time: float, hrf: int) -> np.ndarray:
    """Predicted responses of trials at one slice for one library HRF.

    Parameters
    ----------
    onsets
        Trial onsets, s, shape (n_trials,).
    slice_time
        Acquisition time of the slice within the TR, s.
    hrf
        Library index (0–19).

    Returns
    -------
    numpy.ndarray
        Shape (n_volumes, n_trials); entry [k, j] is trial j's normalised response at the
        acquisition of volume k at that slice.
    """
    times, table = hrf_table(preset.stim_duration)
    acq = np.arange(preset.n_volumes) * preset.tr + slice_time
    lag = acq[:, None] - np.asarray(onsets)[None, :]
    return np.interp(lag, times, table[hrf], left=0.0, right=0.0)
