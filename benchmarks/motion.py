"""Head-motion estimation and one-shot resampling: wall time, peak memory, accuracy.

Synthetic LAION-geometry run (90 x 110 x 72 x 163 at 1.8 mm, float32): the phantom head of
:mod:`echoprep.kernels.geometry.phantom` moved rigidly per volume (a run offset plus a smoothed
random walk, |translation| <= 2 mm, |rotation| <= 2 deg, seeded) plus Gaussian noise (SD 0.03,
grey matter 1.0). Generation is not timed.

Cases (each in a fresh subprocess; peak memory is that process's ``ru_maxrss`` and includes
the 0.47 GB input series):

- ``motion``: :func:`estimate_motion` (robust reference) on the run; accuracy = mean absolute
  error of the volume-to-volume motion ``M_t inv(M_0)`` (independent of the reference pose), in
  mm and deg, and of the framewise displacement. Target 180 s on 2 cores.
- ``resample``: :func:`resample` of one echo through the full chain (true motion, a smooth
  voxel-shift map up to 3 voxels with Jacobian, a rigid ref → T1w matrix) into a T1w-aligned
  1.8 mm grid covering the brain mask + 10 mm, cubic B-spline. Budget 60 s per echo (ours:
  three echoes within the motion target).
- ``ants`` (optional, ``--ants N``): ANTs ``Rigid`` (``ants.registration``, Mattes, default
  schedule) of the first N volumes to the same reference, for comparison; time per volume is
  extrapolated to 163 volumes.

Run::

    .venv/bin/python benchmarks/motion.py [--cases motion resample] [--threads 2] [--ants 10]

The machine may be shared: the load average before each case is printed with it, and the
process's CPU time (user + system) beside the wall time — on an idle machine the wall time is
about CPU time / threads.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

SHAPE = (90, 110, 72)
N_VOLUMES = 163
VOXEL = 1.8
TARGETS = {"motion": 180.0, "resample": 60.0, "ants": 180.0}


def affine() -> np.ndarray:
    """The functional grid: 1.8 mm, centred near the phantom's head centre."""
    a = np.diag([VOXEL, VOXEL, VOXEL, 1.0])
    a[:3, 3] = -(np.asarray(SHAPE) - 1) / 2 * VOXEL + [0.0, 4.0, 6.0]
    return a


def true_motion(n: int = N_VOLUMES, seed: int = 0) -> np.ndarray:
    """(n, 6) smooth realistic motion: offset (<= 40 % of the bound) + smoothed random walk."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    limits = np.array([2.0] * 3 + [np.deg2rad(2.0)] * 3)
    out = np.empty((n, 6))
    for p in range(6):
        walk = ndimage.gaussian_filter1d(np.cumsum(rng.standard_normal(n)), 1.5, mode="nearest")
        walk -= walk[0]
        walk *= rng.uniform(0.2, 0.6) * limits[p] / max(np.abs(walk).max(), 1e-9)
        out[:, p] = rng.uniform(-0.4, 0.4) * limits[p] + walk
    return out


def synthetic_run(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Series (x, y, z, t) float32, affine, true params (t, 6), rotation centre (3,)."""
    from echoprep.kernels.geometry.phantom import moved_series
    from echoprep.kernels.geometry.transforms import grid_center

    aff = affine()
    c = grid_center(SHAPE, aff)
    params = true_motion(seed=seed)
    return moved_series(SHAPE, aff, params, c, noise=0.03, seed=seed), aff, params, c


def _relative_errors(est: np.ndarray, truth: np.ndarray, c: np.ndarray) -> dict[str, float]:
    """Mean abs error of M_t inv(M_0) parameters (mm, deg) over t >= 1."""
    from echoprep.kernels.geometry.transforms import rigid_params

    e = rigid_params(est @ np.linalg.inv(est[0]), c)[1:]
    t = rigid_params(truth @ np.linalg.inv(truth[0]), c)[1:]
    err = np.abs(e - t)
    return {
        "trans_mm": float(err[:, :3].mean()),
        "rot_deg": float(np.rad2deg(err[:, 3:]).mean()),
        "trans_mm_max": float(err[:, :3].max()),
        "rot_deg_max": float(np.rad2deg(err[:, 3:]).max()),
    }


def _cpu_s() -> float:
    """User + system CPU seconds of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def case_motion(threads: int) -> dict:
    from echoprep.kernels.geometry.motion import estimate_motion, framewise_displacement
    from echoprep.kernels.geometry.transforms import rigid_matrix, rigid_params

    series, aff, params, c = synthetic_run()
    rss_inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0, c0 = time.perf_counter(), _cpu_s()
    res = estimate_motion(series, aff, n_threads=threads)
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    truth = rigid_matrix(params, c)
    errs = _relative_errors(res.vol_from_ref, truth, c)
    true_fd = framewise_displacement(rigid_params(truth @ np.linalg.inv(truth[0]), c))
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_bytes": peak,
        "inputs_peak_bytes": rss_inputs,
        **errs,
        "fd_mm": float(np.abs(res.framewise_displacement - true_fd)[1:].mean()),
        "iterations": float(res.iterations.mean()),
        "converged": bool(res.converged.all()),
        "reference_volumes": list(res.reference_volumes),
    }


def case_ants(threads: int, n: int) -> dict:
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    from echoprep.adapters.ants import register_cross_modal
    from echoprep.kernels.geometry.motion import robust_reference
    from echoprep.kernels.geometry.transforms import rigid_matrix

    series, aff, params, c = synthetic_run()
    ref, _ = robust_reference(series, 5)
    t0, c0 = time.perf_counter(), _cpu_s()
    mats = np.stack(
        [
            register_cross_modal(ref, aff, series[..., t], aff, metric="mattes").moving_from_fixed
            for t in range(n)
        ]
    )
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    errs = _relative_errors(mats, rigid_matrix(params[:n], c), c)
    return {
        "wall_s": wall / n * N_VOLUMES,
        "cpu_s": cpu / n * N_VOLUMES,
        "per_volume_s": wall / n,
        "volumes": n,
        "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        **errs,
    }


def case_resample(threads: int) -> dict:
    from echoprep.kernels.geometry.phantom import brain_fraction, grid_points
    from echoprep.kernels.geometry.resampling import Chain, resample, t1w_aligned_grid
    from echoprep.kernels.geometry.transforms import rigid_matrix

    series, aff, params, c = synthetic_run()
    truth = rigid_matrix(params, c)
    vol_from_ref = truth @ np.linalg.inv(truth[0])
    pts = grid_points(SHAPE, aff)
    x0 = np.array([0.0, 45.0, -25.0])  # frontal / inferior susceptibility blob
    vsm = (3.0 * np.exp(-np.sum((pts - x0) ** 2, -1) / (2 * 20.0**2))).astype(np.float32)
    t1_shape = (170, 200, 160)
    t1_aff = np.diag([1.0, 1.0, 1.0, 1.0])
    t1_aff[:3, 3] = -(np.asarray(t1_shape) - 1) / 2
    mask = brain_fraction(grid_points(t1_shape, t1_aff)) > 0.5
    grid = t1w_aligned_grid(t1_shape, t1_aff, VOXEL, mask=mask, margin_mm=10.0)
    ref_from_t1w = rigid_matrix(np.array([2.0, -3.0, 1.5, 0.03, -0.02, 0.04]), c)
    chain = Chain(SHAPE, aff, vol_from_ref, grid, ref_from_out=ref_from_t1w, vsm=vsm, pe_axis=1)
    rss_inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0, c0 = time.perf_counter(), _cpu_s()
    out, rec = resample(series, chain, n_threads=threads)
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "inputs_peak_bytes": rss_inputs,
        "output_shape": list(out.shape),
        "interpolations": rec.interpolations,
        "digest": rec.chain_digest[:12],
    }


def _line(name: str, geom: str, r: dict, load: float) -> str:
    """One printed result line."""
    gib = 2**30
    target = TARGETS[name]
    parts = [
        f"{name:<9}{geom} {VOXEL} mm",
        f"wall {r['wall_s']:.1f} s (target {target:.0f} s, ratio {r['wall_s'] / target:.2f})",
    ]
    if name == "ants":
        parts[-1] += f" extrapolated from {r['volumes']} volumes, {r['per_volume_s']:.2f} s/volume"
    parts.append(f"cpu {r['cpu_s']:.1f} s")
    mem = f"peak {r['peak_bytes'] / gib:.2f} GiB"
    if "inputs_peak_bytes" in r:
        mem += f" (inputs alone {r['inputs_peak_bytes'] / gib:.2f} GiB)"
    parts.append(mem)
    if name in ("motion", "ants"):
        err = f"error {r['trans_mm']:.4f} mm / {r['rot_deg']:.4f} deg"
        err += f" (max {r['trans_mm_max']:.4f} mm / {r['rot_deg_max']:.4f} deg; target 0.2 / 0.2)"
        parts.append(err)
    if name == "motion":
        parts.append(f"FD error {r['fd_mm']:.4f} mm")
        parts.append(f"iterations {r['iterations']:.1f}/volume, converged {r['converged']}")
    if name == "resample":
        shape = "x".join(str(s) for s in r["output_shape"])
        parts.append(f"output {shape}, {r['interpolations']} interpolations, chain {r['digest']}")
    parts.append(f"load before {load:.2f}")
    return "   ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--cases", nargs="+", default=["motion", "resample"], choices=["motion", "resample"]
    )
    ap.add_argument("--threads", type=int, default=2, help="threads (target: 2 cores)")
    ap.add_argument("--ants", type=int, default=0, help="also time ANTs Rigid on N volumes")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        if args.child == "motion":
            r = case_motion(args.threads)
        elif args.child == "resample":
            r = case_resample(args.threads)
        else:
            r = case_ants(args.threads, args.ants)
        print(json.dumps(r))
        return 0
    print(f"CPUs available: {len(os.sched_getaffinity(0))}, threads: {args.threads}")
    cases = list(args.cases) + (["ants"] if args.ants > 0 else [])
    geom = "x".join(str(s) for s in (*SHAPE, N_VOLUMES))
    for name in cases:
        load = os.getloadavg()[0]
        env = os.environ | {
            "OPENBLAS_NUM_THREADS": str(args.threads),
            "OMP_NUM_THREADS": str(args.threads),
            "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": str(args.threads),
        }
        cmd = [sys.executable, __file__, "--child", name, "--threads", str(args.threads)]
        cmd += ["--ants", str(args.ants)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(_line(name, geom, r, load), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
