"""Orchestration of the GLMsingle engine: types A (ON-OFF), B (FITHRF), C (GLMdenoise) and
D (ridge), chunked over voxels.

Passes over the data (each reads one voxel chunk of one run at a time, as float32, and removes
the run's polynomials, giving ``yw``):

1. type A: voxel means, ``|yw|²`` per run, ON-OFF fit with the canonical HRF;
2. (GLMdenoise) the noise pool's ``T_r x T_r`` matrices for the per-run PCs;
3. type B: ``d_h = yw @ X_h`` for all library HRFs at once from the banded single-trial design
   (one ``H x m`` by ``m x voxels`` product per trial, :func:`~.fit.trial_products`), then per
   HRF and run the whitened coefficients ``t = (d - e m') W diag(1/s)`` and the fitted sum of
   squares; only R² is kept per HRF. The betas and ``d`` of the chosen HRF are recomputed per
   HRF group (one GEMM per run), and ``e = yw @ q`` (extra regressors and PCs) is kept.
   Then, per HRF group, the GLMdenoise cross-validation from ``d`` and ``e`` alone
   (:func:`_xval_group`: one small eigendecomposition per run and number of PCs).

Types C and D need no further data access: per HRF group and voxel block, the SVD of the
projected design (one per run) gives the OLS betas, and the whole ridge-fraction path comes from
the same rotated coefficients (vectorised penalty search, :mod:`.ridge`; badness from
per-trial weights, :mod:`.xval`).

Memory: the caller's data; the single-trial outputs (three ``V x N`` float32 arrays; the type-C
array holds ``d`` until the C/D pass); ``V x R x H`` float32 for ``FitHRFR2run`` (optional);
``V x R x (k + n_pcs)`` for ``e``; and per chunk ``chunklen x sum(T_r)`` float32 of data plus
``chunklen x R x H`` float64 of residual sums of squares. Voxel blocks inside a chunk bound the
other temporaries (:data:`SUBBLOCK_ELEMENTS`, :data:`BLOCK_ELEMENTS`). Results do not depend on
``chunklen`` beyond float32 rounding.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from echoprep.kernels.glm.data import (
    VoxelData,
    as_voxel_data,
    check_finite,
    project_polynomials,
    sum_squares,
)
from echoprep.kernels.glm.design import (
    MIN_END_BUFFER_S,
    TrialDesign,
    as_run_list,
    convolved_trials,
    orthonormal_extension,
    polynomial_basis,
    trial_design,
)
from echoprep.kernels.glm.fit import (
    RunSolver,
    gram_pinv_eigh,
    lss_betas,
    r2_percent,
    solver,
    sse,
    trial_products,
)
from echoprep.kernels.glm.noise import noise_pool, normalised_rows, principal_components
from echoprep.kernels.glm.options import GlmOptions, resolve_options
from echoprep.kernels.glm.ridge import autoscale, fraction_alphas, shrinkage
from echoprep.kernels.glm.threshold import tail_threshold
from echoprep.kernels.glm.xval import (
    CrossValidation,
    badness,
    build_cross_validation,
    reference,
)
from echoprep.kernels.threads import blas_limits

log = logging.getLogger(__name__)

#: Elements of a ``voxels x trials`` float64 temporary in the cross-validation (bounds the
#: voxel block size; results do not depend on it).
BLOCK_ELEMENTS = 2_000_000
#: Elements of the ``trials x HRFs x voxels`` products of one run in the type-B pass (bounds
#: its voxel sub-blocks).
SUBBLOCK_ELEMENTS = 8_000_000
#: Lower bound of a ridge penalty in the vectorised fraction path (keeps dropped components,
#: whose coefficient is 0, at 0 instead of 0/0).
TINY_ALPHA = 1e-30
#: Voxels used for the xval summary when none pass ``pcR2cutoff``.
FALLBACK_PCVOXELS = 100


@dataclass
class _Plan:
    """What will be computed."""

    glmdenoise: bool
    ridge: bool
    xval_pcs: bool
    fixed_pcnum: int | None
    want: tuple[bool, bool, bool, bool]
    fit_fracs: np.ndarray
    selectable: np.ndarray
    cv: CrossValidation

    @property
    def final_pass(self) -> bool:
        return (self.glmdenoise and self.want[2]) or (self.ridge and self.want[3])


@dataclass
class _Setup:
    td: TrialDesign
    vox: VoxelData
    opts: GlmOptions
    poly: list[np.ndarray]
    qe: list[np.ndarray]
    onsets: list[np.ndarray]

    @property
    def n_runs(self) -> int:
        return self.td.n_runs

    def read_projected(self, r: int, v0: int, v1: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk of run r with polynomials removed, and the voxel means."""
        y = self.vox.read(r, v0, v1)
        mean = project_polynomials(y, self.poly[r])
        return y, mean

    def poly_project(self, r: int, x: np.ndarray) -> np.ndarray:
        p = self.poly[r]
        return x - p @ (p.T @ x)


def fit_glmsingle(
    design: Any, data: Any, stimdur: float, tr: float, **options: Any
) -> dict[str, Any]:
    """Single-trial betas with GLMsingle's FITHRF_GLMDENOISE_RR (types A-D), in memory.

    Our implementation of ``shared/specs/glmsingle.md`` (GLMsingle-compatible semantics, key
    names and shapes; 0-based HRF indices), with these decisions:

    - ``brainexclude`` True/1 means *exclude* (MATLAB semantics) and accepts a mask;
    - ``xvalscheme`` accepts plain lists; runs are 0-based;
    - every run is checked for NaN/Inf (``ValueError`` naming runs and voxel counts);
    - a design/data length mismatch is an error (GLMsingle truncates with a warning);
    - user ``extra_regressors`` are nuisance terms in every fit (types A-D, every PC level,
      including the 0-PC baseline of the cross-validation);
    - the tail threshold is a seeded mixture fit; ``brainR2``/``pcR2cutoff`` may be fixed;
    - nothing is written to disk.

    Parameters
    ----------
    design
        List of ``R`` matrices ``T_r x C`` of 0/1 (dense or scipy.sparse); a 1 at ``(t, c)``
        is a trial of condition c starting at volume t. One matrix = one run. Every run needs
        at least one trial and the same C; at most one onset per volume.
    data
        List of ``R`` arrays ``X x Y x Z x T_r`` or ``V x T_r`` (raw units, any real dtype,
        used as float32). One array = one run.
    stimdur
        Duration of each trial's neural event (s); 0 counts as 0.1 s.
    tr
        Sampling interval (s).
    **options
        GLMsingle's option names:

        - ``wantlibrary`` (1): per-voxel HRF from ``hrflibrary``; 0: ``hrftoassume`` everywhere.
        - ``wantglmdenoise`` (1): GLMdenoise PCs, type C.
        - ``wantfracridge`` (1): per-voxel fractional ridge, type D.
        - ``wantlss`` (0): type-B betas by least-squares-separate (each trial against the sum
          of the other trials of its run); R² and HRF choice stay OLS.
        - ``wantmemoryoutputs`` ([1, 1, 1, 1]): which of types A-D are returned.
        - ``wantpercentbold`` (1): types A/B in % of ``|meanvol|`` (C/D always are).
        - ``wantautoscale`` (1): type-D scale/offset onto the unregularised betas.
        - ``wantfithrfr2run`` (1, ours): return ``FitHRFR2run`` (``V x R x H`` float32); 0 saves
          that memory for very large data.
        - ``n_pcs`` (10): largest number of PCs tried (``numpcstotry``).
        - ``pcstop`` (1.05): stopping rule; ``-B`` (B >= 0) uses B PCs without
          cross-validation.
        - ``fracs`` (1.00, 0.95, ..., 0.05): ridge fractions in (0, 1]; a scalar: no
          cross-validation (1 makes D equal C).
        - ``brainthresh`` ([99, 0.1]), ``brainR2`` (None: tail threshold), ``brainexclude``
          (False; True or mask = exclude from the noise pool).
        - ``pcR2cutoff`` (None: tail threshold), ``pcR2cutoffmask`` (True or mask).
        - ``xvalscheme`` (leave one run out): list of test-run groups (0-based run indices).
        - ``sessionindicator`` (all 1): session label per run, for z-scoring in the
          cross-validation.
        - ``extra_regressors`` (None): list of ``T_r x k_r`` nuisance regressors per run.
        - ``maxpolydeg`` (half the run length in minutes, rounded): int or one per run.
        - ``hrflibrary`` (``time x 20``), ``hrftoassume`` (``time``): HRFs sampled at TR from
          onset, used as given (defaults: :mod:`echoprep.kernels.glm.hrf`, peak 1).
        - ``chunklen`` (50000): voxels per chunk (memory only; results do not depend on it).
        - ``seed`` (0): seeds the tail-threshold mixture fit.
        - ``n_threads`` (None, ours): BLAS threads while the fit runs (threadpoolctl); None
          keeps the process setting. Most products are small (trials x trials per run), so one
          thread per process is usually the most efficient on a shared machine.

        Also accepted, without effect: see
        :data:`echoprep.kernels.glm.options.IGNORED_OPTIONS`. Other names: ``ValueError``.

    Returns
    -------
    dict
        ``S`` = the data's spatial shape (``X, Y, Z`` or ``V``), ``N`` trials (chronological:
        by run, then volume), ``R`` runs, ``H`` library HRFs, ``K = n_pcs``.

        - ``typea``: ``onoffR2`` (S, %), ``meanvol`` (S, raw), ``betasmd`` (S x 1).
        - ``typeb``: ``FitHRFR2`` (S x H, %), ``FitHRFR2run`` (S x R x H, unless
          ``wantfithrfr2run=0``), ``HRFindex`` (S, 0-based), ``HRFindexrun`` (S x R),
          ``R2`` (S), ``R2run`` (S x R), ``betasmd`` (S x N), ``meanvol``.
        - ``typec`` (with GLMdenoise): ``HRFindex``, ``HRFindexrun``, ``glmbadness``
          (S x (K+1); NaN when ``pcstop <= 0``), ``pcvoxels`` (S bool), ``pcnum`` (int),
          ``xvaltrend`` (K+1; NaN when ``pcstop <= 0``), ``noisepool`` (S bool),
          ``pcregressors`` (list of ``T_r x (K+1)``; the first ``pcnum`` columns are used),
          ``betasmd`` (S x N, % of ``|meanvol|``), ``R2``, ``R2run``, ``meanvol``.
        - ``typed`` (with ridge): the same keys as C (``pcnum`` 0 and no noise keys without
          GLMdenoise) plus ``rrbadness`` (S x len(fracs); NaN for a scalar ``fracs``),
          ``FRACvalue`` (S), ``scaleoffset`` (S x 2, raw units).
        - ``designinfo``: ``stimorder``, ``trialrun``, ``trialonset`` (N each, 0-based),
          ``condcounts``, ``condinruns`` (C), ``endbuffers`` (R, s), ``numtrialrun``,
          ``runlengths`` (R).
        - ``params``: resolved ``brainR2``, ``pcR2cutoff``, ``fracs``, ``maxpolydeg``,
          ``xvalscheme``, ``sessionindicator``, ``hrflibrary``, ``hrftoassume``, ``n_pcs``,
          ``pcstop``, ``stimdur``, ``tr``.

        R² values are % (task part of the model only; NaN for all-zero voxels); betas and R²
        are float32. All-zero voxels (e.g. a masked background) are allowed: their R² and
        percent betas are NaN, ``HRFindex`` 0 and ``FRACvalue`` 1. No array is shared between
        the returned dicts.

    Raises
    ------
    ValueError
        Invalid design, data, option names or values (messages say what was expected, what
        was found and how to fix it), or an empty noise pool when GLMdenoise needs one.
    """
    stimdur = float(stimdur)
    tr = float(tr)
    if not (math.isfinite(tr) and tr > 0):
        raise ValueError(f"tr must be a positive number of seconds; got {tr}")
    if not (math.isfinite(stimdur) and stimdur >= 0):
        raise ValueError(f"stimdur must be a non-negative number of seconds; got {stimdur}")
    runs = as_run_list(design)
    td = trial_design(runs, tr)
    vox = as_voxel_data(data, td.run_lengths)
    opts = resolve_options(
        options, run_lengths=td.run_lengths, tr=tr, stimdur=stimdur, spatial_shape=vox.spatial_shape
    )
    check_finite(vox, opts.chunklen)
    short = np.flatnonzero(td.endbuffers < MIN_END_BUFFER_S)
    if short.size:
        warnings.warn(
            f"runs {short.tolist()} have less than {MIN_END_BUFFER_S:g} s of data after their "
            f"last onset ({td.endbuffers[short].round(1).tolist()} s); those trials' responses "
            "are cut off",
            stacklevel=2,
        )
    plan = _plan(td, opts)
    setup = _setup(td, vox, opts)
    log.info(
        "GLMsingle: %d voxels, %d runs, %d trials, %d conditions, %d HRFs, %d chunk(s)",
        vox.n_voxels,
        td.n_runs,
        td.n_trials,
        td.n_conditions,
        opts.hrflibrary.shape[1],
        len(vox.chunks(opts.chunklen)),
    )
    with blas_limits(opts.n_threads):
        return _run(setup, plan, stimdur, tr)


def _plan(td: TrialDesign, opts: GlmOptions) -> _Plan:
    cv = build_cross_validation(td.trialrun, td.stimorder, opts.xvalscheme, opts.sessionindicator)
    glmdenoise = opts.wantglmdenoise
    ridge = opts.wantfracridge
    fixed = None
    if opts.pcstop <= 0:
        b = -opts.pcstop
        if b != int(b) or b > opts.n_pcs:
            raise ValueError(
                f"pcstop = {opts.pcstop} asks for {b:g} PCs without cross-validation; it must be "
                f"minus an integer between 0 and n_pcs ({opts.n_pcs})"
            )
        fixed = int(b)
    if td.n_runs > 1 and td.any_repeats_across_runs() and not cv.informative:
        warnings.warn(
            "xvalscheme: no test trial has a repeat of its condition in the training runs",
            stacklevel=3,
        )
    if not cv.informative:
        msg = (
            "no condition occurs in more than one run (or no test trial has a training repeat), "
            "so the cross-validation of types C and D has nothing to work with"
        )
        off = []
        if glmdenoise and fixed is None:
            glmdenoise = False
            off.append("GLMdenoise is switched off (set pcstop = -B to use B PCs)")
        if ridge and not opts.fracs_scalar:
            ridge = False
            off.append("ridge regression is switched off (give a single fraction in fracs)")
        if off:
            warnings.warn(msg + "; " + "; ".join(off), stacklevel=3)
    n_single = int((td.condinruns == 1).sum())
    if n_single:
        log.info(
            "%d of %d conditions occur in one run only: they are estimated but do not inform "
            "the cross-validation",
            n_single,
            td.n_conditions,
        )
    want = opts.wantmemoryoutputs
    fr = opts.fracs
    if opts.fracs_scalar:
        fit_fracs = np.unique(np.concatenate([[1.0], fr]))[::-1].copy()
        selectable = fit_fracs == fr[0]
    elif fr[0] < 1.0:
        fit_fracs = np.concatenate([[1.0], fr])
        selectable = np.concatenate([[False], np.ones(fr.size, dtype=bool)])
    else:
        fit_fracs = fr
        selectable = np.ones(fr.size, dtype=bool)
    # GLMdenoise only matters for the outputs that use it
    glmdenoise = glmdenoise and (want[2] or (ridge and want[3]))
    xval_pcs = glmdenoise and fixed is None
    return _Plan(
        glmdenoise=glmdenoise,
        ridge=ridge,
        xval_pcs=xval_pcs,
        fixed_pcnum=fixed,
        want=want,
        fit_fracs=fit_fracs,
        selectable=selectable,
        cv=cv,
    )


def _setup(td: TrialDesign, vox: VoxelData, opts: GlmOptions) -> _Setup:
    poly = [polynomial_basis(t, d) for t, d in zip(td.run_lengths, opts.maxpolydeg, strict=True)]
    qe = []
    for r, p in enumerate(poly):
        if opts.extra_regressors is None:
            qe.append(np.zeros((p.shape[0], 0)))
        else:
            qe.append(orthonormal_extension(p, opts.extra_regressors[r])[0])
    onsets = [td.trialonset[s] for s in td.runslices]
    return _Setup(td=td, vox=vox, opts=opts, poly=poly, qe=qe, onsets=onsets)


def _groups(labels: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(label, indices)`` of equal labels (indices ascending)."""
    order = np.argsort(labels, kind="stable")
    vals = labels[order]
    cuts = np.flatnonzero(np.diff(vals)) + 1
    for part in np.split(order, cuts):
        if part.size:
            yield int(labels[part[0]]), part


def _blocks(idx: np.ndarray, n_trials: int) -> Iterator[np.ndarray]:
    step = max(64, BLOCK_ELEMENTS // max(n_trials, 1))
    for k in range(0, idx.size, step):
        yield idx[k : k + step]


def _to_percent(betas: np.ndarray, pct: np.ndarray, v0: int, v1: int) -> None:
    """Scale rows ``v0:v1`` of ``betas`` by ``100 / |meanvol|`` in place (NaN where the mean is
    0: all-zero voxels, e.g. a masked background)."""
    with np.errstate(invalid="ignore"):
        betas[v0:v1] *= pct[v0:v1, None].astype(np.float32)


def _as_spatial(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return a.reshape(*shape, *a.shape[1:])


def _run(setup: _Setup, plan: _Plan, stimdur: float, tr: float) -> dict[str, Any]:
    td, vox, opts = setup.td, setup.vox, setup.opts
    n_vox, n_runs = vox.n_voxels, td.n_runs
    chunks = vox.chunks(opts.chunklen)
    shape = vox.spatial_shape

    # ---- type A ------------------------------------------------------------------------
    meanvol, ss, onoff, beta_a = _type_a(setup, chunks)
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = 100.0 / np.abs(meanvol)

    # ---- thresholds, noise pool, PCs -----------------------------------------------------
    brain_r2 = opts.brainR2
    pc_cut = opts.pcR2cutoff
    if plan.glmdenoise and (brain_r2 is None or pc_cut is None):
        thr = tail_threshold(onoff, seed=opts.seed)
        log.info("GLMsingle: ON-OFF R² tail threshold %.3f %%", thr)
        brain_r2 = thr if brain_r2 is None else brain_r2
        pc_cut = thr if pc_cut is None else pc_cut
    n_keep = opts.n_pcs + 1
    pool = np.zeros(n_vox, dtype=bool)
    pcregressors: list[np.ndarray] = []
    q_all = list(setup.qe)
    level_k = [np.full(opts.n_pcs + 1, q.shape[1]) for q in setup.qe]
    if plan.glmdenoise:
        assert brain_r2 is not None
        pool = noise_pool(meanvol, onoff, opts.brainthresh, brain_r2, opts.brainexclude)
        if not pool.any():
            raise ValueError(
                "the GLMdenoise noise pool is empty: no voxel is bright (brainthresh "
                f"{list(opts.brainthresh)}), below brainR2 ({brain_r2:.3g} %) and not excluded; "
                "relax brainthresh, raise brainR2, change brainexclude, or set wantglmdenoise=0"
            )
        pcregressors = _pcs(setup, chunks, pool, n_keep)
        for r in range(n_runs):
            base = np.hstack([setup.poly[r], setup.qe[r]])
            qpc, count = orthonormal_extension(base, pcregressors[r][:, : opts.n_pcs])
            q_all[r] = np.hstack([setup.qe[r], qpc])
            # runs shorter than n_pcs + 1 volumes have fewer PCs: higher levels add nothing
            count = np.concatenate([count, np.full(opts.n_pcs + 1 - count.size, count[-1])])
            level_k[r] = setup.qe[r].shape[1] + count
        log.info("GLMsingle: noise pool of %d voxels", int(pool.sum()))

    # ---- type B (+ GLMdenoise cross-validation) -----------------------------------------
    n_h = opts.hrflibrary.shape[1]
    xw = [
        [
            setup.poly_project(r, convolved_trials(setup.onsets[r], opts.hrflibrary[:, h], t))
            for r, t in enumerate(td.run_lengths)
        ]
        for h in range(n_h)
    ]
    need_d = plan.final_pass or plan.xval_pcs or opts.wantlss
    b_out = _type_b_and_xval(setup, plan, chunks, ss, xw, q_all, level_k, need_d)

    # ---- pcnum ---------------------------------------------------------------------------
    pcvoxels = np.zeros(n_vox, dtype=bool)
    xvaltrend = np.full(opts.n_pcs + 1, np.nan)
    pcnum = 0
    if plan.glmdenoise:
        pcvoxels = _pcvoxels(onoff, pc_cut, opts.pcR2cutoffmask)
        if plan.xval_pcs:
            xvaltrend = -np.median(b_out["glmbadness"][pcvoxels], axis=0)
            pcnum = _choose_pcnum(xvaltrend, opts.pcstop)
        else:
            assert plan.fixed_pcnum is not None
            pcnum = plan.fixed_pcnum
        log.info("GLMsingle: pcnum = %d", pcnum)

    # ---- types C and D -------------------------------------------------------------------
    cd = None
    if plan.final_pass:
        cd = _types_c_d(setup, plan, chunks, ss, xw, q_all, level_k, pcnum, b_out)
        for v0, v1 in chunks:
            _to_percent(b_out["dstore"], pct, v0, v1)
            if cd["betas_d"] is not None:
                _to_percent(cd["betas_d"], pct, v0, v1)

    # ---- outputs -------------------------------------------------------------------------
    out: dict[str, Any] = {}
    sp = lambda a: _as_spatial(a, shape)  # noqa: E731
    meanvol32 = meanvol.astype(np.float32)
    if plan.want[0]:
        with np.errstate(invalid="ignore"):
            ba = beta_a * pct if opts.wantpercentbold else beta_a
        out["typea"] = {
            "onoffR2": sp(onoff.astype(np.float32)),
            "meanvol": sp(meanvol32),
            "betasmd": sp(ba.astype(np.float32)[:, None]),
        }
    hrfindex = b_out["hrfindex"]
    hrfindexrun = b_out["hrfindexrun"]
    if plan.want[1]:
        betas_b = b_out["betas_b"]
        if opts.wantpercentbold:
            for v0, v1 in chunks:
                _to_percent(betas_b, pct, v0, v1)
        tb = {
            "FitHRFR2": sp(b_out["fithrfr2"]),
            "HRFindex": sp(hrfindex),
            "HRFindexrun": sp(hrfindexrun),
            "R2": sp(b_out["r2"]),
            "R2run": sp(b_out["r2run"]),
            "betasmd": sp(betas_b),
            "meanvol": sp(meanvol32.copy()),
        }
        if b_out["fithrfr2run"] is not None:
            tb["FitHRFR2run"] = sp(b_out["fithrfr2run"])
        out["typeb"] = tb
    common: dict[str, Any] = {}
    if plan.glmdenoise:
        common = {
            "glmbadness": sp(b_out["glmbadness"].astype(np.float32)),
            "pcvoxels": sp(pcvoxels),
            "xvaltrend": xvaltrend.astype(np.float32),
            "noisepool": sp(pool),
            "pcregressors": [p.astype(np.float32) for p in pcregressors],
        }
    if cd is not None and plan.glmdenoise and plan.want[2]:
        out["typec"] = {
            "HRFindex": sp(hrfindex.copy()),
            "HRFindexrun": sp(hrfindexrun.copy()),
            "pcnum": int(pcnum),
            **common,
            "betasmd": sp(b_out["dstore"]),
            "R2": sp(cd["r2_c"]),
            "R2run": sp(cd["r2run_c"]),
            "meanvol": sp(meanvol32.copy()),
        }
    if cd is not None and plan.ridge and plan.want[3]:
        out["typed"] = {
            "HRFindex": sp(hrfindex.copy()),
            "HRFindexrun": sp(hrfindexrun.copy()),
            "pcnum": int(pcnum),
            **{
                k: (v.copy() if isinstance(v, np.ndarray) else [p.copy() for p in v])
                for k, v in common.items()
            },
            "betasmd": sp(cd["betas_d"]),
            "R2": sp(cd["r2_d"]),
            "R2run": sp(cd["r2run_d"]),
            "meanvol": sp(meanvol32.copy()),
            "rrbadness": sp(cd["rrbadness"].astype(np.float32)),
            "FRACvalue": sp(cd["fracvalue"].astype(np.float32)),
            "scaleoffset": sp(cd["scaleoffset"].astype(np.float32)),
        }
    out["designinfo"] = td.as_dict()
    out["params"] = {
        "brainR2": brain_r2,
        "pcR2cutoff": pc_cut,
        "fracs": opts.fracs.copy(),
        "maxpolydeg": list(opts.maxpolydeg),
        "xvalscheme": [f.copy() for f in opts.xvalscheme],
        "sessionindicator": opts.sessionindicator.copy(),
        "hrflibrary": opts.hrflibrary.copy(),
        "hrftoassume": opts.hrftoassume.copy(),
        "n_pcs": opts.n_pcs,
        "pcstop": opts.pcstop,
        "stimdur": stimdur,
        "tr": tr,
    }
    return out


# ---------------------------------------------------------------------------------------------
# type A


def _type_a(
    setup: _Setup, chunks: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Voxel means, ``|yw|²`` per run, ON-OFF R² and raw ON-OFF beta."""
    td, vox, opts = setup.td, setup.vox, setup.opts
    n_vox, n_runs = vox.n_voxels, td.n_runs
    meansum = np.zeros(n_vox)
    ss = np.zeros((n_vox, n_runs))
    onoff = np.empty(n_vox)
    beta = np.empty(n_vox)
    xw = []
    for r, t in enumerate(td.run_lengths):
        x = convolved_trials(setup.onsets[r], opts.hrftoassume, t).sum(axis=1)
        xw.append(setup.poly_project(r, x[:, None])[:, 0])
    den = 0.0
    for r in range(n_runs):
        mq = setup.qe[r].T @ xw[r]
        den += float(xw[r] @ xw[r] - mq @ mq)
    for k, (v0, v1) in enumerate(chunks):
        log.info("GLMsingle type A: chunk %d of %d", k + 1, len(chunks))
        num = np.zeros(v1 - v0)
        ds = []
        for r, t in enumerate(td.run_lengths):
            y, mean = setup.read_projected(r, v0, v1)
            meansum[v0:v1] += mean * t
            ss[v0:v1, r] = sum_squares(y)
            d = (y @ xw[r].astype(np.float32)).astype(np.float64)
            num += d
            if setup.qe[r].shape[1]:
                e = (y @ setup.qe[r].astype(np.float32)).astype(np.float64)
                num -= e @ (setup.qe[r].T @ xw[r])
            ds.append(d)
        b = num / den if den > 0 else np.zeros_like(num)
        sse_tot = np.zeros(v1 - v0)
        for r in range(n_runs):
            sse_tot += np.maximum(ss[v0:v1, r] - 2 * b * ds[r] + b * b * (xw[r] @ xw[r]), 0.0)
        onoff[v0:v1] = r2_percent(sse_tot, ss[v0:v1].sum(axis=1))
        beta[v0:v1] = b
    meanvol = meansum / sum(td.run_lengths)
    return meanvol, ss, onoff, beta


# ---------------------------------------------------------------------------------------------
# noise regressors


def _pcs(
    setup: _Setup, chunks: list[tuple[int, int]], pool: np.ndarray, n_keep: int
) -> list[np.ndarray]:
    td = setup.td
    grams = [np.zeros((t, t)) for t in td.run_lengths]
    for v0, v1 in chunks:
        sel = np.flatnonzero(pool[v0:v1])
        if not sel.size:
            continue
        for r in range(td.n_runs):
            y, _ = setup.read_projected(r, v0, v1)
            n = normalised_rows(y[sel])
            grams[r] += n.T @ n
    return [principal_components(g, n_keep) for g in grams]


def _pcvoxels(onoff: np.ndarray, cutoff: float | None, mask: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        sel = (onoff > cutoff) & mask if cutoff is not None else np.zeros_like(mask)
    if sel.any():
        return sel
    cand = np.flatnonzero(mask & np.isfinite(onoff))
    top = cand[np.argsort(-onoff[cand], kind="stable")[:FALLBACK_PCVOXELS]]
    out = np.zeros_like(mask)
    out[top] = True
    return out


def _choose_pcnum(xvaltrend: np.ndarray, pcstop: float) -> int:
    """Smallest number of PCs reaching ``1/pcstop`` of the best improvement over 0 PCs."""
    g = xvaltrend - xvaltrend[0]
    best = np.nanmax(g)
    if not best > 0:
        return 0
    return int(np.flatnonzero(pcstop * g >= best)[0])


# ---------------------------------------------------------------------------------------------
# type B and the GLMdenoise cross-validation


def _type_b_and_xval(
    setup: _Setup,
    plan: _Plan,
    chunks: list[tuple[int, int]],
    ss: np.ndarray,
    xw: list[list[np.ndarray]],
    q_all: list[np.ndarray],
    level_k: list[np.ndarray],
    need_d: bool,
) -> dict[str, Any]:
    td, vox, opts = setup.td, setup.vox, setup.opts
    n_vox, n_runs, n_trials = vox.n_voxels, td.n_runs, td.n_trials
    n_h = len(xw)
    sls = td.runslices
    betas_b = np.zeros((n_vox, n_trials), dtype=np.float32)
    dstore = np.zeros((n_vox, n_trials), dtype=np.float32) if need_d else None
    estore = [np.zeros((n_vox, q.shape[1]), dtype=np.float32) for q in q_all]
    fithrfr2 = np.empty((n_vox, n_h), dtype=np.float32)
    fithrfr2run = np.empty((n_vox, n_runs, n_h), dtype=np.float32) if opts.wantfithrfr2run else None
    r2 = np.empty(n_vox, dtype=np.float32)
    r2run = np.empty((n_vox, n_runs), dtype=np.float32)
    hrfindex = np.zeros(n_vox, dtype=np.int64)
    hrfindexrun = np.zeros((n_vox, n_runs), dtype=np.int64)
    glmbadness = np.full((n_vox, opts.n_pcs + 1), np.nan)
    x32 = [
        [
            convolved_trials(setup.onsets[r], opts.hrflibrary[:, h], t).astype(np.float32)
            for r, t in enumerate(td.run_lengths)
        ]
        for h in range(n_h)
    ]
    sol0 = [[solver(xw[h][r], setup.qe[r]) for r in range(n_runs)] for h in range(n_h)]
    ws32 = [[s.whitener().astype(np.float32) for s in row] for row in sol0]
    wst32 = [[np.ascontiguousarray(w.T) for w in row] for row in ws32]
    m32 = [[s.m.astype(np.float32) for s in row] for row in sol0]
    gw32 = [[s.gw.astype(np.float32) for s in row] for row in sol0]
    q32 = [q.astype(np.float32) for q in q_all]
    extra = [q.shape[1] > 0 for q in setup.qe]
    k_e = [q.shape[1] for q in setup.qe]
    hrfs_t = np.ascontiguousarray(opts.hrflibrary.T, dtype=np.float32)
    max_n = max(int(td.numtrialrun.max()), 1)
    sub = max(256, SUBBLOCK_ELEMENTS // (n_h * max_n))

    for k, (v0, v1) in enumerate(chunks):
        log.info("GLMsingle type B: chunk %d of %d", k + 1, len(chunks))
        nv = v1 - v0
        ys = []
        for r in range(n_runs):
            y, _ = setup.read_projected(r, v0, v1)
            if q32[r].shape[1]:
                estore[r][v0:v1] = y @ q32[r]
            ys.append(y)
        ss_c = ss[v0:v1]
        # residual sum of squares of every HRF, run and voxel (task-only fit)
        sse_all = np.empty((nv, n_runs, n_h))
        for b0 in range(0, nv, sub):
            b1 = min(nv, b0 + sub)
            for r in range(n_runs):
                prods = trial_products(ys[r][b0:b1], setup.onsets[r], hrfs_t)  # (n, H, B)
                e_t = estore[r][v0 + b0 : v0 + b1, : k_e[r]].T if extra[r] else None
                for h in range(n_h):
                    d_t = prods[:, h, :]  # (n, B) = (yw @ X_h)'
                    c_t = d_t - m32[h][r] @ e_t if e_t is not None else d_t
                    t_t = wst32[h][r] @ c_t  # (n, B)
                    if e_t is None:  # fitted sum of squares = |t|²
                        fitted = np.einsum("ij,ij->j", t_t, t_t, dtype=np.float64)
                    else:
                        b_t = ws32[h][r] @ t_t
                        fitted = 2.0 * np.einsum("ij,ij->j", b_t, d_t, dtype=np.float64)
                        fitted -= np.einsum("ij,ij->j", gw32[h][r] @ b_t, b_t, dtype=np.float64)
                    sse_all[b0:b1, r, h] = np.maximum(ss_c[b0:b1, r] - fitted, 0.0)
        r2_all = r2_percent(sse_all.sum(axis=1), ss_c.sum(axis=1)[:, None])  # (nv, H)
        r2run_all = r2_percent(sse_all, ss_c[:, :, None])  # (nv, R, H)
        del sse_all
        fithrfr2[v0:v1] = r2_all
        if fithrfr2run is not None:
            fithrfr2run[v0:v1] = r2run_all
        # best HRF: highest pooled R² (first on ties; 0 where all are NaN)
        hidx = np.argmax(np.where(np.isnan(r2_all), -np.inf, r2_all), axis=1)
        hrfindex[v0:v1] = hidx
        hrfindexrun[v0:v1] = np.argmax(np.where(np.isnan(r2run_all), -np.inf, r2run_all), axis=2)
        rows = np.arange(nv)
        r2[v0:v1] = r2_all[rows, hidx]
        r2run[v0:v1] = r2run_all[rows, :, hidx]
        del r2_all, r2run_all
        # betas (and d for C/D) of the chosen HRF, group by group
        bview = betas_b[v0:v1]
        for h, idx in _groups(hidx):
            for r in range(n_runs):
                sl = sls[r]
                d = ys[r][idx] @ x32[h][r]
                c = d - estore[r][v0 + idx, : k_e[r]] @ m32[h][r].T if extra[r] else d
                bview[idx, sl] = (c @ ws32[h][r]) @ wst32[h][r]
                if dstore is not None:
                    dstore[v0 + idx, sl] = d
        del ys

        if opts.wantlss:
            assert dstore is not None
            for h, idx in _groups(hidx):
                d_g = dstore[v0 + idx]
                for r in range(n_runs):
                    sol = sol0[h][r]
                    c = sol.coefs(d_g[:, sls[r]], estore[r][v0 + idx])
                    bview[idx, sls[r]] = lss_betas(c, sol.gram())

        if plan.xval_pcs:
            assert dstore is not None
            log.info("GLMsingle GLMdenoise cross-validation: chunk %d of %d", k + 1, len(chunks))
            for h, idx in _groups(hidx):
                _xval_group(
                    plan,
                    sls,
                    [xw[h][r] for r in range(n_runs)],
                    [s.gw for s in sol0[h]],
                    q_all,
                    level_k,
                    opts.n_pcs,
                    dstore,
                    estore,
                    v0 + idx,
                    glmbadness,
                )
    return {
        "betas_b": betas_b,
        "dstore": dstore,
        "estore": estore,
        "fithrfr2": fithrfr2,
        "fithrfr2run": fithrfr2run,
        "r2": r2,
        "r2run": r2run,
        "hrfindex": hrfindex,
        "hrfindexrun": hrfindexrun,
        "glmbadness": glmbadness,
    }


def _xval_group(
    plan: _Plan,
    sls: tuple[slice, ...],
    xw: list[np.ndarray],
    gw: list[np.ndarray],
    q_all: list[np.ndarray],
    level_k: list[np.ndarray],
    n_pcs: int,
    dstore: np.ndarray,
    estore: list[np.ndarray],
    rows: np.ndarray,
    glmbadness: np.ndarray,
) -> None:
    """GLMdenoise badness of one HRF group for 0..n_pcs PCs (writes ``glmbadness[rows]``).

    Per run and level, ``G = xw'xw - m m'`` (``m = xw' q`` for the level's nuisance directions)
    is pseudo-inverted by eigendecomposition; betas are ``(d - e m') G^+`` (float32 products).
    """
    n_runs = len(xw)
    n_trials = dstore.shape[1]
    m_all = [xw[r].T @ q_all[r] for r in range(n_runs)]
    levels = []
    for n in range(n_pcs + 1):
        per_run = []
        for r in range(n_runs):
            m = m_all[r][:, : level_k[r][n]]
            ginv = gram_pinv_eigh(gw[r] - m @ m.T)
            per_run.append((m.astype(np.float32), ginv.astype(np.float32)))
        levels.append(per_run)
    for blk in _blocks(rows, n_trials):
        d_b = dstore[blk]
        e_b = [estore[r][blk] for r in range(n_runs)]
        ref = None
        beta = np.empty((blk.size, n_trials), dtype=np.float32)
        for n, per_run in enumerate(levels):
            for r, (m, ginv) in enumerate(per_run):
                c = d_b[:, sls[r]]
                if m.shape[1]:
                    c = c - e_b[r][:, : m.shape[1]] @ m.T
                beta[:, sls[r]] = c @ ginv
            if ref is None:
                ref = reference(beta, plan.cv)
            glmbadness[blk, n] = badness(beta, plan.cv, ref)


# ---------------------------------------------------------------------------------------------
# types C and D


def _types_c_d(
    setup: _Setup,
    plan: _Plan,
    chunks: list[tuple[int, int]],
    ss: np.ndarray,
    xw: list[list[np.ndarray]],
    q_all: list[np.ndarray],
    level_k: list[np.ndarray],
    pcnum: int,
    b_out: dict[str, Any],
) -> dict[str, Any]:
    td, vox, opts = setup.td, setup.vox, setup.opts
    n_vox, n_runs, n_trials = vox.n_voxels, td.n_runs, td.n_trials
    sls = td.runslices
    dstore: np.ndarray = b_out["dstore"]
    estore: list[np.ndarray] = b_out["estore"]
    do_d = plan.ridge and plan.want[3]
    fit_fracs = plan.fit_fracs
    sel_idx = np.flatnonzero(plan.selectable)
    r2_c = np.empty(n_vox, dtype=np.float32)
    r2run_c = np.empty((n_vox, n_runs), dtype=np.float32)
    betas_d = np.zeros((n_vox, n_trials), dtype=np.float32) if do_d else None
    r2_d = np.empty(n_vox, dtype=np.float32)
    r2run_d = np.empty((n_vox, n_runs), dtype=np.float32)
    n_user = int(plan.selectable.sum()) if not opts.fracs_scalar else opts.fracs.size
    rrbadness = np.full((n_vox, n_user), np.nan)
    fracvalue = np.full(n_vox, np.nan)
    scaleoffset = np.zeros((n_vox, 2))
    cross_validate = do_d and not opts.fracs_scalar
    hidx_all = b_out["hrfindex"]

    for k, (v0, v1) in enumerate(chunks):
        log.info("GLMsingle types C/D: chunk %d of %d", k + 1, len(chunks))
        for h, idx in _groups(hidx_all[v0:v1]):
            sols: list[RunSolver] = [
                solver(xw[h][r], q_all[r][:, : level_k[r][pcnum]]) for r in range(n_runs)
            ]
            s2 = np.concatenate([s.s**2 for s in sols])
            w32 = [s.w.astype(np.float32) for s in sols]
            for blk in _blocks(idx, n_trials):
                rows = v0 + blk
                d_b = dstore[rows]
                ss_b = ss[rows]
                bo = np.empty((blk.size, n_trials))  # rotated OLS coefficients
                beta1 = np.empty((blk.size, n_trials))
                sse_run = np.empty((blk.size, n_runs))
                for r, sol in enumerate(sols):
                    c = sol.coefs(d_b[:, sls[r]], estore[r][rows])
                    bo[:, sls[r]] = (c @ sol.w) * sol.s2inv
                    beta1[:, sls[r]] = bo[:, sls[r]] @ sol.w.T
                    sse_run[:, r] = sse(ss_b[:, r], beta1[:, sls[r]], d_b[:, sls[r]], sol.gw)
                r2_c[rows] = r2_percent(sse_run.sum(axis=1), ss_b.sum(axis=1))
                r2run_c[rows] = r2_percent(sse_run, ss_b)
                if do_d:
                    assert betas_d is not None
                    alphas = fraction_alphas(s2, bo, fit_fracs)
                    if cross_validate:
                        ref = reference(beta1, plan.cv)
                        bad = np.empty((blk.size, fit_fracs.size))
                        # ridge coefficients b s²/(s² + alpha) for all runs at once (float32)
                        bs2 = (bo * s2).astype(np.float32)
                        s2_32 = s2.astype(np.float32)
                        coef = np.empty((blk.size, n_trials), dtype=np.float32)
                        beta_l = np.empty((blk.size, n_trials), dtype=np.float32)
                        for li in range(fit_fracs.size):
                            if fit_fracs[li] >= 1.0:
                                bad[:, li] = badness(beta1, plan.cv, ref)
                                continue
                            a32 = np.maximum(alphas[:, li], TINY_ALPHA).astype(np.float32)
                            np.add(s2_32, a32[:, None], out=coef)
                            np.divide(bs2, coef, out=coef)
                            for r in range(n_runs):
                                np.matmul(coef[:, sls[r]], w32[r].T, out=beta_l[:, sls[r]])
                            bad[:, li] = badness(beta_l, plan.cv, ref)
                        choice = sel_idx[np.argmin(bad[:, sel_idx], axis=1)]
                        rrbadness[rows] = bad[:, sel_idx]
                    else:
                        choice = np.full(blk.size, sel_idx[0])
                    fracvalue[rows] = fit_fracs[choice]
                    alpha = alphas[np.arange(blk.size), choice]
                    beta_c = np.empty((blk.size, n_trials))
                    for r, sol in enumerate(sols):
                        sc = shrinkage(sol.s**2, alpha)
                        beta_c[:, sls[r]] = (bo[:, sls[r]] * sc) @ sol.w.T
                        sse_run[:, r] = sse(ss_b[:, r], beta_c[:, sls[r]], d_b[:, sls[r]], sol.gw)
                    r2_d[rows] = r2_percent(sse_run.sum(axis=1), ss_b.sum(axis=1))
                    r2run_d[rows] = r2_percent(sse_run, ss_b)
                    if opts.wantautoscale:
                        scale, offset = autoscale(beta1, beta_c)
                    else:
                        scale, offset = np.ones(blk.size), np.zeros(blk.size)
                    scaleoffset[rows, 0] = scale
                    scaleoffset[rows, 1] = offset
                    betas_d[rows] = beta_c * scale[:, None] + offset[:, None]
                dstore[rows] = beta1
    return {
        "r2_c": r2_c,
        "r2run_c": r2run_c,
        "betas_d": betas_d,
        "r2_d": r2_d,
        "r2run_d": r2run_d,
        "rrbadness": rrbadness,
        "fracvalue": fracvalue,
        "scaleoffset": scaleoffset,
    }
