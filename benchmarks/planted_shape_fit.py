"""How close the planted responses' time course is to the simulator's (docs/comparison.md,
"The shape of the planted responses").

On a case kept by ``benchmarks/comparison_regimes.py --keep`` (one comparison session or
several), this script reads each session's planted design and the simulator's truth and prints,
over the planted voxels that respond (and over those in the visual ROI):

- ``cosine``: the mean cosine between each voxel's planted curve (the design's ``curves``
  column ``hrf``) and its true response curve (the simulator's library HRF of its peak map,
  convolved with the stimulus), from the onset over 30 s;
- ``peak_error_s``: the mean (and SD) of the planted curve's peak time minus the true one's;
- ``best_one_curve``: the highest mean cosine any one of the simulator's curves reaches, given
  to every voxel (what one curve per session can reach at best);
- ``hrf_choice_r``: the correlation over the ROI of the fits' HRF choice (the design's ``hrf``,
  the median of the variants' library indices) with the simulator's library index (both order
  the curves from early to late peak): how much a voxel's HRF choice says about its true HRF.

    .venv/bin/python benchmarks/planted_shape_fit.py --case DIR [--json FILE]

A few seconds per session.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from planted_oracle import design_paths, simulator_curves  # noqa: E402

from echoprep.kernels.glm.hrf import FINE_DT  # noqa: E402
from echoprep.simulate.design import hrf_index  # noqa: E402
from echoprep.simulate.truth import truth_paths  # noqa: E402

#: Span of the curves compared, s after onset.
SECONDS = 30.0


def _unit(curves: np.ndarray) -> np.ndarray:
    return curves / np.linalg.norm(curves, axis=0)


def session_fit(bids: Path, design_path: Path, session: str) -> dict[str, float]:
    """The figures above for one session's design."""
    with np.load(design_path) as d:
        design = {k: d[k] for k in d.files}
    truth = truth_paths(bids, "01", session)
    rows = tuple(np.asarray(design["voxels"]).T)
    peak = np.asarray(nib.load(truth["hrf_peak"]).dataobj, np.float64)[rows]
    sim = simulator_curves(float(design["stimdur"]), round(SECONDS / FINE_DT) + 1)
    planted = np.zeros((sim.shape[0], design["curves"].shape[1]))
    n = min(sim.shape[0], design["curves"].shape[0])
    planted[:n] = np.asarray(design["curves"], np.float64)[:n]
    responds = peak > 0
    true_index = hrf_index(peak)
    out: dict[str, float] = {"voxels": int(responds.sum())}
    for name, keep in (("", responds), ("roi_", responds & np.asarray(design["roi"]))):
        got = planted[:, np.asarray(design["hrf"], np.int64)[keep]]
        want = sim[:, true_index[keep]]
        cos = (_unit(got) * _unit(want)).sum(axis=0)
        err = (np.argmax(got, axis=0) - np.argmax(want, axis=0)) * FINE_DT
        one = (_unit(sim).T @ _unit(want)).mean(axis=1)  # each simulator curve for all
        best = float(one.max())
        out |= {
            f"{name}cosine": round(float(cos.mean()), 4),
            f"{name}peak_error_s": round(float(err.mean()), 2),
            f"{name}peak_error_sd_s": round(float(err.std()), 2),
            f"{name}best_one_curve": round(best, 4),
        }
    roi = responds & np.asarray(design["roi"])
    choice = np.asarray(design["hrf"], np.float64)[roi]
    spread = choice.std() > 0 and true_index[roi].std() > 0
    r = np.corrcoef(choice, true_index[roi])[0, 1] if spread else np.nan  # nan: one index
    out["hrf_choice_r"] = round(float(r), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", type=Path, required=True, help="a case kept by comparison_regimes")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    case = args.case.resolve()
    result = {"case": case.name, "sessions": {}}
    for session, path in design_paths(case).items():
        fit = session_fit(case / "bids", path, session)
        result["sessions"][session] = fit
        print(
            f"{case.name} ses-{session}: cosine {fit['cosine']:.3f} (ROI {fit['roi_cosine']:.3f}; "
            f"one curve at best {fit['best_one_curve']:.3f}), peak error "
            f"{fit['peak_error_s']:+.2f} s (SD {fit['peak_error_sd_s']:.2f}), HRF choice vs "
            f"true r {fit['hrf_choice_r']:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
