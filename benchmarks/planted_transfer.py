"""Where the planted estimate's error comes from, measured against the simulator's truth
(docs/comparison.md, "Where the estimate's error comes from").

The planted estimate of a variant (:mod:`echoprep.kernels.planted_fidelity`) reads its gain for
the session's real responses off its gain for the planted ones, in the units of the reference's
type-B fit: it is right when every fit passes a planted response as it passes a real one,
relative to the reference (``a_real / a_planted`` the same for every fit), and when the halves
the response variance ``S`` is read from share nothing but the response. On a case kept by
``benchmarks/comparison_regimes.py --keep`` (a simulated session whose workflow ran through the
comparison) this script measures both against the truth, pooled over the truly active voxels of
the comparison's ROI that received a planted response:

- per fit (each variant's published betas, and the reference's type-B betas): ``a_real``, the
  gain of its repeat-averaged betas on the true image means (covariance over images, pooled over
  voxels, over the true means' variance; in the fit's own units), and ``a_planted``, its gain on
  the planted responses as the estimate reads it (what its betas carry of them at the half-A
  presentations, against half B, over the planted pattern against half B); ``transfer`` =
  ``a_real / a_planted``;
- ``misread`` = the reference's ``transfer`` over the variant's: the factor by which the
  estimate reads the variant because the chain passes the planted responses otherwise than the
  real ones (below 1: read low); ``misread_truth`` the same with every ``a_planted`` read against
  the true image means instead of half B (``a_planted_truth``): where the two differ, what a
  fit's betas carry of the planted pattern follows half B otherwise than the true responses;
- ``shared`` = ``sqrt(cov(planted, half B) / (cov(planted, R) cov(half B, R) / var(R)))``: the
  factor from what the planted pattern and half B share besides the true response ``R``;
- ``predicted`` = ``misread * shared`` against ``observed`` = ``planted_r / r_truth`` (the
  comparison's estimate over the truth, as ``comparison_regimes.py`` reports them; the rest is
  the median over voxels against the pooled gains, and the smoothing); ``planted_r_again``: the
  estimate recomputed here from the same files (a check that they were read as the comparison
  read them).

    .venv/bin/python benchmarks/planted_transfer.py --case DIR [--session 01] [--json FILE]

A few seconds per case; reads only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from comparison_regimes import TASK, session_truth_scores  # noqa: E402

from echoprep.io.events import read_trials  # noqa: E402
from echoprep.io.outputs import paths_in  # noqa: E402
from echoprep.kernels import planted_fidelity as pf  # noqa: E402
from echoprep.kernels.fidelity import image_means  # noqa: E402
from echoprep.kernels.planted import presentation_halves  # noqa: E402
from echoprep.simulate.truth import truth_paths  # noqa: E402
from echoprep.stages import glm as glm_stage  # noqa: E402
from echoprep.stages.comparison import VARIANTS  # noqa: E402
from echoprep.stages.comparison.planted_design import read_design  # noqa: E402


def _statmap(folder: Path, session: str, desc: str) -> Path | None:
    found = sorted(folder.glob(f"sub-01/ses-{session}/func/*_desc-{desc}_statmap.nii.gz"))
    return found[0] if found else None


def measure(case: Path, session: str = "01") -> dict:
    """Every figure of the module docstring for one session of a kept case."""
    res, bids = case / "results", case / "bids"
    key = glm_stage.session_key("01", session, TASK)
    variants = [v for v in VARIANTS if (res / f"glmsingle-{v}").is_dir()]
    (design_path,) = (res / "planted").glob(f"sub-01/ses-{session}/func/*_design.npz")
    design = read_design(design_path)
    shape = tuple(int(s) for s in design["shape"])
    (roi_path,) = (res / "rois" / "sub-01" / "visual").glob(
        "*_label-visuallyResponsive_mask.nii.gz"
    )
    roi = np.asarray(nib.load(roi_path).dataobj) > 0
    fits = {
        v: paths_in(res / f"glmsingle-{v}", "glm", key, keys=["trials", "mask"]) for v in variants
    }
    for paths in fits.values():
        roi &= np.asarray(nib.load(paths["mask"]).dataobj) > 0
    voxels = np.asarray(design["voxels"], np.int64)
    keep = roi[tuple(voxels.T)]
    ijk = voxels[keep]
    rows = tuple(ijk.T)
    images = np.asarray(design["images"]).astype(str)
    planted = np.asarray(design["planted"], np.float64)[keep]
    half_b = np.asarray(design["truth"], np.float64)[keep]
    factor = float(design["factor"])
    truth = truth_paths(bids, "01", session)
    active = (np.asarray(nib.load(truth["active_mask"]).dataobj) > 0)[rows]
    true_images = pd.read_csv(truth["images"], sep="\t", dtype={"label": str})["label"]
    column = {str(lab): i for i, lab in enumerate(true_images)}
    means = np.asarray(nib.load(truth["image_means"]).dataobj, np.float64)[rows]
    true_r = means[:, [column[i] for i in images]]
    trials = read_trials(fits[variants[0]]["trials"])
    labels = trials["label"].astype(str).to_numpy()
    runs = trials["run"].astype(str).to_numpy()
    half_a = presentation_halves(labels)

    def load(path: Path) -> np.ndarray:
        return np.asarray(nib.load(path).dataobj, np.float64)[rows]

    def gains(real: np.ndarray, recovered: np.ndarray) -> dict[str, float]:
        m = image_means(real, labels, images)[active]
        g = image_means(recovered[:, half_a], labels[half_a], images)[active] / factor
        r, p, b = true_r[active], planted[active], half_b[active]
        # pf.reference_gain(x, y, t): sum cov(x, t) / sum cov(y, t), pooled over the voxels
        a_real = pf.reference_gain(m, r, r)
        a_planted = pf.reference_gain(g, p, b)
        return {
            "a_real": a_real,
            "a_planted": a_planted,
            "a_planted_truth": pf.reference_gain(g, p, r),
            "transfer": a_real / a_planted,
        }

    reference = None
    for v in variants:
        folder = res / f"glmsingle-{v}"
        real_b = _statmap(folder, session, "SingletrialBetasTypeB")
        planted_b = _statmap(folder, session, "plantedBetasTypeB")
        if real_b is not None and planted_b is not None:
            reference = {"variant": v, **gains(load(real_b), load(planted_b))}
            break
    if reference is None:
        raise SystemExit(f"{case}: no reference type-B fit with planted betas in session {session}")
    r, p, b = true_r[active], planted[active], half_b[active]
    # cov(p, b) var(r) / (cov(p, r) cov(b, r)): the planted pattern's gain on the truth read
    # against half B over the same read against the truth
    shared = np.sqrt(pf.reference_gain(p, r, b) / pf.reference_gain(p, r, r))
    table = pd.read_csv(
        next((res / "comparison" / "sub-01").glob("*_desc-planted_comparison.tsv")),
        sep="\t",
        dtype={"session": str, "subject": str},
    )
    table = table[(table["replicate"] == 0) & (table["session"] == session)]
    estimate = dict(zip(table["variant"], table["planted_r"], strict=True))
    scores = session_truth_scores(bids, res, variants, roi=True, session=session)["r_truth"]
    sizes = np.sqrt((np.asarray(design["affine"])[:3, :3] ** 2).sum(axis=0))
    weights = np.ones((1, images.size))
    ref_gain = reference["a_planted"]
    out_rows = []
    for v in variants:
        folder = res / f"glmsingle-{v}"
        betas = load(_statmap(folder, session, "SingletrialBetas"))
        recovered = load(_statmap(folder, session, "plantedBetas"))
        row = {"variant": v, **gains(betas, recovered)}
        row["misread"] = reference["transfer"] / row["transfer"]
        row["misread_truth"] = (reference["a_real"] / reference["a_planted_truth"]) / (
            row["a_real"] / row["a_planted_truth"]
        )
        row["predicted"] = row["misread"] * shared
        row["planted_r"] = float(estimate.get(v, np.nan))
        row["r_truth"] = float(scores[v])
        row["observed"] = row["planted_r"] / row["r_truth"]
        sigma = [pf.SMOOTHING_MM / float(s) for s in sizes]
        truth_obj = pf.PlantedTruth(
            images, planted, half_b, factor, pf.Smoother(ijk, shape, sigma), ref_gain
        )
        fid = pf.variant_fidelity(betas, recovered, labels, runs, truth_obj, weights)
        row["planted_r_again"] = float(fid.r[0])
        out_rows.append(row)
    return {
        "case": case.name,
        "session": session,
        "voxels": int(active.sum()),
        "reference": reference,
        "shared": float(shared),
        "variants": out_rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", type=Path, required=True, help="a case kept by comparison_regimes.py")
    ap.add_argument("--session", default="01", help="comparison session label (default 01)")
    ap.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = ap.parse_args(argv)
    out = measure(args.case, args.session)
    ref = out["reference"]
    print(
        f"{out['case']} ses-{out['session']}: {out['voxels']} truly active ROI voxels planted; "
        f"reference type-B fit ({ref['variant']}): a_real {ref['a_real']:.3f}, a_planted "
        f"{ref['a_planted']:.3f} (against the truth {ref['a_planted_truth']:.3f}), transfer "
        f"{ref['transfer']:.3f}; shared {out['shared']:.3f}"
    )
    cols = [
        "variant",
        "a_real",
        "a_planted",
        "transfer",
        "misread",
        "misread_truth",
        "predicted",
        "observed",
        "planted_r",
        "planted_r_again",
        "r_truth",
    ]
    print(pd.DataFrame(out["variants"])[cols].round(3).to_string(index=False))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
