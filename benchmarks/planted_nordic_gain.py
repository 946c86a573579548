"""How much of a response NORDIC keeps, and how much its frozen decisions say it keeps
(docs/comparison.md, "What the planted estimate still misreads").

The planted estimate passes the planted responses through NORDIC with the decisions NORDIC made
on the run's own data (``echoprep nordic --companions``: each patch's kept subspace, a linear
map). NORDIC itself is not linear: with the session's responses in the data, its patches keep
subspaces chosen partly by those responses. This script measures, on one simulated run, the
share of the true image responses (the noise-free change of the magnitude they cause) that

- NORDIC keeps: ``NORDIC(data) - NORDIC(data without the responses)``, the same thermal noise
  and physiology (the simulator draws them from seeds that do not depend on the responses),
  projected on the noise-free response;
- the frozen map keeps: half the difference of the companions ``data +/- response`` denoised
  with the data's decisions, projected the same way;

pooled over the active voxels (the three quarters with the largest response), for the image
responses (the true image means at every trial) and for the full single-trial responses (with
the trial-to-trial variability). Printed per case, and the ratio frozen / actual: the factor by
which the planted estimate reads a NORDIC variant's gain for the session's responses (1: no
bias; NORDIC-off chains are linear and read 1 by construction).

    .venv/bin/python benchmarks/planted_nordic_gain.py [--regimes modest thermal default]
        [--runs 6] [--run 1] [--echo 2] [--seed 0] [--json FILE]

About 15 s per case on the regime preset (2-core VM).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from echoprep.simulate import seeds  # noqa: E402
from echoprep.simulate.anatomy import subject_anatomy  # noqa: E402
from echoprep.simulate.design import session_design, single_trial_betas  # noqa: E402
from echoprep.simulate.presets import PRESETS  # noqa: E402
from echoprep.simulate.response import REGIMES, resolve  # noqa: E402
from echoprep.simulate.signal import build_run, noise_free, run_volumes  # noqa: E402
from echoprep.stages.nordic import denoise_arrays  # noqa: E402


def _echo_series(model, preset, key: tuple[int, int, int, int], echo: int) -> tuple:
    """``(x, y, z, t)`` magnitude and phase of one echo as the simulator stores them."""
    seed, sub, ses, run = key
    rngs = [seeds.rng(seed, sub, ses, run, seeds.NOISE, e) for e in range(1, len(preset.tes) + 1)]
    mags, phases = [], []
    for block in run_volumes(model, preset.tes, rngs, preset.chunk_volumes, phase=True):
        mag, ph = block[echo - 1]
        mags.append(mag)
        phases.append(ph)
    return (
        np.moveaxis(np.concatenate(mags), 0, -1).astype(np.float32),
        np.moveaxis(np.concatenate(phases), 0, -1).astype(np.float32),
    )


def measure(regime: str, runs: int, run: int, echo: int, seed: int, preset: str) -> dict:
    """The kept shares of one simulated run (module docstring)."""
    p = PRESETS[preset]
    response = resolve(regime)
    sub, ses = 1, 1
    anat = subject_anatomy(p, seed, sub, response)
    design = session_design(p, runs, seed, sub, ses)
    truth = single_trial_betas(anat, design, seed, sub, ses, response)
    trials = design[design["image"] >= 0].reset_index(drop=True)
    cols = np.flatnonzero(trials["run"].to_numpy() == run)
    column = {int(im): i for i, im in enumerate(truth["images"])}
    image_cols = np.array([column[int(i)] for i in trials["image"].to_numpy()[cols]])
    amplitudes = {
        "full": truth["betas"][:, cols],
        "zero": np.zeros((truth["betas"].shape[0], cols.size)),
        "image": truth["mu"][:, image_cols],
    }
    onsets = trials["onset"].to_numpy()[cols]
    kw = {"seed": seed, "subject": sub, "session": ses, "run": run, "motion": False}
    models = {
        k: build_run(p, anat, onsets, b, response=response, **kw) for k, b in amplitudes.items()
    }
    m = models["full"]
    te = p.tes[echo - 1]

    def on_grid(values: np.ndarray) -> np.ndarray:
        out = np.zeros((int(np.prod(m.shape)), values.shape[1]), np.float32)
        out[m.head_idx] = values
        return out.reshape(*m.shape, -1)

    clean = {k: np.abs(noise_free(model, te, 0, m.n_volumes)) for k, model in models.items()}
    resp = {k: on_grid(clean[k] - clean["zero"]) for k in ("image", "full")}
    key = (seed, sub, ses, run)
    mag, phase = _echo_series(m, p, key, echo)
    mag0, phase0 = _echo_series(models["zero"], p, key, echo)
    t0 = time.perf_counter()
    companions = [mag + resp["image"], mag - resp["image"], mag + resp["full"], mag - resp["full"]]
    with_resp = denoise_arrays(mag, phase, seed=seed, companions=companions)
    without = denoise_arrays(mag0, phase0, seed=seed)
    seconds = time.perf_counter() - t0
    c = with_resp.companions
    frozen = {"image": (c[0] - c[1]) / 2, "full": (c[2] - c[3]) / 2}
    actual = with_resp.magnitude.astype(np.float64) - without.magnitude
    active = np.abs(resp["full"]).sum(axis=-1) > 0
    out: dict = {"regime": regime, "runs": runs, "run": run, "echo": echo, "seed": seed}
    for part in ("image", "full"):
        ref = resp[part][active].astype(np.float64)
        energy = (ref * ref).sum(axis=1)
        use = energy > np.percentile(energy, 25)
        den = energy[use].sum()
        kept = float((actual[active] * ref).sum(axis=1)[use].sum() / den)
        said = float((frozen[part][active] * ref).sum(axis=1)[use].sum() / den)
        out[f"{part}_kept"] = round(kept, 4)
        out[f"{part}_frozen"] = round(said, 4)
        out[f"{part}_ratio"] = round(said / kept, 4)
    out["voxels"] = int(use.sum())
    out["nordic_seconds"] = round(seconds, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regimes", nargs="+", default=["modest", "thermal", "default"])
    parser.add_argument("--runs", type=int, default=6, help="runs of the simulated session")
    parser.add_argument("--run", type=int, default=1, help="the run measured")
    parser.add_argument("--echo", type=int, default=2, help="the echo measured (1-based)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="regime", choices=list(PRESETS))
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    unknown = [r for r in args.regimes if r not in REGIMES]
    if unknown:
        parser.error(f"unknown regimes {unknown}; choose from {sorted(REGIMES)}")
    rows = []
    print(
        f"{'regime':<14} {'image: kept':>11} {'frozen':>7} {'ratio':>6} | "
        f"{'full: kept':>10} {'frozen':>7} {'ratio':>6}"
    )
    for regime in args.regimes:
        row = measure(regime, args.runs, args.run, args.echo, args.seed, args.preset)
        rows.append(row)
        print(
            f"{regime:<14} {row['image_kept']:11.3f} {row['image_frozen']:7.3f} "
            f"{row['image_ratio']:6.3f} | {row['full_kept']:10.3f} {row['full_frozen']:7.3f} "
            f"{row['full_ratio']:6.3f}",
            flush=True,
        )
    ratios = [r["image_ratio"] for r in rows]
    print(
        f"frozen_over_actual_image_gain: min {min(ratios):.3f}, max {max(ratios):.3f} "
        f"(1 = the planted estimate reads NORDIC's gain without bias)"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
