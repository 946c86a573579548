"""Anatomy stage (N4, deepbet, T1w→MNI152NLin2009aSym SyN, Atropos): wall time and accuracy.

Cases: the simulator's T1w of one subject of a preset (``tiny`` 4 mm, ``demo`` 2 mm, ``laion``
1 mm), written once per preset into ``--data`` (``simulate_dataset(..., subjects=1, runs=1)``;
the ``laion`` T1w takes about 80 s and 1 GB to simulate). Each case runs the stage in a fresh
subprocess (so the template preparation and deepbet's model loading are timed, as in a rule) and
prints the stage's per-step seconds, the process CPU time, the peak memory and the Dice of the
brain mask and of each tissue class against the simulator's truth, plus the Dice of the warped
brain with the template's (registration quality). Run::

    .venv/bin/python benchmarks/anatomy.py [--cases tiny demo laion] [--registration quick]
        [--segmentation priors] [--threads 2] [--data /tmp/echoprep-anat-bench]
        [--t1w-kind mp2rage] [--uni-background auto]

``--t1w-kind mp2rage`` scores the simulator's MP2RAGE UNI T1w instead (only the anatomy is
simulated, :func:`echoprep.simulate.anatomy_files.write_anatomy`, into ``<data>/<preset>-mp2rage``)
and ``--uni-background`` sets ``anatomy.uni_background`` (docs/anatomy.md: ``keep`` measures the
stage without the noise-background step).

Targets (2 cores): tiny < 30 s, demo < 120 s, laion < 10 min with ``quick``. The machine may be
shared: the load average before each case is printed with it.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

TARGET_S = {"tiny": 30.0, "demo": 120.0, "laion": 600.0}


def _dataset(data: Path, preset: str, t1w_kind: str = "mprage") -> Path:
    from echoprep.simulate import PRESETS, simulate_dataset
    from echoprep.simulate.anatomy_files import write_anatomy

    root = data / (preset if t1w_kind == "mprage" else f"{preset}-{t1w_kind}")
    t1w = root / "sub-01" / "ses-01" / "anat" / "sub-01_ses-01_T1w.nii.gz"
    if not t1w.is_file():
        t0 = time.perf_counter()
        if t1w_kind == "mprage":
            simulate_dataset(root, preset, subjects=1, runs=1)
        else:
            write_anatomy(root, PRESETS[preset], 0, 1, t1w_kind)
        print(f"simulated {preset} in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


def _case(root: Path, out: Path, options: dict, threads: int) -> dict:
    """Run the stage once (in this process) and score it."""
    import nibabel as nib
    import numpy as np

    from echoprep.io.outputs import paths_in, subject_key
    from echoprep.kernels.tissue import dice
    from echoprep.simulate.truth import truth_paths
    from echoprep.stages.anatomy import run_anatomy

    t1w = root / "sub-01" / "ses-01" / "anat" / "sub-01_ses-01_T1w.nii.gz"
    outputs = paths_in(out, "anatomy", subject_key("01", datatype="anat"))
    t0, c0 = time.perf_counter(), time.process_time()
    record = run_anatomy(t1w, outputs, seed=0, n_threads=threads, options=options)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    truth = truth_paths(root, "01")
    brain = np.asarray(nib.load(truth["T1w_brain_mask"]).dataobj) > 0
    dseg = np.asarray(nib.load(truth["T1w_dseg"]).dataobj)
    mask = np.asarray(nib.load(outputs["brain_mask"]).dataobj) > 0
    seg = np.asarray(nib.load(outputs["dseg"]).dataobj)
    scores = {"brain": dice(mask, brain)}
    scores |= {
        name: dice(seg == lab, dseg == lab) for lab, name in ((1, "GM"), (2, "WM"), (3, "CSF"))
    }
    return {
        "shape": list(nib.load(t1w).shape),
        "voxel_mm": float(nib.load(t1w).header.get_zooms()[0]),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "steps_s": record["Seconds"],
        "template_dice": record.get("TemplateBrainDice"),
        "background_suppressed": record["Background"]["Suppressed"],
        "warnings": len(record["Warnings"]),
        "dice": {k: round(v, 4) for k, v in scores.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["tiny", "demo"], choices=list(TARGET_S))
    parser.add_argument("--registration", default="quick", choices=["fast", "quick", "precise"])
    parser.add_argument("--segmentation", default="priors", choices=["priors", "kmeans"])
    parser.add_argument("--template-resolution", type=int, default=None, choices=[1, 2, 3, 4])
    parser.add_argument("--t1w-kind", default="mprage", choices=["mprage", "mp2rage"])
    parser.add_argument("--uni-background", default="auto", choices=["auto", "suppress", "keep"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path("/tmp/echoprep-anat-bench"))
    parser.add_argument("--_child", nargs=2, metavar=("ROOT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    options = {
        "registration": args.registration,
        "segmentation": args.segmentation,
        "template_resolution": args.template_resolution,
        "uni_background": args.uni_background,
    }
    if args._child:
        result = _case(Path(args._child[0]), Path(args._child[1]), options, args.threads)
        print("RESULT " + json.dumps(result))
        return 0
    for preset in args.cases:
        root = _dataset(args.data, preset, args.t1w_kind)
        res = f"-res{args.template_resolution}" if args.template_resolution else ""
        kind = "" if args.t1w_kind == "mprage" else f"-{args.t1w_kind}-{args.uni_background}"
        out = args.data / f"out-{preset}-{args.registration}-{args.segmentation}{res}{kind}"
        load = os.getloadavg()[0]
        cmd = [
            sys.executable,
            __file__,
            "--registration",
            args.registration,
            "--segmentation",
            args.segmentation,
            "--threads",
            str(args.threads),
            "--uni-background",
            args.uni_background,
            *(
                ["--template-resolution", str(args.template_resolution)]
                if args.template_resolution
                else []
            ),
            "--_child",
            str(root),
            str(out),
        ]
        env = dict(os.environ, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(args.threads))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            return 1
        r = json.loads(lines[-1][len("RESULT ") :])
        target = TARGET_S[preset]
        head = f"anatomy {preset:5s} {'x'.join(map(str, r['shape']))} @ {r['voxel_mm']:g} mm"
        timing = (
            f"wall {r['wall_s']} s (target {target:g} s, ratio {r['wall_s'] / target:.2f})  "
            f"cpu {r['cpu_s']} s  peak {r['peak_gib']} GiB  load {load:.1f}"
        )
        print(f"{head}  {args.registration}/{args.segmentation}{res}{kind}  {timing}")
        print(f"  steps {r['steps_s']}")
        print(
            f"  Dice {r['dice']}  template-brain Dice {r['template_dice']}  background "
            f"suppressed {r['background_suppressed']}  warnings {r['warnings']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
