"""Seeded synthetic single-trial sessions with ground truth (for tests and benchmarks).

Model per voxel ``v`` and run (raw units):

``y(t) = b_v * (1 + (sum_j beta_vj h_v(t - o_j) + physio_v(t) + drift_v(t)) / 100) + noise``

- ``b_v``: baseline, about 1000 in "brain" voxels and 40 outside (noise only there);
- ``beta_vj`` (% signal change): in active voxels, the condition's response in that voxel plus
  trial-to-trial variability; 0 elsewhere;
- ``h_v``: one of the library HRFs (peak 1), drawn per voxel;
- ``physio``: a few smooth time courses per run shared by all brain voxels with voxel-specific
  loadings (the structured noise GLMdenoise is meant to capture);
- ``drift``: a slow linear-plus-quadratic trend per voxel and run;
- ``noise``: white Gaussian, ``noise_pct`` % of the baseline (``noise_pct / 100 * 40`` outside).

Trials: ``n_conditions x repeats``, each repeat of a condition in a different run where possible,
spread evenly over each run with jitter and at least ``end_buffer_s`` of data after the last onset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from echoprep.kernels.glm.design import convolved_trials
from echoprep.kernels.glm.hrf import hrf_library


@dataclass(frozen=True)
class SyntheticSession:
    """A synthetic session.

    Attributes
    ----------
    design
        ``R`` arrays ``T_r x C`` of 0/1.
    data
        ``R`` float32 arrays ``S x T_r`` (``S`` = ``spatial_shape``).
    true_betas
        ``(V, N)`` float32 true single-trial responses (% signal change), chronological trials.
    trial_condition
        ``(N,)`` 0-based condition per trial (chronological).
    trial_run
        ``(N,)`` 0-based run per trial.
    active, brain
        ``(V,)`` bool masks.
    hrf_index
        ``(V,)`` library HRF used per voxel.
    stimdur, tr
        Seconds.
    """

    design: list[np.ndarray]
    data: list[np.ndarray]
    true_betas: np.ndarray
    trial_condition: np.ndarray
    trial_run: np.ndarray
    active: np.ndarray
    brain: np.ndarray
    hrf_index: np.ndarray
    stimdur: float
    tr: float


def make_design(
    n_runs: int,
    run_lengths: list[int],
    n_conditions: int,
    repeats: int,
    tr: float,
    rng: np.random.Generator,
    end_buffer_s: float = 10.0,
    min_spacing: int = 2,
) -> list[np.ndarray]:
    """Random event design: ``n_conditions * repeats`` trials spread over the runs.

    Repeats of a condition go to different runs while ``repeats <= n_runs``. Within a run,
    onsets are evenly spaced with jitter, at least ``min_spacing`` volumes apart (on average; a
    fast design such as LAION-fMRI's 88 trials in 163 volumes needs 1).
    """
    n_trials = n_conditions * repeats
    # condition list per run: deal repeat k of every condition to runs in rotation
    per_run: list[list[int]] = [[] for _ in range(n_runs)]
    order = rng.permutation(n_conditions)
    slot = 0
    for _k in range(repeats):
        for c in order:
            per_run[slot % n_runs].append(int(c))
            slot += 1
        order = rng.permutation(n_conditions)
    design = []
    for r in range(n_runs):
        t = run_lengths[r]
        conds = rng.permutation(per_run[r])
        n = conds.size
        last = t - 1 - math.ceil(end_buffer_s / tr)
        first = 2
        if n == 0:
            raise ValueError("a run received no trials; use fewer runs or more trials")
        span = (last - first) / n
        if span < min_spacing:
            raise ValueError(
                f"{n} trials do not fit in a run of {t} volumes with {min_spacing}-volume spacing"
            )
        base = first + np.floor(np.arange(n) * span).astype(int)
        jitter = rng.integers(0, max(1, int(span) - 1), size=n)
        onsets = np.minimum(base + jitter, last)
        m = np.zeros((t, n_conditions))
        m[onsets, conds] = 1.0
        design.append(m)
    assert sum(int(m.sum()) for m in design) == n_trials
    return design


def make_session(
    spatial_shape: tuple[int, ...],
    run_lengths: list[int],
    n_conditions: int,
    repeats: int,
    *,
    stimdur: float = 3.0,
    tr: float = 1.9,
    seed: int = 0,
    brain_fraction: float = 0.6,
    active_fraction: float = 0.4,
    response_pct: float = 2.0,
    trial_sd_pct: float = 0.5,
    noise_pct: float = 1.5,
    physio_pct: float = 1.0,
    n_physio: int = 6,
    block_voxels: int = 16384,
    min_spacing: int = 2,
) -> SyntheticSession:
    """Generate a session (see the module docstring); float32 data, generated in voxel blocks.

    Parameters
    ----------
    spatial_shape
        ``(X, Y, Z)`` or ``(V,)``.
    run_lengths
        Volumes per run.
    n_conditions, repeats
        Conditions and presentations of each.
    response_pct, trial_sd_pct
        SD of the condition responses across conditions and voxels (around a mean of
        ``response_pct / 2``) and of the trial-to-trial variability (% signal change).
    noise_pct, physio_pct
        White-noise SD and SD of the physiological loadings (% of baseline).
    """
    rng = np.random.default_rng(seed)
    n_runs = len(run_lengths)
    n_vox = math.prod(spatial_shape)
    design = make_design(
        n_runs, run_lengths, n_conditions, repeats, tr, rng, min_spacing=min_spacing
    )
    lib = hrf_library(stimdur, tr)
    onsets, conds, runs_of = [], [], []
    for r, m in enumerate(design):
        t, c = np.nonzero(m)
        onsets.append(t)
        conds.append(c)
        runs_of.append(np.full(t.size, r))
    trial_condition = np.concatenate(conds)
    trial_run = np.concatenate(runs_of)
    n_trials = trial_condition.size

    # a smooth "brain" blob (first voxels in C order are not special)
    u = rng.random(n_vox)
    brain = u < brain_fraction
    active = brain & (rng.random(n_vox) < active_fraction / max(brain_fraction, 1e-9))
    hrf_index = rng.integers(0, lib.shape[1], n_vox)
    baseline = np.where(brain, 1000.0 * (0.8 + 0.4 * rng.random(n_vox)), 40.0)
    cond_resp = np.zeros((n_vox, n_conditions), dtype=np.float32)
    na = int(active.sum())
    cond_resp[active] = (
        response_pct / 2 + response_pct * rng.standard_normal((na, n_conditions))
    ).astype(np.float32)
    true_betas = cond_resp[:, trial_condition]
    true_betas[active] += (trial_sd_pct * rng.standard_normal((na, n_trials))).astype(np.float32)
    physio_load = np.where(brain[:, None], physio_pct * rng.standard_normal((n_vox, n_physio)), 0)

    data = []
    for r, t in enumerate(run_lengths):
        sl = trial_run == r
        xs = np.stack(
            [convolved_trials(onsets[r], lib[:, h], t) for h in range(lib.shape[1])]
        )  # (H, T, n_r)
        tt = np.linspace(-1, 1, t)
        phys = np.cumsum(rng.standard_normal((t, n_physio)), axis=0)
        phys -= phys.mean(axis=0)
        phys /= phys.std(axis=0)
        drift_coef = rng.standard_normal((n_vox, 2)) * np.array([1.0, 0.5])
        out = np.empty((n_vox, t), dtype=np.float32)
        for v0 in range(0, n_vox, block_voxels):
            v1 = min(n_vox, v0 + block_voxels)
            hb = hrf_index[v0:v1]
            sig = np.zeros((v1 - v0, t))
            tb = true_betas[v0:v1][:, sl].astype(np.float64)
            for h in np.unique(hb):
                rows = np.flatnonzero(hb == h)
                sig[rows] = tb[rows] @ xs[h].T
            pct = sig + physio_load[v0:v1] @ phys.T
            pct += drift_coef[v0:v1, :1] * tt + drift_coef[v0:v1, 1:] * (tt**2 - 1 / 3)
            base = baseline[v0:v1, None]
            noise = rng.standard_normal((v1 - v0, t)) * (noise_pct / 100.0)
            noise *= np.where(brain[v0:v1, None], base, 40.0)
            out[v0:v1] = base * (1.0 + pct / 100.0) + noise
        data.append(out.reshape(*spatial_shape, t))
    return SyntheticSession(
        design=design,
        data=data,
        true_betas=true_betas,
        trial_condition=trial_condition,
        trial_run=trial_run,
        active=active,
        brain=brain,
        hrf_index=hrf_index,
        stimdur=float(stimdur),
        tr=float(tr),
    )
