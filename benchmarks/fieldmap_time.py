"""Several fieldmaps per session: time-interpolated, nearest and run-entity fieldmaps compared.

One session is simulated (``simulate_dataset(fieldmaps_per_session=N)``) with head motion and
a B0 field that drifts linearly over the session (echoprep.simulate.session_fieldmaps,
0.5 Hz/min at the drift map's mean): N GRE fieldmaps acquired between the BOLD runs (the
first before run 1, the next before run floor(i R / N) + 1), each measuring the field at its
own time in its own head position; each BOLD run distorted by the field at its centre. Each
run then goes through the spatial stage's geometry step (``run_geometry`` on the reference
echo: head motion and the voxel shifts) with the fieldmap chosen by:

- ``none``: no correction;
- ``run entity``: the fieldmap with the run's own run number (what echoprep did before
  acquisition times were read: with fewer fieldmaps than runs, the later runs get none and
  stay uncorrected), applied as it is (no registration: a single fieldmap is taken to be in
  the BOLD reference's head position);
- ``nearest``: the fieldmap nearest in time to the run's centre (``spatial.fieldmap_time:
  nearest``), registered to the session's first fieldmap;
- ``interpolate``: the two fieldmaps around the run's centre, weighted linearly in time, each
  registered to the session's first fieldmap (``spatial.fieldmap_time: interpolate``, the
  default).

Printed per method: the voxel displacement error per volume, |estimated - true voxel shift| in
the truth brain mask in the reference head position (the field that distorted the volume, the
simulator's truth per volume, moved there with the estimated head motion), as the median over
all runs' volumes of each volume's median and 95th percentile (voxels along the phase-encoding
axis), and the 95th percentile per run; uncorrected runs count with their full error. Last
line::

    interpolate_vs_nearest_p95=<r> interpolate_vs_run_entity_p95=<r>

(acceptance: the first <= 1). Run::

    .venv/bin/python benchmarks/fieldmap_time.py [--preset demo] [--fieldmaps 2] [--runs 4]
        [--seed 0] [--json FILE]
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

METHODS = ("none", "run entity", "nearest", "interpolate")


def _run_entity_spec(bids: Path, run) -> dict | None:
    """The fieldmap whose run number is the run's, as a single fieldmap, or None."""
    from echoprep.io.bids_fmap import Fieldmap

    fmap = bids / "sub-01" / "ses-01" / "fmap"
    image = fmap / f"sub-01_ses-01_run-{run.run}_phasediff.nii.gz"
    if not image.exists():
        return None
    meta = json.loads(image.with_name(image.name.replace(".nii.gz", ".json")).read_text())
    magnitude = fmap / f"sub-01_ses-01_run-{run.run}_magnitude1.nii.gz"
    found = Fieldmap(
        "phasediff", image, magnitude, meta["EchoTime1"], meta["EchoTime2"], rule="run entity"
    )
    return found.as_spec()


def _errors(bids: Path, run, xfm: Path | None, est_zero: bool = False) -> tuple[list, list]:
    """Per volume median and 95th percentile of |estimated - true shift| in the brain."""
    from scipy import ndimage

    from echoprep.simulate.truth import run_field_path, truth_paths

    truth = truth_paths(bids, "01", "01")
    brain = nib.load(truth["brain_mask"]).get_fdata() > 0
    field = nib.load(run_field_path(bids, "01", "01", run.run))
    with np.load(xfm) as z:
        geo = {k: z[k] for k in z.files}
    a = geo["native_affine"]
    vsm = np.zeros(brain.shape) if est_zero or not geo["vsm"].size else geo["vsm"]
    trt = float(run.total_readout_time)
    p50, p95 = [], []
    for t in range(len(geo["vol_from_ref"])):
        field_t = np.asarray(field.dataobj[..., t], np.float64)
        m = np.linalg.inv(a) @ geo["vol_from_ref"][t] @ a
        moved = ndimage.affine_transform(field_t, m[:3, :3], m[:3, 3], order=1, mode="nearest")
        err = np.abs(vsm - (-trt * moved))[brain]  # PhaseEncodingDirection j-
        p50.append(float(np.median(err)))
        p95.append(float(np.percentile(err, 95)))
    return p50, p95


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="demo", choices=["tiny", "demo", "laion"])
    ap.add_argument("--fieldmaps", type=int, default=2, help="fieldmaps per session")
    ap.add_argument("--runs", type=int, default=4, help="BOLD runs of the session")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from echoprep.io.bids import discover
    from echoprep.simulate import simulate_dataset
    from echoprep.stages.spatial.run import run_geometry

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        bids = Path(tmp) / "bids"
        simulate_dataset(
            bids, args.preset, seed=args.seed, subjects=1, sessions=1, runs=args.runs,
            motion=True, fieldmaps_per_session=args.fieldmaps,
        )  # fmt: skip
        t_sim = time.perf_counter() - t_start
        by_choice = {c: discover(bids, fieldmap_time=c) for c in ("interpolate", "nearest")}
        done: dict[str, Path] = {}  # one geometry step per distinct fieldmap description
        rows: dict[str, dict] = {m: {"p50": [], "p95": [], "run_p95": []} for m in METHODS}
        for i, run in enumerate(by_choice["interpolate"].runs):
            specs = {
                "run entity": _run_entity_spec(bids, run),
                "nearest": by_choice["nearest"].runs[i].fieldmap.as_spec(),
                "interpolate": run.fieldmap.as_spec(),
            }
            for method in METHODS:
                uncorrected = method == "none" or specs.get(method) is None
                spec = specs["interpolate"] if uncorrected else specs[method]
                key = json.dumps(
                    {k: v for k, v in spec.items() if k not in ("rule", "note")}, sort_keys=True
                )
                if key not in done:
                    work = Path(tmp) / f"work-{len(done)}"
                    work.mkdir()
                    out = {"boldref": work / "boldref.nii.gz", "xfm": work / "xfm.npz"}
                    run_geometry(
                        run.echoes[1].mag,
                        out,
                        repetition_time=run.repetition_time,
                        slice_timing=run.slice_timing,
                        fieldmap=spec,
                        pe_direction=run.pe_direction,
                        readout_time=run.total_readout_time,
                        n_threads=2,
                    )
                    done[key] = out["xfm"]
                p50, p95 = _errors(bids, run, done[key], est_zero=uncorrected)
                rows[method]["p50"] += p50
                rows[method]["p95"] += p95
                rows[method]["run_p95"].append(float(np.median(p95)))
                if len(run.fieldmap.combine) == 2:  # between two fieldmaps
                    rows[method].setdefault("between_p95", []).extend(p95)
                rows[method].setdefault("corrected", 0)
                rows[method]["corrected"] += 0 if uncorrected else 1
        weights = [
            ", ".join(
                f"{f.image.name.split('_run-')[1][:2]}:{w:.2f}" for f, w, _ in r.fieldmap.combine
            )
            for r in by_choice["interpolate"].runs
        ]
    seconds = time.perf_counter() - t_start
    shape = "x".join(map(str, by_choice["interpolate"].runs[0].shape))
    print(
        f"{args.preset} preset ({shape}, {args.runs} runs, {args.fieldmaps} fieldmaps; "
        f"interpolation weights per run: {' | '.join(weights)}); {len(done)} geometry steps; "
        f"simulation {t_sim:.0f} s, total {seconds:.0f} s"
    )
    summary = {}
    for method in METHODS:
        r = rows[method]
        summary[method] = {
            "runs_corrected": r["corrected"],
            "displacement_error_vox_p50": float(np.median(r["p50"])),
            "displacement_error_vox_p95": float(np.median(r["p95"])),
            "run_p95": r["run_p95"],
            "between_p95": float(np.median(r["between_p95"])) if "between_p95" in r else None,
        }
        s = summary[method]
        print(
            f"{method:12s} runs corrected {s['runs_corrected']}/{args.runs}   error per volume "
            f"p50 {s['displacement_error_vox_p50']:.4f} p95 {s['displacement_error_vox_p95']:.4f}"
            f" vox   p95 per run " + " ".join(f"{v:.4f}" for v in s["run_p95"]) + "   p95 of "
            f"the runs between two fieldmaps {s['between_p95'] or float('nan'):.4f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(
            json.dumps({"preset": args.preset, "seconds": seconds, "rows": summary}, indent=1)
            + "\n"
        )

    def ratio(a: str, b: str) -> float:
        key = "displacement_error_vox_p95"
        return summary[a][key] / summary[b][key]

    print(
        f"interpolate_vs_nearest_p95={ratio('interpolate', 'nearest'):.3f} "
        f"interpolate_vs_run_entity_p95={ratio('interpolate', 'run entity'):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
