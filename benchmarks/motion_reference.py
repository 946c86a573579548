"""The motion reference (SBRef or the volumes' robust mean) and the registration target (T1w or
T2w) against the simulator's truth (docs/registration.md).

One dataset per preset (1 subject, 2 runs, head motion, distortion, fieldmaps, a T2w aligned to
the T1w; the simulator writes every run's SBRef, in the position of volume 0). Every run's
geometry is estimated twice with the stage's own steps, ``spatial.motion_reference: bold``
and ``sbref``, then the subject's BOLD → anatomy registration with the T1w and with the T2w as
target (on the SBRef geometry). Printed per variant, over every volume of both runs:

- ``motion``: the error of the volume-to-volume head motion (volume t relative to volume 0,
  independent of the reference's position), median and 95th percentile of the largest
  translation error (mm) and rotation error (deg);
- ``map``: the RMS (mm, over the truth T1w brain) of the whole map T1w -> position in volume t
  (motion, run -> reference run, boldref -> T1w) against the truth, median and 95th percentile
  over volumes;
- ``ref->T1w``: (SBRef reference only, whose truth position is volume 0's) the RMS over the
  brain of the boldref -> T1w transform alone.

Run::

    .venv/bin/python benchmarks/motion_reference.py [--presets demo] [--threads 2]
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

COLUMNS = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


def _rms(a: np.ndarray, b: np.ndarray, pts: np.ndarray) -> float:
    from echoprep.kernels.geometry.transforms import apply_matrix

    d = apply_matrix(a, pts) - apply_matrix(b, pts)
    return float(np.sqrt(np.mean(np.sum(d * d, -1))))


def measure(preset: str, base: Path, threads: int) -> list[str]:
    """Lines of figures for one preset (module docstring)."""
    import nibabel as nib
    import pandas as pd

    from echoprep.io.bids import discover
    from echoprep.io.outputs import paths_in, run_key, subject_key
    from echoprep.kernels.geometry.transforms import apply_matrix, rigid_matrix, rigid_params
    from echoprep.simulate import simulate_dataset, truth_paths
    from echoprep.stages import spatial

    bids = simulate_dataset(
        base / "bids", preset, seed=0, subjects=1, runs=2, motion=True, fieldmap=True, t2w=True
    )
    ds = discover(bids, cache_dir=base / "index", sbref_echo=2, registration_target="auto")
    tp = truth_paths(bids, "01")
    pose = np.array(json.loads(Path(tp["bold_to_T1w"]).read_text())["Matrix"])
    mask = nib.load(tp["T1w_brain_mask"])
    pts = apply_matrix(mask.affine, np.argwhere(np.asarray(mask.dataobj) > 0))
    lines = []
    for kind in ("bold", "sbref"):
        out = base / kind
        geo = []
        t0 = time.perf_counter()
        for i, run in enumerate(ds.runs):
            paths = paths_in(out, "spatial", run_key(run.entities))
            spatial.run_geometry(
                run.echoes[1].mag,
                paths,
                repetition_time=run.repetition_time,
                slice_timing=run.slice_timing,
                fieldmap=None if run.fieldmap is None else run.fieldmap.as_spec(),
                pe_direction=run.pe_direction,
                readout_time=run.total_readout_time,
                reference_boldref=None if i == 0 else geo[0]["boldref"],
                n_threads=threads,
                sbref=run.sbref if kind == "sbref" else None,
            )
            geo.append(paths)
        seconds = time.perf_counter() - t0
        targets = ("T1w", "T2w") if kind == "sbref" else ("T1w",)
        for target in targets:
            subject = paths_in(out / target, "spatial_subject", subject_key("01"))
            spatial.subject_grid(
                geo[0]["boldref"],
                ds.t1w["01"],
                tp["T1w_brain_mask"],
                subject,
                t2w_file=ds.t2w["01"] if target == "T2w" else None,
            )
            ref_from_t1w = np.loadtxt(subject["xfm"])
            trans, rot, maps = [], [], []
            for i in range(len(ds.runs)):
                g = spatial.load_geometry(geo[i]["xfm"])
                c, est = g["center"], g["vol_from_ref"]
                truth = rigid_matrix(pd.read_csv(tp["motion"][i], sep="\t")[COLUMNS].to_numpy(), c)
                err = np.abs(
                    rigid_params(est @ np.linalg.inv(est[0]), c)[1:]
                    - rigid_params(truth @ np.linalg.inv(truth[0]), c)[1:]
                )
                trans += list(err[:, :3].max(1))
                rot += list(np.rad2deg(err[:, 3:]).max(1))
                full = est @ g["run_from_ref"] @ ref_from_t1w
                want = truth @ np.linalg.inv(pose)
                maps += [_rms(f, w, pts) for f, w in zip(full, want, strict=True)]
            first = rigid_matrix(
                pd.read_csv(tp["motion"][0], sep="\t")[COLUMNS].to_numpy()[:1],
                spatial.load_geometry(geo[0]["xfm"])["center"],
            )[0]
            alone = (
                f"; ref->T1w {_rms(ref_from_t1w, first @ np.linalg.inv(pose), pts):.3f} mm"
                if kind == "sbref"
                else ""
            )
            lines.append(
                f"{preset} motion_reference={kind:5s} target={target}: motion median/p95 "
                f"{np.median(trans):.4f}/{np.percentile(trans, 95):.4f} mm, "
                f"{np.median(rot):.4f}/{np.percentile(rot, 95):.4f} deg; map median/p95 "
                f"{np.median(maps):.3f}/{np.percentile(maps, 95):.3f} mm{alone} "
                f"(geometry {seconds:.1f} s for {len(ds.runs)} runs)"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["demo"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    for preset in args.presets:
        with tempfile.TemporaryDirectory() as tmp:
            for line in measure(preset, Path(tmp), args.threads):
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
