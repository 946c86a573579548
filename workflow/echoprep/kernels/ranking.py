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

from echoprep.kernels.margins import (
    HELDOUT_METRICS,
    group_replicates,
    is_pairwise,
    pair_se,
    reference_margins,
    score_replicates,
)
from echoprep.kernels.measures import (
    BASELINE,
    DEFAULT_RULE,
    MEASURES,
    PLANTED_DEFAULT_RULE,
    PLANTED_NORDIC_READING,
    REFERENCE_RULE,
    TABLE_COLUMNS,
    VARIANT_NAMES,
)
from echoprep.kernels.verdict_warnings import (
    COLLAPSED_NC,
    EDGE_NC,
    EDGE_SHARE,
    GAIN_LIMIT,
    MIN_ROI_VOXELS,
    implausibility_warnings,
    no_response_warning,
)
from echoprep.variants import ALL_VARIANTS

#: The six variants in canonical order (NORDIC off first, then echo handling).
VARIANTS: tuple[str, ...] = ALL_VARIANTS
#: Metrics a ranking can use (group mean, larger is better).
RANK_METRICS = (
    "planted_r",
    "planted_trial_r",
    "heldout_r",
    "heldout_trial_r",
    "median_nc",
    "dprime",
    "gain",
)
#: The fidelity to the responses planted into the session's own echoes (estimates of the
#: correlation with the true image responses; :mod:`echoprep.kernels.planted_fidelity`).
PLANTED_METRICS = ("planted_r", "planted_trial_r")
#: The metric the verdict ranks by by default, checked against simulated truth
#: (docs/comparison.md).
VALIDATED = "planted_r"
#: Each fidelity measure's single-trial twin, and the measure a ranking falls back to when a
#: session lacks it (planted -> held-out -> median noise ceiling).
TRIAL_TWIN = {"planted_r": "planted_trial_r", "heldout_r": "heldout_trial_r"}
FALLBACK = {
    "planted_r": "heldout_r",
    "planted_trial_r": "heldout_trial_r",
    "heldout_r": "median_nc",
    "heldout_trial_r": "median_nc",
}
#: A lead counts as shown when it exceeds this many paired standard errors, under every
#: admissible reference.
SHOWN_SE = 2.0
#: The estimate's bias bound, in r with the truth: the largest lead the held-out estimate
#: (truth scale) gave in the wrong direction on simulated truth, rounded up to 0.01, on the
#: cases used to choose it (``benchmarks/comparison_regimes.py``, seed 0 of every regime;
#: docs/comparison.md, "The estimate's bias bound"). ``nordic``: between variants that
#: differ in NORDIC (their half fits and full fits differ the most); ``echo``: between
#: variants with the same NORDIC setting. A lead counts as shown only beyond it.
BIAS_BOUND: dict[str, float] = {"nordic": 0.09, "echo": 0.04}
#: The planted fidelity's bias bound, in r with the truth, by the direction of the lead: the
#: largest lead the planted estimate gave in the wrong direction on simulated truth, rounded up
#: to 0.01 (``benchmarks/comparison_regimes.py``; docs/comparison.md, "What the planted
#: estimate still misreads"). ``over_nordic``: a NORDIC-off variant ahead of a NORDIC variant
#: (the estimate reads the NORDIC variants low: NORDIC's frozen decisions give back 19 % less
#: of the true image responses than NORDIC keeps of them, ``benchmarks/planted_secant.py``);
#: ``nordic``: a NORDIC variant ahead
#: of a NORDIC-off one; ``echo``: variants with the same NORDIC setting (the largest
#: wrong-way lead between them, 0.034 between NORDIC-off variants on the grid; with slice
#: timing corrected the NORDIC variants' errors differ by up to 0.02 and a wrong lead of 0.015
#: went beyond the sampling noise, docs/comparison.md, "Leads between variants of the same
#: NORDIC setting"). ``over_nordic_other_sessions``: ``over_nordic`` where every ranked session's
#: planted responses came from the other sessions (``planted_source``): the largest over-read
#: of such a lead on two-session cases, rounded up ("The bias bound with two sessions").
PLANTED_BIAS_BOUND: dict[str, float] = {
    "over_nordic": 0.11,
    "over_nordic_other_sessions": 0.09,
    "nordic": 0.0,
    "echo": 0.04,
}


def bias_bound(a: str, b: str, planted: bool = False, source: str | None = None) -> float:
    """The bias bound (:data:`BIAS_BOUND`, in r with the truth; :data:`PLANTED_BIAS_BOUND` for
    the planted fidelity) of a lead of variant ``a`` over variant ``b``: ``nordic`` where one
    has NORDIC and the other not, else ``echo``; for the planted fidelity ``over_nordic``
    where ``a`` is NORDIC-off and ``b`` a NORDIC variant (``over_nordic_other_sessions`` where
    ``source``, the planted responses' source of every ranked session, is ``other_sessions``)."""
    differs = a.startswith("nordic-") != b.startswith("nordic-")
    if planted and differs and b.startswith("nordic-"):
        other = "_other_sessions" if source == "other_sessions" else ""
        return PLANTED_BIAS_BOUND[f"over_nordic{other}"]
    return (PLANTED_BIAS_BOUND if planted else BIAS_BOUND)["nordic" if differs else "echo"]


def planted_source(table: pd.DataFrame) -> str | None:
    """The ``planted_source`` of every row of ``table``; None where they differ or lack it."""
    found = set(table["planted_source"]) if "planted_source" in table else {None}
    return found.pop() if len(found) == 1 and isinstance(next(iter(found)), str) else None


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
        for m in (
            *RANK_METRICS,
            "heldout_truth",
            "heldout_trial_truth",
            "splithalf_r",
            "planted_gain",
        ):
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


def _fmt(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _session_pairs(table: pd.DataFrame) -> list[tuple[str, str]]:
    keys = zip(table["subject"].astype(str), table["session"].astype(str), strict=True)
    return list(dict.fromkeys(keys))


def _paired(
    table: pd.DataFrame, metric: str
) -> tuple[pd.DataFrame, list[tuple[str, str]], list[str]]:
    """The rows of the subject-sessions where every variant of the table has a finite
    ``metric`` (so every variant is averaged over the same sessions), the sessions left out and
    the variants that caused it."""
    variants = set(table["variant"])
    keep, dropped, culprits = [], [], set()
    for sub, ses in _session_pairs(table):
        rows = table[(table["subject"].astype(str) == sub) & (table["session"].astype(str) == ses)]
        vals = dict(zip(rows["variant"], rows[metric].to_numpy(float), strict=True))
        bad = [v for v in variants if not math.isfinite(vals.get(v, math.nan))]
        if bad:
            dropped.append((sub, ses))
            culprits.update(bad)
        else:
            keep.append((sub, ses))
    rows = [
        (s, ss) in set(keep)
        for s, ss in zip(table["subject"].astype(str), table["session"].astype(str), strict=True)
    ]
    return table[rows], dropped, [v for v in VARIANTS if v in culprits]


def _where(subject: str, session: str) -> str:
    return f"sub-{subject}" + (f" ses-{session}" if session not in ("n/a", "None") else "")


def recommend(
    table: pd.DataFrame,
    rank_by: str = VALIDATED,
    bootstrap: pd.DataFrame | None = None,
    planted: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Rank the variants by the group mean of ``rank_by`` and say what the data support.

    Every variant is averaged over the same subject-sessions (those where all have a finite
    ``rank_by``; the others are left out and named). For the planted fidelity
    (:data:`PLANTED_METRICS`, the default) each margin's standard error comes from the planted
    replicates (``planted``: image bootstrap, the same images for every variant; or the spread
    over subject-sessions when larger), and a lead is shown where it exceeds ``SHOWN_SE``
    standard errors; the values are already estimates of the correlation with the truth. For
    the held-out fidelity each margin has a paired standard error (image bootstrap, or the
    spread over subject-sessions when that is larger), a truth-scale equivalent, and a verdict
    that claims no more than the data show: the variants within ``SHOWN_SE`` standard
    errors of the recommended one (under some reference), or within the estimate's bias bound
    (:func:`bias_bound`, in r with the truth), are named as indistinguishable, with the default
    choice (:data:`DEFAULT_RULE`, :data:`PLANTED_DEFAULT_RULE`) and its reason. By the
    held-out fidelity, which can read NORDIC high, NORDIC is recommended only where its lead
    over the best NORDIC-off variant exceeds ``SHOWN_SE`` standard errors under every reference
    (``beyond_noise``); by the planted fidelity, which reads NORDIC low on average, the
    first-ranked variant is the default, NORDIC or not (docs/comparison.md, "The default"). When
    no session has ``rank_by`` for every variant, the ranking falls back (planted -> held-out
    -> median noise ceiling, :data:`FALLBACK`) and says so.

    Returns
    -------
    dict
        ``variant`` (the recommendation), ``name``, ``ranked_first``, ``rank_by``,
        ``rank_by_requested``, ``reason``, ``verdict`` (plain words), ``indistinguishable``
        (variants the data cannot tell from the recommended one), ``measures``, ``ranking``
        (variants, best first, with their group statistics), ``margin_over_runner_up`` (the
        recommended variant minus the best other; negative when that one ranks higher),
        ``margin_over_baseline`` and ``margins`` (the recommended variant against every other
        variant, in ranking order: the report's verdict figure). Margins are differences of
        the group means of ``rank_by``; for ``heldout_r`` with ``standard_error``, ``shown``
        and truth-scale equivalents, and, when ``bootstrap`` is the long table of every
        variant against every reference, the margin under each reference that is neither of
        the two, ``by_reference`` with ``holds``, and ``reversed_by``: a lead is
        ``beyond_noise`` only where it holds under every such reference, and ``shown`` only
        where it is also beyond ``bias_bound`` (``within_bias`` otherwise). ``default_rule``
        and ``references`` (the rules, in words), ``power`` (ROI voxels, sessions, the
        references' reliability and the resolution: the smallest difference the data can
        tell, also in truth units), ``nc_winner``, ``agreement``, ``disagreement`` (plain
        words or None), ``warnings``, ``winner_below_baseline`` (sessions where the recommended
        variant is below the baseline by ``rank_by``), ``paired_sessions``, ``subject_sessions``.

    Raises
    ------
    ValueError
        Unknown metric, or no variant with a finite value.
    """
    if rank_by not in RANK_METRICS:
        raise ValueError(f"comparison: rank_by must be one of {RANK_METRICS}; got {rank_by!r}")
    notes: list[str] = []
    requested = rank_by
    if rank_by not in table:
        table = table.assign(**{rank_by: math.nan})
    paired, dropped, culprits = _paired(table, rank_by)
    while paired.empty and rank_by in FALLBACK:
        if rank_by in PLANTED_METRICS:
            notes.append(
                "The fidelity to planted responses could not be computed for every variant "
                "(planting off, sessions of one run, or too few images shown twice), so this "
                "ranking uses the held-out fidelity."
            )
        else:
            notes.append(
                "The held-out fidelity could not be computed for every variant (no held-out "
                "fits, or too few images repeated across runs), so this ranking uses the median "
                "noise ceiling. Noise-ceiling gains from low-rank denoising such as NORDIC are "
                "not evidence of better betas; do not rest a choice of NORDIC on them."
            )
        rank_by = FALLBACK[rank_by]
        if rank_by not in table:
            table = table.assign(**{rank_by: math.nan})
        paired, dropped, culprits = _paired(table, rank_by)
    if paired.empty:
        raise ValueError(
            f"comparison: no variant has a finite {rank_by}; check the noise-ceiling maps and "
            "the ROI (and, for gain, that raw-single is among the variants)"
        )
    if dropped:
        notes.append(
            f"{', '.join(_where(*k) for k in dropped)}: left out of the ranking, because "
            f"{', '.join(culprits)} {'has' if len(culprits) == 1 else 'have'} no {rank_by} "
            "there; every variant is compared on the same sessions."
        )
    key = f"{rank_by}_mean"
    stats = group_statistics(paired)
    finite = stats[np.isfinite(stats[key].to_numpy(float))]
    order = {v: i for i, v in enumerate(VARIANTS)}
    ranked = finite.assign(_o=finite["variant"].map(order)).sort_values(
        [key, "_o"], ascending=[False, True], kind="mergesort"
    )
    ranking = [
        {k: _clean(v) for k, v in row.items() if k != "_o"}
        for row in ranked.to_dict(orient="records")
    ]
    by_name = {r["variant"]: r for r in ranking}
    validated = rank_by in HELDOUT_METRICS or rank_by in PLANTED_METRICS
    by_planting = rank_by in PLANTED_METRICS
    source = planted_source(paired) if by_planting else None
    sessions = set(_session_pairs(paired))
    pairs = bootstrap if rank_by in HELDOUT_METRICS and is_pairwise(bootstrap) else None
    scores = score_replicates(pairs) if pairs is not None else bootstrap
    if by_planting:
        replicates = group_replicates(planted, sessions, rank_by, first=1)
    else:
        replicates = group_replicates(scores, sessions, rank_by) if validated else {}
    reliability = math.nan
    if rank_by in HELDOUT_METRICS and "reference_reliability" in paired:
        rel = paired.groupby(["subject", "session"])["reference_reliability"].mean()
        rel = rel.to_numpy(float)
        if np.isfinite(rel).any() and np.nanmean(rel) > 0:
            reliability = float(np.nanmean(rel))
    label = MEASURES.get(rank_by, {}).get("label", rank_by)
    truth_key = {
        "heldout_r": "heldout_truth",
        "heldout_trial_r": "heldout_trial_truth",
        "planted_r": "planted_r",
        "planted_trial_r": "planted_trial_r",
    }.get(rank_by, "")
    evidence = (
        "on the responses planted into the data" if by_planting else "on independent held-out data"
    )

    def margin(first: Mapping[str, Any], other: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if other is None:
            return None
        diff = first[key] - other[key]
        out: dict[str, Any] = {"variant": other["variant"], "difference": diff}
        if rank_by == "median_nc" and other[key]:
            out["relative_percent"] = 100.0 * diff / other[key]
        if validated:
            se = pair_se(first["variant"], other["variant"], paired, rank_by, replicates)
            out["standard_error"] = _clean(se)
            shown = bool(math.isfinite(se) and abs(diff) > SHOWN_SE * se)
            if pairs is not None:
                # a lead is shown only where it holds under every admissible reference
                sign = 1.0 if diff >= 0 else -1.0
                refs = reference_margins(
                    first["variant"], other["variant"], pairs, sessions, rank_by
                )
                for m in refs:
                    m["holds"] = bool(
                        math.isfinite(m["standard_error"])
                        and sign * m["difference"] > SHOWN_SE * m["standard_error"]
                    )
                    m["difference"] = _clean(m["difference"])
                    m["standard_error"] = _clean(m["standard_error"])
                out["by_reference"] = refs
                out["reversed_by"] = [
                    m["reference"]
                    for m in refs
                    if m["difference"] is not None and sign * m["difference"] < 0
                ]
                shown = shown and bool(refs) and all(m["holds"] for m in refs)
            truth = (first.get(f"{truth_key}_mean"), other.get(f"{truth_key}_mean"))
            if all(t is not None and math.isfinite(t) for t in truth):
                out["truth_difference"] = truth[0] - truth[1]  # type: ignore[operator]
            elif math.isfinite(reliability):
                out["truth_difference"] = diff / reliability
            if by_planting:
                out["truth_standard_error"] = _clean(se)
            elif math.isfinite(reliability):
                out["truth_standard_error"] = _clean(se / reliability)
            # beyond the sampling noise; shown only when also beyond the estimate's bias
            ahead, behind = (first, other) if diff >= 0 else (other, first)
            bound = bias_bound(ahead["variant"], behind["variant"], by_planting, source)
            size = out.get("truth_difference")
            out["beyond_noise"] = shown
            out["bias_bound"] = bound
            out["within_bias"] = not (size is not None and abs(size) > bound)
            out["shown"] = shown and not out["within_bias"]
        return out

    def lead_words(m: Mapping[str, Any], leader: str) -> str:
        """``Δ = 0.012 (SE 0.004; about 0.09 in r with the truth)`` for a margin, with the
        references under which the order reverses."""
        se = m.get("standard_error")
        text = f"Δ = {abs(m['difference']):.3f}"
        extra = [f"standard error {se:.3f}" if se is not None else "no standard error"]
        if m.get("truth_difference") is not None:
            extra.append(f"about {abs(m['truth_difference']):.2f} in r with the truth")
        if m.get("reversed_by"):
            extra.append(f"reversed with {' or '.join(m['reversed_by'])} as the reference")
        return f"{leader} leads by {text} ({'; '.join(extra)})"

    def size_words(m: Mapping[str, Any]) -> str:
        """How a margin compares with its standard error, under every reference when the
        margins have references: what ``shown`` means, in words."""
        every = " under every reference" if m.get("by_reference") else ""
        if m.get("shown") and not m.get("bias_bound"):
            return f"more than {SHOWN_SE:g} standard errors{every}"
        if m.get("shown"):
            return (
                f"more than {SHOWN_SE:g} standard errors{every} and beyond the estimate's "
                f"bias bound ({m['bias_bound']:.2f} in r with the truth)"
            )
        if m.get("beyond_noise"):
            return (
                f"more than {SHOWN_SE:g} standard errors{every}, but within the estimate's "
                f"bias bound ({m['bias_bound']:.2f} in r with the truth: on simulated truth "
                "leads this small were sometimes the other way round)"
            )
        se = m.get("standard_error")
        if every and se is not None and abs(m["difference"]) > SHOWN_SE * se:
            return f"more than {SHOWN_SE:g} standard errors overall but not{every}"
        return f"within {SHOWN_SE:g} standard errors"

    top = ranking[0]
    best, reason = top, f"it ranks first by {label}"
    if validated and top["variant"].startswith("nordic-"):
        alt = next((r for r in ranking if not r["variant"].startswith("nordic-")), None)
        lead = margin(top, alt)
        if not by_planting and alt is not None and lead is not None and not lead["beyond_noise"]:
            best = alt
            reason = (
                f"{top['variant']} ranks first, but {lead_words(lead, top['variant'])}, "
                f"{size_words(lead)}: NORDIC's advantage is not "
                "shown by these data, and NORDIC is recommended only where its lead exceeds "
                "the sampling noise"
                + (" under every reference" if pairs is not None else "")
                + " (low-rank denoising can bias the betas in ways a measure does not fully "
                f"see), so the default is the best variant without NORDIC, {alt['variant']}"
            )
        elif alt is not None and lead is not None and not lead["shown"]:
            reason = (
                f"it ranks first by {label}, and {lead_words(lead, top['variant'])} over the "
                f"best variant without NORDIC, {size_words(lead)}"
            )
            if by_planting:  # the planted default rule (PLANTED_DEFAULT_RULE)
                reason += (
                    f"; on simulated truth this estimate {PLANTED_NORDIC_READING}, so it is "
                    f"the default over {alt['variant']}"
                )
    # without the validated measure, NC gains alone do not make NORDIC the recommendation
    fidelity_asked = requested in HELDOUT_METRICS or requested in PLANTED_METRICS
    if fidelity_asked and not validated and best["variant"].startswith("nordic-"):
        alt = next((r for r in ranking if not r["variant"].startswith("nordic-")), None)
        if alt is not None:
            reason = (
                f"{best['variant']} has the highest noise ceiling, but without a fidelity "
                "measure that is not evidence of better betas; the recommendation is the best "
                f"variant without NORDIC, {alt['variant']}"
            )
            best = alt

    others = [r for r in ranking if r["variant"] != best["variant"]]
    # the recommended variant against every other one (ranking order): the report's figure
    margins = [m for m in (margin(best, r) for r in others) if m is not None]
    runner_up = margins[0] if margins else None
    base = by_name.get(BASELINE)
    tied = [m["variant"] for m in margins if validated and not m["shown"]]
    bounded = any(m.get("bias_bound") for m in margins)
    name = VARIANT_NAMES.get(best["variant"], best["variant"])
    if not validated:
        verdict = (
            f"{best['variant']} ({name}): {reason}. {label} measures how well repeats agree, "
            "not how faithful the betas are."
        )
    elif not tied:
        verdict = (
            f"{best['variant']} ({name}): its {label} is ahead of every other variant by more "
            f"than {SHOWN_SE:g} standard errors"
            + (" under every reference" if pairs is not None else "")
            + (" and beyond the estimate's bias bound" if bounded else "")
            + "."
        )
    else:
        verdict = (
            f"{' or '.join([best['variant'], *tied])}: the data cannot tell "
            f"{'these' if len(tied) > 1 else 'the two'} apart (differences within "
            f"{SHOWN_SE:g} standard errors"
            + (" under some reference" if pairs is not None else "")
            + (" or within the estimate's bias bound" if bounded else "")
            + f"). The default is {best['variant']} ({name}): {reason}."
        )

    winner_rows = paired[paired["variant"] == best["variant"]].set_index(["subject", "session"])
    below: list[dict[str, Any]] = []
    if base is not None and best["variant"] != BASELINE:
        base_rows = paired[paired["variant"] == BASELINE].set_index(["subject", "session"])
        diff = (winner_rows[rank_by] - base_rows[rank_by]).dropna()
        below = [
            {"subject": s, "session": ss, "measure": rank_by, "difference": float(d)}
            for (s, ss), d in diff.items()
            if d < 0
        ]

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
    if validated and nc_winner is not None and not agreement and nc_winner in by_name:
        nc_row = by_name[nc_winner]
        m = margin(best, nc_row)
        assert m is not None
        nc_text = (
            f"By median noise ceiling {VARIANT_NAMES[nc_winner]} ({nc_winner}) comes first "
            f"({_fmt(nc_row['median_nc_mean'])} % against {_fmt(best['median_nc_mean'])} % for "
            f"{best['variant']})"
        )
        if m["difference"] > 0 and m["shown"]:
            less = (
                "follow the planted responses less"
                if by_planting
                else "agree less with independent held-out data"
            )
            held = f"but its betas {less}: {lead_words(m, best['variant'])}, {size_words(m)}"
        elif m["difference"] >= 0:
            held = (
                f"while {evidence} {lead_words(m, best['variant'])}, "
                f"{size_words(m)}: the data cannot tell their betas apart"
            )
        else:
            held = f"and {evidence} {lead_words(m, nc_winner)}, " + (
                size_words(m)
                if m["shown"]
                else f"{size_words(m)}: these data do not show that its betas are more faithful"
            )
        disagreement = (
            f"The noise ceiling and the {label} disagree. {nc_text}, {held}. The "
            "noise ceiling measures how well repeats agree with each other; denoising that "
            "projects the data onto a few components (NORDIC, GLMdenoise) can make repeats "
            "agree more while following the true responses less, so noise-ceiling gains are "
            f"not evidence of better betas. The recommendation is {best['variant']}: {reason}."
        )

    power: dict[str, Any] = {
        "sessions": len(sessions),
        "roi_voxels_min": _clean(float(paired["voxels"].min())) if "voxels" in paired else None,
    }
    silent = no_response_warning(ranking, key, replicates, SHOWN_SE) if validated else None
    if silent is not None:
        notes.append(silent)
    if validated:
        ses = [m["standard_error"] for m in margins]
        ses = [x for x in ses if x is not None]
        resolution = SHOWN_SE * float(np.median(ses)) if ses else math.nan
        power.update(
            {
                "reference_reliability": _clean(reliability),
                "resolution": _clean(resolution),
                "resolution_truth": _clean(resolution)
                if by_planting
                else (_clean(resolution / reliability) if math.isfinite(reliability) else None),
            }
        )
        if not ses:
            notes.append(
                "No standard error is known for the margins (no bootstrap replicates and a "
                "single session): no lead can be told from noise."
            )
    single: dict[str, Any] | None = None
    twin = TRIAL_TWIN.get(rank_by)
    if twin is not None and twin in table:
        try:
            other = recommend(table, twin, bootstrap, planted)
        except ValueError:
            other = None
        if other is not None and other["rank_by"] == twin:
            single = {
                k: other[k]
                for k in (
                    "variant",
                    "name",
                    "ranked_first",
                    "reason",
                    "verdict",
                    "indistinguishable",
                    "margin_over_runner_up",
                )
            }
            if single["variant"] != best["variant"]:
                single["uses"] = (
                    f"For repeat-averaged image responses (what most analyses average and "
                    f"publish) the recommendation is {best['variant']}; for analyses of single "
                    f"trials (decoding, trial-wise encoding) it is {single['variant']}, whose "
                    f"single-trial betas follow the image responses better {evidence}. "
                    "Choose by the use; the data-only measures cannot see what a trial adds to "
                    "its image's response."
                )
    return {
        "variant": best["variant"],
        "name": name,
        "ranked_first": top["variant"],
        "rank_by": rank_by,
        "rank_by_requested": requested,
        "reason": reason,
        "verdict": verdict,
        "default_rule": (PLANTED_DEFAULT_RULE if by_planting else DEFAULT_RULE)
        if validated
        else None,
        "references": REFERENCE_RULE if pairs is not None else None,
        "indistinguishable": tied,
        "measures": MEASURES,
        "baseline": BASELINE,
        "margin_over_runner_up": runner_up,
        "margins": margins,
        "margin_over_baseline": None if best["variant"] == BASELINE else margin(best, base),
        "power": power,
        "nc_winner": nc_winner,
        "agreement": bool(agreement),
        "disagreement": disagreement,
        "warnings": notes + implausibility_warnings(table, best["variant"], silent is None),
        "winner_below_baseline": below,
        "ranking": ranking,
        "single_trials": single,
        "paired_sessions": [list(k) for k in sorted(sessions)],
        "subject_sessions": int(table[["subject", "session"]].drop_duplicates().shape[0]),
    }


__all__ = [
    "BASELINE",
    "BIAS_BOUND",
    "COLLAPSED_NC",
    "DEFAULT_RULE",
    "EDGE_NC",
    "EDGE_SHARE",
    "FALLBACK",
    "GAIN_LIMIT",
    "HELDOUT_METRICS",
    "MEASURES",
    "MIN_ROI_VOXELS",
    "PLANTED_BIAS_BOUND",
    "PLANTED_DEFAULT_RULE",
    "PLANTED_METRICS",
    "RANK_METRICS",
    "REFERENCE_RULE",
    "SHOWN_SE",
    "TABLE_COLUMNS",
    "TRIAL_TWIN",
    "VALIDATED",
    "VARIANTS",
    "VARIANT_NAMES",
    "bias_bound",
    "group_statistics",
    "implausibility_warnings",
    "planted_source",
    "recommend",
    "sem",
]
