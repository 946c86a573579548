"""Gradient nonlinearity through the whole spatial stage: geometric error per volume.

One session is simulated with the simulator's nonlinear gradient coil
(``simulate_dataset(gradient_nonlinearity=True)``: BOLD, SBRefs and GRE fieldmaps acquired with
it), head motion and a B0 field that drifts over the session with N GRE fieldmaps between the
runs (``fieldmaps_per_session``). Every run goes through the spatial stage's geometry step
(``run_geometry`` on echo 2: head motion, the fieldmap, the gradient warp, the run's alignment to
the session's first run) and the one-interpolation chain (``build_chain``) that resamples it onto
the first run's native grid. Methods:

- ``no coil``: the floor: the same session (same seed: same head, motion, field and noise
  draws) simulated with a linear coil, fieldmaps interpolated in time, no gradient correction;
- ``uncorrected``: the coil file not configured, fieldmaps interpolated in time;
- ``interpolate``: the coil file configured (``spatial.gradient_coefficients``), fieldmaps
  interpolated in time (the default ``spatial.fieldmap_time``);
- ``nearest``: the coil file, the fieldmap nearest in time;
- ``run entity``: the coil file, the fieldmap with the run's own run number, as a single
  fieldmap (later runs without one stay without distortion correction).

**Error measure.** For every output voxel ``u`` in the brain and every ``--every``-th volume
``t``, the chain samples the raw volume at ``w(u, t)``. The simulator's truth says which tissue
is imaged there: the true scanner position ``p`` with ``p + d(p) + s_t(p) e_pe = A w`` (``d``
the coil's displacement, ``s_t`` the voxel shift of the field that distorted volume ``t``; solved
by damped fixed-point iteration), taken back through the volume's true head motion to the
motion-free head, ``X(u, t)``. A perfect stage maps every ``u`` to the same tissue in every
volume and run, in one rigid pose of the head: the error is ``|X(u, t) - R A u|`` after the
best rigid ``R`` of the whole session (Procrustes over all voxels and volumes; the rigid part is
what the registration to the T1w takes up), in voxels. Printed per method: the median over
volumes of each volume's median and 95th percentile over the brain, and the 95th percentile per
run; and ``non-rigid``: the p95 left after each volume's own best rigid pose (what head motion
and run alignment errors cannot explain: distortion and gradient residues). Last line::

    corrected_p95=<v> uncorrected_p95=<v> no_coil_p95=<v> interpolate_vs_nearest_p95=<r>

(acceptance: corrected p95 <= 0.05 voxel where the uncorrected one is >= 0.3; the ratio <= 1).

Run::

    .venv/bin/python benchmarks/gradient_unwarp.py [--preset demo] [--runs 3] [--fieldmaps 2]
        [--every 4] [--voxel-step 1] [--seed 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "benchmarks"))

METHODS = ("no coil", "uncorrected", "interpolate", "nearest", "run entity")
#: Damped fixed-point iterations of the inverse of the acquisition (and the damping).
INVERSE_STEPS, DAMPING = 40, 0.6


def _tissue(w_vox, affine, coeffs, field_t, trt, move):
    """Motion-free head positions (mm, (3, n)) imaged at raw voxel coordinates ``w_vox`` of a
    volume, and whether the inversion converged (residual < 0.01 mm)."""
    from scipy import ndimage

    from echoprep.kernels.geometry.gradients import displacement
    from echoprep.simulate.geometry import PE_AXIS, PE_SIGN

    a = np.asarray(affine, float)
    inv = np.linalg.inv(a)
    target = a[:3, :3] @ w_vox + a[:3, 3:4]
    pe = a[:3, PE_AXIS][:, None]  # mm per voxel along +j

    def forward(p):
        vox = inv[:3, :3] @ p + inv[:3, 3:4]
        shift = PE_SIGN * trt * ndimage.map_coordinates(field_t, vox, order=1, mode="nearest")
        warp = 0.0 if coeffs is None else displacement(coeffs, p.T).T
        return p + warp + pe * shift[None]

    p = target.copy()
    for _ in range(INVERSE_STEPS):
        step = target - forward(p)
        p += DAMPING * step
        if np.abs(step).max() < 1e-4:
            break
    ok = np.sqrt(((target - forward(p)) ** 2).sum(axis=0)) < 0.01
    back = np.linalg.inv(move)
    return back[:3, :3] @ p + back[:3, 3:4], ok


def _procrustes(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The rigid (4, 4) ``R`` minimising ``sum |x - R y|^2`` over paired points (3, n)."""
    my, mx = y.mean(axis=1, keepdims=True), x.mean(axis=1, keepdims=True)
    u, _, vt = np.linalg.svd((x - mx) @ (y - my).T)
    rot = u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = (mx - rot @ my)[:, 0]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="demo", choices=["tiny", "demo", "laion"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fieldmaps", type=int, default=2, help="GRE fieldmaps per session")
    ap.add_argument("--every", type=int, default=4, help="score every k-th volume")
    ap.add_argument("--voxel-step", type=int, default=1, help="score every k-th brain voxel")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from fieldmap_time import _run_entity_spec

    from echoprep.io.bids import discover
    from echoprep.io.gradients import read_grad
    from echoprep.simulate import simulate_dataset
    from echoprep.simulate.geometry import rigid_matrix
    from echoprep.simulate.gradient_coil import coil_path
    from echoprep.simulate.truth import motion_path, run_field_path, truth_paths
    from echoprep.stages.spatial.resample import build_chain, load_geometry
    from echoprep.stages.spatial.run import run_geometry

    t_start = time.perf_counter()
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for coil in (True, False):
            simulate_dataset(
                Path(tmp) / f"bids-{'coil' if coil else 'linear'}", args.preset, seed=args.seed,
                subjects=1, sessions=1, runs=args.runs, motion=True,
                fieldmaps_per_session=args.fieldmaps, gradient_nonlinearity=coil,
            )  # fmt: skip
        t_sim = time.perf_counter() - t_start
        bids = Path(tmp) / "bids-coil"
        coeffs = read_grad(coil_path(bids))
        gradient = {"coefficients": str(coil_path(bids)), "patient_position": "HFS"}
        by_time = {c: discover(bids, fieldmap_time=c) for c in ("interpolate", "nearest")}
        linear = discover(Path(tmp) / "bids-linear", fieldmap_time="interpolate")
        runs = by_time["interpolate"].runs
        brain_img = nib.load(truth_paths(bids, "01", "01")["brain_mask"])
        brain = np.asarray(brain_img.dataobj) > 0
        a = np.asarray(nib.load(runs[0].echoes[1].mag).affine, float)
        voxel = float(np.cbrt(abs(np.linalg.det(a[:3, :3]))))
        u_idx = np.flatnonzero(brain.ravel())[:: max(1, args.voxel_step)]
        u = np.stack(np.unravel_index(u_idx, brain.shape)).astype(float)
        y = a[:3, :3] @ u + a[:3, 3:4]  # output voxels (world mm of the first run's grid)
        for method in METHODS:
            t_m = time.perf_counter()
            boldref = None
            per_run = []
            source = Path(tmp) / ("bids-linear" if method == "no coil" else "bids-coil")
            for i, run in enumerate(linear.runs if method == "no coil" else runs):
                spec = {
                    "no coil": run.fieldmap.as_spec(),
                    "uncorrected": run.fieldmap.as_spec(),
                    "interpolate": run.fieldmap.as_spec(),
                    "nearest": by_time["nearest"].runs[i].fieldmap.as_spec(),
                    "run entity": _run_entity_spec(bids, run),
                }[method]
                work = Path(tmp) / f"{method.replace(' ', '-')}-{i}"
                work.mkdir()
                out = {"boldref": work / "boldref.nii.gz", "xfm": work / "xfm.npz"}
                run_geometry(
                    run.echoes[1].mag, out, repetition_time=run.repetition_time,
                    slice_timing=run.slice_timing, fieldmap=spec,
                    gradient=None if method in ("no coil", "uncorrected") else gradient,
                    pe_direction=run.pe_direction, readout_time=run.total_readout_time,
                    reference_boldref=boldref, n_threads=2,
                )  # fmt: skip
                boldref = boldref or out["boldref"]
                chain = build_chain(load_geometry(out["xfm"]), brain.shape, a, np.eye(4))
                params = np.loadtxt(motion_path(source, "01", "01", run.run), skiprows=1, ndmin=2)
                field = nib.load(run_field_path(source, "01", "01", run.run))
                centre = a[:3, :3] @ ((np.array(brain.shape) - 1) / 2) + a[:3, 3]
                vols = range(0, chain.n_volumes, max(1, args.every))
                xs, oks = [], []
                for t in vols:
                    w = chain.volume_coordinates(t)[:, u_idx]
                    x, ok = _tissue(
                        w, a, None if method == "no coil" else coeffs,
                        np.asarray(field.dataobj[..., t], np.float64),
                        float(run.total_readout_time), rigid_matrix(params[t], centre),
                    )  # fmt: skip
                    xs.append(x)
                    oks.append(ok)
                per_run.append((xs, oks))
            pose = _procrustes(
                np.concatenate([y] * sum(len(xs) for xs, _ in per_run), axis=1),
                np.concatenate([x for xs, _ in per_run for x in xs], axis=1),
            )
            ideal = pose[:3, :3] @ y + pose[:3, 3:4]
            p50, p95, run_p95, bad, nonrigid = [], [], [], 0, []
            for xs, oks in per_run:
                r95 = []
                for x, ok in zip(xs, oks, strict=True):
                    err = np.sqrt(((x - ideal) ** 2).sum(axis=0))[ok] / voxel
                    own = _procrustes(y[:, ok], x[:, ok])  # this volume's own rigid pose
                    rest = x[:, ok] - (own[:3, :3] @ y[:, ok] + own[:3, 3:4])
                    nonrigid.append(float(np.percentile(np.sqrt((rest**2).sum(axis=0)), 95)))
                    bad += int((~ok).sum())
                    p50.append(float(np.median(err)))
                    p95.append(float(np.percentile(err, 95)))
                    r95.append(p95[-1])
                run_p95.append(float(np.median(r95)))
            rows[method] = {
                "error_vox_p50": float(np.median(p50)),
                "error_vox_p95": float(np.median(p95)),
                "run_p95": run_p95,
                "nonrigid_vox_p95": float(np.median(nonrigid)) / voxel,
                "not_inverted_share": bad / (len(p50) * len(u_idx)),
                "seconds": time.perf_counter() - t_m,
            }
            r = rows[method]
            print(
                f"{method:12s} error per volume p50 {r['error_vox_p50']:.4f} p95 "
                f"{r['error_vox_p95']:.4f} vox   p95 per run "
                + " ".join(f"{v:.4f}" for v in r["run_p95"])
                + f"   non-rigid p95 {r['nonrigid_vox_p95']:.4f}"
                + f"   (not inverted {100 * r['not_inverted_share']:.2f} %, {r['seconds']:.0f} s)",
                flush=True,
            )
        shape = "x".join(map(str, brain.shape))
        max_d = json.loads((bids / "dataset_description.json").read_text())["echoprepSimulation"]
    seconds = time.perf_counter() - t_start
    print(
        f"{args.preset} preset ({shape} at {voxel:g} mm, {args.runs} runs, {args.fieldmaps} "
        f"fieldmaps, {len(u_idx)} brain voxels, every {args.every}th volume; coil max |d| "
        f"{max_d['gradient_nonlinearity']['MaxDisplacementMm']} mm over the grid); simulation "
        f"{t_sim:.0f} s, total {seconds:.0f} s"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "preset": args.preset,
                    "runs": args.runs,
                    "fieldmaps": args.fieldmaps,
                    "every": args.every,
                    "seconds": seconds,
                    "rows": rows,
                },
                indent=1,
            )
            + "\n"
        )
    key = "error_vox_p95"
    print(
        f"corrected_p95={rows['interpolate'][key]:.4f} "
        f"uncorrected_p95={rows['uncorrected'][key]:.4f} "
        f"no_coil_p95={rows['no coil'][key]:.4f} "
        f"interpolate_vs_nearest_p95={rows['interpolate'][key] / rows['nearest'][key]:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
