"""tedana lean (echoprep's default) against stock tedana on one LAION-size run: CPU and outputs.

The echoes are those of one simulated LAION-fMRI run (``echoprep simulate --preset laion --runs
1``: 90 x 110 x 72 voxels at 1.8 mm, 163 volumes, 3 echoes; written into ``--dir`` unless it
already holds one), taken as they are (not resampled: the cost of tedana does not depend on
it). Each of tedana's two workflows as echoprep calls them (:mod:`echoprep.adapters.tedana`,
the default config's options: loglin fit, dropout mask, aic, FastICA, seed 42) runs in a
process of its own, one thread, first stock then lean; printed per workflow the CPU seconds
(user + system of the process) and peak memory of each, their ratio, and whether every file
echoprep keeps is the same (images compared after decompression, tables byte for byte). Last
line: ``tedana_cpu_ratio_lean_to_stock=<x> target<=0.75 PASS|MISS`` (ICA-denoised workflow;
the target is this issue's share of the session's CPU cut, docs/performance.md).

    .venv/bin/python benchmarks/tedana_lean.py [--dir /tmp/echoprep-tedana-lean]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TES = [0.011, 0.02882, 0.04662]
TARGET_RATIO = 0.75
OPTIONS = {"fittype": "loglin", "masktype": ["dropout"], "n_threads": 1}
ICA = {
    "tedpca": "aic",
    "tree": "tedana_orig",
    "ica_method": "fastica",
    "n_robust_runs": 30,
    "maxit": 500,
    "maxrestart": 3,
    "seed": 42,
}


def child(workflow: str, lean: bool, echoes: list[str], out: str) -> int:
    """One workflow in this process; prints a JSON record (CPU s, peak GiB, files)."""
    from echoprep.adapters import tedana

    if workflow == "t2smap":
        files = tedana.run_t2smap(echoes, TES, out, lean=lean, **OPTIONS)
    else:
        files = tedana.run_tedana(echoes, TES, out, lean=lean, **OPTIONS, **ICA)
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "cpu_s": use.ru_utime + use.ru_stime,
                "peak_gib": use.ru_maxrss / 2**20,
                "files": {k: str(v) for k, v in files.items()},
            }
        )
    )
    return 0


def _echoes(folder: Path) -> list[str]:
    func = folder / "sub-01" / "ses-01" / "func"
    files = sorted(func.glob("*_run-01_echo-*_part-mag_bold.nii.gz"))
    if len(files) != 3:
        subprocess.run(
            [sys.executable, "-m", "echoprep", "simulate", "--preset", "laion", "--runs", "1",
             str(folder)],
            check=True,
        )  # fmt: skip
        files = sorted(func.glob("*_run-01_echo-*_part-mag_bold.nii.gz"))
    return [str(f) for f in files]


def _same(a: dict[str, str], b: dict[str, str]) -> bool:
    for key, path in a.items():
        other = b[key]
        if path.endswith((".nii", ".nii.gz")):
            x, y = nib.load(path), nib.load(other)
            if x.get_data_dtype() != y.get_data_dtype() or not np.array_equal(
                np.asarray(x.dataobj), np.asarray(y.dataobj)
            ):
                return False
        elif Path(path).read_bytes() != Path(other).read_bytes():
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/echoprep-tedana-lean"))
    parser.add_argument("--child", nargs=3, metavar=("WORKFLOW", "LEAN", "OUT"))
    parser.add_argument("--echoes", nargs="*", default=None)
    args = parser.parse_args(argv)
    if args.child:
        workflow, lean, out = args.child
        return child(workflow, lean == "lean", args.echoes, out)
    echoes = _echoes(args.dir)
    ratio = float("nan")
    print(f"{'workflow':9} {'mode':6} {'CPU-s':>7} {'peak GiB':>8}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for workflow in ("t2smap", "tedana"):
            runs = {}
            for mode in ("stock", "lean"):
                out = Path(tmp) / f"{workflow}-{mode}"
                done = subprocess.run(
                    [sys.executable, __file__, "--child", workflow, mode, str(out), "--echoes",
                     *echoes],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
                rec = runs[mode]
                print(f"{workflow:9} {mode:6} {rec['cpu_s']:7.1f} {rec['peak_gib']:8.2f}")
            r = runs["lean"]["cpu_s"] / runs["stock"]["cpu_s"]
            same = _same(runs["stock"]["files"], runs["lean"]["files"])
            print(f"{workflow:9} lean/stock CPU {r:.3f}; kept files identical: {same}")
            if not same:
                raise SystemExit(f"{workflow}: the lean run's kept files differ from stock's")
            ratio = r
    status = "PASS" if ratio <= TARGET_RATIO else "MISS"
    print(f"tedana_cpu_ratio_lean_to_stock={ratio:.3f} target<={TARGET_RATIO} {status}")
    return 0 if status == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
