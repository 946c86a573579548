"""The cost at LAION size of what issue 40 added: fieldmaps in time, gradient warp, SBRef, T2w, UNI.

One LAION-size session (``--preset laion``: 90 x 110 x 72 at 1.8 mm, 163 volumes, 3 echoes) is
simulated with two GRE fieldmaps between two runs (LAION's layout), the simulator's nonlinear
gradient coil, an MP2RAGE UNI T1w and a T2w. Each step below runs in a process of its own
(``--step``), timed with ``os.wait4`` (wall, user + system CPU, peak resident memory of the
process), with ``--threads`` threads (default 2):

- ``geometry``: the run's geometry step (``run_geometry`` on echo 2: head motion, one fieldmap,
  the voxel-shift map) as before issue 40: the baseline;
- ``geometry+time``: the same with the two fieldmaps registered to the first and interpolated
  to the run's centre (``spatial.fieldmap_time: interpolate``);
- ``geometry+gradient``: one fieldmap plus the gradient warp (``spatial.gradient_coefficients``:
  the warp on the padded grid, the fieldmap unwarped, the boldref corrected);
- ``geometry+sbref``: one fieldmap, motion estimated to the SBRef
  (``spatial.motion_reference: sbref``);
- ``resample`` / ``resample+gradient``: one echo resampled onto the run's native grid through
  the chain of ``geometry`` / ``geometry+gradient`` (the warp looked up per volume);
- ``uni-background``: the UNI background suppression of the 1 mm T1w (``anatomy.uni_background:
  auto``), once per subject;
- ``subject-grid`` / ``subject-grid+t2w``: the subject job's boldref -> T1w registration without
  and with the T2w as the target (the T2w aligned to the T1w first), once per subject.

The peak is the child's own ``ru_maxrss`` (the parent stays small: the simulation runs in a
child too). Printed: one row per step and the cost of each addition (step minus its baseline)
per run (per subject for the last two), and one line::

    gradient_cpu_s_per_run=<x> time_cpu_s_per_run=<y> sbref_cpu_s_per_run=<z>

where the gradient figure counts the geometry step once and the resampling of 3 echoes for each
of the 2 NORDIC variants (what a run of the 2x3 comparison resamples).
Run::

    .venv/bin/python benchmarks/laion_additions.py [--threads 2] [--dir D] [--json FILE]
        [--preset laion]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "benchmarks"))

STEPS = (
    "geometry",
    "geometry+time",
    "geometry+gradient",
    "geometry+sbref",
    "resample",
    "resample+gradient",
    "uni-background",
    "subject-grid",
    "subject-grid+t2w",
)
#: Echo resamplings per run of the 2x3 comparison: 3 echoes x 2 NORDIC variants.
RESAMPLES_PER_RUN = 6


def _run_step(step: str, d: Path, threads: int) -> None:
    """One step on the dataset under ``d`` (in this process)."""
    import nibabel as nib
    import numpy as np

    from echoprep.io.bids import discover
    from echoprep.simulate.gradient_coil import coil_path

    bids = d / "bids"
    run = discover(bids, fieldmap_time="interpolate").runs[0]
    work = d / step
    work.mkdir(exist_ok=True)
    out = {"boldref": work / "boldref.nii.gz", "xfm": work / "xfm.npz"}
    if step.startswith("geometry"):
        from fieldmap_time import _run_entity_spec

        from echoprep.stages.spatial.run import run_geometry

        kwargs = {}
        if step == "geometry+gradient":
            kwargs["gradient"] = {"coefficients": str(coil_path(bids)), "patient_position": "HFS"}
        if step == "geometry+sbref":
            func = Path(run.echoes[1].mag).parent
            kwargs["sbref"] = next(func.glob(f"*_run-{run.run}_echo-2*_sbref.nii.gz"))
            kwargs["options"] = {"motion_reference": "sbref"}
        run_geometry(
            run.echoes[1].mag, out, repetition_time=run.repetition_time,
            slice_timing=run.slice_timing,
            fieldmap=run.fieldmap.as_spec() if step == "geometry+time"
            else _run_entity_spec(bids, run),
            pe_direction=run.pe_direction, readout_time=run.total_readout_time,
            n_threads=threads, **kwargs,
        )  # fmt: skip
    elif step.startswith("resample"):
        from echoprep.stages.spatial.resample import resample_run

        source = d / ("geometry+gradient" if step.endswith("gradient") else "geometry")
        resample_run(
            [run.echoes[1].mag], source / "xfm.npz", source / "boldref.nii.gz",
            [work / "echo-2.nii.gz"], n_threads=threads,
        )  # fmt: skip
    elif step == "uni-background":
        from echoprep.stages.anatomy.background import prepare_background

        t1w = next((bids / "sub-01").rglob("*_T1w.nii.gz"))
        img = nib.load(t1w)
        data = np.asarray(img.dataobj, np.float32)
        prepare_background(t1w, data, float(np.prod(img.header.get_zooms()[:3])), "auto", [])
    elif step.startswith("subject-grid"):
        from echoprep.stages.spatial.subject import subject_grid

        t2w = next((bids / "sub-01").rglob("*_T2w.nii.gz")) if step.endswith("t2w") else None
        anat = d / "anatomy"
        subject_grid(
            d / "geometry" / "boldref.nii.gz", anat / "t1w.nii.gz", anat / "mask.nii.gz",
            _subject_outputs(work), t2w_file=t2w, n_threads=threads,
        )  # fmt: skip
    else:
        raise SystemExit(f"unknown step {step!r}; choose from {', '.join(STEPS)}")


def _subject_outputs(work: Path) -> dict[str, Path]:
    """Output paths of subject_grid."""
    from echoprep.stages.spatial.subject import SUBJECT_OUTPUTS

    return {k: work / f"{k}{ext}" for k, (_, _, ext) in SUBJECT_OUTPUTS.items()}


def _metered(step: str, d: Path, threads: int, preset: str = "laion") -> dict[str, float]:
    """Run one step in a child process: wall s, CPU s, peak GiB."""
    env = os.environ | {
        "OMP_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": str(threads),
    }
    argv = [sys.executable, __file__, "--step", step, "--dir", str(d), "--threads", str(threads)]
    argv += ["--preset", preset]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"step {step} failed (status {status})")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_gib": round(usage.ru_maxrss / 2**20, 3),
    }


def _prepare(d: Path, preset: str) -> None:
    """Simulate the session and the anatomy the subject-grid steps need (T1w, brain mask)."""
    import nibabel as nib
    import numpy as np

    from echoprep.simulate import simulate_dataset
    from echoprep.simulate.truth import truth_paths

    bids = d / "bids"
    if not bids.exists():
        simulate_dataset(
            bids, preset, subjects=1, sessions=1, runs=2, motion=True,
            fieldmaps_per_session=2, gradient_nonlinearity=True, t1w_kind="mp2rage", t2w=True,
        )  # fmt: skip
    anat = d / "anatomy"
    anat.mkdir(exist_ok=True)
    t1w = next((bids / "sub-01").rglob("*_T1w.nii.gz"))
    img = nib.load(t1w)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine), anat / "t1w.nii.gz")
    mask = nib.load(truth_paths(bids, "01")["T1w_brain_mask"])
    nib.save(mask, anat / "mask.nii.gz")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", default="laion", help="laion (tiny: to try the script)")
    ap.add_argument("--dir", type=Path, default=None, help="working folder (default: a temp)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--step", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.step == "prepare":
        _prepare(args.dir, args.preset)
        return 0
    if args.step:
        _run_step(args.step, args.dir, args.threads)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        d = args.dir or Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        # in a process of its own: this one stays small, and a child's peak memory (which
        # Linux carries over from the process it was forked from) is its own
        _metered("prepare", d, args.threads, args.preset)
        print(f"simulated in {time.perf_counter() - t0:.0f} s", flush=True)
        rows = {}
        for step in STEPS:
            rows[step] = _metered(step, d, args.threads)
            r = rows[step]
            print(
                f"{step:20s} wall {r['wall_s']:7.1f} s  CPU {r['cpu_s']:7.1f} s  "
                f"peak {r['peak_gib']:.2f} GiB",
                flush=True,
            )

    def extra(step: str, base: str) -> dict[str, float]:
        return {
            "cpu_s": round(rows[step]["cpu_s"] - rows[base]["cpu_s"], 1),
            "peak_gib": round(rows[step]["peak_gib"] - rows[base]["peak_gib"], 3),
        }

    grad_geo = extra("geometry+gradient", "geometry")
    grad_res = extra("resample+gradient", "resample")
    additions = {
        "fieldmaps in time (per run)": extra("geometry+time", "geometry"),
        "gradient warp, geometry step (per run)": grad_geo,
        "gradient warp, resampling (per echo)": grad_res,
        "SBRef motion reference (per run)": extra("geometry+sbref", "geometry"),
        "UNI background (per subject)": rows["uni-background"],
        "T2w registration target (per subject)": extra("subject-grid+t2w", "subject-grid"),
    }
    for name, v in additions.items():
        print(f"+ {name:42s} CPU {v['cpu_s']:+7.1f} s  peak {v['peak_gib']:+.2f} GiB")
    gradient_run = grad_geo["cpu_s"] + RESAMPLES_PER_RUN * grad_res["cpu_s"]
    if args.json:
        args.json.write_text(
            json.dumps({"threads": args.threads, "steps": rows, "additions": additions}, indent=1)
            + "\n"
        )
    print(
        f"gradient_cpu_s_per_run={gradient_run:.1f} "
        f"time_cpu_s_per_run={additions['fieldmaps in time (per run)']['cpu_s']:.1f} "
        f"sbref_cpu_s_per_run={additions['SBRef motion reference (per run)']['cpu_s']:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
