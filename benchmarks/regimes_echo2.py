"""Does NORDIC help the betas or only the noise ceiling? Echo 2 of each response regime.

For each regime of :data:`echoprep.simulate.response.REGIMES` one subject of a simulator preset
(default ``regime``: 32x40x30 at 4 mm, 6 runs x 120 volumes, 150 images shown 2-3 times) is
generated in memory at echo 2 only (no motion, no distortion, no spatial steps; the int16
magnitude/phase the simulator writes). Each run is used raw and NORDIC-denoised
(:func:`echoprep.kernels.nordic.nordic`, complex, defaults); the brain voxels go through the
echoprep GLM engine (:func:`echoprep.kernels.glm.fit_glmsingle`, defaults, onsets rounded to
the nearest volume as the workflow does) and the type-D betas are compared with the truth on
the true active voxels:

- ``NC``: median noise ceiling (%, :func:`echoprep.kernels.noiseceiling.noise_ceiling`, betas
  z-scored per run);
- ``r_true``: median over voxels of the Pearson r across images between the repeat-averaged
  betas (z-scored per run) and the true image means ``mu``;
- ``r_1rep``: the same with only each image's first showing;
- ``NC_B``: the median noise ceiling of the type-B betas (HRF fit only, no GLMdenoise PCs,
  no ridge);
- ``amp``: evoked amplitude ratio NORDIC / raw (median over active voxels of the mean type-B
  beta, % signal change).

Run: ``nice -n 10 .venv/bin/python benchmarks/regimes_echo2.py [--regimes smooth strong]
[--preset regime] [--runs 6] [--seed 0]``. About 50 s per regime on a 2-core VM (regime preset,
6 runs: NORDIC ~3 s per run, the two GLM fits ~15 s each).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from echoprep.kernels.glm import REQUIRED_OPTIONS, fit_glmsingle
from echoprep.kernels.noiseceiling import noise_ceiling, zscore_within
from echoprep.options import section_defaults
from echoprep.stages.nordic import denoise_arrays as nordic


def simulate_echo2(preset: str, regime, runs: int | None, seed: int) -> dict:
    """Echo-2 magnitude/phase of every run of subject 1, the design and the truth."""
    from echoprep.simulate import PRESETS, seeds
    from echoprep.simulate.anatomy import subject_anatomy
    from echoprep.simulate.design import session_design, single_trial_betas
    from echoprep.simulate.response import REGIMES
    from echoprep.simulate.signal import build_run, run_volumes

    p = PRESETS[preset]
    model = REGIMES[regime] if isinstance(regime, str) else regime
    n_runs = runs or p.n_runs
    anat = subject_anatomy(p, seed, 1, model)
    design = session_design(p, n_runs, seed, 1, 1)
    truth = single_trial_betas(anat, design, seed, 1, 1, model)
    trials = design[design["image"] >= 0].reset_index(drop=True)
    te = p.tes[1]
    mags, phases = [], []
    for run in range(1, n_runs + 1):
        cols = np.flatnonzero(trials["run"].to_numpy() == run)
        rm = build_run(
            p,
            anat,
            trials["onset"].to_numpy()[cols],
            truth["betas"][:, cols],
            seed=seed,
            subject=1,
            session=1,
            run=run,
            motion=False,
            response=model,
        )
        rng = [seeds.rng(seed, 1, 1, run, seeds.NOISE, 2)]
        blocks = [b[0] for b in run_volumes(rm, (te,), rng, p.chunk_volumes)]
        mags.append(np.moveaxis(np.concatenate([m for m, _ in blocks]), 0, -1))
        phases.append(np.moveaxis(np.concatenate([ph for _, ph in blocks]), 0, -1))
    return {
        "preset": p,
        "anat": anat,
        "trials": trials,
        "truth": truth,
        "mag": mags,
        "phase": phases,
    }


def glm_designs(sim: dict) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per-run 0/1 design matrices (T x images), onsets rounded to the nearest volume; the
    image number and run of every trial in chronological order."""
    p, trials = sim["preset"], sim["trials"]
    images = sim["truth"]["images"]
    designs = []
    for run in sorted(trials["run"].unique()):
        rows = trials[trials["run"] == run]
        d = np.zeros((p.n_volumes, len(images)), np.float32)
        vols = np.round(rows["onset"].to_numpy() / p.tr).astype(int)
        d[vols, np.searchsorted(images, rows["image"].to_numpy())] = 1
        designs.append(d)
    return designs, trials["image"].to_numpy(), trials["run"].to_numpy()


def evaluate(sim: dict, series: list[np.ndarray]) -> dict[str, float]:
    """Fit the GLM on the brain voxels of ``series`` (one 4D array per run); NC and truth
    fidelity of the type-D betas on the true active voxels."""
    p, anat, truth = sim["preset"], sim["anat"], sim["truth"]
    brain = anat.brain_mask
    designs, labels, runs = glm_designs(sim)
    data = [np.asarray(s[brain], np.float32) for s in series]
    defaults = {k: v for k, v in section_defaults("glm").items() if k in REQUIRED_OPTIONS}
    fit = fit_glmsingle(designs, data, p.stim_duration, p.tr, seed=0, n_threads=1, **defaults)
    active = anat.active[brain]
    betas = fit["typed"]["betasmd"][active].astype(np.float64)
    nc = noise_ceiling(betas, labels, runs).nc
    z = zscore_within(betas, runs)
    images = truth["images"]
    col = np.searchsorted(images, labels)
    avg = np.zeros((z.shape[0], len(images)))
    np.add.at(avg.T, col, z.T)
    avg /= np.bincount(col, minlength=len(images))
    first = np.zeros_like(avg)
    seen = np.zeros(len(images), bool)
    for j, c in enumerate(col):
        if not seen[c]:
            first[:, c], seen[c] = z[:, j], True
    mu = truth["mu"].astype(np.float64)
    nc_b = noise_ceiling(fit["typeb"]["betasmd"][active].astype(np.float64), labels, runs).nc
    return {
        "nc": float(np.median(nc)),
        "nc_b": float(np.median(nc_b)),
        "r_true": float(np.median(_rowcorr(avg, mu))),
        "r_1rep": float(np.median(_rowcorr(first, mu))),
        "amp": float(np.median(fit["typeb"]["betasmd"][active].mean(axis=1))),
        "pcnum": int(fit["typec"]["pcnum"]),
    }


def _rowcorr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.divide((a * b).sum(axis=1), den, out=np.zeros(len(a)), where=den > 0)


def tsnr_gm(sim: dict, series: list[np.ndarray]) -> float:
    """Median grey-matter tSNR (quadratic detrend) of the first run."""
    from echoprep.kernels.quality import tsnr

    x = series[0][sim["anat"].gm_mask].astype(np.float64)
    return float(np.median(tsnr(x, 2)))


def main() -> None:
    from echoprep.simulate.response import REGIMES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regimes", nargs="*", default=list(REGIMES))
    ap.add_argument("--preset", default="regime")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="override ResponseModel fields of every regime (e.g. thermal_scale=4.5)",
    )
    args = ap.parse_args()
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = tuple(float(v) for v in value.split(",")) if "," in value else float(value)
        if key == "n_features":
            overrides[key] = int(overrides[key])
    head = (
        f"{'regime':<10} {'variant':<7} {'tSNR':>5} {'NC %':>6} {'r_true':>7} {'r_1rep':>7} "
        f"{'amp':>6} {'PCs':>3} {'NC_B %':>6}"
    )
    print(head)
    print("-" * len(head))
    for name in args.regimes:
        t0 = time.perf_counter()
        model = dataclasses.replace(REGIMES[name], **overrides) if overrides else name
        sim = simulate_echo2(args.preset, model, args.runs, args.seed)
        raw = [m.astype(np.float32) for m in sim["mag"]]
        den = [
            nordic(m, ph, seed=args.seed).magnitude.astype(np.float32)
            for m, ph in zip(sim["mag"], sim["phase"], strict=True)
        ]
        res = {}
        for variant, series in (("raw", raw), ("nordic", den)):
            res[variant] = evaluate(sim, series) | {"tsnr": tsnr_gm(sim, series)}
        for variant, m in res.items():
            amp = m["amp"] / res["raw"]["amp"]
            print(
                f"{name:<10} {variant:<7} {m['tsnr']:5.1f} {m['nc']:6.1f} {m['r_true']:7.3f} "
                f"{m['r_1rep']:7.3f} {amp:6.2f} {m['pcnum']:3d} {m['nc_b']:6.1f}"
            )
        print(f"{'':<10} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
