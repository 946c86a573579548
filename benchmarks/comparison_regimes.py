"""Does the 2×3 comparison recommend the variant whose betas follow the truth? Per regime.

For each response regime of the simulator (:data:`echoprep.simulate.response.REGIMES`: how
much of the image-specific response and of the trial-to-trial variability is spatially smooth,
how strong the response is, the noise mix), one subject is simulated (no head motion, no
fieldmaps, so the workflow's output grid is the truth grid) and the REAL workflow is run on it
with its default configuration except ``spatial.enabled: false``: NORDIC off/on, single echo /
tedana optcom / tedana ICA, GLMsingle, noise ceilings, the visual ROI and the comparison
(``comparison/recommended_variant.json`` is the target). Then, per variant:

- ``NC``: median noise ceiling in the visual ROI (the comparison table, as LAION reported it);
- ``heldout``: the held-out fidelity the comparison ranks by (data only);
- ``split``: the variant's own split-half reliability (repeat agreement, like NC);
- ``r_truth``: the median, over the truly active voxels that every variant fitted, of the
  correlation between the variant's repeat-averaged type-D betas (z-scored per run) and the
  TRUE image means (``derivatives/truth``);

and the check: the recommended variant's ``r_truth`` is within ``--tolerance`` (0.02) of the
best variant's. The NC-based choice is printed beside it. Exit status 1 when a regime fails.

Run (2-core VM; each regime runs the whole workflow, a few minutes each on the ``regime``
preset)::

    .venv/bin/python benchmarks/comparison_regimes.py                      # every regime
    .venv/bin/python benchmarks/comparison_regimes.py --regimes smooth strong --keep /tmp/cr

``--combine single optcom`` leaves out tedana ICA for a cheaper look.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from echoprep.io.outputs import group_key, path_in, paths_in  # noqa: E402
from echoprep.kernels.fidelity import truth_fidelity  # noqa: E402
from echoprep.simulate import simulate_dataset  # noqa: E402
from echoprep.simulate.presets import PRESETS  # noqa: E402
from echoprep.simulate.response import REGIMES  # noqa: E402
from echoprep.simulate.truth import truth_paths  # noqa: E402
from echoprep.stages import glm as glm_stage  # noqa: E402
from echoprep.stages.comparison import VARIANTS, read_table  # noqa: E402

TASK = "images"


def run_workflow(bids: Path, work: Path, combine: list[str], seed: int, cores: int) -> Path:
    """Run the workflow up to the comparison; returns the output folder."""
    out = work / "results"
    cfg = {
        "bids_dir": str(bids),
        "output_dir": str(out),
        "work_dir": str(work / "work"),
        "seed": seed,
        "spatial": {"enabled": False},
        "variants": {"combine": combine},
        "report": {"enabled": False},
    }
    cfg_path = work / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    target = path_in(out / "comparison", "comparison.json", group_key(TASK))
    # the target first: --configfile and --quiet take several values
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), str(target)]
    cmd += ["--configfile", str(cfg_path), "--cores", str(cores), "--quiet", "rules"]
    log = work / "snakemake.log"
    with log.open("w") as fh:
        res = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise SystemExit(f"workflow failed for {bids}; see {log}")
    return out


def truth_scores(bids: Path, out: Path, variants: list[str], roi: bool = False) -> dict[str, float]:
    """variant -> median r of its image means with the true image means, over the truly active
    voxels fitted by every variant (``roi``: only those inside the visual ROI the comparison
    ranks on)."""
    truth = truth_paths(bids, "01", "01")
    active = np.asarray(nib.load(truth["active_mask"]).dataobj) > 0
    means = np.asarray(nib.load(truth["image_means"]).dataobj, np.float64)
    images = pd.read_csv(truth["images"], sep="\t", dtype={"label": str})
    key = glm_stage.session_key("01", "01", TASK)
    fitted = active.copy()
    if roi:
        (mask,) = (out / "rois" / "sub-01" / "visual").glob(
            "*_label-visuallyResponsive_mask.nii.gz"
        )
        fitted &= np.asarray(nib.load(mask).dataobj) > 0
    files = {}
    for v in variants:
        paths = paths_in(out / f"glmsingle-{v}", "glm", key, keys=["betas", "trials", "mask"])
        files[v] = paths
        fitted &= np.asarray(nib.load(paths["mask"]).dataobj) > 0
    true_means = means[fitted]  # (V, I)
    scores = {}
    for v, paths in files.items():
        betas = np.asarray(nib.load(paths["betas"]).dataobj, np.float32)[fitted]
        trials = glm_stage.read_trials(paths["trials"])
        r = truth_fidelity(
            betas, trials["label"], trials["run"], true_means, images["label"].to_numpy()
        )
        scores[v] = float(np.nanmedian(r))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument(
        "--preset", default="regime" if "regime" in PRESETS else "demo", choices=list(PRESETS)
    )
    parser.add_argument("--runs", type=int, default=None, help="runs (preset default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--combine", nargs="+", default=["single", "optcom", "denoised"])
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="keep the datasets here")
    args = parser.parse_args(argv)

    base = args.keep or Path(tempfile.mkdtemp(prefix="echoprep-regimes-"))
    base.mkdir(parents=True, exist_ok=True)
    failed = []
    summary = []
    for name in args.regimes:
        t0 = time.time()
        work = base / name
        bids = work / "bids"
        if not (bids / "dataset_description.json").exists():
            simulate_dataset(
                bids,
                args.preset,
                seed=args.seed,
                subjects=1,
                sessions=1,
                runs=args.runs,
                motion=False,
                fieldmap=False,
                response=name,
            )
        out = run_workflow(bids, work, args.combine, args.seed, args.cores)
        group = paths_in(out / "comparison", "comparison", group_key(TASK), keys=["tsv", "json"])
        table = read_table(group["tsv"]).set_index("variant")
        rec = json.loads(group["json"].read_text())
        variants = [v for v in VARIANTS if v in table.index]
        truth = truth_scores(bids, out, variants)
        in_roi = truth_scores(bids, out, variants, roi=True)
        best = max(truth.values())
        best_roi = max(in_roi.values())
        chosen = rec["variant"]
        ok = truth[chosen] >= best - args.tolerance
        ok_roi = in_roi[chosen] >= best_roi - args.tolerance
        print(f"\n== regime {name}: {REGIMES[name].description}")
        print(f"   preset {args.preset}, {time.time() - t0:.0f} s")
        print(
            f"   {'variant':<16} {'NC %':>7} {'heldout':>8} {'split':>7} {'r_truth':>8} "
            f"{'r_roi':>7}"
        )
        for v in variants:
            row = table.loc[v]
            mark = " <- recommended" if v == chosen else ""
            mark += " (NC's pick)" if v == rec.get("nc_winner") else ""
            print(
                f"   {v:<16} {row['median_nc']:7.2f} {row['heldout_r']:8.3f} "
                f"{row['splithalf_r']:7.3f} {truth[v]:8.3f} {in_roi[v]:7.3f}{mark}"
            )
        nc_pick = rec.get("nc_winner")
        print(
            f"   recommended {chosen}: r_truth {truth[chosen]:.3f}, best {best:.3f} "
            f"(gap {best - truth[chosen]:.3f}, tolerance {args.tolerance}) -> "
            f"{'OK' if ok else 'FAIL'}; NC would pick {nc_pick} "
            f"(gap {best - truth.get(nc_pick, np.nan):.3f})"
        )
        print(
            f"   in the visual ROI: recommended {in_roi[chosen]:.3f}, best {best_roi:.3f} "
            f"(gap {best_roi - in_roi[chosen]:.3f}) -> {'OK' if ok_roi else 'FAIL'}; NC's pick "
            f"{in_roi.get(nc_pick, np.nan):.3f}"
        )
        if rec.get("disagreement"):
            print("   disagreement reported: yes")
        summary.append((name, chosen, truth[chosen], best, nc_pick, truth.get(nc_pick)))
        if not ok:
            failed.append(name)
    print("\nregime           recommended      r_truth  best   | NC pick          r_truth")
    for name, chosen, rc, best, nc_pick, rn in summary:
        print(f"{name:<16} {chosen:<16} {rc:6.3f} {best:6.3f} | {nc_pick:<16} {rn:6.3f}")
    print(f"\nregimes failing the {args.tolerance} tolerance: {failed or 'none'}")
    print(f"datasets and outputs in {base}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
