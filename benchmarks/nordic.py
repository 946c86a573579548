"""NORDIC kernel: wall time and peak memory on synthetic complex series.

Cases (float32 magnitude and phase; a rank-6 complex series with a smooth phase plus complex
Gaussian noise, SNR about 20 in the bright part):

- ``a``: 96 x 96 x 40 x 153 (target 35 s, 6 GiB on 2 cores)
- ``b``: 90 x 110 x 72 x 163, the LAION-fMRI geometry (target 60 s, 6 GiB)

Each case runs in a fresh subprocess; peak memory is that process's ``ru_maxrss`` (so it
includes the input arrays, as in the NORDIC stage, which holds magnitude and phase). Run::

    .venv/bin/python benchmarks/nordic.py [--cases a b] [--threads N] [--chunk P]

The machine may be shared: the load average before each case is printed with it.
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

CASES = {
    "a": {"shape": (96, 96, 40, 153), "target_s": 35.0, "target_gib": 6.0},
    "b": {"shape": (90, 110, 72, 163), "target_s": 60.0, "target_gib": 6.0},
}


def synthetic(shape: tuple[int, int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank complex series plus noise as float32 magnitude and phase (radians).

    Generated volume by volume, so generation needs little beyond the two outputs.
    """
    nx, ny, nz, nt = shape
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(
        np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), np.linspace(-1, 1, nz), indexing="ij"
    )
    head = np.exp(-(x**2 + y**2 + z**2) * 2.5)
    maps = np.stack(
        [head, head * x, head * y, head * z, head * x * y, head * np.cos(3 * z)]
    ).astype(np.float32)
    t = np.linspace(0, 1, nt)
    courses = np.stack(
        [np.ones(nt)]
        + [0.02 * np.sin(2 * np.pi * f * t + p) for f, p in ((3, 0), (5, 1), (7, 2), (2, 3))]
        + [0.01 * t]
    ).astype(np.float32)
    phase0 = (0.8 * x + 0.5 * y - 0.3 * z).astype(np.float32)
    mag = np.empty(shape, np.float32)
    pha = np.empty(shape, np.float32)
    sigma = np.float32(0.05)
    for k in range(nt):
        s = np.tensordot(courses[:, k], maps, axes=1)
        c = s * np.exp(1j * (phase0 + 0.1 * t[k])).astype(np.complex64)
        c.real += sigma * rng.standard_normal(shape[:3], dtype=np.float32)
        c.imag += sigma * rng.standard_normal(shape[:3], dtype=np.float32)
        mag[..., k] = np.abs(c)
        pha[..., k] = np.angle(c)
    return mag, pha


def run_case(name: str, threads: int | None, chunk: int) -> dict:
    """Run one case in this process; return its figures."""
    from echoprep.stages.nordic import denoise_arrays as nordic

    shape = CASES[name]["shape"]
    mag, pha = synthetic(shape)
    rss_inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    res = nordic(mag, pha, n_threads=threads, chunk_patches=chunk)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "case": name,
        "shape": shape,
        "wall_s": wall,
        "peak_bytes": peak,
        "inputs_peak_bytes": rss_inputs,
        "kernel": res.kernel,
        "threshold": res.threshold,
        "removed_median": float(np.median(res.removed)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--threads", type=int, default=None, help="n_threads (default: all CPUs)")
    ap.add_argument("--chunk", type=int, default=256, help="chunk_patches")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_case(args.child, args.threads, args.chunk)))
        return 0
    gib = 2**30
    print(f"CPUs available: {len(os.sched_getaffinity(0))}, threads: {args.threads or 'all'}")
    for name in args.cases:
        load = os.getloadavg()[0]
        cmd = [sys.executable, __file__, "--child", name, "--chunk", str(args.chunk)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        c = CASES[name]
        shape = "x".join(str(s) for s in r["shape"])
        peak = r["peak_bytes"] / gib
        print(
            f"nordic  {shape} complex   wall {r['wall_s']:.1f} s (target {c['target_s']:.0f} s, "
            f"ratio {r['wall_s'] / c['target_s']:.2f})   peak {peak:.2f} GiB "
            f"(target {c['target_gib']:.0f} GiB, ratio {peak / c['target_gib']:.2f}; "
            f"inputs alone {r['inputs_peak_bytes'] / gib:.2f} GiB)   kernel {tuple(r['kernel'])}"
            f"   load before {load:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
