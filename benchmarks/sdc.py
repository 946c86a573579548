"""Susceptibility distortion correction: accuracy and cost per method on simulated runs.

Two datasets are simulated with the same seed (so the same BOLD run, distorted along ``j-`` by
the subject's static B0 field, with head motion): one with a dual-echo GRE fieldmap
(``phasediff``) and one with a reversed phase-encoding ``epi`` pair. Each method then runs
through the spatial stage exactly as the workflow does (``run_geometry`` on the reference
echo: head motion and the voxel-shift map; ``resample_run``: the one-shot resampling onto the
run's own boldref grid):

- ``none``: no correction;
- ``fieldmap``: the GRE fieldmap (phase difference to Hz, smoothed, voxel-shift map);
- ``pepolar``: the field estimated from the pair (echoprep.kernels.geometry.pepolar).

Printed per method: the voxel displacement error, |estimated - true voxel shift| in the
truth brain mask (median and 95th percentile, voxels along the phase-encoding axis; a static
field gives every volume the same error, so per volume equals per run here), the temporal SNR
of the corrected reference echo in the brain (median), and the wall and CPU seconds of the
geometry step (the step that estimates the field). Last line::

    pepolar_vs_fieldmap_p50=<ratio> pepolar_vs_fieldmap_p95=<ratio>

(issue 28: PEPOLAR within 20 % of the GRE fieldmap's error, ratios <= 1.2). A time-varying
field and the frame-wise method are not simulated yet. Run::

    .venv/bin/python benchmarks/sdc.py [--preset demo|laion] [--seed 0] [--json FILE]
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


def _simulate(root: Path, preset: str, seed: int, kind: str) -> None:
    from echoprep.simulate import simulate_dataset

    simulate_dataset(
        root, preset, seed=seed, subjects=1, sessions=1, runs=1, motion=True,
        fieldmap=True, distortion=True, fieldmap_kind=kind,
    )  # fmt: skip


def measure(bids: Path, method: str, work: Path) -> dict:
    """One method on the dataset ``bids``: displacement error, tSNR, geometry-step cost."""
    from echoprep.io.bids import discover
    from echoprep.simulate.truth import truth_paths
    from echoprep.stages.spatial.resample import resample_run
    from echoprep.stages.spatial.run import run_geometry

    (run,) = discover(bids).runs
    echo = run.echoes[1].mag
    work.mkdir(parents=True, exist_ok=True)
    outputs = {
        "confounds": work / "confounds.tsv",
        "boldref": work / "boldref.nii.gz",
        "xfm": work / "xfm.npz",
    }
    fieldmap = None if method == "none" else run.fieldmap.as_spec()
    t0, c0 = time.perf_counter(), time.process_time()
    run_geometry(
        echo,
        outputs,
        repetition_time=run.repetition_time,
        slice_timing=run.slice_timing,
        fieldmap=fieldmap,
        pe_direction=run.pe_direction,
        readout_time=run.total_readout_time,
        n_threads=2,
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    corrected = work / "bold.nii.gz"
    resample_run([echo], outputs["xfm"], outputs["boldref"], [corrected], n_threads=2)

    truth = truth_paths(bids, "01", "01")
    brain = nib.load(truth["brain_mask"]).get_fdata() > 0
    true_vsm = nib.load(truth["vsm"]).get_fdata()
    with np.load(outputs["xfm"]) as z:
        vsm = z["vsm"] if z["vsm"].size else np.zeros_like(true_vsm)
    err = np.abs(vsm - true_vsm)[brain]
    data = np.asarray(nib.load(corrected).dataobj, np.float32)[brain]
    sd = data.std(axis=1)
    tsnr = np.divide(data.mean(axis=1), sd, out=np.zeros_like(sd), where=sd > 0)
    return {
        "method": method,
        "displacement_error_vox_p50": float(np.median(err)),
        "displacement_error_vox_p95": float(np.percentile(err, 95)),
        "true_shift_vox_p95": float(np.percentile(np.abs(true_vsm[brain]), 95)),
        "tsnr_median": float(np.median(tsnr)),
        "geometry_wall_s": wall,
        "geometry_cpu_s": cpu,
        "shape": list(nib.load(echo).shape),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="demo", choices=["tiny", "demo", "laion"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for kind in ("phasediff", "epi"):
            _simulate(t / kind, args.preset, args.seed, kind)
        for method, kind in (("none", "phasediff"), ("fieldmap", "phasediff"), ("pepolar", "epi")):
            r = measure(t / kind, method, t / f"work-{method}")
            rows.append(r)
            print(
                f"{method:9s} displacement error p50 {r['displacement_error_vox_p50']:.3f} "
                f"p95 {r['displacement_error_vox_p95']:.3f} vox (true shift p95 "
                f"{r['true_shift_vox_p95']:.2f})   tSNR median {r['tsnr_median']:.1f}   "
                f"geometry step {r['geometry_wall_s']:.1f} s wall, {r['geometry_cpu_s']:.1f} "
                f"CPU-s   ({'x'.join(map(str, r['shape']))})",
                flush=True,
            )
    by = {r["method"]: r for r in rows}
    p50 = by["pepolar"]["displacement_error_vox_p50"] / by["fieldmap"]["displacement_error_vox_p50"]
    p95 = by["pepolar"]["displacement_error_vox_p95"] / by["fieldmap"]["displacement_error_vox_p95"]
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "rows": rows}, indent=1) + "\n")
    print(f"pepolar_vs_fieldmap_p50={p50:.2f} pepolar_vs_fieldmap_p95={p95:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
