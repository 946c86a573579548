"""Ranking the 2×3 preprocessing variants and saying what the ranking means, in plain words.

Pure table code (pandas in, dicts and text out; no file I/O): the group statistics of the
per-session comparison table (:mod:`echoprep.stages.comparison`), the ranking by the validated
measure (the held-out fidelity, :mod:`echoprep.kernels.fidelity`) or another metric, the
margins with their image-bootstrap standard errors, the variant the noise ceiling alone would
pick, a paragraph where the two disagree, and warnings on implausible maps and margins. Why the
noise ceiling is not the ranking criterion: ``docs/comparison.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from echoprep.variants import ALL_VARIANTS

#: The six variants in canonical order (NORDIC off first, then echo handling).
VARIANTS: tuple[str, ...] = ALL_VARIANTS
#: The baseline every gain is relative to.
BASELINE = "raw-single"
#: Metrics a ranking can use (group mean, larger is better).
RANK_METRICS = ("heldout_r", "median_nc", "dprime", "gain")
#: The metric validated against simulated truth (docs/comparison.md).
VALIDATED = "heldout_r"
#: Human-readable names of the variants.
VARIANT_NAMES: dict[str, str] = {
    "raw-single": "single echo",
    "raw-optcom": "optcom",
    "raw-denoised": "ICA-denoised",
    "nordic-single": "NORDIC + single echo",
    "nordic-optcom": "NORDIC + optcom",
    "nordic-denoised": "NORDIC + ICA-denoised",
}
#: Labels and descriptions of the measures (the table sidecar, the JSON and the report).
MEASURES: dict[str, dict[str, str]] = {
    "heldout_r": {
        "label": "held-out fidelity (r)",
        "description": "median over the visual ROI of the correlation between the variant's "
        "image means from one half of the runs and the raw reference's image means from the "
        "other half (betas z-scored per run; both directions averaged). Tracks the betas' "
        "correlation with the true image responses (validated on simulated truth).",
    },
    "median_nc": {
        "label": "median NC (%)",
        "description": "median noise ceiling in the visually responsive ROI (as LAION-fMRI "
        "reported it). Measures how well repeats agree; low-rank denoising can raise it "
        "without making the betas more faithful.",
    },
    "dprime": {
        "label": "d′",
        "description": "(mean NC in ROI - mean NC in the rest of the fitted brain) / pooled SD",
    },
    "gain": {
        "label": "NC gain over single echo (%)",
        "description": f"median_nc relative to {BASELINE} of the same session, in %",
    },
    "splithalf_r": {
        "label": "split-half r (own data)",
        "description": "median over the ROI of the correlation of the variant's own half-A "
        "and half-B image means: repeat agreement, like NC",
    },
}
TABLE_COLUMNS = (
    "subject",
    "session",
    "variant",
    "nordic",
    "combine",
    "voxels",
    "median_nc",
    "mean_nc",
    "dprime",
    "gain",
    "heldout_r",
    "splithalf_r",
    "edge_nc80",
)
#: NC (%) above which a brain-edge voxel is implausible, and the share that triggers a warning.
EDGE_NC = 80.0
EDGE_SHARE = 0.01
#: Gains (%) over the baseline above which the margin is flagged as implausible.
GAIN_LIMIT = 100.0
#: Fewest ROI voxels for a comparison without a warning.
MIN_ROI_VOXELS = 30


def sem(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else math.nan


def group_statistics(table: pd.DataFrame) -> pd.DataFrame:
    """Per variant (canonical order): n, mean and SEM of every ranking metric; min gain and
    the number of subject-sessions below the baseline."""
    out = []
    for v in [v for v in VARIANTS if v in set(table["variant"])]:
        sub = table[table["variant"] == v]
        row: dict[str, Any] = {"variant": v, "n": len(sub)}
        for m in (*RANK_METRICS, "splithalf_r"):
            vals = sub[m].to_numpy(float) if m in sub else np.full(len(sub), np.nan)
            row[f"{m}_mean"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
            row[f"{m}_sem"] = sem(vals)
        gains = sub["gain"].to_numpy(float)
        row["gain_min"] = float(np.nanmin(gains)) if np.isfinite(gains).any() else math.nan
        row["below_baseline"] = int((gains < 0).sum())
        out.append(row)
    return pd.DataFrame(out)


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _group_replicates(bootstrap: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """variant -> replicates of the group mean heldout_r (replicate-wise mean over sessions)."""
    if bootstrap is None or bootstrap.empty:
        return {}
    means = bootstrap.groupby(["variant", "replicate"])["heldout_r"].mean()
    return {v: means.loc[v].to_numpy(float) for v in means.index.get_level_values(0).unique()}


def _fmt(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def implausibility_warnings(table: pd.DataFrame, winner: str | None) -> list[str]:
    """Plain-words warnings on maps and margins a scientist should not trust at face value."""
    out = []
    for row in table.itertuples():
        where = f"sub-{row.subject}" + (f" ses-{row.session}" if row.session != "n/a" else "")
        if math.isfinite(row.edge_nc80) and row.edge_nc80 > EDGE_SHARE:
            out.append(
                f"{where}, {row.variant}: {100 * row.edge_nc80:.1f} % of the voxels at the edge "
                f"of the fitted brain have a noise ceiling above {EDGE_NC:.0f} %. That is "
                "implausible for single-session data and usually means voxels without valid "
                "data in some runs; check the variant's fit mask and input runs."
            )
        if math.isfinite(row.gain) and row.gain > GAIN_LIMIT:
            out.append(
                f"{where}, {row.variant}: median noise ceiling {row.gain:+.0f} % over "
                f"{VARIANT_NAMES[BASELINE]}. A gain above +{GAIN_LIMIT:.0f} % is implausible; "
                "check the maps before trusting it."
            )
        if row.voxels < MIN_ROI_VOXELS:
            out.append(
                f"{where}: the visually responsive ROI has only {row.voxels} voxels that every "
                "variant fitted; the comparison rests on very few voxels."
            )
    if winner is not None:
        win = table[table["variant"] == winner]
        dp = win["dprime"].to_numpy(float)
        if np.isfinite(dp).any() and np.nanmean(dp) < 0:
            out.append(
                f"The recommended variant ({winner}) has a negative d′ "
                f"({np.nanmean(dp):.2f}): its noise ceiling is lower inside the visual ROI than "
                "outside it, which is implausible; check the ROI and the maps."
            )
    return list(dict.fromkeys(out))


def recommend(
    table: pd.DataFrame, rank_by: str = VALIDATED, bootstrap: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Rank the variants by the group mean of ``rank_by`` and describe the result in words.

    When ``rank_by`` is the validated measure but it is missing for some variant, the ranking
    falls back to ``median_nc`` and says so.

    Returns
    -------
    dict
        ``variant`` (the winner), ``name``, ``rank_by``, ``measures``, ``ranking`` (variants,
        best first, with their group statistics), ``margin_over_runner_up`` and
        ``margin_over_baseline`` (difference of the group means of ``rank_by``; for
        ``heldout_r`` with a bootstrap standard error), ``nc_winner`` (the variant with the
        highest median NC), ``agreement``, ``disagreement`` (plain words or None),
        ``warnings`` (plain words), the subject-sessions where the winner is below the
        baseline.

    Raises
    ------
    ValueError
        Unknown metric, or no variant with a finite value.
    """
    if rank_by not in RANK_METRICS:
        raise ValueError(f"comparison: rank_by must be one of {RANK_METRICS}; got {rank_by!r}")
    stats = group_statistics(table)
    notes: list[str] = []
    requested = rank_by
    if rank_by == VALIDATED and not np.isfinite(stats[f"{VALIDATED}_mean"].to_numpy(float)).all():
        rank_by = "median_nc"
        notes.append(
            "The held-out fidelity could not be computed for every variant (no reference "
            "betas, or too few images repeated across runs), so this ranking uses the median "
            "noise ceiling. Noise-ceiling gains from low-rank denoising such as NORDIC are not "
            "evidence of better betas; do not rest a choice of NORDIC on them."
        )
    key = f"{rank_by}_mean"
    finite = stats[np.isfinite(stats[key].to_numpy(float))]
    if finite.empty:
        raise ValueError(
            f"comparison: no variant has a finite {rank_by}; check the noise-ceiling maps and "
            "the ROI (and, for gain, that raw-single is among the variants)"
        )
    order = {v: i for i, v in enumerate(VARIANTS)}
    ranked = finite.assign(_o=finite["variant"].map(order)).sort_values(
        [key, "_o"], ascending=[False, True], kind="mergesort"
    )
    ranking = [
        {k: _clean(v) for k, v in row.items() if k != "_o"}
        for row in ranked.to_dict(orient="records")
    ]
    replicates = _group_replicates(bootstrap) if rank_by == VALIDATED else {}

    def margin_between(
        first: Mapping[str, Any], other: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        if other is None:
            return None
        diff = first[key] - other[key]
        out: dict[str, Any] = {"variant": other["variant"], "difference": diff}
        if rank_by == "median_nc" and other[key]:
            out["relative_percent"] = 100.0 * diff / other[key]
        a, b = replicates.get(first["variant"]), replicates.get(other["variant"])
        if a is not None and b is not None and len(a) == len(b) and len(a) > 1:
            out["standard_error"] = float(np.std(a - b, ddof=1))
        return out

    best = ranking[0]
    # NORDIC is recommended only where its advantage is shown: when the best NORDIC-off
    # variant is within twice the paired standard error of a NORDIC winner, it is recommended
    # instead (low-rank denoising can bias the betas in ways no data-only measure fully sees)
    if rank_by == VALIDATED and best["variant"].startswith("nordic-"):
        alt = next((r for r in ranking if not r["variant"].startswith("nordic-")), None)
        lead = margin_between(best, alt)
        if lead is not None and "standard_error" in lead:
            if lead["difference"] <= 2 * lead["standard_error"]:
                notes.append(
                    f"{best['variant']} has the highest held-out fidelity, but its lead over "
                    f"{alt['variant']} (Δr = {lead['difference']:.3f}) is within twice its "
                    f"bootstrap standard error ({lead['standard_error']:.3f}): NORDIC's "
                    "advantage is not shown by these data, so the recommendation stays with "
                    f"the best variant without NORDIC, {alt['variant']}."
                )
                best = alt

    # without the validated measure, NC gains alone do not make NORDIC the recommendation
    if requested == VALIDATED and rank_by != VALIDATED and best["variant"].startswith("nordic-"):
        alt = next((r for r in ranking if not r["variant"].startswith("nordic-")), None)
        if alt is not None:
            notes.append(
                f"{best['variant']} has the highest noise ceiling, but without the held-out "
                f"fidelity that is not evidence of better betas; the recommendation is the best "
                f"variant without NORDIC, {alt['variant']}."
            )
            best = alt

    def margin(other: Mapping[str, Any] | None) -> dict[str, Any] | None:
        return margin_between(best, other)

    base = next((r for r in ranking if r["variant"] == BASELINE), None)
    others = [r for r in ranking if r["variant"] != best["variant"]]
    runner_up = margin(others[0] if others else None)
    winner_rows = table[table["variant"] == best["variant"]]
    below = winner_rows[winner_rows["gain"].to_numpy(float) < 0]

    nc_stats = stats[np.isfinite(stats["median_nc_mean"].to_numpy(float))]
    nc_winner = None
    if not nc_stats.empty:
        nc_winner = str(
            nc_stats.assign(_o=nc_stats["variant"].map(order))
            .sort_values(["median_nc_mean", "_o"], ascending=[False, True], kind="mergesort")
            .iloc[0]["variant"]
        )
    agreement = nc_winner == best["variant"]
    disagreement = None
    if rank_by == VALIDATED and nc_winner is not None and not agreement:
        nc_row = next(r for r in ranking if r["variant"] == nc_winner)
        if nc_row["heldout_r_mean"] >= best["heldout_r_mean"]:
            disagreement = (
                f"By median noise ceiling {VARIANT_NAMES[nc_winner]} ({nc_winner}) comes first "
                f"({_fmt(nc_row['median_nc_mean'])} % against {_fmt(best['median_nc_mean'])} % "
                f"for {best['variant']}), and its held-out fidelity is a little higher too (r "
                f"{_fmt(nc_row['heldout_r_mean'], 3)} against {_fmt(best['heldout_r_mean'], 3)}),"
                " but by less than twice its standard error: these data do not show that its "
                "betas are more faithful. Noise-ceiling gains from low-rank denoising such as "
                "NORDIC are not evidence of better betas, so the recommendation is "
                f"{best['variant']}."
            )
    if rank_by == VALIDATED and disagreement is None and nc_winner is not None and not agreement:
        nc_row = next(r for r in ranking if r["variant"] == nc_winner)
        disagreement = (
            f"The noise ceiling and the held-out fidelity disagree. By median noise ceiling "
            f"{VARIANT_NAMES[nc_winner]} ({nc_winner}) comes first "
            f"({_fmt(nc_row['median_nc_mean'])} % against {_fmt(best['median_nc_mean'])} % for "
            f"{best['variant']}), but its betas agree less with independent held-out data "
            f"(held-out fidelity r {_fmt(nc_row['heldout_r_mean'], 3)} against "
            f"{_fmt(best['heldout_r_mean'], 3)}). The noise ceiling measures how well repeats "
            "agree with each other; denoising that projects the data onto a few components "
            "(NORDIC, GLMdenoise) can make repeats agree more while following the true "
            "responses less. The recommendation follows the held-out fidelity, which tracks "
            f"the betas' fidelity to the true responses on simulated data: {best['variant']}."
        )
    if runner_up is not None and "standard_error" in runner_up and best is ranking[0]:
        se = runner_up["standard_error"]
        if runner_up["difference"] <= 2 * se:
            notes.append(
                f"{best['variant']} leads {runner_up['variant']} by Δr = "
                f"{runner_up['difference']:.3f} in held-out fidelity, less than twice its "
                f"bootstrap standard error ({se:.3f}): these data support both about equally."
            )
    return {
        "variant": best["variant"],
        "name": VARIANT_NAMES.get(best["variant"], best["variant"]),
        "ranked_first": ranking[0]["variant"],
        "rank_by": rank_by,
        "rank_by_requested": requested,
        "measures": MEASURES,
        "baseline": BASELINE,
        "margin_over_runner_up": runner_up,
        "margin_over_baseline": None if best["variant"] == BASELINE else margin(base),
        "nc_winner": nc_winner,
        "agreement": bool(agreement),
        "disagreement": disagreement,
        "warnings": notes + implausibility_warnings(table, best["variant"]),
        "winner_below_baseline": [
            {"subject": s, "session": ss, "gain": _clean(float(g))}
            for s, ss, g in zip(below["subject"], below["session"], below["gain"], strict=True)
        ],
        "ranking": ranking,
        "subject_sessions": int(table[["subject", "session"]].drop_duplicates().shape[0]),
    }


__all__ = [
    "BASELINE",
    "EDGE_NC",
    "EDGE_SHARE",
    "GAIN_LIMIT",
    "MEASURES",
    "MIN_ROI_VOXELS",
    "RANK_METRICS",
    "TABLE_COLUMNS",
    "VALIDATED",
    "VARIANTS",
    "VARIANT_NAMES",
    "group_statistics",
    "implausibility_warnings",
    "recommend",
    "sem",
]
