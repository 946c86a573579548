"""Cross-validation metric ("badness") shared by GLMdenoise (type C) and ridge (type D).

Given ``L`` sets of single-trial betas from one fit each (hyperparameter levels; set 0 is the
unregularised reference), with trials z-scored per session using the set-0 mean and SD
(ddof 1), the badness of level ``l`` for a voxel is

    sum over folds F, test trials i (runs in F), training trials j (runs not in F) of the same
    condition:  (z_j^l - z_i^0)²

(summed squared error in z units; lower is better). Test trials without a training repeat
contribute nothing. Expanding the square gives, per voxel,

    badness^l = sum_j a_j (z_j^l)² - 2 sum_j E_j z_j^l + sum_i w_i (z_i^0)²

with static trial weights ``a_j`` (test repeats of j's condition, summed over the folds in which
j trains), ``w_i`` (training repeats, summed over the folds in which i is tested) and
``E = z^0 B`` where ``B_ij`` counts the folds in which i tests and j trains with the same
condition (sparse). So each level costs a few element-wise passes over ``V x N``, with no loop
over trials or folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class CrossValidation:
    """Static fold weights of a design (see the module docstring).

    Attributes
    ----------
    a
        ``(N,)`` float64 weight of ``(z_j^l)²``.
    w
        ``(N,)`` float64 weight of ``(z_i^0)²``.
    b
        ``(N, N)`` sparse CSR fold-pair counts (test i, train j, same condition).
    sessions
        Per session, the trial indices it holds (z-scoring groups).
    n_trials
        ``N``.
    """

    a: np.ndarray
    w: np.ndarray
    b: sp.csr_matrix
    sessions: tuple[np.ndarray, ...]
    n_trials: int

    @property
    def informative(self) -> bool:
        """Whether any test trial has a training repeat."""
        return bool(self.b.nnz)


def build_cross_validation(
    trialrun: np.ndarray,
    stimorder: np.ndarray,
    folds: Sequence[np.ndarray],
    run_session: np.ndarray,
) -> CrossValidation:
    """Fold weights for trials with runs ``trialrun`` and conditions ``stimorder``.

    Parameters
    ----------
    trialrun, stimorder
        ``(N,)`` int: 0-based run and condition of each trial.
    folds
        Test runs of each fold (0-based run indices); the other runs train.
    run_session
        ``(R,)`` session label of each run (any integers).
    """
    n = trialrun.size
    a = np.zeros(n)
    w = np.zeros(n)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    n_cond = int(stimorder.max()) + 1 if n else 0
    for fold in folds:
        test = np.isin(trialrun, np.asarray(fold))
        train = ~test
        ntest = np.bincount(stimorder[test], minlength=n_cond)
        ntrain = np.bincount(stimorder[train], minlength=n_cond)
        a += np.where(train, ntest[stimorder], 0)
        w += np.where(test, ntrain[stimorder], 0)
        ti = np.flatnonzero(test)
        tj = np.flatnonzero(train)
        order = np.argsort(stimorder[tj], kind="stable")
        tj_sorted = tj[order]
        cj = stimorder[tj_sorted]
        start = np.searchsorted(cj, stimorder[ti], side="left")
        stop = np.searchsorted(cj, stimorder[ti], side="right")
        lens = stop - start
        total = int(lens.sum())
        if total:
            rows.append(np.repeat(ti, lens))
            offs = np.repeat(start - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
            cols.append(tj_sorted[np.arange(total) + offs])
    if rows:
        r = np.concatenate(rows)
        c = np.concatenate(cols)
        b = sp.coo_matrix((np.ones(r.size), (r, c)), shape=(n, n)).tocsr()
        b.sum_duplicates()
    else:
        b = sp.csr_matrix((n, n))
    run_session = np.asarray(run_session)
    trial_session = run_session[trialrun]
    sessions = tuple(np.flatnonzero(trial_session == s) for s in np.unique(run_session))
    return CrossValidation(a=a, w=w, b=b, sessions=sessions, n_trials=n)


@dataclass(frozen=True)
class Reference:
    """Set-0 quantities of one voxel group: z-scoring per session and the fixed terms.

    Attributes
    ----------
    mu, inv_sd
        ``(V, S)`` float64 per-session mean and ``1/SD`` (0 where SD is 0 or undefined).
    e
        ``(V, N)`` float64 ``z^0 B``.
    const
        ``(V,)`` float64 ``sum_i w_i (z_i^0)²``.
    """

    mu: np.ndarray
    inv_sd: np.ndarray
    e: np.ndarray
    const: np.ndarray


def zscore(beta: np.ndarray, cv: CrossValidation, mu: np.ndarray, inv_sd: np.ndarray) -> np.ndarray:
    """``(V, N)`` float64 betas z-scored with per-session ``mu`` and ``inv_sd``."""
    z = np.empty(beta.shape, dtype=np.float64)
    for s, idx in enumerate(cv.sessions):
        if len(cv.sessions) == 1:
            np.subtract(beta, mu[:, :1], out=z)
            z *= inv_sd[:, :1]
        else:
            z[:, idx] = (beta[:, idx] - mu[:, s : s + 1]) * inv_sd[:, s : s + 1]
    return z


def reference(beta0: np.ndarray, cv: CrossValidation) -> Reference:
    """Set-0 statistics of betas ``(V, N)`` (the unregularised fit)."""
    v = beta0.shape[0]
    n_s = len(cv.sessions)
    mu = np.zeros((v, n_s))
    inv_sd = np.zeros((v, n_s))
    for s, idx in enumerate(cv.sessions):
        x = beta0[:, idx].astype(np.float64)
        mu[:, s] = x.mean(axis=1)
        if idx.size > 1:
            sd = np.sqrt(((x - mu[:, s : s + 1]) ** 2).sum(axis=1) / (idx.size - 1))
            ok = sd > 0
            inv_sd[ok, s] = 1.0 / sd[ok]
    z0 = zscore(beta0, cv, mu, inv_sd)
    e = np.asarray(cv.b.T @ z0.T).T  # (V, N) = z0 @ B
    const = (z0 * z0) @ cv.w
    return Reference(mu=mu, inv_sd=inv_sd, e=np.ascontiguousarray(e), const=const)


def badness(beta: np.ndarray, cv: CrossValidation, ref: Reference) -> np.ndarray:
    """``(V,)`` float64 badness of one level's betas ``(V, N)`` against the reference."""
    z = zscore(beta, cv, ref.mu, ref.inv_sd)
    out = (z * z) @ cv.a
    out -= 2.0 * np.einsum("ij,ij->i", ref.e, z)
    out += ref.const
    return out
