"""NORDIC against the simulator's ground truth, per preset (the figures of issue 3's note).

One run of a simulator preset (motion off) is generated in memory with its noise-free signal;
each echo is denoised with the default options (Monte-Carlo threshold, seeded) and compared with
the truth:

- RMSE to the noise-free magnitude, input / output (target >= 2);
- median brain tSNR (cubic drift removed), output / input (target >= 2);
- evoked amplitude: mean over active voxels of the least-squares amplitude on the voxel's own
  task regressor (its HRF and slice time, unit betas) with cubic drift, output / noise-free
  (target 0.95-1.05);
- GLM-residual FWHM (AFNI classic, voxels, mean of the 3 axes; drift and, in active voxels, the
  task regressor removed), output / input (target < 1.05);
- the removed part's nearest-neighbour correlation (target < 0.1).

``--joint`` adds the experimental joint-echo variant of docs/nordic.md §9 (each echo normalised by
its own scale, phase and g map, the echoes stacked along time in every patch, one threshold for
the stacked matrix), to weigh it against per-echo processing. It is not a supported mode.

Run: ``.venv/bin/python benchmarks/nordic_truth.py --preset tiny [--volumes 300] [--joint]``.
Times on a 2-core VM: tiny 15 s, demo 40 s, laion (one run, 90x110x72x163) about 6 min and
9 GB.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from types import SimpleNamespace

import numpy as np

from echoprep.kernels import nordic as _nordic_kernel
from echoprep.kernels import nordic_patches as _nordic_patches
from echoprep.kernels.nordic import default_kernel, monte_carlo_threshold
from echoprep.kernels.phase import lowpass_phase
from echoprep.kernels.quality import (
    detrend,
    fwhm_classic,
    legendre_basis,
    neighbour_correlation,
    tsnr,
)
from echoprep.stages.nordic import denoise_arrays as nordic

#: The kernel's private steps that the joint-echo experiment reuses.
nordic_module = SimpleNamespace(
    _slabs=_nordic_patches.slabs,
    _series=_nordic_kernel._series,
    _phasor=_nordic_kernel._phasor,
    _gfactor=_nordic_patches.gfactor_pass,
    _denoise=_nordic_patches.denoise_pass,
)


def simulate_run(preset: str, n_volumes: int | None, seed: int = 0) -> dict:
    """Noisy magnitude/phase per echo, noise-free magnitude per echo, masks and task regressors
    of run 1 of subject 1."""
    from echoprep.simulate import PRESETS, seeds
    from echoprep.simulate.anatomy import subject_anatomy
    from echoprep.simulate.design import (
        hrf_index,
        response_matrix,
        session_design,
        single_trial_betas,
        slice_timing,
    )
    from echoprep.simulate.signal import build_run, noise_free, run_volumes

    p = PRESETS[preset]
    if n_volumes is not None:
        p = dataclasses.replace(p, n_volumes=n_volumes)
    anat = subject_anatomy(p, seed, 1)
    design = session_design(p, p.n_runs, seed, 1, 1)
    betas = single_trial_betas(anat, design, seed, 1, 1)["betas"]
    images = design[design["image"] >= 0].reset_index(drop=True)
    cols = np.flatnonzero(images["run"].to_numpy() == 1)
    onsets = images["onset"].to_numpy()[cols]
    model = build_run(
        p, anat, onsets, betas[:, cols], seed=seed, subject=1, session=1, run=1, motion=False
    )
    rngs = [seeds.rng(seed, 1, 1, 1, seeds.NOISE, e) for e in range(1, len(p.tes) + 1)]
    blocks = list(run_volumes(model, p.tes, rngs, p.chunk_volumes))
    n, shape = model.n_volumes, model.shape
    mags, phases, clean = [], [], []
    for e, te in enumerate(p.tes):
        mags.append(np.moveaxis(np.concatenate([b[e][0] for b in blocks]), 0, -1))
        phases.append(np.moveaxis(np.concatenate([b[e][1] for b in blocks]), 0, -1))
        c = np.zeros((math.prod(shape), n), np.complex64)
        c[model.head_idx] = noise_free(model, te, 0, n)
        clean.append(np.abs(c).reshape(*shape, n))
    st = slice_timing(shape[2], p.multiband, p.tr)
    active = np.argwhere(anat.active)
    hrf = hrf_index(anat.hrf_peak[anat.active])
    regressors = np.empty((len(active), n))
    for key in {(int(z), int(k)) for z, k in zip(active[:, 2], hrf, strict=True)}:
        sel = (active[:, 2] == key[0]) & (hrf == key[1])
        regressors[sel] = response_matrix(p, onsets, st[key[0]], key[1]).sum(axis=1)
    return {
        "mags": mags,
        "phases": phases,
        "clean": clean,
        "brain": anat.brain_mask,
        "active": active,
        "regressors": regressors,
        "n": n,
    }


def _task_fit(series: np.ndarray, regressors: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Per active voxel: (amplitude, residual) of drift + own task regressor. series (v, n)."""
    amps = np.empty(len(series))
    res = np.empty(series.shape)
    for i, (y, r) in enumerate(zip(series, regressors, strict=True)):
        x = np.column_stack([poly, r])
        b = np.linalg.lstsq(x, y, rcond=None)[0]
        amps[i] = b[-1]
        res[i] = y - x @ b
    return amps, res


def metrics(sim: dict, echo: int, out: np.ndarray) -> dict[str, float]:
    """Ground-truth figures of one echo's denoised magnitude ``out`` (x, y, z, t)."""
    brain, act = sim["brain"], tuple(sim["active"].T)
    mag = sim["mags"][echo].astype(np.float64)
    clean = sim["clean"][echo].astype(np.float64)
    poly = legendre_basis(sim["n"])
    rmse_in = np.sqrt(np.mean((mag[brain] - clean[brain]) ** 2))
    rmse_out = np.sqrt(np.mean((out[brain] - clean[brain]) ** 2))
    amp = {}
    fwhm = {}
    for name, a in (("clean", clean), ("in", mag), ("out", out)):
        amp[name], task_res = _task_fit(a[act], sim["regressors"], poly)
        res = np.zeros(a.shape)
        res[brain] = detrend(a[brain], poly)
        res[act] = task_res
        fwhm[name] = float(fwhm_classic(res, brain).mean())
    removed = mag - out
    return {
        "rmse_gain": rmse_in / rmse_out,
        "tsnr_gain": float(np.median(tsnr(out[brain])) / np.median(tsnr(mag[brain]))),
        "evoked_in": float(amp["in"].mean() / amp["clean"].mean()),
        "evoked_out": float(amp["out"].mean() / amp["clean"].mean()),
        "fwhm_in": fwhm["in"],
        "fwhm_out": fwhm["out"],
        "fwhm_ratio": fwhm["out"] / fwhm["in"],
        "removed_nn": max(abs(neighbour_correlation(removed, brain, ax)) for ax in range(3)),
    }


def joint_echo_nordic(mags: list, phases: list, seed: int = 0) -> list[np.ndarray]:
    """Experimental joint-echo NORDIC (docs/nordic.md §9): echoes normalised separately, stacked
    along time per patch, one hard threshold; the cubic kernel follows the stacked length."""
    nm = nordic_module
    nx, ny, nz, nt = mags[0].shape
    slabs = nm._slabs(nx, ny * nz * nt * 16)
    parts, undo = [], []
    for mag, phase in zip(mags, phases, strict=True):
        d = nm._series(mag, phase, "minmax", slabs)
        first = np.abs(d[..., 0])
        scale = float(first[first > 0].min())
        d /= np.float32(scale)
        theta = lowpass_phase(d, 10.0, workers=2)
        d *= nm._phasor(-theta)
        g = nm._gfactor(d[..., : min(90, nt)], (14, 14, 1), 256, 2).astype(np.float32)
        d /= g[..., None]
        parts.append(d)
        undo.append((scale, theta, g))
    stacked = np.ascontiguousarray(np.concatenate(parts, axis=3))
    kernel = default_kernel((nx, ny, nz), stacked.shape[3])
    mc = monte_carlo_threshold(int(np.prod(kernel)), stacked.shape[3], np.random.default_rng(seed))
    acc, _ = nm._denoise(stacked, kernel, mc, 256, 2)  # complex noise E|z|^2 = 1: sigma*sqrt2 = 1
    outs = []
    for e, (scale, theta, g) in enumerate(undo):
        block = acc[..., e * nt : (e + 1) * nt] * g[..., None] * np.float32(scale)
        outs.append(np.abs(block * nm._phasor(theta)).astype(np.float64))
    return outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny", choices=["tiny", "demo", "laion"])
    ap.add_argument("--volumes", type=int, default=None, help="override volumes per run")
    ap.add_argument("--echoes", default="2", help="comma-separated 1-based echoes")
    ap.add_argument("--joint", action="store_true", help="also run the joint-echo experiment")
    args = ap.parse_args()
    t0 = time.perf_counter()
    sim = simulate_run(args.preset, args.volumes)
    print(f"simulated {args.preset}: {sim['mags'][0].shape}, {time.perf_counter() - t0:.0f} s")
    echoes = [int(e) - 1 for e in args.echoes.split(",")]
    rows = []
    for e in echoes:
        t0 = time.perf_counter()
        res = nordic(sim["mags"][e], sim["phases"][e], n_threads=2)
        seconds = time.perf_counter() - t0
        name = f"echo {e + 1} per-echo {res.kernel}"
        rows.append((name, metrics(sim, e, res.magnitude), seconds))
    if args.joint:
        t0 = time.perf_counter()
        outs = joint_echo_nordic(sim["mags"], sim["phases"])
        seconds = time.perf_counter() - t0
        for e in echoes:
            rows.append((f"echo {e + 1} joint-echo", metrics(sim, e, outs[e]), seconds))
    print(
        f"{'variant':32s} {'RMSE x':>7s} {'tSNR x':>7s} {'evoked':>7s} {'(input)':>7s} "
        f"{'FWHM in':>8s} {'out':>6s} {'ratio':>6s} {'NN corr':>8s} {'s':>5s}"
    )
    for name, m, seconds in rows:
        print(
            f"{name:32s} {m['rmse_gain']:7.2f} {m['tsnr_gain']:7.2f} {m['evoked_out']:7.3f} "
            f"{m['evoked_in']:7.3f} {m['fwhm_in']:8.2f} {m['fwhm_out']:6.2f} "
            f"{m['fwhm_ratio']:6.2f} {m['removed_nn']:8.3f} {seconds:5.1f}"
        )
    print("targets: RMSE x >= 2, tSNR x >= 2, evoked 0.95-1.05, FWHM ratio < 1.05, NN corr < 0.1")


if __name__ == "__main__":
    main()
