"""Where the planted estimate's error lies: the workflow's planted responses against the
simulator's truth planted the same way, one part at a time (docs/comparison.md, "What the
planted estimate still misreads").

On a case kept by ``benchmarks/comparison_regimes.py --keep`` (a simulated dataset whose
workflow ran through the comparison; one session or several, with or without the spatial
stage), this script

1. runs the case's planted jobs and comparison again (``--rescore``, its planted betas
   removed first: the workflow's planting with this code, ``workflow``);
2. for each ``--planted`` choice, replaces a part of every comparison session's design by the
   simulator's truth, leaves the rest of the design as it was (half B, the factor, the
   source), and runs the case's planted jobs and comparison again:

   - ``truth`` (the default): the planted pattern (half A, or the image means from the other
     sessions, noise and all) by the noise-free image means times the pattern's gain on them
     (pooled over the design's voxels: the same scale, no noise);
   - ``shape``: each voxel's planted time course (the curves ``planted_design`` estimated) by
     the simulator's own (the library HRF of its peak map);
   - ``truth-shape``: both; ``truth-shape-level``: both, the pattern with each voxel's true mean
     evoked response kept (the image means not centred, as the data's responses are);
   - ``synthetic``: a noise-free draw with the session's response covariance between voxels,
     random per image, planted and scored against itself (:func:`synthetic_design`);
3. puts the designs back and runs the planted jobs again (``--no-restore``: leave the last
   planting in place).

Printed per variant: ``planted_r`` with each planting, beside the truth (the median over the
comparison's ROI of the variant's r with the noise-free image means, as
``comparison_regimes.py`` reports it; with several sessions the means over them), and per
planting the mean absolute error and the NORDIC-dependent bias (the mean error of the NORDIC
variants minus that of the others). Where the truth planted reads right and the workflow's
pattern does not, the error is in what the pattern brings besides the response; where neither
does, in what the planted responses lack of the data's own (their time course, their mean,
their trial-to-trial variability: ``planted_secant.py --part trial``).

    .venv/bin/python benchmarks/planted_oracle.py --case DIR
        [--planted truth shape truth-shape truth-shape-level synthetic]
        [--seed 0] [--json FILE] [--no-restore]

About 11 minutes for a 6-run case of the regime preset (2-core VM) and one ``--planted``
choice (three plantings and their comparisons); each further choice one planting more (about
5 minutes for a 4-run case of two sessions).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from echoprep.kernels.glm.hrf import FINE_DT  # noqa: E402
from echoprep.simulate.design import hrf_index, hrf_table  # noqa: E402
from echoprep.simulate.truth import truth_paths  # noqa: E402

ORACLES = ("truth", "shape", "truth-shape", "truth-shape-level", "synthetic")


def case_args(case: Path) -> list[str]:
    """``comparison_regimes.py`` arguments that rescore the kept ``case``."""
    found = re.fullmatch(
        r"(.+)_seed(\d+)_runs(\d+|preset)(_motion)?(_spatial)?(?:_ses(\d+))?(?:_src-(.+))?",
        case.name,
    )
    if found is None:
        raise SystemExit(
            f"{case}: expected a folder named <regime>_seed<S>_runs<N|preset>[_motion]"
            "[_spatial][_ses<N>][_src-<source>] (comparison_regimes.py --keep)"
        )
    regime, seed, runs, motion, spatial, sessions, source = found.groups()
    args = ["--regimes", regime, "--seed", seed, "--keep", str(case.parent), "--rescore"]
    args += [] if runs == "preset" else ["--runs", runs]
    args += ["--motion"] if motion else []
    args += ["--spatial"] if spatial else []
    args += ["--sessions", sessions] if sessions else []
    return args + (["--source", source] if source else [])


def design_paths(case: Path) -> dict[str, Path]:
    """The case's planted designs, per comparison session label."""
    found = sorted((case / "results/planted/sub-01").glob("ses-*/func/*_desc-planted_design.npz"))
    if not found:
        raise SystemExit(f"{case}: expected planted designs under results/planted; found none")
    return {p.parent.parent.name[len("ses-") :]: p for p in found}


def score(case: Path, scratch: Path, name: str, replant: bool) -> pd.DataFrame:
    """The case's comparison (its planted jobs first when ``replant``): one row per variant."""
    if replant:
        for f in (case / "results").glob("glmsingle-*/sub-01/ses-*/func/*plantedBetas*"):
            f.unlink()
    table = scratch / f"{name}.tsv"
    cmd = [sys.executable, str(ROOT / "benchmarks/comparison_regimes.py"), *case_args(case)]
    with open(scratch / f"{name}.log", "w") as log:
        # exit status 1 means a target of the regime check was missed: the table still counts
        done = subprocess.run([*cmd, "--table", str(table)], cwd=ROOT, stdout=log, stderr=log)
    if not table.exists():
        raise SystemExit(f"{case}: comparison_regimes.py failed ({done.returncode}): {log.name}")
    return pd.read_csv(table, sep="\t").set_index("variant")


def simulator_curves(stimdur: float, n: int) -> np.ndarray:
    """``(n, 20)`` the simulator's response curves (its library HRFs convolved with the
    stimulus, peak 1) every :data:`FINE_DT` s from the onset, as a design's ``curves``."""
    times, table = hrf_table(stimdur)
    fine = np.arange(n) * FINE_DT
    return np.stack([np.interp(fine, times, h, left=0.0, right=0.0) for h in table], axis=1)


def oracle_design(
    case: Path, design: dict[str, np.ndarray], session: str = "01", planted: str = "truth"
) -> tuple[dict, float]:
    """``design`` with what ``planted`` names replaced by the simulator's truth; returns the new
    design and the source pattern's pooled gain on the true image means.

    ``truth``: the planted pattern by the noise-free image means (centred per voxel) times the
    source pattern's pooled gain on them (the same scale, no noise); ``shape``: each voxel's
    response curve by the simulator's own (its library HRF of the truth's peak map, in place of
    the curves ``planted_design`` estimated); ``truth-shape``: both; ``truth-shape-level``: both,
    and the pattern keeps the true mean evoked response of each voxel (the image means not
    centred), as the data's responses do. Images without a source keep none."""
    parts = set(planted.split("-"))  # e.g. truth-shape-level: {truth, shape, level}
    truth = truth_paths(case / "bids", "01", session)
    rows = tuple(np.asarray(design["voxels"]).T)
    out = dict(design)
    gain = float("nan")
    if "truth" in parts:
        means = np.asarray(nib.load(truth["image_means"]).dataobj, np.float64)[rows]
        labels = pd.read_csv(truth["images"], sep="\t", dtype={"label": str})["label"]
        labels = [str(x) for x in labels]
        true = means[:, [labels.index(str(i)) for i in design["images"]]]
        level = true.mean(axis=1, keepdims=True)
        true = true - level
        source = np.asarray(design["planted"], np.float64)
        has = np.isfinite(source).all(axis=0)
        src = source[:, has] - source[:, has].mean(axis=1, keepdims=True)
        ref = true[:, has] - true[:, has].mean(axis=1, keepdims=True)
        gain = float((src * ref).sum() / (ref * ref).sum())
        new = gain * (true + level if "level" in parts else true)
        new[:, ~has] = np.nan
        out["planted"] = new.astype(source.dtype)
    if "shape" in parts:
        peak = np.asarray(nib.load(truth["hrf_peak"]).dataobj, np.float64)[rows]
        curves = simulator_curves(float(design["stimdur"]), np.asarray(design["curves"]).shape[0])
        out["curves"] = curves.astype(np.asarray(design["curves"]).dtype)
        out["hrf"] = hrf_index(peak).astype(np.asarray(design["hrf"]).dtype)
    return out, gain


def synthetic_design(design: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """``design`` with a noise-free synthetic pattern as both the planted pattern and its
    truth: ``X = W z``, ``W W^T`` the positive part of the symmetrised covariance of half A
    and half B over images (the response covariance between voxels, without the halves'
    noise in expectation; computed in the span of the halves), ``z`` standard normal per
    image (``seed``): responses with the session's spatial statistics, assigned to the images
    independently of the data, whose noise they do not carry."""
    a = np.asarray(design["planted"], np.float64)
    b = np.asarray(design["truth"], np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    n = a.shape[1]
    q, _ = np.linalg.qr(np.hstack([a, b]))
    qa, qb = q.T @ a, q.T @ b
    m = (qa @ qb.T + qb @ qa.T) / (2 * (n - 1))
    lam, vec = np.linalg.eigh(m)
    w = (q @ vec) * np.sqrt(np.clip(lam, 0.0, None))
    z = np.random.default_rng(seed).standard_normal((w.shape[1], n))
    x = w @ z
    x -= x.mean(axis=1, keepdims=True)
    out = dict(design)
    dtype = np.asarray(design["planted"]).dtype
    out["planted"] = x.astype(dtype)
    out["truth"] = x.astype(np.asarray(design["truth"]).dtype)
    return out


def summary(table: pd.DataFrame) -> dict[str, float]:
    err = table["planted_r"] - table["r_truth_roi"]
    nordic = table.index.str.startswith("nordic-")
    return {
        "mae": round(float(err.abs().mean()), 4),
        "nordic_bias": round(float(err[nordic].mean() - err[~nordic].mean()), 4),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", type=Path, required=True, help="a case kept by comparison_regimes")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-restore", action="store_true", help="leave the last planting")
    ap.add_argument(
        "--planted",
        nargs="+",
        default=["truth"],
        choices=ORACLES,
        help="truth: the noise-free image means in place of the workflow's planted pattern; "
        "shape: the simulator's response curves in place of the estimated ones; truth-shape: "
        "both; truth-shape-level: both with the mean evoked response kept; synthetic: a "
        "noise-free draw with the session's response covariance, planted and scored against "
        "itself",
    )
    ap.add_argument("--seed", type=int, default=0, help="the synthetic draw's seed")
    args = ap.parse_args(argv)
    case = args.case.resolve()
    paths = design_paths(case)
    scratch = Path(tempfile.mkdtemp(prefix="planted_oracle_"))
    original = {}
    for session, path in paths.items():
        shutil.copy2(path, scratch / f"design_{session}.npz")
        with np.load(path) as d:
            original[session] = {k: d[k] for k in d.files}
    sources = sorted({str(d.get("source", "session")) for d in original.values()})
    tables = {"workflow": score(case, scratch, "workflow", replant=True)}  # with this code
    gains: dict[str, dict[str, float]] = {}
    try:
        for mode in args.planted:
            for session, path in paths.items():
                if mode == "synthetic":
                    design = synthetic_design(original[session], args.seed)
                else:
                    design, gain = oracle_design(case, original[session], session, mode)
                    gains.setdefault(mode, {})[session] = round(gain, 4)
                tmp = path.with_suffix(".oracle.npz")
                with open(tmp, "wb") as fh:
                    np.savez(fh, **design)
                os.replace(tmp, path)
            tables[mode] = score(case, scratch, mode, replant=True)
    finally:
        if not args.no_restore:
            for session, path in paths.items():
                shutil.copy2(scratch / f"design_{session}.npz", path)
                path.touch()  # newer than the fits: the planted jobs run again
            score(case, scratch, "restored", replant=True)
    base = tables["workflow"]
    result = {
        "case": case.name,
        "sessions": sorted(paths),
        "source": sources,
        "source_gain_on_truth": gains,
        "seed": args.seed,
        "variants": {
            v: {"truth": round(float(base.loc[v, "r_truth_roi"]), 3)}
            | {f"{k}_planted": round(float(t.loc[v, "planted_r"]), 3) for k, t in tables.items()}
            for v in base.index
        },
    } | {f"{k}_planted": summary(t) for k, t in tables.items()}
    print(f"{case.name}: planted_r with each pattern planted, and the true r")
    for v, r in result["variants"].items():
        cells = "  ".join(f"{k} {r[f'{k}_planted']:.3f}" for k in tables)
        print(f"  {v:<16} {cells}  true r {r['truth']:.3f}")
    for k in tables:
        mae, bias = result[f"{k}_planted"]["mae"], result[f"{k}_planted"]["nordic_bias"]
        print(f"  {k} planted: mean absolute error {mae:.3f}, NORDIC-dependent bias {bias:+.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
