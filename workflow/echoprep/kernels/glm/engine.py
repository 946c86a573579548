"""Orchestration of the GLMsingle engine: types A (ON-OFF), B (FITHRF), C (GLMdenoise) and
D (ridge), chunked over voxels.

Passes over the data (each reads one voxel chunk of one run at a time, as float32, and removes
the run's polynomials, giving ``yw``):

1. type A (here): voxel means, ``|yw|²`` per run, ON-OFF fit with the canonical HRF;
2. (GLMdenoise, here) the noise pool's ``T_r x T_r`` matrices for the per-run PCs;
3. type B and the GLMdenoise cross-validation (:mod:`echoprep.kernels.glm.typeb`).

Types C and D need no further data access (:mod:`echoprep.kernels.glm.typecd`). The passes
share a :class:`~echoprep.kernels.glm.state.Basis` (sums of squares, projected designs, nuisance
directions); the type-C/D pass continues from the type-B pass's
:class:`~echoprep.kernels.glm.state.TypeB`.

Memory: the caller's data; the single-trial outputs (three ``V x N`` float32 arrays; the type-C
array holds ``d`` until the C/D pass); ``V x R x H`` float32 for ``FitHRFR2run`` (optional);
``V x R x (k + n_pcs)`` for ``e``; and per chunk ``chunklen x sum(T_r)`` float32 of data plus
``chunklen x R x H`` float64 of residual sums of squares. Voxel blocks inside a chunk bound the
other temporaries (:data:`~echoprep.kernels.glm.typeb.SUBBLOCK_ELEMENTS`,
:data:`~echoprep.kernels.glm.state.BLOCK_ELEMENTS`). Results do not depend on
``chunklen`` beyond float32 rounding.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np

from echoprep.kernels.glm.data import (
    VoxelData,
    as_voxel_data,
    check_finite,
    sum_squares,
)
from echoprep.kernels.glm.design import (
    MIN_END_BUFFER_S,
    ShortEndWarning,
    TrialDesign,
    as_run_list,
    convolved_trials,
    orthonormal_extension,
    polynomial_basis,
    trial_design,
)
from echoprep.kernels.glm.device import GlmDevice, open_device
from echoprep.kernels.glm.device_passes import device_pcs, device_type_a, device_type_b
from echoprep.kernels.glm.device_typecd import device_types_c_d
from echoprep.kernels.glm.fit import r2_percent
from echoprep.kernels.glm.noise import noise_pool, normalised_rows, principal_components
from echoprep.kernels.glm.options import EngineOptions, resolve_options
from echoprep.kernels.glm.state import Basis, Plan, Setup
from echoprep.kernels.glm.threshold import tail_threshold
from echoprep.kernels.glm.typeb import type_b_and_xval
from echoprep.kernels.glm.typecd import types_c_d
from echoprep.kernels.glm.xval import build_cross_validation
from echoprep.kernels.threads import blas_limits

log = logging.getLogger(__name__)

#: Voxels used for the xval summary when none pass ``pcR2cutoff``.
FALLBACK_PCVOXELS = 100


def fit_glmsingle(
    design: Any, data: Any, stimdur: float, tr: float, **options: Any
) -> dict[str, Any]:
    """Single-trial betas with GLMsingle's FITHRF_GLMDENOISE_RR (types A-D), in memory.

    Our implementation of GLMsingle (GLMsingle-compatible semantics, key names and shapes;
    0-based HRF indices; see docs/glm.md), with these decisions:

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
        GLMsingle's option names. Those marked *required* (the engine options of the
        config's ``glm`` section, :data:`echoprep.kernels.glm.options.REQUIRED_OPTIONS`) must
        all be given; their defaults are the config schema's
        (``echoprep.options.section_defaults("glm")``, docs/glm.md (options)). The others show
        their default in parentheses.

        - ``wantlibrary`` (required): 1 = per-voxel HRF from ``hrflibrary``; 0 =
          ``hrftoassume`` everywhere.
        - ``wantglmdenoise`` (required): GLMdenoise PCs, type C.
        - ``wantfracridge`` (required): per-voxel fractional ridge, type D.
        - ``wantlss`` (required): type-B betas by least-squares-separate (each trial against
          the sum of the other trials of its run); R² and HRF choice stay OLS.
        - ``wantmemoryoutputs`` ([1, 1, 1, 1]): which of types A-D are returned.
        - ``wantpercentbold`` (required): types A/B in % of ``|meanvol|`` (C/D always are).
        - ``wantautoscale`` (required): type-D scale/offset onto the unregularised betas.
        - ``wantfithrfr2run`` (1, ours): return ``FitHRFR2run`` (``V x R x H`` float32); 0 saves
          that memory for very large data.
        - ``n_pcs`` (required): largest number of PCs tried (``numpcstotry``).
        - ``pcstop`` (required): stopping rule; ``-B`` (B >= 0) uses B PCs without
          cross-validation.
        - ``fracs`` (required; None = 1.00, 0.95, ..., 0.05): ridge fractions in (0, 1]; a
          scalar: no cross-validation (1 makes D equal C).
        - ``brainthresh`` (required: ``[percentile, fraction]``), ``brainR2`` (required; None:
          tail threshold), ``brainexclude`` (False; True or mask = exclude from the noise
          pool).
        - ``pcR2cutoff`` (required; None: tail threshold), ``pcR2cutoffmask`` (True or mask).
        - ``xvalscheme`` (required; None = leave one run out): list of test-run groups
          (0-based run indices).
        - ``sessionindicator`` (all 1): session label per run, for z-scoring in the
          cross-validation.
        - ``extra_regressors`` (None): list of ``T_r x k_r`` nuisance regressors per run.
        - ``maxpolydeg`` (required; None = half the run length in minutes, rounded): int or
          one per run.
        - ``hrflibrary`` (``time x 20``), ``hrftoassume`` (``time``): HRFs sampled at TR from
          onset, used as given (defaults: :mod:`echoprep.kernels.glm.hrf`, peak 1).
        - ``chunklen`` (required): voxels per chunk (memory only; results do not depend on it).
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
        Invalid design, data, missing required options, unknown option names or values
        (messages say what was expected, what was found and how to fix it), or an empty noise
        pool when GLMdenoise needs one.
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
    dev = open_device(opts.device, opts.n_threads)
    if dev is None:  # the device path checks in its first pass (type A)
        check_finite(vox, opts.chunklen)
    short = np.flatnonzero(td.endbuffers < MIN_END_BUFFER_S)
    if short.size:
        warnings.warn(
            ShortEndWarning(short.tolist(), td.endbuffers[short].round(1).tolist()),
            stacklevel=2,
        )
    plan = _plan(td, opts)
    setup = build_setup(td, vox, opts)
    log.info(
        "GLMsingle: %d voxels, %d runs, %d trials, %d conditions, %d HRFs, %d chunk(s)",
        vox.n_voxels,
        td.n_runs,
        td.n_trials,
        td.n_conditions,
        opts.hrflibrary.shape[1],
        len(vox.chunks(opts.chunklen)),
    )
    if dev is None:
        with blas_limits(opts.n_threads):
            return _run(setup, plan, stimdur, tr)
    log.info("GLMsingle: heavy steps on %s (float64)", dev.describe())
    with blas_limits(opts.n_threads), dev.limits():
        out = _run(setup, plan, stimdur, tr, dev)
    peak = dev.peak_bytes()
    if peak is not None:
        log.info("GLMsingle: peak device memory %.2f GiB", peak / 2**30)
    return out


def _plan(td: TrialDesign, opts: EngineOptions) -> Plan:
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
    return Plan(
        glmdenoise=glmdenoise,
        ridge=ridge,
        xval_pcs=xval_pcs,
        fixed_pcnum=fixed,
        want=want,
        fit_fracs=fit_fracs,
        selectable=selectable,
        cv=cv,
    )


def build_setup(td: TrialDesign, vox: VoxelData, opts: EngineOptions) -> Setup:
    """The design, data and per-run nuisance bases of a fit (:class:`Setup`)."""
    poly = [polynomial_basis(t, d) for t, d in zip(td.run_lengths, opts.maxpolydeg, strict=True)]
    qe = []
    for r, p in enumerate(poly):
        if opts.extra_regressors is None:
            qe.append(np.zeros((p.shape[0], 0)))
        else:
            qe.append(orthonormal_extension(p, opts.extra_regressors[r])[0])
    onsets = [td.trialonset[s] for s in td.runslices]
    return Setup(td=td, vox=vox, opts=opts, poly=poly, qe=qe, onsets=onsets)


def _to_percent(betas: np.ndarray, pct: np.ndarray, v0: int, v1: int) -> None:
    """Scale rows ``v0:v1`` of ``betas`` by ``100 / |meanvol|`` in place (NaN where the mean is
    0: all-zero voxels, e.g. a masked background)."""
    with np.errstate(invalid="ignore"):
        betas[v0:v1] *= pct[v0:v1, None].astype(np.float32)


def _as_spatial(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return a.reshape(*shape, *a.shape[1:])


def _run(
    setup: Setup, plan: Plan, stimdur: float, tr: float, dev: GlmDevice | None = None
) -> dict[str, Any]:
    """Types A-D (the passes of the module docstring); with ``dev``, the passes over the data
    and types C/D on that torch device (:mod:`echoprep.kernels.glm.device_passes`,
    :mod:`echoprep.kernels.glm.device_typecd`), the rest as on the CPU."""
    td, vox, opts = setup.td, setup.vox, setup.opts
    n_vox = vox.n_voxels
    chunks = vox.chunks(opts.chunklen)
    shape = vox.spatial_shape

    # ---- type A ------------------------------------------------------------------------
    if dev is None:
        meanvol, ss, onoff, beta_a = type_a(setup, chunks)
    else:
        meanvol, ss, onoff, beta_a = device_type_a(dev, setup, chunks)
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
        if dev is None:
            pcregressors = noise_pcs(setup, chunks, pool, n_keep)
        else:
            pcregressors = device_pcs(dev, setup, chunks, pool, n_keep)
        q_all, level_k = nuisance_directions(setup, pcregressors)
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
    basis = Basis(ss=ss, xw=xw, q_all=q_all, level_k=level_k)
    if dev is None:
        tb = type_b_and_xval(setup, plan, chunks, basis, need_d)
    else:
        tb = device_type_b(dev, setup, plan, chunks, basis, need_d)

    # ---- pcnum ---------------------------------------------------------------------------
    pcvoxels = np.zeros(n_vox, dtype=bool)
    xvaltrend = np.full(opts.n_pcs + 1, np.nan)
    pcnum = 0
    if plan.glmdenoise:
        pcvoxels = _pcvoxels(onoff, pc_cut, opts.pcR2cutoffmask)
        if plan.xval_pcs:
            xvaltrend = -np.median(tb.glmbadness[pcvoxels], axis=0)
            pcnum = _choose_pcnum(xvaltrend, opts.pcstop)
        else:
            assert plan.fixed_pcnum is not None
            pcnum = plan.fixed_pcnum
        log.info("GLMsingle: pcnum = %d", pcnum)

    # ---- types C and D -------------------------------------------------------------------
    cd = None
    if plan.final_pass:
        if dev is None:
            cd = types_c_d(setup, plan, chunks, basis, tb, pcnum)
        else:
            cd = device_types_c_d(dev, setup, plan, chunks, basis, tb, pcnum)
        assert tb.dstore is not None
        for v0, v1 in chunks:
            _to_percent(tb.dstore, pct, v0, v1)
            if cd.betas_d is not None:
                _to_percent(cd.betas_d, pct, v0, v1)

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
    hrfindex = tb.hrfindex
    hrfindexrun = tb.hrfindexrun
    if plan.want[1]:
        betas_b = tb.betas
        if opts.wantpercentbold:
            for v0, v1 in chunks:
                _to_percent(betas_b, pct, v0, v1)
        typeb = {
            "FitHRFR2": sp(tb.fithrfr2),
            "HRFindex": sp(hrfindex),
            "HRFindexrun": sp(hrfindexrun),
            "R2": sp(tb.r2),
            "R2run": sp(tb.r2run),
            "betasmd": sp(betas_b),
            "meanvol": sp(meanvol32.copy()),
        }
        if tb.fithrfr2run is not None:
            typeb["FitHRFR2run"] = sp(tb.fithrfr2run)
        out["typeb"] = typeb
    common: dict[str, Any] = {}
    if plan.glmdenoise:
        common = {
            "glmbadness": sp(tb.glmbadness.astype(np.float32)),
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
            "betasmd": sp(tb.dstore),
            "R2": sp(cd.r2_c),
            "R2run": sp(cd.r2run_c),
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
            "betasmd": sp(cd.betas_d),
            "R2": sp(cd.r2_d),
            "R2run": sp(cd.r2run_d),
            "meanvol": sp(meanvol32.copy()),
            "rrbadness": sp(cd.rrbadness.astype(np.float32)),
            "FRACvalue": sp(cd.fracvalue.astype(np.float32)),
            "scaleoffset": sp(cd.scaleoffset.astype(np.float32)),
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
        "device": "cpu (NumPy)" if dev is None else dev.describe(),
    }
    return out


# ---------------------------------------------------------------------------------------------
# type A


def type_a(
    setup: Setup, chunks: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Voxel means, ``|yw|²`` per run, ON-OFF R² and raw ON-OFF beta, each ``(V,)`` or
    ``(V, R)`` float64 (type A; no further state)."""
    td, vox = setup.td, setup.vox
    n_vox, n_runs = vox.n_voxels, td.n_runs
    meansum = np.zeros(n_vox)
    ss = np.zeros((n_vox, n_runs))
    onoff = np.empty(n_vox)
    beta = np.empty(n_vox)
    xw, den = setup.onoff_design()
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


def noise_pcs(
    setup: Setup, chunks: list[tuple[int, int]], pool: np.ndarray, n_keep: int
) -> list[np.ndarray]:
    """The GLMdenoise regressors: per run, the first ``n_keep`` principal components
    ``(T_r, n_keep)`` of the noise-pool voxels' normalised, polynomial-free time series."""
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


def nuisance_directions(
    setup: Setup, pcregressors: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per run, the orthonormal nuisance directions beyond the polynomials (extra regressors,
    then the PCs orthogonalised against them) and the number of those columns used with 0..K
    PCs (``K = n_pcs``): ``q_all[r]`` ``(T_r, k_r + K_r)``, ``level_k[r]`` ``(K + 1,)``."""
    n_pcs = setup.opts.n_pcs
    q_all, level_k = [], []
    for r in range(setup.n_runs):
        base = np.hstack([setup.poly[r], setup.qe[r]])
        qpc, count = orthonormal_extension(base, pcregressors[r][:, :n_pcs])
        q_all.append(np.hstack([setup.qe[r], qpc]))
        # runs shorter than n_pcs + 1 volumes have fewer PCs: higher levels add nothing
        count = np.concatenate([count, np.full(n_pcs + 1 - count.size, count[-1])])
        level_k.append(setup.qe[r].shape[1] + count)
    return q_all, level_k


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
