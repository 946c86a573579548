"""Words and units of the report: table headers, measure differences, the comparison's dots.

Units come first from the table's own sidecar (BIDS column ``Units``); :data:`COLUMN_UNITS`
fills in those the sidecars do not state. A header is ``"<label> (<unit>)"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: Readable column names of the tables the report shows (ROI, comparison, diagnostics tables).
COLUMN_LABELS: dict[str, str] = {
    "category": "ROI category",
    "roi": "ROI",
    "roi_label": "ROI",
    "voxels": "voxels",
    "roi_voxels": "ROI voxels",
    "nc_median": "median NC",
    "nc_mean": "mean NC",
    "r2_median": "median R²",
    "median_nc": "median NC",
    "mean_nc": "mean NC",
    "dprime": "d′",
    "gain": "NC gain over raw-single",
    "planted_r": "fidelity to planted responses r",
    "planted_trial_r": "single-trial fidelity to planted responses r",
    "planted_gain": "gain for planted responses",
    "planted_source": "planted responses from",
    "heldout_r": "held-out fidelity r",
    "splithalf_r": "split-half r",
    "edge_nc80": "share of edge voxels with NC > 80 %",
    "n_runs": "runs",
    "tsnr_raw": "median tSNR, NORDIC off",
    "tsnr_nordic": "median tSNR, NORDIC on",
    "tsnr_gain": "tSNR ratio on/off",
    "amplitude_raw": "amplitude, NORDIC off",
    "amplitude_nordic": "amplitude, NORDIC on",
    "amplitude_ratio": "amplitude ratio on/off",
    "fwhm_raw": "FWHM, NORDIC off",
    "fwhm_nordic": "FWHM, NORDIC on",
    "fwhm_ratio": "FWHM ratio on/off",
    "fwhm_roi_raw": "ROI FWHM, NORDIC off",
    "fwhm_roi_nordic": "ROI FWHM, NORDIC on",
    "fwhm_roi_ratio": "ROI FWHM ratio on/off",
    "removed_nn_x": "removed part: neighbour r along x",
    "removed_nn_y": "removed part: neighbour r along y",
    "removed_nn_z": "removed part: neighbour r along z",
}
#: Units of columns whose sidecar may not state them (a sidecar's ``Units`` wins).
COLUMN_UNITS: dict[str, str] = {
    "nc_median": "%",
    "nc_mean": "%",
    "r2_median": "%",
    "median_nc": "%",
    "mean_nc": "%",
    "gain": "%",
    "amplitude_raw": "% signal change",
    "amplitude_nordic": "% signal change",
    "fwhm_raw": "mm",
    "fwhm_nordic": "mm",
    "fwhm_roi_raw": "mm",
    "fwhm_roi_nordic": "mm",
}
#: What a dot and a bar of the comparison figure are: its title and every caption of it say so.
DOTS = "one dot per subject-session; bars: mean ± SEM over the dots"
#: How a difference of a comparison measure is said: the unit of a difference of its values.
DIFFERENCE_UNITS: dict[str, str] = {
    "median_nc": "percentage points of median NC",
    "gain": "percentage points of NC gain",
    "dprime": "in d′ (no unit)",
    "planted_r": "in r with the planted responses (an estimate of r with the truth, no unit)",
    "planted_trial_r": "in single-trial r with the planted responses (no unit)",
    "heldout_r": "in held-out fidelity (normalised covariance, no unit)",
    "heldout_truth": "in held-out fidelity on the truth scale (r, no unit)",
    "heldout_trial_r": "in single-trial held-out fidelity (normalised covariance, no unit)",
    "splithalf_r": "in split-half r (correlation, no unit)",
}


def header(column: str, units: Mapping[str, str] | None = None) -> str:
    """Display header of a table column: readable label and unit, e.g. ``"median NC (%)"``.

    ``units``: column → unit from the table's sidecar (wins over :data:`COLUMN_UNITS`).
    """
    label = COLUMN_LABELS.get(column, column)
    unit = (units or {}).get(column) or COLUMN_UNITS.get(column)
    return f"{label} ({unit})" if unit and f"({unit})" not in label else label


def headers(columns: Sequence[str], units: Mapping[str, str] | None = None) -> list[str]:
    """:func:`header` of every column."""
    return [header(c, units) for c in columns]


def difference(measure: str, value: float) -> str:
    """A difference of a comparison measure with its unit, e.g. ``"+8.65 percentage points of
    median NC"`` (NC is in %, so a difference of two NCs is in percentage points)."""
    unit = DIFFERENCE_UNITS.get(measure, f"in {measure}")
    # correlations differ in the third decimal
    digits = 3 if measure.endswith(("_r", "_truth")) else 2
    return f"{value:+.{digits}f} {unit}"


__all__ = [
    "COLUMN_LABELS",
    "COLUMN_UNITS",
    "DIFFERENCE_UNITS",
    "DOTS",
    "difference",
    "header",
    "headers",
]
