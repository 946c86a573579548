"""Image-vs-blank statistics of single-trial betas for the visually responsive ROI.

Why not a t-test over trials: the single-trial betas of one run share that run's baseline
estimate (blank trials are the unmodelled baseline), its slow noise and, after ridge
regression, a shrinkage that keeps the run-common component longest. Their errors are
positively correlated within a run, so a one-sample t over trials that treats them as
independent is far too liberal (a large share of null voxels exceed t = 3). Runs, however, are
independent replicates: the baseline and the noise of one run have nothing to do with those of
another.

The run-level test (:func:`run_level_test`) is a one-way random-effects test of the mean:

- per run r, the run's mean response ``y_r = w_r' b_r``: by default the generalised-least-squares
  mean (:func:`run_weights`), with the correlation ``S_r`` of the trials' beta errors estimated
  pooled over voxels; in a fast design the plain mean of collinear least-squares betas is very
  noisy, the weighted one is in effect the run's ON-OFF amplitude;
- ``c_r = 1' S_r^-1 1`` (the run's effective number of independent trials), ``ybar`` the
  ``c``-weighted mean of the ``y_r``, ``MSB = sum_r c_r (y_r - ybar)^2 / (R - 1)`` (between
  runs, ``R - 1`` degrees of freedom) and ``MSW`` the whitened within-run variance
  ``sum_r e_r' S_r^-1 e_r / (N - R)`` (``e_r = b_r - y_r``); under the null
  ``E[MSB] = kappa * E[MSW]``, where the design effect ``kappa`` is 1 when ``S_r`` describes the
  trials' correlation fully and larger when runs differ more (baseline errors of a run, slow
  noise): runs are independent replicates, trials are not;
- ``t = ybar / sqrt(MSB / sum c)`` has ``R - 1`` degrees of freedom whatever the correlation of
  trials inside a run, but with 2 runs (1 degree of freedom) it has almost no power;
- so the ratio ``F = MSB / MSW`` (a per-voxel estimate of ``kappa``) is moderated with an
  empirical-Bayes prior estimated over all voxels (Smyth 2004, Stat Appl Genet Mol Biol 3:3, the
  ``limma`` method, applied to ``log F``): ``kappa~ = (d0 kappa0 + d F) / (d0 + d)``; the test
  uses ``t = ybar / sqrt(kappa~ MSW / sum c)`` with ``1 / (1 / (d0 + d) + 1 / d2)`` degrees of
  freedom (``d = R - 1``, ``d2 = N - R``): ``d`` when the voxels share nothing (``d0 = 0``),
  ``d2`` when every voxel has the same design effect (``d0`` infinite).

One-sided p-values (responses above the blank baseline) then go through a Benjamini-Hochberg
false-discovery-rate threshold (:func:`fdr_mask`) or a Bonferroni family-wise threshold.

:func:`leave_one_run_out_t` is the former statistic (minimum over leave-one-run-out folds of the
trial-level t); it is kept for one-run sessions, where no between-run variance exists, and for
comparison. Pure array code: no file I/O, no logging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

#: Corrections of :func:`select_responsive`.
CORRECTIONS = ("fdr", "bonferroni")
#: Prior degrees of freedom above this are treated as infinite (every voxel shares kappa0).
MAX_PRIOR_DF = 1e6
#: Weightings of a run's trials in :func:`run_level_test`.
WEIGHTINGS = ("gls", "mean")
#: Minimum shrinkage of the pooled trial correlation towards the identity (:func:`run_weights`).
DEFAULT_SHRINKAGE = 0.05


@dataclass(frozen=True)
class RunLevelTest:
    """Result of :func:`run_level_test`.

    Attributes
    ----------
    mean
        ``(V,)`` mean beta over all image trials (% signal change, relative to the blank
        baseline).
    t
        ``(V,)`` moderated run-level t; NaN where undefined (constant betas).
    p
        ``(V,)`` one-sided p-value of ``t`` (effect above the blank baseline); NaN where ``t`` is.
    f
        ``(V,)`` ``MSB / MSW``: the voxel's own estimate of the design effect.
    df
        Degrees of freedom of ``t`` (float; the same for every voxel).
    prior_df
        ``d0`` of the empirical-Bayes prior on the design effect (``inf``: one design effect for
        all voxels).
    design_effect
        ``kappa0``: typical ``Var(run mean) * n_r / Var(trial)`` under the null (1 for
        independent trials; above 1 when trials of a run are positively correlated).
    runs
        Number of runs ``R``.
    effective_trials
        ``sum_r 1' S_r^-1 1``: independent trials the weighted mean is worth (``N`` for
        ``weighting="mean"``).
    """

    mean: np.ndarray
    t: np.ndarray
    p: np.ndarray
    f: np.ndarray
    df: float
    prior_df: float
    design_effect: float
    runs: int
    effective_trials: float


def _check(betas: np.ndarray, runs: Sequence | np.ndarray, name: str) -> tuple[np.ndarray, ...]:
    b = np.asarray(betas)
    if not np.issubdtype(b.dtype, np.floating):
        b = b.astype(np.float64)
    r = np.asarray(runs)
    if b.ndim != 2 or r.shape != (b.shape[1],):
        raise ValueError(
            f"{name}: expected (V, N) betas and N run labels; found {b.shape} and {r.shape}"
        )
    return b, r


def _trigamma_inverse(y: float) -> float:
    """``x`` with ``trigamma(x) = y`` (``y > 0``; Newton iterations of Smyth 2004)."""
    if y > 1e7:
        return 1.0 / np.sqrt(y)
    if y < 1e-6:
        return 1.0 / y
    x = 0.5 + 1.0 / y
    for _ in range(50):
        tri = float(special.polygamma(1, x))
        step = tri * (1.0 - tri / y) / float(special.polygamma(2, x))
        x += step
        if -step / x < 1e-8:
            break
    return float(x)


def moderation_prior(log_f: np.ndarray, d: int, d2: int) -> tuple[float, float]:
    """Empirical-Bayes prior ``(d0, kappa0)`` of the design effect from the voxels' ``log F``.

    Model: ``F_v = kappa_v * (chi2_d / d) / (chi2_d2 / d2)`` with ``1 / kappa_v`` distributed as
    ``chi2_d0 / (d0 kappa0)``. Moments of ``log F`` (Smyth 2004, section 6.2, with the extra
    ``chi2_d2`` term of the within-run variance).

    Parameters
    ----------
    log_f
        ``(V,)`` finite ``log(MSB / MSW)``.
    d, d2
        Between-run and within-run degrees of freedom.

    Returns
    -------
    tuple of float
        ``d0`` (``inf`` when the spread of ``log F`` is no larger than sampling alone gives) and
        ``kappa0``.
    """
    x = np.asarray(log_f, np.float64)
    x = x[np.isfinite(x)]
    if x.size < 3:
        raise ValueError(f"moderation_prior: expected at least 3 finite values; found {x.size}")
    offset = (special.digamma(d / 2) - np.log(d / 2)) - (special.digamma(d2 / 2) - np.log(d2 / 2))
    e = x - offset
    extra = (
        float(np.var(e, ddof=1))
        - float(special.polygamma(1, d / 2))
        - float(special.polygamma(1, d2 / 2))
    )
    if extra <= 0:
        return np.inf, float(np.exp(e.mean()))
    d0 = 2.0 * _trigamma_inverse(extra)
    if d0 > MAX_PRIOR_DF:
        return np.inf, float(np.exp(e.mean()))
    kappa0 = float(np.exp(e.mean() + special.digamma(d0 / 2) - np.log(d0 / 2)))
    return float(d0), kappa0


def run_weights(
    betas: np.ndarray, center: np.ndarray, *, shrinkage: float = DEFAULT_SHRINKAGE
) -> tuple[np.ndarray, np.ndarray, float]:
    """Generalised-least-squares weights of one run's trials for its mean response.

    The ``(m, m)`` correlation of the trials' beta errors is estimated pooled over voxels (each
    voxel's betas minus ``center``, divided by its SD over the run), shrunk towards the identity
    (``lambda = max(shrinkage, m / V)``) and inverted: ``S^-1``. The weights
    ``w = S^-1 1 / (1' S^-1 1)`` give the run's best linear unbiased mean; in a fast design with
    ordinary least-squares single-trial betas (errors ``~ (X'X)^-1``) this is the ON-OFF
    amplitude ``1'X'y / 1'X'X1``, far less noisy than the plain mean of the collinear trials.

    Parameters
    ----------
    betas
        ``(V, m)`` single-trial betas of the run's ``m`` trials.
    center
        ``(V,)`` value subtracted before the correlation (the voxels' mean over all runs).
    shrinkage
        Minimum shrinkage towards the identity, in ``[0, 1]``.

    Returns
    -------
    tuple
        ``w`` ``(m,)`` (sums to 1), ``S^-1`` ``(m, m)`` and ``c = 1' S^-1 1`` (the run's
        effective number of independent trials).
    """
    x = np.asarray(betas, np.float64) - np.asarray(center, np.float64)[:, None]
    v, m = x.shape
    sd = x.std(axis=1, ddof=1) if m > 1 else np.zeros(v)
    use = np.isfinite(sd) & (sd > 0)
    one = np.ones(m)
    if m < 2 or use.sum() < 2:
        return one / m, np.eye(m), float(m)
    z = x[use] / sd[use, None]
    corr = z.T @ z / z.shape[0]
    lam = float(min(1.0, max(shrinkage, m / z.shape[0])))
    corr = (1 - lam) * corr + lam * np.eye(m) * (np.trace(corr) / m)
    inv = np.linalg.inv(corr)
    inv = 0.5 * (inv + inv.T)
    c = float(one @ inv @ one)
    return inv @ one / c, inv, c


def run_level_test(
    betas: np.ndarray,
    runs: Sequence | np.ndarray,
    *,
    weighting: str = "gls",
    shrinkage: float = DEFAULT_SHRINKAGE,
) -> RunLevelTest:
    """Moderated run-level test of the image-vs-blank effect (see the module docstring).

    Parameters
    ----------
    betas
        ``(V, N)`` single-trial betas of the image trials (% signal change relative to the
        blank baseline), V voxels (at least 3 with finite, non-constant betas). Betas from a
        least-squares fit (GLMsingle type B): ridge-regularised and autoscaled betas (type D)
        share a per-voxel offset across runs, which makes runs look more alike than they are.
    runs
        ``(N,)`` run label of each trial; at least 2 runs, and more trials than runs.
    weighting
        ``gls`` (:func:`run_weights`, the default) or ``mean`` (plain mean of a run's trials).
    shrinkage
        Minimum shrinkage of the trial correlation (``gls``).

    Returns
    -------
    RunLevelTest

    Raises
    ------
    ValueError
        Bad shapes, fewer than 2 runs, no trial left for the within-run variance (``N <= R``),
        or fewer than 3 usable voxels.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(
            f"run_level_test: weighting must be one of {WEIGHTINGS}; got {weighting!r}"
        )
    b, r = _check(betas, runs, "run_level_test")
    labels, inverse = np.unique(r, return_inverse=True)
    n_runs, n = len(labels), b.shape[1]
    if n_runs < 2:
        raise ValueError(f"run_level_test: expected at least 2 runs; found {n_runs}")
    if n <= n_runs:
        raise ValueError(
            f"run_level_test: expected more trials than runs; found {n} trials in {n_runs} runs"
        )
    d, d2 = n_runs - 1, n - n_runs
    # run by run (bounded memory: one run's betas in float64 at a time)
    finite = np.ones(b.shape[0], bool)
    total = np.zeros(b.shape[0])
    for k in range(n_runs):
        x = b[:, inverse == k]
        finite &= np.isfinite(x).all(axis=1)
        total += np.nan_to_num(x).sum(axis=1, dtype=np.float64)
    center = np.where(finite, total / n, 0.0)
    y = np.empty((b.shape[0], n_runs))
    c = np.empty(n_runs)
    ssw = np.zeros(b.shape[0])
    for k in range(n_runs):
        x = np.nan_to_num(b[:, inverse == k].astype(np.float64))
        m = x.shape[1]
        if weighting == "gls":
            w, inv, c[k] = run_weights(x[finite], center[finite], shrinkage=shrinkage)
        else:
            w, inv, c[k] = np.ones(m) / m, np.eye(m), float(m)
        y[:, k] = x @ w
        res = x - y[:, k : k + 1]
        ssw += np.einsum("vi,ij,vj->v", res, inv, res)
    grand = (y * c).sum(axis=1) / c.sum()
    msb = (np.square(y - grand[:, None]) * c).sum(axis=1) / d
    msw = ssw / d2
    ok = finite & (msw > 0) & (msb > 0) & np.isfinite(msw) & np.isfinite(msb)
    if ok.sum() < 3:
        raise ValueError(
            f"run_level_test: expected at least 3 voxels with finite, non-constant betas; found "
            f"{int(ok.sum())}"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(ok, msb / msw, np.nan)
    d0, kappa0 = moderation_prior(np.log(f[ok]), d, d2)
    if np.isinf(d0):
        kappa = np.full_like(f, kappa0)
        df = float(d2)
    else:
        kappa = (d0 * kappa0 + d * f) / (d0 + d)
        df = float(1.0 / (1.0 / (d0 + d) + 1.0 / d2))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(ok, grand / np.sqrt(kappa * msw / c.sum()), np.nan)
    p = np.where(ok, stats.t.sf(np.nan_to_num(t), df), np.nan)
    return RunLevelTest(
        mean=grand,
        t=t,
        p=p,
        f=f,
        df=df,
        prior_df=float(d0),
        design_effect=float(kappa0),
        runs=n_runs,
        effective_trials=float(c.sum()),
    )


def fdr_mask(p: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Benjamini-Hochberg selection at false-discovery rate ``alpha``.

    Parameters
    ----------
    p
        ``(V,)`` p-values; NaN ones are never selected and do not count as tests.
    alpha
        FDR level in ``(0, 1)``.

    Returns
    -------
    tuple
        ``(V,)`` boolean selection and the p-value cut-off (0 when nothing is selected).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"fdr_mask: alpha must be in (0, 1); got {alpha!r}")
    p = np.asarray(p, np.float64)
    finite = np.isfinite(p)
    ps = np.sort(p[finite])
    m = ps.size
    below = ps <= alpha * np.arange(1, m + 1) / max(m, 1)
    cut = float(ps[np.flatnonzero(below)[-1]]) if below.any() else 0.0
    return finite & (np.nan_to_num(p, nan=2.0) <= cut) & below.any(), cut


def select_responsive(
    p: np.ndarray, alpha: float, correction: str = "fdr"
) -> tuple[np.ndarray, float]:
    """Voxels whose one-sided p-value passes ``correction`` at level ``alpha``.

    Parameters
    ----------
    p
        ``(V,)`` p-values (NaN: untestable, never selected).
    alpha
        FDR (``fdr``, Benjamini-Hochberg) or family-wise error (``bonferroni``) level.
    correction
        One of :data:`CORRECTIONS`.

    Returns
    -------
    tuple
        ``(V,)`` boolean selection and the p-value cut-off.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"select_responsive: correction must be one of {CORRECTIONS}")
    if correction == "fdr":
        return fdr_mask(p, alpha)
    if not 0 < alpha < 1:
        raise ValueError(f"select_responsive: alpha must be in (0, 1); got {alpha!r}")
    p = np.asarray(p, np.float64)
    cut = alpha / max(int(np.isfinite(p).sum()), 1)
    return np.nan_to_num(p, nan=2.0) <= cut, float(cut)


def leave_one_run_out_t(betas: np.ndarray, runs: Sequence | np.ndarray) -> np.ndarray:
    """Minimum over folds of the one-sample t-value of the betas of the other runs.

    Treats trials as independent: not calibrated when the betas of a run are correlated (use
    :func:`run_level_test` with 2 runs or more).

    Parameters
    ----------
    betas
        ``(V, N)`` single-trial betas of image trials (relative to the blank baseline).
    runs
        ``(N,)`` run label of each trial.

    Returns
    -------
    numpy.ndarray
        ``(V,)`` float64 ``min_r t_-r``, ``t_-r = mean / (SD / sqrt(n))`` over the trials not
        in run r (SD ``ddof=1``). With one run: the t-value of all trials. NaN where a fold's SD
        is 0 or a fold has fewer than 2 trials.
    """
    b, runs = _check(betas, runs, "leave_one_run_out_t")
    b = b.astype(np.float64, copy=False)
    labels = np.unique(runs)
    s1 = b.sum(axis=1)
    s2 = np.square(b).sum(axis=1)
    n_all = b.shape[1]
    folds = [None] if len(labels) < 2 else list(labels)
    out = np.full(b.shape[0], np.inf)
    undefined = np.zeros(b.shape[0], bool)
    for r in folds:
        if r is None:
            a1, a2, n = s1, s2, n_all
        else:
            cols = runs == r
            a1 = s1 - b[:, cols].sum(axis=1)
            a2 = s2 - np.square(b[:, cols]).sum(axis=1)
            n = n_all - int(cols.sum())
        if n < 2:
            return np.full(b.shape[0], np.nan)
        mean = a1 / n
        var = np.maximum((a2 - n * mean * mean) / (n - 1), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(var > 0, mean / np.sqrt(var / n), np.nan)
        undefined |= np.isnan(t)
        out = np.fmin(out, t)
    out[undefined] = np.nan
    return out


__all__ = [
    "CORRECTIONS",
    "DEFAULT_SHRINKAGE",
    "WEIGHTINGS",
    "RunLevelTest",
    "fdr_mask",
    "leave_one_run_out_t",
    "moderation_prior",
    "run_level_test",
    "run_weights",
    "select_responsive",
]
