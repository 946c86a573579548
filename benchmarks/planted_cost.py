"""Cost of the planted passes at LAION-fMRI size (docs/comparison.md, "Responses planted in
your data"; README cost table).

A comparison session's planted passes are one ``planted_run`` job per run and one
``planted_glm`` job per variant. This script measures at LAION size (90 x 110 x 72 voxels, 163
volumes, complex data) what they add over steps ``benchmarks/laion_session.json`` already
measured, each in a process of its own (``os.wait4``: wall, user + system CPU, peak resident
memory), with ``--threads`` threads (default 2):

- ``nordic``: NORDIC on one echo (the kernel the ``nordic`` rule runs per echo);
- ``nordic+companions``: the same with the two planted series as companions (the decisions of
  the echo applied to them: what ``planted_run`` runs per echo);
- ``nordic+companions-tangent``: the same through the tangent map with each companion's own
  low-pass phase (``--companion-map tangent``: planted responses from another comparison
  session, ``comparison.planted.source``);
- ``ica-frozen``: tedana's ``denoise_ts`` with a run's mixing matrix (60 components) on one
  optimally combined series of the brain's voxels (what ``planted_run`` runs per side);
- ``design-shape``: the response-shape estimate of ``planted_design`` (the normal equations of
  12 runs of the visual ROI's voxels, 88 trials per run, and the groups' warped fits; reading
  the series is not included: it reads what one GLM fit reads, of the ROI's voxels).

and prices a comparison session (12 runs, 6 variants) from them and from the rules measured in
``laion_session.json``: per run, NORDIC with companions for 3 echoes, the resampling of each
side's half difference of its two planted echo sets (``spatial_resample``'s CPU per set, 2
sets: every step after NORDIC is linear), the frozen ICA of both sides; per session, the
design's shape estimate; per variant, the
frozen GLM at the ratio to ``glm`` measured on the regime preset (``--glm-ratio``, default
0.84: 7.6 against 9.0 CPU-s per fit). Printed: the steps, the model and one line
``planted_cpu_hours_per_comparison_session=<x>`` (``..._tangent=<y>``: with the tangent map).

    .venv/bin/python benchmarks/planted_cost.py [--threads 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

SHAPE = (90, 110, 72)
VOLUMES = 163
RUNS = 12
ECHOES = 3
VARIANTS = 6
COMPONENTS = 60
BRAIN_VOXELS = 280_000
#: Visual ROI voxels at 1.8 mm (generous: early and ventral visual cortex, both hemispheres).
ROI_VOXELS = 25_000
TRIALS_PER_RUN = 88


def _series(seed: int) -> tuple:
    """A LAION-size complex echo: smooth low-rank signal, thermal noise, a smooth phase."""
    import numpy as np
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    k = 6
    patterns = ndimage.zoom(rng.standard_normal((12, 14, 9, k)), (7.5, 7.86, 8, 1), order=1)
    patterns = patterns[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    courses = rng.standard_normal((k, VOLUMES))
    signal = 20.0 * np.einsum("xyzk,kt->xyzt", patterns, courses, optimize=True)
    mag = np.abs(1000.0 + signal + 8.0 * rng.standard_normal((*SHAPE, VOLUMES))).astype(np.float32)
    phase = np.broadcast_to(
        ndimage.zoom(rng.standard_normal((6, 7, 5)), (15, 15.72, 14.4), order=1)[
            : SHAPE[0], : SHAPE[1], : SHAPE[2], None
        ],
        mag.shape,
    ).astype(np.float32)
    return mag, phase


def _step(name: str, threads: int) -> None:
    """Run one step in this (child) process."""
    import numpy as np

    if name.startswith("nordic"):
        from echoprep.stages.nordic import denoise_arrays

        mag, phase = _series(0)
        companions = []
        if name.startswith("nordic+companions"):
            ramp = 1.0 + 0.002 * np.sin(np.arange(VOLUMES) / 5.0)
            companions = [(mag * ramp).astype(np.float32), (mag / ramp).astype(np.float32)]
        mapping = "tangent" if name.endswith("-tangent") else "frozen"
        denoise_arrays(mag, phase, n_threads=threads, companions=companions, companion_map=mapping)
    elif name == "ica-frozen":
        from echoprep.adapters.tedana import denoise_frozen

        rng = np.random.default_rng(1)
        data = rng.standard_normal((BRAIN_VOXELS, VOLUMES)).astype(np.float32)
        mixing = rng.standard_normal((VOLUMES, COMPONENTS))
        classes = ["accepted" if i % 3 else "rejected" for i in range(COMPONENTS)]
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        denoise_frozen(data, mixing, classes, np.ones(BRAIN_VOXELS, bool))
    elif name == "design-shape":
        from echoprep.kernels.planted import response_curves
        from echoprep.kernels.planted_shape import fit_shape, shape_moments, spline_basis

        rng = np.random.default_rng(2)
        _, basis = spline_basis()
        k = basis.shape[1]
        moments, cross = np.zeros((ROI_VOXELS, k, k)), np.zeros((ROI_VOXELS, k))
        offsets = np.zeros(ROI_VOXELS)
        for _ in range(RUNS):
            y = rng.standard_normal((ROI_VOXELS, VOLUMES)).astype(np.float32)
            onsets = np.sort(rng.uniform(0, VOLUMES * 1.9 - 10, TRIALS_PER_RUN))
            amps = rng.standard_normal((ROI_VOXELS, TRIALS_PER_RUN))
            m, c = shape_moments(y, offsets, 1.9, onsets, amps, basis)
            moments += m
            cross += c
        fit_shape(moments, cross, basis, response_curves(2.5)[1])
    else:
        raise SystemExit(f"unknown step {name}")


def _metered(name: str, threads: int) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--step", name, "--threads", str(threads)], env=env
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"step {name} failed ({status})")
    return {
        "wall_s": round(time.perf_counter() - t0, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_gib": round(usage.ru_maxrss / 2**20, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--step", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--glm-ratio", type=float, default=0.84)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.step:
        _step(args.step, args.threads)
        return 0
    names = (
        "nordic",
        "nordic+companions",
        "nordic+companions-tangent",
        "ica-frozen",
        "design-shape",
    )
    steps = {s: _metered(s, args.threads) for s in names}
    for s, m in steps.items():
        print(f"{s:<20} {m['wall_s']:8.1f} s wall {m['cpu_s']:8.1f} CPU-s {m['peak_gib']:6.2f} GiB")
    rules = {
        r["rule"]: r
        for r in json.loads((ROOT / "benchmarks" / "laion_session.json").read_text())["rules"]
    }
    per_run = {
        "NORDIC with companions, 3 echoes": ECHOES * steps["nordic+companions"]["cpu_s"],
        "resampling of 2 planted echo sets": 2 * rules["spatial_resample"]["cpu_s_mean"],
        "frozen ICA of both sides": 2 * steps["ica-frozen"]["cpu_s"],
    }
    run_cpu = sum(per_run.values())
    glm_cpu = VARIANTS * args.glm_ratio * rules["glm"]["cpu_s_mean"]
    design_cpu = steps["design-shape"]["cpu_s"]
    total_h = (RUNS * run_cpu + glm_cpu + design_cpu) / 3600
    extra = ECHOES * (
        steps["nordic+companions-tangent"]["cpu_s"] - steps["nordic+companions"]["cpu_s"]
    )
    tangent_h = total_h + RUNS * extra / 3600
    print("\nper run (planted_run):")
    for k, v in per_run.items():
        print(f"  {k:<36} {v:8.0f} CPU-s")
    print(f"  {'total':<36} {run_cpu:8.0f} CPU-s")
    print(
        f"planted_glm: {VARIANTS} x {args.glm_ratio} x glm {rules['glm']['cpu_s_mean']:.0f}"
        f" = {glm_cpu:.0f} CPU-s"
    )
    print(f"planted_design's shape estimate: {design_cpu:.0f} CPU-s")
    print(
        f"companions / plain NORDIC: "
        f"{steps['nordic+companions']['cpu_s'] / steps['nordic']['cpu_s']:.2f}"
    )
    print(
        f"tangent map / frozen: "
        f"{steps['nordic+companions-tangent']['cpu_s'] / steps['nordic+companions']['cpu_s']:.2f}"
    )
    print(f"planted_cpu_hours_per_comparison_session={total_h:.2f}")
    print(f"planted_cpu_hours_per_comparison_session_tangent={tangent_h:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "threads": args.threads,
                    "steps": steps,
                    "per_run_cpu_s": {k: round(v, 1) for k, v in per_run.items()},
                    "planted_glm_cpu_s": round(glm_cpu, 1),
                    "planted_design_shape_cpu_s": round(design_cpu, 1),
                    "planted_cpu_hours_per_comparison_session": round(total_h, 2),
                    "planted_cpu_hours_per_comparison_session_tangent": round(tangent_h, 2),
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
