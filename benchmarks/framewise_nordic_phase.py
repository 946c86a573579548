"""Frame-wise fields from the raw phase or from NORDIC's denoised complex series: which is closer?

Simulates one run with a changing B0 field (``echoprep simulate --field-dynamics``, no head
motion, so the comparison is in the scanner frame without registration), estimates the field of
every volume with :func:`echoprep.kernels.geometry.framewise.framewise_fields` from the raw
magnitude and phase of the three echoes, and again from NORDIC's denoised complex series of
each echo (the schema's NORDIC options), and prints per input the voxel-shift error per volume
(median over volumes of each volume's median and 95th percentile in the truth brain mask) and
the error of the change alone (each volume's field minus the run's mean, against the truth's).
Run::

    .venv/bin/python benchmarks/framewise_nordic_phase.py [--preset demo|laion] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))


def main(argv: list[str] | None = None) -> int:
    from echoprep.io.bids import discover
    from echoprep.kernels.geometry.framewise import framewise_fields
    from echoprep.simulate import simulate_dataset
    from echoprep.simulate.truth import run_field_path, truth_paths
    from echoprep.stages.nordic import denoise_arrays

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="demo", choices=["tiny", "demo", "laion"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        bids = Path(tmp) / "bids"
        simulate_dataset(
            bids, args.preset, seed=args.seed, subjects=1, sessions=1, runs=1, motion=False,
            fieldmap=False, distortion=True, field_dynamics=True,
        )  # fmt: skip
        (run,) = discover(bids).runs
        tes = np.array([e.echo_time for e in run.echoes])
        raw, den = [], []
        for e in run.echoes:
            mag = np.asarray(nib.load(e.mag).dataobj, np.float32)
            pha = np.asarray(nib.load(e.phase).dataobj, np.float32) * np.float32(np.pi / 4096)
            raw.append((mag * np.exp(1j * pha)).astype(np.complex64))
            den.append(denoise_arrays(mag, pha, phase_units="radians", n_threads=2).complex)
        truth = np.asarray(nib.load(run_field_path(bids, "01", "01", "01")).dataobj, np.float64)
        brain = nib.load(truth_paths(bids, "01", "01")["brain_mask"]).get_fdata() > 0
        trt = float(run.total_readout_time)
        vox = np.linalg.norm(nib.load(run.echoes[0].mag).affine[:3, :3], axis=0)
        change_true = truth - truth.mean(axis=-1, keepdims=True)
        for name, z in (("raw phase", raw), ("NORDIC complex", den)):
            res = framewise_fields(
                np.stack(z).astype(np.complex64), tes, axis=1, shift_per_hz=-trt,
                ref_volume=0, motion=None, voxel_size=vox,
            )  # fmt: skip
            p50, p95, change = [], [], []
            for t in range(truth.shape[-1]):
                est = res.field(t)
                err = np.abs(est - truth[..., t])[brain] * trt
                p50.append(np.median(err))
                p95.append(np.percentile(err, 95))
                change.append(np.abs(est - res.static - change_true[..., t])[brain] * trt)
            c = np.concatenate(change)
            print(
                f"{name:15s} error per volume median {np.median(p50):.4f} p95 "
                f"{np.median(p95):.4f} vox; change alone median {np.median(c):.5f} p95 "
                f"{np.percentile(c, 95):.5f} vox; {len(res.maps)} components "
                f"({res.energy:.3f} of the change's variance)",
                flush=True,
            )
    print(json.dumps({"preset": args.preset, "seed": args.seed}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
