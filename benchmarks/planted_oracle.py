"""Where the planted estimate's error lies: the planted pattern (half A, noise and all) against
the noise-free truth planted the same way (docs/comparison.md, "What the planted estimate
still misreads").

On a case kept by ``benchmarks/comparison_regimes.py --keep`` (a simulated session whose
workflow ran through the comparison), this script

1. runs the case's planted jobs and comparison again (``--rescore``, its planted betas
   removed first: half A planted with this code);
2. replaces the planted pattern of the case's design (``planted``: half A, the image means of
   the reference fit's odd-numbered presentations, noise and all) by the simulator's noise-free
   image means times half A's gain on them (pooled over the design's voxels: the same scale,
   no noise), leaves everything else of the design as it was (half B, the factor, the time
   courses), and runs the case's planted jobs and comparison again (``--planted truth``, the
   default; ``--planted synthetic``: a noise-free draw with the session's response covariance
   between voxels, random per image, planted and scored against itself, see
   :func:`synthetic_design`);
3. puts the design back and runs the planted jobs again (``--no-restore``: leave the oracle
   planting in place).

Printed per variant: ``planted_r`` with half A planted and with the truth planted, beside the
truth (the median over the comparison's ROI of the variant's r with the noise-free image
means, as ``comparison_regimes.py`` reports it), and per planting the mean absolute error and
the NORDIC-dependent bias (the mean error of the NORDIC variants minus that of the others).
Where the truth planted reads right and half A does not, the error is in what half A brings
besides the response: the data's own noise at the image's presentations, which chains with
decisions made on that data (NORDIC's kept components above all) pass as if it were response.

    .venv/bin/python benchmarks/planted_oracle.py --case DIR [--planted truth synthetic]
        [--seed 0] [--json FILE] [--no-restore]

About 11 minutes for a 6-run case of the regime preset (2-core VM) and one ``--planted``
choice: three plantings and their comparisons.
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

from echoprep.simulate.truth import truth_paths  # noqa: E402

DESIGN = "results/planted/sub-01/ses-01/func/sub-01_ses-01_task-images_desc-planted_design.npz"


def case_args(case: Path) -> list[str]:
    """``comparison_regimes.py`` arguments that rescore the kept ``case``."""
    found = re.fullmatch(r"(.+)_seed(\d+)_runs(\d+|preset)", case.name)
    if found is None:
        raise SystemExit(f"{case}: expected a folder named <regime>_seed<S>_runs<N|preset>")
    regime, seed, runs = found.groups()
    args = ["--regimes", regime, "--seed", seed, "--keep", str(case.parent), "--rescore"]
    return args + ([] if runs == "preset" else ["--runs", runs])


def score(case: Path, scratch: Path, name: str, replant: bool) -> pd.DataFrame:
    """The case's comparison (its planted jobs first when ``replant``): one row per variant."""
    if replant:
        for f in (case / "results").glob("glmsingle-*/sub-01/ses-01/func/*plantedBetas*"):
            f.unlink()
    table = scratch / f"{name}.tsv"
    cmd = [sys.executable, str(ROOT / "benchmarks/comparison_regimes.py"), *case_args(case)]
    with open(scratch / f"{name}.log", "w") as log:
        # exit status 1 means a target of the regime check was missed: the table still counts
        done = subprocess.run([*cmd, "--table", str(table)], cwd=ROOT, stdout=log, stderr=log)
    if not table.exists():
        raise SystemExit(f"{case}: comparison_regimes.py failed ({done.returncode}): {log.name}")
    return pd.read_csv(table, sep="\t").set_index("variant")


def oracle_design(case: Path, design: dict[str, np.ndarray]) -> tuple[dict, float]:
    """``design`` with its planted pattern replaced by the noise-free image means times half
    A's pooled gain on them; returns the new design and that gain."""
    truth = truth_paths(case / "bids", "01", "01")
    rows = tuple(np.asarray(design["voxels"]).T)
    means = np.asarray(nib.load(truth["image_means"]).dataobj, np.float64)[rows]
    labels = [str(x) for x in pd.read_csv(truth["images"], sep="\t", dtype={"label": str})["label"]]
    true = means[:, [labels.index(str(i)) for i in design["images"]]]
    true -= true.mean(axis=1, keepdims=True)
    half_a = np.asarray(design["planted"], np.float64)
    half_a = half_a - half_a.mean(axis=1, keepdims=True)
    gain = float((half_a * true).sum() / (true * true).sum())
    out = dict(design)
    out["planted"] = (gain * true).astype(np.asarray(design["planted"]).dtype)
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
        choices=["truth", "synthetic"],
        help="truth: the noise-free image means in place of half A; synthetic: a noise-free "
        "draw with the session's response covariance, planted and scored against itself",
    )
    ap.add_argument("--seed", type=int, default=0, help="the synthetic draw's seed")
    args = ap.parse_args(argv)
    case = args.case.resolve()
    path = case / DESIGN
    scratch = Path(tempfile.mkdtemp(prefix="planted_oracle_"))
    backup = scratch / "design.npz"
    shutil.copy2(path, backup)
    tables = {"half_a": score(case, scratch, "half_a", replant=True)}  # with this code
    with np.load(backup) as d:
        original = {k: d[k] for k in d.files}
    gain = float("nan")
    try:
        for mode in args.planted:
            if mode == "truth":
                design, gain = oracle_design(case, original)
            else:
                design = synthetic_design(original, args.seed)
            tmp = path.with_suffix(".oracle.npz")
            with open(tmp, "wb") as fh:
                np.savez(fh, **design)
            os.replace(tmp, path)
            tables[mode] = score(case, scratch, mode, replant=True)
    finally:
        if not args.no_restore:
            shutil.copy2(backup, path)
            path.touch()  # newer than the fits: the planted jobs run again
            score(case, scratch, "restored", replant=True)
    half_a = tables["half_a"]
    result = {
        "case": case.name,
        "half_a_gain_on_truth": round(gain, 4),
        "seed": args.seed,
        "variants": {
            v: {"truth": round(float(half_a.loc[v, "r_truth_roi"]), 3)}
            | {f"{k}_planted": round(float(t.loc[v, "planted_r"]), 3) for k, t in tables.items()}
            for v in half_a.index
        },
    } | {f"{k}_planted": summary(t) for k, t in tables.items()}
    print(f"{case.name}: planted_r with each pattern planted, and the true r")
    for v, r in result["variants"].items():
        cells = "  ".join(f"{k} planted {r[f'{k}_planted']:.3f}" for k in tables)
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
