"""GLMsingle engine (FITHRF_GLMDENOISE_RR, all defaults): wall time and peak memory.

Cases (synthetic sessions from :mod:`echoprep.simulate.glm_session`, seeded; float32 data):

- ``a``: 40 x 40 x 30 = 48 000 voxels, 6 runs x 250 volumes, TR 1.9 s, 100 conditions x 3 =
  300 trials, stimdur 3 s (the case upstream GLMsingle was measured on: 386 s, 3.98 GiB).
  Target 30 s and 1.5 GiB with one BLAS thread.
- ``b``: a LAION-fMRI-scale session: 150 000 brain voxels given as V x T (what a stage passes
  after masking), 12 runs x 304 volumes, TR 1.0 s (upsampled grid), 350 conditions x 3 =
  1050 trials, stimdur 3 s. Target 20 min and 16 GiB.

Each case runs in a fresh subprocess. The data are generated first; then the peak-RSS counter
is reset (``/proc/self/clear_refs``, where allowed) and the fit runs, so the peak printed is the
fit's, including the data it holds (as in the stage); ``ru_maxrss`` of the whole process
(generation included) is printed too. ``--quick`` runs the same geometry with a quarter of the
voxels and targets scaled by a quarter (cost and memory are linear in voxels). Run::

    .venv/bin/python benchmarks/glm.py [--cases a b] [--quick] [--threads 1] [--chunklen N]

The machine may be shared: the load average before each case is printed with it, and the fit's
CPU time (user + system of the process), which contention inflates less than the wall time.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

CASES = {
    "a": {
        "shape": (40, 40, 30),
        "runs": [250] * 6,
        "conditions": 100,
        "repeats": 3,
        "tr": 1.9,
        "target_s": 30.0,
        "target_gib": 1.5,
    },
    "b": {
        "shape": (150_000,),
        "runs": [304] * 12,
        "conditions": 350,
        "repeats": 3,
        "tr": 1.0,
        "target_s": 1200.0,
        "target_gib": 16.0,
    },
}
QUICK_FRACTION = 0.25


def _vm_hwm() -> int | None:
    """Peak resident set (bytes) from /proc/self/status, or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _shape(name: str, quick: bool) -> tuple[int, ...]:
    shape = CASES[name]["shape"]
    if not quick:
        return shape
    if len(shape) == 1:
        return (int(shape[0] * QUICK_FRACTION),)
    return (shape[0] // 4, *shape[1:])


def run_case(name: str, quick: bool, threads: int, chunklen: int) -> dict:
    """Generate and fit one case in this process; return its figures."""
    from threadpoolctl import threadpool_limits

    from echoprep.kernels.glm import REQUIRED_OPTIONS, fit_glmsingle
    from echoprep.options import section_defaults
    from echoprep.simulate.glm_session import make_session

    c = CASES[name]
    shape = _shape(name, quick)
    t0 = time.perf_counter()
    with threadpool_limits(limits=threads, user_api="blas"):
        s = make_session(shape, c["runs"], c["conditions"], c["repeats"], tr=c["tr"], seed=0)
    gen_s = time.perf_counter() - t0
    design, data, stimdur, tr = s.design, s.data, s.stimdur, s.tr
    del s
    gc.collect()
    data_bytes = sum(d.nbytes for d in data)
    reset = _reset_hwm()
    t0, c0 = time.perf_counter(), time.process_time()
    defaults = {k: v for k, v in section_defaults("glm").items() if k in REQUIRED_OPTIONS}
    out = fit_glmsingle(
        design,
        data,
        stimdur,
        tr,
        **{**defaults, "chunklen": chunklen},
        n_threads=threads,
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _vm_hwm() if reset else None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    d = out["typed"]
    return {
        "case": name,
        "shape": shape,
        "n_voxels": int(np.prod(shape)),
        "runs": len(c["runs"]),
        "volumes": c["runs"][0],
        "trials": int(d["betasmd"].shape[-1]),
        "tr": c["tr"],
        "wall_s": wall,
        "cpu_s": cpu,
        "generate_s": gen_s,
        "peak_bytes": peak if peak is not None else maxrss,
        "peak_is_fit_only": peak is not None,
        "maxrss_bytes": maxrss,
        "data_bytes": data_bytes,
        "pcnum": int(d["pcnum"]),
        "frac_median": float(np.median(d["FRACvalue"])),
        "r2_median": float(np.nanmedian(d["R2"])),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--quick", action="store_true", help="a quarter of the voxels, targets / 4")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    ap.add_argument(
        "--chunklen", type=int, default=None, help="voxels per chunk (default: glm.chunklen)"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.chunklen is None:
        from echoprep.options import section_defaults

        args.chunklen = section_defaults("glm")["chunklen"]
    if args.child:
        print(json.dumps(run_case(args.child, args.quick, args.threads, args.chunklen)))
        return 0
    gib = 2**30
    print(
        f"CPUs available: {len(os.sched_getaffinity(0))}, BLAS threads: {args.threads}, "
        f"chunklen {args.chunklen}{', quick' if args.quick else ''}"
    )
    for name in args.cases:
        load = os.getloadavg()[0]
        cmd = [sys.executable, __file__, "--child", name, "--threads", str(args.threads)]
        cmd += ["--chunklen", str(args.chunklen)] + (["--quick"] if args.quick else [])
        nt = str(args.threads)
        env = dict(os.environ, OPENBLAS_NUM_THREADS=nt, OMP_NUM_THREADS=nt, MKL_NUM_THREADS=nt)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        r = json.loads(out.strip().splitlines()[-1])
        c = CASES[name]
        scale = QUICK_FRACTION if args.quick else 1.0
        target_s, target_gib = c["target_s"] * scale, c["target_gib"] * scale
        peak = r["peak_bytes"] / gib
        what = "fit" if r["peak_is_fit_only"] else "process"
        print(
            f"glmsingle {name}: {r['n_voxels']} voxels, {r['runs']} runs x {r['volumes']} vols, "
            f"{r['trials']} trials, TR {r['tr']} s   wall {r['wall_s']:.1f} s (target "
            f"{target_s:.0f} s, ratio {r['wall_s'] / target_s:.2f}; CPU {r['cpu_s']:.1f} s)   "
            f"peak {peak:.2f} GiB "
            f"({what}; target {_fmt(target_gib)} GiB, ratio {peak / target_gib:.2f}; data "
            f"{r['data_bytes'] / gib:.2f} GiB, process incl. generation "
            f"{r['maxrss_bytes'] / gib:.2f} GiB)   pcnum {r['pcnum']}, median frac "
            f"{r['frac_median']:.2f}, median R2 {r['r2_median']:.1f} %   generation "
            f"{r['generate_s']:.0f} s   load before {load:.2f}",
            flush=True,
        )
    return 0


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


if __name__ == "__main__":
    raise SystemExit(main())
