"""Noise ceilings of single-trial betas (the NSD ``ncsnr`` method) and ROI summaries.

For each voxel, with betas z-scored within groups of trials (runs for a session map, sessions
for a subject map; mean 0 and SD 1 with ``ddof=0`` over the group's trials):

- ``sigma_noise^2`` = mean, over stimuli with at least 2 repeats, of the variance (``ddof=1``)
  across that stimulus's repeats;
- ``sigma_signal^2 = max(0, 1 - sigma_noise^2)``; ``ncsnr = sigma_signal / sigma_noise``;
- ``NC = 100 ncsnr^2 / (ncsnr^2 + k)`` (percent of variance), ``k = mean_c(1 / n_c)`` over the
  stimuli used (the ceiling of each stimulus's repeat-averaged response, as NSD and LAION-fMRI
  report it), or ``k = 1`` for the single-trial ceiling, or ``k = 1 / n`` for a fixed number of
  repeats ``n``.

Reference: Allen et al. 2022, Nat Neurosci 25:116 (NSD), Methods "Noise ceiling"; our summary in
``docs/noise-ceiling.md``. Pure array code: no file I/O, no logging.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

#: Voxels per block of the vectorised computation (bounds memory: about
#: ``chunk * n_trials * 8`` bytes per temporary).
DEFAULT_CHUNK = 20000


@dataclass(frozen=True)
class NoiseCeiling:
    """Result of :func:`noise_ceiling`.

    Attributes
    ----------
    nc
        ``(V,)`` float32 noise ceiling in percent for the repeat-averaged response
        (``k = mean_c(1/n_c)``).
    nc_single
        ``(V,)`` float32 single-trial noise ceiling in percent (``k = 1``).
    ncsnr
        ``(V,)`` float32 noise-ceiling SNR (``inf`` where the repeats agree exactly).
    mean_inverse_repeats
        ``mean_c(1/n_c)`` over the stimuli used.
    n_stimuli
        Stimuli with at least 2 repeats (the ones used).
    repeat_counts
        ``{n: number of stimuli shown n times}`` over the stimuli used.
    """

    nc: np.ndarray
    nc_single: np.ndarray
    ncsnr: np.ndarray
    mean_inverse_repeats: float
    n_stimuli: int
    repeat_counts: dict[int, int]

    def at_repeats(self, n: float) -> np.ndarray:
        """``(V,)`` float32 noise ceiling (%) for responses averaged over ``n`` repeats."""
        return nc_from_ncsnr(self.ncsnr, 1.0 / n)


def nc_from_ncsnr(ncsnr: np.ndarray, k: float) -> np.ndarray:
    """``100 ncsnr^2 / (ncsnr^2 + k)`` as float32; 100 where ``ncsnr`` is infinite.

    Parameters
    ----------
    ncsnr
        Noise-ceiling SNR, any shape.
    k
        ``mean_c(1/n_c)``, ``1`` (single trial) or ``1/n``; > 0.
    """
    s2 = np.square(np.asarray(ncsnr, np.float64))
    with np.errstate(invalid="ignore"):
        out = np.where(np.isinf(s2), 100.0, 100.0 * s2 / (s2 + k))
    return out.astype(np.float32)


def zscore_within(betas: np.ndarray, groups: Sequence | np.ndarray) -> np.ndarray:
    """Z-score each row of ``betas`` within each group of columns (``ddof=0``).

    Parameters
    ----------
    betas
        ``(V, N)`` betas (voxels × trials).
    groups
        ``(N,)`` group label of each trial (run or session).

    Returns
    -------
    numpy.ndarray
        ``(V, N)`` float64; a group with zero SD in a voxel gives 0 there.
    """
    betas = np.asarray(betas, np.float64)
    groups = np.asarray(groups)
    if groups.shape != (betas.shape[1],):
        raise ValueError(
            f"noise ceiling: expected one group label per trial ({betas.shape[1]}); found "
            f"{groups.shape[0] if groups.ndim else 0}"
        )
    out = np.empty_like(betas)
    for g in np.unique(groups):
        cols = groups == g
        block = betas[:, cols]
        mu = block.mean(axis=1, keepdims=True)
        sd = block.std(axis=1, keepdims=True)
        out[:, cols] = np.divide(block - mu, sd, out=np.zeros_like(block), where=sd > 0)
    return out


def noise_ceiling(
    betas: np.ndarray,
    labels: Sequence | np.ndarray,
    groups: Sequence | np.ndarray,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> NoiseCeiling:
    """Voxelwise noise ceiling of single-trial betas (NSD ncsnr method).

    Parameters
    ----------
    betas
        ``(V, N)`` single-trial betas (voxels × trials), any units.
    labels
        ``(N,)`` stimulus of each trial (hashable); stimuli shown once are ignored.
    groups
        ``(N,)`` z-scoring group of each trial (run for a session map, session for a
        subject map).
    chunk
        Voxels processed at a time (bounds memory).

    Returns
    -------
    NoiseCeiling

    Raises
    ------
    ValueError
        Shapes disagree, or no stimulus has 2 or more repeats.
    """
    betas = np.asarray(betas)
    if betas.ndim != 2:
        raise ValueError(f"noise ceiling: betas must be (voxels, trials); found {betas.shape}")
    labels = np.asarray(labels)
    if labels.shape != (betas.shape[1],):
        raise ValueError(
            f"noise ceiling: expected one stimulus label per trial ({betas.shape[1]}); found "
            f"{labels.shape}"
        )
    stimuli, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    used = counts >= 2
    if not used.any():
        raise ValueError(
            "noise ceiling: no stimulus is shown 2 or more times, so the noise variance "
            f"cannot be estimated ({len(stimuli)} stimuli, each once). Fix: pass all sessions "
            "or runs that repeat stimuli."
        )
    keep = used[inverse]
    # used-stimulus x trial indicator (sparse C x N): per-stimulus sums are one product
    col_of = np.cumsum(used) - 1
    n_keep = int(keep.sum())
    ind = sparse.csr_array(
        (np.ones(n_keep), (col_of[inverse[keep]], np.arange(n_keep))),
        shape=(int(used.sum()), n_keep),
    )
    n_c = counts[used].astype(np.float64)
    groups = np.asarray(groups)
    v = betas.shape[0]
    ncsnr = np.empty(v, np.float64)
    for start in range(0, v, max(1, int(chunk))):
        z = zscore_within(betas[start : start + chunk], groups)[:, keep]
        s1 = (ind @ z.T).T
        s2 = (ind @ (z * z).T).T
        var = (s2 - s1 * s1 / n_c) / (n_c - 1)
        noise = np.maximum(var.mean(axis=1), 0.0)
        signal = np.maximum(1.0 - noise, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = np.sqrt(signal) / np.sqrt(noise)
        snr[~np.any(z != 0, axis=1)] = 0.0  # constant betas: no signal either
        ncsnr[start : start + chunk] = snr
    k = float(np.mean(1.0 / n_c))
    reps, n_stim = np.unique(counts[used], return_counts=True)
    return NoiseCeiling(
        nc=nc_from_ncsnr(ncsnr, k),
        nc_single=nc_from_ncsnr(ncsnr, 1.0),
        ncsnr=ncsnr.astype(np.float32),
        mean_inverse_repeats=k,
        n_stimuli=int(used.sum()),
        repeat_counts={int(r): int(c) for r, c in zip(reps, n_stim, strict=True)},
    )


def expected_noise_ceiling(
    estimated: np.ndarray,
    true: np.ndarray,
    signal_sd: np.ndarray,
    trial_sd: np.ndarray,
    mean_inverse_repeats: float,
) -> np.ndarray:
    """Noise ceiling that estimated betas should show, given the simulation's truth.

    Per voxel, ``estimated = a + b true + e`` by least squares over trials; with ``s`` the true
    across-stimulus SD and ``t`` the true trial-to-trial SD, the expected ceiling is
    ``100 b^2 s^2 / (b^2 s^2 + (b^2 t^2 + var(e)) k)``, ``k = mean_inverse_repeats``
    (``docs/noise-ceiling.md`` §4).

    Parameters
    ----------
    estimated, true
        ``(V, N)`` estimated and true single-trial betas of the same trials.
    signal_sd, trial_sd
        ``(V,)`` true ``s`` and ``t``.
    mean_inverse_repeats
        ``k`` used for the estimate being checked.

    Returns
    -------
    numpy.ndarray
        ``(V,)`` float64 expected NC in percent (0 where ``b s`` is 0).
    """
    est = np.asarray(estimated, np.float64)
    tru = np.asarray(true, np.float64)
    tc = tru - tru.mean(axis=1, keepdims=True)
    ec = est - est.mean(axis=1, keepdims=True)
    ss = (tc * tc).sum(axis=1)
    b = np.divide((tc * ec).sum(axis=1), ss, out=np.zeros(len(ss)), where=ss > 0)
    resid = ec - b[:, None] * tc
    var_e = resid.var(axis=1, ddof=2)
    sig = (b * np.asarray(signal_sd, np.float64)) ** 2
    noise = ((b * np.asarray(trial_sd, np.float64)) ** 2 + var_e) * mean_inverse_repeats
    return np.divide(100.0 * sig, sig + noise, out=np.zeros(len(sig)), where=(sig + noise) > 0)


def roi_summary(
    nc: np.ndarray, r2: np.ndarray | None, rois: Mapping[str, np.ndarray]
) -> list[dict[str, float | int | str]]:
    """Per ROI: voxel count, median and mean NC, median R².

    Parameters
    ----------
    nc
        NC map (any shape, percent).
    r2
        R² map of the same shape (percent), or None.
    rois
        ROI name -> boolean mask of ``nc``'s shape.

    Returns
    -------
    list of dict
        Rows with keys ``roi``, ``voxels``, ``nc_median``, ``nc_mean``, ``r2_median`` (NaN
        for an empty ROI or without ``r2``).
    """
    rows: list[dict[str, float | int | str]] = []
    for name, mask in rois.items():
        mask = np.asarray(mask, bool)
        if mask.shape != nc.shape:
            raise ValueError(
                f"ROI {name!r}: mask shape {mask.shape} differs from the map's {nc.shape}; "
                "bring the mask into the functional grid first"
            )
        vals = nc[mask]
        empty = vals.size == 0
        rows.append(
            {
                "roi": name,
                "voxels": int(vals.size),
                "nc_median": float("nan") if empty else float(np.median(vals)),
                "nc_mean": float("nan") if empty else float(np.mean(vals)),
                "r2_median": float("nan") if empty or r2 is None else float(np.median(r2[mask])),
            }
        )
    return rows


def d_prime(values: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> float:
    """``(mean inside - mean outside) / pooled SD`` (SDs with ``ddof=1``, pooled by degrees of
    freedom); NaN when either side has fewer than 2 voxels or the pooled SD is 0."""
    a = np.asarray(values)[np.asarray(inside, bool)].astype(np.float64)
    b = np.asarray(values)[np.asarray(outside, bool)].astype(np.float64)
    if a.size < 2 or b.size < 2:
        return float("nan")
    pooled = np.sqrt(
        ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    )
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")
