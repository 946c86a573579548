"""Spatial preprocessing end to end: type-D beta accuracy with and without motion + distortion.

Issue 6's acceptance: "with motion and distortion on, type-D beta correlation with truth in
active voxels is within 0.05 of the motion-free run". Per preset, three datasets are simulated
with the same seed:

- ``clean``: no head motion, no EPI distortion (no fieldmaps);
- ``still``: no head motion; EPI distortion by the B0 field, phasediff fieldmaps (the motion-free
  run of the same acquisition);
- ``moved``: head motion (<= 2 mm / 2 deg per volume), EPI distortion by the B0 field, phasediff
  fieldmaps.

Both go through the same steps: :func:`echoprep.stages.spatial.run_geometry` per run (raw echo
2: slice timing, head motion, fieldmap SDC when there is a fieldmap, run -> run 1),
:func:`~echoprep.stages.spatial.subject_grid` (BOLD -> T1w registration; the raw T1w and the
truth T1w brain mask stand in for the anatomy stage, which has its own benchmark), the one
resampling of echo 2 into the T1w-aligned grid (the single-echo baseline: no optimal
combination), then :func:`echoprep.kernels.glm.fit_glmsingle` (FITHRF_GLMDENOISE_RR defaults)
on the session. The truth single-trial betas (BOLD world, motion-free) are brought into the
output grid through the truth pose with the pipeline's own interpolation (cubic B-spline: the
truth is what the pipeline would output from noise-free, motion-free data; ``--truth-order 1``
for trilinear, which favours smoother estimates); per active voxel (truth active mask >= 0.5 on
the output grid) the Pearson correlation of the type-D betas with the truth over trials is
computed; the median over active voxels is reported with the differences still - moved (the
motion-free run of the same acquisition) and clean - moved (which adds what the EPI distortion
itself costs), per simulation seed (``--seeds``; the dataset's anatomy, motion, noise and
responses all change with it) and averaged over the seeds; the exit status is 1 when either
mean exceeds 0.05.

``--accuracy`` prints instead, per preset (1 subject, 2 runs, motion, distortion, fieldmaps), the
geometry figures of issue 6 per run: mean volume-to-volume motion error (mm, deg), the RMS error
(mm) over the truth T1w brain of the whole map T1w -> volume t (BOLD -> T1w, run -> run 1 and
motion together; mean over volumes) and the reduction of the voxel-shift error by the fieldmap.

Run::

    .venv/bin/python benchmarks/spatial.py [--presets tiny demo] [--seeds 0 1 2] [--threads 2]
        [--oracle]
    .venv/bin/python benchmarks/spatial.py --accuracy --presets tiny demo

(demo is reduced to one subject; all of its runs are used.)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))


def _fieldmap(run) -> dict | None:
    return None if run.fieldmap is None else run.fieldmap.as_spec()


def _geometry(
    ds, out: Path, t1w_mask: Path, threads: int, options: dict | None = None
) -> tuple[list[dict], dict]:
    """The stage's geometry of every run (raw echo 2, runs aligned to run 1) and the subject's
    T1w-aligned grid (raw T1w, the truth T1w brain mask); returns the runs' and the subject's
    output paths."""
    from echoprep.io.outputs import paths_in, run_key, subject_key
    from echoprep.stages import spatial

    geo: list[dict] = []
    for i, run in enumerate(ds.runs):
        paths = paths_in(out / "spatial", "spatial", run_key(run.entities))
        spatial.run_geometry(
            run.echoes[1].mag,
            paths,
            repetition_time=run.repetition_time,
            slice_timing=run.slice_timing,
            fieldmap=_fieldmap(run),
            pe_direction=run.pe_direction,
            readout_time=run.total_readout_time,
            reference_boldref=None if i == 0 else geo[0]["boldref"],
            options=options,
            n_threads=threads,
        )
        geo.append(paths)
    subject = paths_in(out / "spatial", "spatial_subject", subject_key("01"))
    spatial.subject_grid(geo[0]["boldref"], ds.t1w["01"], t1w_mask, subject, n_threads=threads)
    return geo, subject


def _oracle_geometry(geo: list[dict], subject: dict, tp: dict) -> None:
    """Replace the estimated transforms by the simulator's truth (in place, on disk)."""
    import nibabel as nib
    import pandas as pd

    from echoprep.kernels.geometry.transforms import rigid_matrix
    from echoprep.simulate.geometry import PE_AXIS

    pose = np.array(json.loads(Path(tp["bold_to_T1w"]).read_text())["Matrix"])
    np.savetxt(subject["xfm"], np.linalg.inv(pose))  # T1w world -> motion-free BOLD world
    vsm = None if tp["vsm"] is None else np.asarray(nib.load(tp["vsm"]).dataobj, np.float32)
    for i, g in enumerate(geo):
        with np.load(g["xfm"]) as z:
            arrays = {k: z[k] for k in z.files}
        n = len(arrays["vol_from_ref"])
        if tp["motion"]:
            table = pd.read_csv(tp["motion"][i], sep="\t")
            cols = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
            arrays["vol_from_ref"] = rigid_matrix(table[cols].to_numpy()[:n], arrays["center"])
        else:
            arrays["vol_from_ref"] = np.repeat(np.eye(4)[None], n, 0)
        arrays["run_from_ref"] = np.eye(4)
        if vsm is not None:
            arrays["vsm"], arrays["pe_axis"] = vsm, np.int64(PE_AXIS)
        np.savez_compressed(g["xfm"], **arrays)


def one(
    preset: str,
    moved: bool,
    base: Path,
    threads: int,
    motion_regressors: bool = False,
    *,
    motion: bool | None = None,
    distortion: bool | None = None,
    options: dict | None = None,
    oracle: bool = False,
    seed: int = 0,
    truth_order: int | None = None,
) -> dict:
    """Simulate, preprocess, fit; return accuracy figures and timings.

    ``moved`` turns head motion and distortion (with fieldmaps) on; ``motion`` /
    ``distortion`` override one of them (to attribute a loss). ``oracle``: resample with the
    TRUE transforms (simulated motion, voxel-shift map and pose) instead of the estimated ones,
    through the same one-interpolation chain: the best any estimate can do on these data.
    """
    motion = moved if motion is None else motion
    distortion = moved if distortion is None else distortion
    import nibabel as nib
    import pandas as pd
    from scipy import ndimage

    from echoprep.io.bids import discover
    from echoprep.io.events import build_session_design
    from echoprep.io.outputs import path_in, run_key
    from echoprep.kernels.glm import REQUIRED_OPTIONS, fit_glmsingle
    from echoprep.options import section_defaults
    from echoprep.simulate import simulate_dataset, truth_paths
    from echoprep.stages import spatial

    t0 = time.perf_counter()
    bids = simulate_dataset(
        base / "bids",
        preset,
        seed=seed,
        subjects=1,
        motion=motion,
        fieldmap=distortion,
        distortion=distortion,
    )
    t_sim = time.perf_counter() - t0
    out = base / "out"
    ds = discover(bids, cache_dir=out / "index")
    runs = ds.runs
    tp = truth_paths(bids, "01")
    t0 = time.perf_counter()
    geo, subject = _geometry(ds, out, tp["T1w_brain_mask"], threads, options)
    if oracle:
        _oracle_geometry(geo, subject, tp)
    data = []
    for i, run in enumerate(runs):
        dst = path_in(
            out / "preproc-raw", "preproc.bold", run_key(run.entities), space="T1w", echo=2
        )
        spatial.resample_run(
            [run.echoes[1].mag],
            geo[i]["xfm"],
            subject["boldref"],
            [dst],
            ref_xfm_file=subject["xfm"],
            n_threads=threads,
        )
        data.append(np.asarray(nib.load(dst).dataobj, np.float32))
    t_spatial = time.perf_counter() - t0
    t0 = time.perf_counter()
    glm = section_defaults("glm")
    design = build_session_design(
        [r.events for r in runs],
        [d.shape[3] for d in data],
        runs[0].repetition_time,
        exclude_trial_types=glm["blank_trial_types"],
    )
    extra = {}
    if motion_regressors:  # the 6 motion parameters of the confounds TSV, demeaned per run
        regs = []
        for g in geo:
            p = pd.read_csv(g["confounds"], sep="\t").iloc[:, :6].to_numpy(np.float64)
            regs.append((p - p.mean(0)).astype(np.float32))
        extra["extra_regressors"] = regs
    defaults = {k: v for k, v in glm.items() if k in REQUIRED_OPTIONS}
    fit = fit_glmsingle(
        design.designs, data, 2.5, runs[0].repetition_time, seed=0, **defaults, **extra
    )
    t_glm = time.perf_counter() - t0
    betas = np.asarray(fit["typed"]["betasmd"], np.float64)  # (X, Y, Z, N)

    # truth into the output grid: output (T1w world) -> BOLD world -> truth voxel
    grid = nib.load(subject["boldref"])
    pose = np.array(json.loads(Path(tp["bold_to_T1w"]).read_text())["Matrix"])
    timg = nib.load(tp["betas"])
    q = np.linalg.inv(timg.affine) @ np.linalg.inv(pose) @ grid.affine
    ijk = np.indices(grid.shape[:3]).reshape(3, -1).astype(float)
    coords = q[:3, :3] @ ijk + q[:3, 3:4]
    active_bold = np.asarray(nib.load(tp["active_mask"]).dataobj, np.float32)
    active = ndimage.map_coordinates(active_bold, coords, order=1).reshape(grid.shape) >= 0.5
    tbetas = np.asarray(timg.dataobj, np.float32)
    if truth_order is None:  # the pipeline's own interpolation
        truth_order = int({**section_defaults("spatial"), **(options or {})}["interpolation_order"])
    truth = np.stack(
        [
            ndimage.map_coordinates(tbetas[..., k], coords, order=truth_order).reshape(grid.shape)
            for k in range(tbetas.shape[3])
        ],
        axis=-1,
    )
    trials = pd.read_csv(tp["trials"], sep="\t")
    if truth.shape[3] != betas.shape[3] or len(trials) != len(design.trials):
        raise RuntimeError(
            f"trial counts differ: truth {truth.shape[3]}, estimated {betas.shape[3]}"
        )
    est = betas[active]
    tru = truth[active].astype(np.float64)
    est = est - est.mean(1, keepdims=True)
    tru = tru - tru.mean(1, keepdims=True)
    r = (est * tru).sum(1) / np.sqrt((est * est).sum(1) * (tru * tru).sum(1))
    fd = []
    for g in geo:
        fd.append(float(spatial.load_geometry(g["xfm"])["framewise_displacement"].mean()))
    return {
        "preset": preset,
        "moved": moved,
        "runs": len(runs),
        "active_voxels": int(active.sum()),
        "median_r": float(np.nanmedian(r)),
        "mean_r": float(np.nanmean(r)),
        "mean_fd_mm": float(np.mean(fd)),
        "seconds": {
            "simulate": round(t_sim, 1),
            "spatial": round(t_spatial, 1),
            "glm": round(t_glm, 1),
        },
    }


def accuracy(preset: str, base: Path, threads: int) -> list[str]:
    """Geometry accuracy against the truth, one line per run (module docstring)."""
    import nibabel as nib
    import pandas as pd

    from echoprep.io.bids import discover
    from echoprep.kernels.geometry.transforms import apply_matrix, rigid_matrix, rigid_params
    from echoprep.simulate import simulate_dataset, truth_paths
    from echoprep.stages import spatial

    bids = simulate_dataset(
        base / "bids", preset, seed=0, subjects=1, runs=2, motion=True, fieldmap=True
    )
    out = base / "out"
    ds = discover(bids, cache_dir=out / "index")
    runs = ds.runs
    tp = truth_paths(bids, "01")
    geo, subject = _geometry(ds, out, tp["T1w_brain_mask"], threads)
    pose = np.array(json.loads(Path(tp["bold_to_T1w"]).read_text())["Matrix"])
    mask = nib.load(tp["T1w_brain_mask"])
    pts = apply_matrix(mask.affine, np.argwhere(np.asarray(mask.dataobj) > 0))
    ref_from_t1w = np.loadtxt(subject["xfm"])
    true_vsm = np.asarray(nib.load(tp["vsm"]).dataobj, np.float64)
    brain = np.asarray(nib.load(tp["brain_mask"]).dataobj) > 0
    cols = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    lines = []
    for i, run in enumerate(runs):
        g = spatial.load_geometry(geo[i]["xfm"])
        c, est = g["center"], g["vol_from_ref"]
        truth = rigid_matrix(pd.read_csv(tp["motion"][i], sep="\t")[cols].to_numpy(), c)
        err = np.abs(
            rigid_params(est @ np.linalg.inv(est[0]), c)[1:]
            - rigid_params(truth @ np.linalg.inv(truth[0]), c)[1:]
        )
        full = est @ g["run_from_ref"] @ ref_from_t1w
        want = truth @ np.linalg.inv(pose)
        rms = np.mean(
            [
                np.sqrt(np.mean(np.sum((apply_matrix(f, pts) - apply_matrix(w, pts)) ** 2, -1)))
                for f, w in zip(full, want, strict=True)
            ]
        )
        before = np.abs(true_vsm[brain]).mean()
        after = np.abs(g["vsm"][brain] - true_vsm[brain]).mean()
        lines.append(
            f"{preset:6s} run-{run.run}: motion {err[:, :3].mean():.3f} mm "
            f"{np.rad2deg(err[:, 3:]).mean():.3f} deg (target 0.2); BOLD->T1w RMS {rms:.2f} mm "
            f"(target 1); voxel-shift error reduced by {100 * (1 - after / before):.1f} % "
            "(target 70)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny"], choices=["tiny", "demo"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="simulation seeds")
    parser.add_argument(
        "--truth-order",
        type=int,
        default=None,
        help="spline order bringing the truth betas into the output grid (default: the "
        "pipeline's interpolation_order, 3)",
    )
    parser.add_argument(
        "--oracle",
        action="store_true",
        help="also resample the moved data with the TRUE transforms (the best achievable)",
    )
    parser.add_argument(
        "--motion-regressors",
        action="store_true",
        help="give GLMsingle the 6 motion parameters as extra regressors (both cases)",
    )
    parser.add_argument(
        "--accuracy", action="store_true", help="geometry accuracy per run instead (see above)"
    )
    args = parser.parse_args(argv)
    if args.accuracy:
        for preset in args.presets:
            with tempfile.TemporaryDirectory(prefix=f"echoprep-spatial-{preset}-") as tmp:
                for line in accuracy(preset, Path(tmp), args.threads):
                    print(line, flush=True)
        return 0
    print(f"{'preset':8s} {'seed':>4s} {'case':6s} {'runs':>4s} {'active':>6s} {'median r':>9s} "
          f"{'mean r':>7s} {'mean FD':>8s}  seconds")  # fmt: skip
    ok = True
    for preset in args.presets:
        gaps: dict[str, list[float]] = {"clean": [], "still": []}
        for seed in args.seeds:
            res = {}
            # case: (moved, motion override, oracle)
            cases = [("clean", False, None, False), ("still", True, False, False)]
            cases.append(("moved", True, None, False))
            if args.oracle:
                cases.append(("oracle", True, None, True))
            for case, moved, motion, oracle in cases:
                with tempfile.TemporaryDirectory(prefix=f"echoprep-spatial-{preset}-") as tmp:
                    x = one(
                        preset,
                        moved,
                        Path(tmp),
                        args.threads,
                        args.motion_regressors,
                        motion=motion,
                        oracle=oracle,
                        seed=seed,
                        truth_order=args.truth_order,
                    )
                res[case] = x
                fd = "(true transforms)" if oracle else f"{x['mean_fd_mm']:8.3f}  {x['seconds']}"
                print(
                    f"{preset:8s} {seed:4d} {case:6s} {x['runs']:4d} {x['active_voxels']:6d} "
                    f"{x['median_r']:9.3f} {x['mean_r']:7.3f} {fd}",
                    flush=True,
                )
            for base in gaps:
                gaps[base].append(res[base]["median_r"] - res["moved"]["median_r"])
            print(
                f"{preset:8s} {seed:4d} median r: clean - moved {gaps['clean'][-1]:+.3f}, "
                f"still - moved {gaps['still'][-1]:+.3f}",
                flush=True,
            )
        for base, label in (("clean", "no motion, no distortion"), ("still", "distortion only")):
            mean = float(np.mean(gaps[base]))
            ok &= mean <= 0.05
            print(
                f"{preset:8s} mean over seeds {args.seeds}: {base} ({label}) - moved median r "
                f"= {mean:+.3f} (max {max(gaps[base]):+.3f}; target <= 0.05, ratio "
                f"{mean / 0.05:.2f})",
                flush=True,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
