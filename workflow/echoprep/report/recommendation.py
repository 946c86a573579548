"""The recommendation of the comparison in words: summary lines, warnings, ranking table.

Input: the content of ``recommended_variant.json`` (or the subject's own recommendation,
:func:`echoprep.kernels.ranking.recommend`). Differences of a measure carry its unit
(:func:`echoprep.report.labels.difference`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from echoprep.report import labels

#: Labels of the comparison measures when recommended_variant.json does not name them.
MEASURE_LABELS: dict[str, str] = {
    "median_nc": "median NC (%)",
    "dprime": "d′",
    "gain": "NC gain (%)",
    "planted_r": "fidelity to planted responses (r)",
    "planted_trial_r": "single-trial fidelity to planted responses (r)",
    "heldout_r": "held-out fidelity",
    "heldout_truth": "held-out fidelity, truth scale (r)",
    "heldout_trial_r": "single-trial held-out fidelity",
    "heldout_trial_truth": "single-trial held-out fidelity, truth scale (r)",
}
#: Measures that only say how well repeats agree (not checked against truth).
REPEAT_AGREEMENT = ("median_nc", "dprime", "gain")


def measure_label(rec: Mapping[str, Any], measure: str) -> str:
    """Display label of a comparison measure (from the JSON's ``measures`` when given)."""
    info = (rec.get("measures") or {}).get(measure) or {}
    return str(info.get("label") or MEASURE_LABELS.get(measure, measure))


def margin_words(rec: Mapping[str, Any], m: Mapping[str, Any], what: str) -> str:
    """One margin of the recommended variant in words: ``ahead of``/``behind`` ``what`` by the
    difference with its unit, its standard error and truth-scale equivalent when known, and
    whether the data show it."""
    by = rec.get("rank_by", "median_nc")
    diff = float(m["difference"])
    side = "ahead of" if diff >= 0 else "behind"
    text = f"{side} {what} {m['variant']} by {labels.difference(by, abs(diff)).lstrip('+')}"
    rel = m.get("relative_percent")
    if rel is not None:
        text += f" ({rel:+.1f} % relative)"
    extra = []
    if m.get("standard_error") is not None:
        extra.append(f"standard error {m['standard_error']:.3f}")
    if m.get("truth_difference") is not None:
        extra.append(f"about {abs(m['truth_difference']):.2f} in r with the truth")
    if m.get("reversed_by"):
        extra.append(f"reversed with {' or '.join(m['reversed_by'])} as the reference")
    if "shown" in m:
        every = " under every reference" if m.get("by_reference") and m["shown"] else ""
        if m["shown"]:
            extra.append(f"shown by the data{every}")
        elif m.get("beyond_noise"):
            extra.append(
                "beyond the sampling noise but within the estimate's bias bound "
                f"({m['bias_bound']:.2f} in r): not shown by the data"
            )
        else:
            extra.append("not shown by the data")
    return text + (f" ({'; '.join(extra)})" if extra else "")


def recommendation_lines(rec: Mapping[str, Any], scope: str) -> list[str]:
    """Summary lines of a recommendation (``recommended_variant.json`` content)."""
    by = rec.get("rank_by", "median_nc")
    label = measure_label(rec, by)
    first = rec.get("ranked_first", rec["variant"])
    line = f"Recommended variant {scope}: {rec['variant']} ({rec.get('name', '')})"
    if first == rec["variant"]:
        line += f", ranked first by {by}" + (f" ({label})" if label != by else "")
    else:
        line += f"; {first} ranks first by {by}, but its lead is not shown by the data"
    parts = [line]
    mb = rec.get("margin_over_baseline")
    if mb:
        parts.append(margin_words(rec, mb, "the baseline"))
    mr = rec.get("margin_over_runner_up")
    if mr:
        parts.append(margin_words(rec, mr, "the next variant"))
    lines = ["; ".join(parts) + "."]
    if rec.get("verdict"):
        lines.append(f"Verdict: {rec['verdict']}")
    if rec.get("indistinguishable") and rec.get("default_rule"):
        lines.append(
            f"Where the data cannot tell variants apart, the default is {rec['default_rule']}."
        )
    if rec.get("references"):
        lines.append(f"References of the held-out fidelity: {rec['references']}.")
    power = rec.get("power") or {}
    if power.get("resolution") is not None:
        truth = power.get("resolution_truth")
        lines.append(
            f"Resolution: differences below {power['resolution']:.3f} in {label}"
            + (f" (about {truth:.2f} in r with the truth)" if truth is not None else "")
            + f" cannot be told from noise with these data ({power.get('sessions')} session(s)"
            + (
                f", at least {power['roi_voxels_min']:.0f} ROI voxels)."
                if power.get("roi_voxels_min") is not None
                else ")."
            )
        )
    single = rec.get("single_trials") or {}
    if single.get("verdict"):
        lines.append(
            "For single trials (repeat-averaged responses above): "
            + (single["uses"] if single.get("uses") else f"the same variant. {single['verdict']}")
        )
        if single.get("uses"):
            lines.append(f"Single-trial verdict: {single['verdict']}")
    nc_winner = rec.get("nc_winner")
    if nc_winner and by != "median_nc":
        same = nc_winner == rec["variant"]
        lines.append(
            f"The highest median noise ceiling: {nc_winner}"
            + (" (the same variant)." if same else " (another variant: see the warning).")
        )
    if rec.get("winner_below_baseline"):
        worse = ", ".join(
            f"sub-{w['subject']}"
            + (f" ses-{w['session']}" if w.get("session") not in (None, "n/a") else "")
            for w in rec["winner_below_baseline"]
        )
        measure = measure_label(rec, rec["winner_below_baseline"][0].get("measure", by))
        lines.append(
            f"Below the baseline {rec.get('baseline', 'raw-single')} by {measure} in: {worse}."
        )
    return lines


def recommendation_warnings(rec: Mapping[str, Any]) -> list[str]:
    """Warnings of a recommendation: the disagreement paragraph first, then the JSON's own
    warnings, then a note when a NORDIC variant wins on repeat agreement alone."""
    out: list[str] = []
    by = rec.get("rank_by", "median_nc")
    if rec.get("disagreement"):
        out.append(str(rec["disagreement"]))
    elif rec.get("agreement") is False and rec.get("nc_winner"):
        out.append(
            f"The measures disagree: the median noise ceiling ranks {rec['nc_winner']} first, "
            f"{measure_label(rec, by)} ranks {rec['variant']} first. The recommendation follows "
            f"{measure_label(rec, by)}."
        )
    out.extend(str(w) for w in rec.get("warnings") or [])
    if by in REPEAT_AGREEMENT and str(rec.get("variant", "")).startswith("nordic"):
        out.append(
            f"{rec['variant']} is ranked first by {measure_label(rec, by)}, a measure of how well "
            "the repeats of an image agree. Noise-ceiling gains from low-rank denoising such as "
            "NORDIC are not evidence of better betas: NORDIC can make the repeats agree more "
            "while the betas follow the true responses less. Do not choose NORDIC on this "
            "number alone; see the NORDIC diagnostics."
        )
    return out


def ranking_table(rec: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a recommendation's ranking: NC and d′ as LAION-fMRI reported them,
    the validated measure(s) next to them (mean ± SEM where the SEM is known)."""
    ranking = list(rec.get("ranking") or [])
    measures = ["median_nc", "dprime"]
    for m in [rec.get("rank_by", "median_nc"), *(rec.get("measures") or {})]:
        if m not in measures and m != "gain" and any(f"{m}_mean" in r for r in ranking):
            measures.append(m)

    def value(row: Mapping[str, Any], m: str) -> Any:
        mean, sem = row.get(f"{m}_mean"), row.get(f"{m}_sem")
        if mean is None:
            return None
        return f"{mean:.3g} ± {sem:.2g}" if sem is not None else float(mean)

    header = ["rank", "variant", *(measure_label(rec, m) for m in measures), "NC gain (%)"]
    header += ["below baseline", "note"]
    rows = []
    for i, r in enumerate(ranking):
        note = []
        if r.get("variant") == rec.get("variant"):
            note.append("recommended")
        if r.get("variant") == rec.get("nc_winner"):
            note.append("highest NC")
        rows.append(
            [
                i + 1,
                r.get("variant"),
                *(value(r, m) for m in measures),
                r.get("gain_mean"),
                r.get("below_baseline"),
                ", ".join(note),
            ]
        )
    return header, rows


__all__ = [
    "MEASURE_LABELS",
    "REPEAT_AGREEMENT",
    "margin_words",
    "measure_label",
    "ranking_table",
    "recommendation_lines",
    "recommendation_warnings",
]
