"""The visually responsive ROI against the simulator's true active mask: old vs new statistic.

One subject of a simulator preset (no head motion, no distortion, no phase: the GLM sees the
truth grid, as with spatial preprocessing off) is fitted with the GLM stage (echoprep engine,
default options) on the raw echo 2 (``--optcom`` adds a T2*-weighted combination of the echoes
with the true T2*). The ROI is then built inside the GLM mask with

- ``trial-t > 3 (old)``: the former statistic (``method: blank_trials``) on the type-D betas, as
  the workflow used it: the minimum over leave-one-run-out folds of the one-sample t of the
  single-trial betas;
- ``run-level FDR 5 %`` (the default, ``method: blank``), and the same at 1 % and with a
  Bonferroni 5 % family-wise threshold: the moderated run-level test of
  :mod:`echoprep.kernels.visual` on the type-B betas of the same fit (what the workflow passes).

Printed per seed: voxels selected, precision (truly active among them) and recall (selected
among the truly active voxels in the GLM mask), the empirical false-positive rate (selected
among the truly inactive voxels of the true brain mask inside the GLM mask) and, for
calibration, the share of those inactive voxels with an uncorrected run-level p below 0.05 and
0.01 (nominal 0.05 and 0.01 if the null is calibrated), with the trial-level t above 3, and
with a run-level p below 0.05 computed on the type-D betas (their shared autoscale offset breaks
the between-run variance). Then the means over seeds.

Run: ``nice -n 10 .venv/bin/python benchmarks/visual_roi.py --preset tiny --seeds 0 1 2 3``
(tiny about 10 s per seed on 2 cores, demo about 1 min 20 s per seed; ``--optcom`` doubles the
GLM time).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from echoprep.io.events import read_trials
from echoprep.io.images import float_image
from echoprep.io.outputs import paths_in
from echoprep.kernels.visual import leave_one_run_out_t, run_level_test, select_responsive
from echoprep.simulate import simulate_dataset
from echoprep.stages.glm import (
    DEFAULT_OUTPUTS,
    run_glm,
    session_key,
)


def _optcom(echoes: list[Path], tes: list[float], t2star: np.ndarray, out: Path) -> Path:
    """T2*-weighted combination ``sum_e w_e S_e``, ``w_e ~ TE_e exp(-TE_e / T2*)``."""
    imgs = [nib.load(e) for e in echoes]
    t2 = np.where(t2star > 0, t2star, 1.0)[..., None]
    w = np.stack([te * np.exp(-te / t2) for te in tes], axis=0)
    w /= w.sum(axis=0, keepdims=True)
    data = sum(w[i] * img.get_fdata(dtype=np.float32) for i, img in enumerate(imgs))
    nib.save(float_image(data, imgs[0]), out)
    side = echoes[0].with_name(echoes[0].name.replace(".nii.gz", ".json"))
    out.with_name(out.name.replace(".nii.gz", ".json")).write_text(side.read_text())
    return out


def _scores(sel: np.ndarray, active: np.ndarray, inactive: np.ndarray) -> str:
    n = int(sel.sum())
    tp = int((sel & active).sum())
    precision = tp / n if n else float("nan")
    recall = tp / max(int(active.sum()), 1)
    fpr = int((sel & inactive).sum()) / max(int(inactive.sum()), 1)
    return f"{n:6d} vox  precision {precision:5.3f}  recall {recall:5.3f}  FPR {fpr:6.4f}"


def measure(preset: str, seed: int, optcom: bool) -> dict[str, dict[str, float]]:
    """Simulate, fit and print the table of one seed; returns the numbers per input and method."""
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="visual-roi-") as tmp:
        t0 = time.perf_counter()
        root = simulate_dataset(
            Path(tmp) / "bids",
            preset,
            seed=seed,
            subjects=1,
            motion=False,
            distortion=False,
            phase=False,
        )
        func = root / "sub-01" / "ses-01" / "func"
        truth = root / "derivatives" / "truth" / "sub-01" / "ses-01" / "func"
        ses = "sub-01_ses-01_task-images"
        runs = sorted({p.name.split("_run-")[1][:2] for p in func.glob("*_run-*_events.tsv")})
        events = [func / f"{ses}_run-{r}_events.tsv" for r in runs]
        active = nib.load(truth / f"{ses}_desc-truthActive_mask.nii.gz").get_fdata() > 0
        brain = nib.load(truth / "sub-01_ses-01_desc-truthBrain_mask.nii.gz").get_fdata() > 0
        inputs = {"echo-2": [func / f"{ses}_run-{r}_echo-2_part-mag_bold.nii.gz" for r in runs]}
        if optcom:
            t2star = nib.load(truth / "sub-01_ses-01_desc-truth_T2starmap.nii.gz").get_fdata()
            tes = [
                json.loads((func / f"{ses}_run-{runs[0]}_echo-{e}_part-mag_bold.json").read_text())[
                    "EchoTime"
                ]
                for e in (1, 2, 3)
            ]
            inputs["optcom"] = [
                _optcom(
                    [func / f"{ses}_run-{r}_echo-{e}_part-mag_bold.nii.gz" for e in (1, 2, 3)],
                    tes,
                    t2star,
                    Path(tmp) / f"optcom_run-{r}.nii.gz",
                )
                for r in runs
            ]
        print(
            f"{preset} seed {seed}: {len(runs)} runs, {int(active.sum())} truly active voxels, "
            f"simulated in {time.perf_counter() - t0:.1f} s"
        )
        for name, bold in inputs.items():
            outs = paths_in(
                Path(tmp) / name,
                "glm",
                session_key("01", "01", "images"),
                keys=[*DEFAULT_OUTPUTS, "betas_typeb"],
            )
            t1 = time.perf_counter()
            run_glm(bold, events, outs, run_labels=runs, session="01", seed=seed)
            fit_s = time.perf_counter() - t1
            fitted = nib.load(outs["mask"]).get_fdata() > 0
            betas = nib.load(outs["betas"]).get_fdata(dtype=np.float32)[fitted]
            betas_b = nib.load(outs["betas_typeb"]).get_fdata(dtype=np.float32)[fitted]
            trials = read_trials(outs["trials"])
            run_of = np.empty(len(trials), dtype=object)
            run_of[trials["beta_index"].to_numpy(int)] = trials["run"].to_numpy()
            run_of = run_of.astype(str)
            act = active[fitted]
            inact = brain[fitted] & ~act
            old = leave_one_run_out_t(betas, run_of)
            test = run_level_test(betas_b, run_of)
            test_d = run_level_test(betas, run_of)
            print(
                f"  {name}: GLM {fit_s:.1f} s, {int(fitted.sum())} fitted voxels "
                f"({int(act.sum())} active, {int(inact.sum())} inactive in the brain); run-level "
                f"df {test.df:.1f}, prior df {test.prior_df:.1f}, design effect "
                f"{test.design_effect:.2f}"
            )
            p_in = test.p[inact]
            calib = {
                "p<0.05": float(np.mean(np.nan_to_num(p_in, nan=1) < 0.05)),
                "p<0.01": float(np.mean(np.nan_to_num(p_in, nan=1) < 0.01)),
                "t>3": float(np.mean(np.nan_to_num(old[inact], nan=-1) > 3)),
                "typeD p<0.05": float(np.mean(np.nan_to_num(test_d.p[inact], nan=1) < 0.05)),
            }
            print(
                "    null calibration (inactive in-brain voxels): run-level p<0.05 "
                f"{calib['p<0.05']:.4f} (nominal 0.05), p<0.01 {calib['p<0.01']:.4f} (nominal "
                f"0.01); trial-level t>3 {calib['t>3']:.4f}; run-level on type-D betas p<0.05 "
                f"{calib['typeD p<0.05']:.4f}"
            )
            methods = {
                "trial-t > 3 (old)": np.nan_to_num(old, nan=-np.inf) > 3.0,
                "run-level FDR 5 %": select_responsive(test.p, 0.05, "fdr")[0],
                "run-level FDR 1 %": select_responsive(test.p, 0.01, "fdr")[0],
                "run-level FWE 5 %": select_responsive(test.p, 0.05, "bonferroni")[0],
            }
            for label, sel in methods.items():
                print(f"    {label:20s} {_scores(sel, act, inact)}")
                n = int(sel.sum())
                out[f"{name}/{label}"] = {
                    "precision": int((sel & act).sum()) / n if n else np.nan,
                    "recall": int((sel & act).sum()) / max(int(act.sum()), 1),
                    "fpr": int((sel & inact).sum()) / max(int(inact.sum()), 1),
                }
            out[f"{name}/calibration"] = calib
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "demo", "laion"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--optcom", action="store_true", help="also the optimal combination")
    args = parser.parse_args()
    results = [measure(args.preset, s, args.optcom) for s in args.seeds]
    print(f"mean over seeds {args.seeds}:")
    for key in results[0]:
        vals = {k: np.nanmean([r[key][k] for r in results]) for k in results[0][key]}
        print(f"  {key:32s} " + "  ".join(f"{k} {v:.4f}" for k, v in vals.items()))


if __name__ == "__main__":
    main()
