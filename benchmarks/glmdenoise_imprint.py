"""Do GLMdenoise PCs on NORDIC-denoised data imprint a repeatable, image-dependent component?

Issue 15's hypothesis: on NORDIC-denoised data the noise-pool PCs carry stimulus-locked signal,
which then imprints on every voxel's betas a component shared by the repeats (raising NC) but
not by the truth. Tested on echo 2 of one simulated subject (``regimes_echo2.simulate_echo2``:
no motion, no spatial steps), raw and NORDIC, with the number of GLMdenoise PCs fixed at 0 and
at the number cross-validation chose on the NORDIC data (``pcstop = -k``), type C (PCs, no
ridge) and type D (PCs + ridge). Printed per fit, on the true active voxels:

- ``NC``: median noise ceiling (%); ``split``: split-half reliability (own data);
- ``heldout``: held-out fidelity against the raw type-B betas (the comparison's measure);
- ``r_true``: median r of the repeat-averaged betas with the true image means;
- ``resid``: after removing the true image means (per voxel regression), the correlation of
  half A's image-mean residuals of the fit with half B's of the raw type-B betas (>0: a
  repeatable non-stimulus structure shared with the reference; the issue measured 0.085);
- ``own_resid``: the same between the fit's own halves (what NC mistakes for signal);
- ``pc_task_r2``: mean R² of the fit's PC regressors explained by the true evoked time course of
  the active voxels (their mean noise-free task signal, per run): how stimulus-locked the PCs are.

Run: ``PYTHONPATH=workflow .venv/bin/python benchmarks/glmdenoise_imprint.py [--regime
lowdim_shared] [--preset regime]`` (about 2 min on a 2-core VM).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from regimes_echo2 import glm_designs, simulate_echo2

from echoprep.kernels.fidelity import (
    heldout_from_betas,
    image_means,
    rowwise_correlation,
    shared_images,
    split_half_reliability,
    split_halves,
    truth_fidelity,
)
from echoprep.kernels.glm import REQUIRED_OPTIONS, fit_glmsingle
from echoprep.kernels.noiseceiling import noise_ceiling, zscore_within
from echoprep.options import section_defaults
from echoprep.stages.nordic import denoise_arrays as nordic


def _residual_corr(x_betas, y_betas, labels, runs, mu, images) -> float:
    """Median r between half-A image-mean residuals of x and half-B ones of y (and back), the
    true image means regressed out per voxel."""
    half = split_halves(runs)
    shared = shared_images(labels, half)
    col = np.searchsorted(images, shared)
    truth = mu[:, col]

    def resid(b, sel):
        m = image_means(zscore_within(b, runs)[:, sel], labels[sel], shared)
        t = truth - truth.mean(axis=1, keepdims=True)
        mc = m - m.mean(axis=1, keepdims=True)
        beta = (mc * t).sum(axis=1) / np.maximum((t * t).sum(axis=1), 1e-12)
        return mc - beta[:, None] * t

    r = [
        rowwise_correlation(resid(x_betas, a), resid(y_betas, b))
        for a, b in ((half, ~half), (~half, half))
    ]
    return float(np.nanmedian(np.nanmean(np.stack(r), axis=0)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regime", default="lowdim_shared")
    ap.add_argument("--preset", default="regime")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    sim = simulate_echo2(args.preset, args.regime, args.runs, args.seed)
    p, anat, truth = sim["preset"], sim["anat"], sim["truth"]
    brain, active = anat.brain_mask, anat.active[anat.brain_mask]
    designs, labels, runs = glm_designs(sim)
    labels = np.asarray(labels)
    runs = np.asarray(runs)
    mu = truth["mu"].astype(np.float64)
    images = truth["images"]
    raw = [np.asarray(m[brain], np.float32) for m in sim["mag"]]
    den = [
        np.asarray(nordic(m, ph, seed=args.seed).magnitude[brain], np.float32)
        for m, ph in zip(sim["mag"], sim["phase"], strict=True)
    ]

    def fit(data, pcstop=1.05):
        defaults = {k: v for k, v in section_defaults("glm").items() if k in REQUIRED_OPTIONS}
        return fit_glmsingle(
            designs,
            data,
            p.stim_duration,
            p.tr,
            seed=0,
            n_threads=1,
            **{**defaults, "pcstop": pcstop},
        )

    raw_fit = fit(raw)
    den_fit = fit(den)
    ref = raw_fit["typeb"]["betasmd"][active].astype(np.float64)
    k = max(int(den_fit["typec"]["pcnum"]), 1)
    print(
        f"regime {args.regime}: cross-validated PCs raw {raw_fit['typec']['pcnum']}, "
        f"NORDIC {den_fit['typec']['pcnum']}; fixed runs below use 0 and {k}"
    )

    # the mean noise-free task course of the active voxels, per run (zero-mean): the true
    # evoked signal the PCs might carry
    from echoprep.simulate.design import response_matrix

    act_betas = truth["betas"]
    trials = sim["trials"]
    courses = []
    for run in sorted(trials["run"].unique()):
        cols = np.flatnonzero(trials["run"].to_numpy() == run)
        resp = response_matrix(p, trials["onset"].to_numpy()[cols], 0.0, 10)
        c = resp @ act_betas[:, cols].mean(axis=0)
        courses.append(c - c.mean())

    def pc_task_r2(res, n):
        if n == 0:
            return float("nan")
        out = []
        for pcs, c in zip(res["typec"]["pcregressors"], courses, strict=True):
            x = pcs[:, :n] - pcs[:, :n].mean(axis=0)
            coef, *_ = np.linalg.lstsq(x, c, rcond=None)
            out.append(1 - np.sum((c - x @ coef) ** 2) / np.sum(c**2))
        return float(np.mean(out))

    print(
        f"{'data':<7} {'PCs':>3} {'type':<4} {'NC %':>6} {'split':>6} {'heldout':>7} "
        f"{'r_true':>6} {'resid':>6} {'own_resid':>9} {'pc_task_r2':>10}"
    )
    for name, data in (("raw", raw), ("nordic", den)):
        for n in (0, k):
            res = fit(data, pcstop=-n)
            for typ in ("typeb", "typec", "typed"):
                if typ == "typeb" and n:
                    continue
                b = res[typ]["betasmd"][active].astype(np.float64)
                print(
                    f"{name:<7} {n if typ != 'typeb' else '-':>3} {typ[-1].upper():<4} "
                    f"{np.median(noise_ceiling(b, labels, runs).nc):6.1f} "
                    f"{np.nanmedian(split_half_reliability(b, labels, runs)):6.3f} "
                    f"{heldout_from_betas(b, ref, labels, runs).median:7.3f} "
                    f"{np.nanmedian(truth_fidelity(b, labels, runs, mu, images)):6.3f} "
                    f"{_residual_corr(b, ref, labels, runs, mu, images):6.3f} "
                    f"{_residual_corr(b, b, labels, runs, mu, images):9.3f} "
                    f"{pc_task_r2(res, n) if typ != 'typeb' else float('nan'):10.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
