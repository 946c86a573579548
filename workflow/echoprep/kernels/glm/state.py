"""State of the GLMsingle engine carried from one pass over the data to the next.

:class:`Plan` says what is computed, :class:`Setup` holds the design and the data, :class:`Basis`
the per-run quantities the passes after type A share (sums of squares, projected designs,
nuisance directions), :class:`TypeB` the output of the type-B pass (which the type-C/D pass
continues from) and :class:`TypesCD` that of the type-C/D pass. Shapes: ``V`` voxels, ``R``
runs, ``N`` trials (``n_r`` in run ``r``), ``H`` library HRFs, ``K`` = ``n_pcs``, ``T_r``
volumes of run ``r``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from echoprep.kernels.glm.data import VoxelData, project_polynomials
from echoprep.kernels.glm.design import TrialDesign, convolved_trials
from echoprep.kernels.glm.options import EngineOptions
from echoprep.kernels.glm.xval import CrossValidation

#: Elements of a ``voxels x trials`` float64 temporary in the cross-validation (bounds the
#: voxel block size; results do not depend on it).
BLOCK_ELEMENTS = 2_000_000


@dataclass
class Plan:
    """What will be computed.

    Attributes
    ----------
    glmdenoise, ridge
        Whether GLMdenoise PCs (type C) and the fractional ridge (type D) are fitted.
    xval_pcs
        Whether the number of PCs is cross-validated (else :attr:`fixed_pcnum`).
    fixed_pcnum
        Number of PCs given by ``pcstop = -B`` (None: cross-validated).
    want
        ``wantmemoryoutputs`` (types A-D).
    fit_fracs
        Ridge fractions fitted, descending (1 included).
    selectable
        ``fit_fracs`` that may be chosen (bool, same length).
    cv
        The cross-validation scheme.
    """

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
        """Whether the type-C/D pass runs."""
        return (self.glmdenoise and self.want[2]) or (self.ridge and self.want[3])


@dataclass
class Setup:
    """The design, the data and the per-run polynomial and extra-regressor bases.

    Attributes
    ----------
    td
        Single-trial bookkeeping.
    vox
        The data (read one voxel chunk of one run at a time).
    opts
        The resolved options.
    poly
        ``R`` orthonormal polynomial bases ``(T_r, maxpolydeg_r + 1)``.
    qe
        ``R`` orthonormal extra-regressor directions ``(T_r, k_r)`` (``k_r = 0`` without).
    onsets
        ``R`` arrays of the runs' trial onsets (volumes).
    """

    td: TrialDesign
    vox: VoxelData
    opts: EngineOptions
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

    def onoff_design(self) -> tuple[list[np.ndarray], float]:
        """Type A's ON-OFF regressor per run (all trials convolved with the assumed HRF,
        polynomials removed) and the denominator of its beta (``sum |xw|²`` less the part in
        the extra regressors' span)."""
        xw = []
        for r, t in enumerate(self.td.run_lengths):
            x = convolved_trials(self.onsets[r], self.opts.hrftoassume, t).sum(axis=1)
            xw.append(self.poly_project(r, x[:, None])[:, 0])
        den = 0.0
        for r in range(self.td.n_runs):
            mq = self.qe[r].T @ xw[r]
            den += float(xw[r] @ xw[r] - mq @ mq)
        return xw, den


@dataclass
class Basis:
    """What the type-B and type-C/D passes share (computed after type A and the PCs).

    Attributes
    ----------
    ss
        ``(V, R)`` float64: ``|yw|²`` per voxel and run (data with polynomials removed).
    xw
        ``xw[h][r]`` ``(T_r, n_r)``: single-trial design of run ``r`` convolved with library
        HRF ``h``, polynomials removed.
    q_all
        ``R`` orthonormal nuisance directions ``(T_r, k_r + K_r)``: extra regressors, then PCs.
    level_k
        ``R`` arrays ``(K + 1,)``: columns of ``q_all[r]`` used with 0..K PCs.
    """

    ss: np.ndarray
    xw: list[list[np.ndarray]]
    q_all: list[np.ndarray]
    level_k: list[np.ndarray]


@dataclass
class TypeB:
    """Output of the type-B pass (float32 unless noted).

    Attributes
    ----------
    betas
        ``(V, N)`` type-B betas (raw units).
    dstore
        ``(V, N)`` ``d = yw @ X_h`` of the chosen HRF (None when no later step needs it); the
        type-C/D pass overwrites it with the type-C betas.
    estore
        ``R`` arrays ``(V, k_r + K_r)``: ``e = yw @ q_all[r]``.
    fithrfr2
        ``(V, H)`` R² (%) per library HRF.
    fithrfr2run
        ``(V, R, H)`` the same per run (None with ``wantfithrfr2run = 0``).
    r2, r2run
        ``(V,)``, ``(V, R)`` R² of the chosen HRF.
    hrfindex, hrfindexrun
        ``(V,)``, ``(V, R)`` int64: chosen HRF (pooled, per run).
    glmbadness
        ``(V, K + 1)`` float64 GLMdenoise badness (NaN when not cross-validated).
    """

    betas: np.ndarray
    dstore: np.ndarray | None
    estore: list[np.ndarray]
    fithrfr2: np.ndarray
    fithrfr2run: np.ndarray | None
    r2: np.ndarray
    r2run: np.ndarray
    hrfindex: np.ndarray
    hrfindexrun: np.ndarray
    glmbadness: np.ndarray


@dataclass
class TypesCD:
    """Output of the type-C/D pass (the type-C betas are in :attr:`TypeB.dstore`).

    Attributes
    ----------
    r2_c, r2run_c
        ``(V,)``, ``(V, R)`` float32 type-C R² (%).
    betas_d
        ``(V, N)`` float32 type-D betas (None without ridge output).
    r2_d, r2run_d
        ``(V,)``, ``(V, R)`` float32 type-D R² (%).
    rrbadness
        ``(V, F)`` float64 ridge badness per selectable fraction (NaN without cross-validation).
    fracvalue
        ``(V,)`` float64 chosen fraction.
    scaleoffset
        ``(V, 2)`` float64 autoscale scale and offset.
    """

    r2_c: np.ndarray
    r2run_c: np.ndarray
    betas_d: np.ndarray | None
    r2_d: np.ndarray
    r2run_d: np.ndarray
    rrbadness: np.ndarray
    fracvalue: np.ndarray
    scaleoffset: np.ndarray


def groups(labels: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(label, indices)`` of equal labels (indices ascending)."""
    order = np.argsort(labels, kind="stable")
    vals = labels[order]
    cuts = np.flatnonzero(np.diff(vals)) + 1
    for part in np.split(order, cuts):
        if part.size:
            yield int(labels[part[0]]), part


def blocks(idx: np.ndarray, n_trials: int) -> Iterator[np.ndarray]:
    """Consecutive pieces of ``idx`` of at most :data:`BLOCK_ELEMENTS` / ``n_trials``."""
    step = max(64, BLOCK_ELEMENTS // max(n_trials, 1))
    for k in range(0, idx.size, step):
        yield idx[k : k + step]


__all__ = ["BLOCK_ELEMENTS", "Basis", "Plan", "Setup", "TypeB", "TypesCD", "blocks", "groups"]
