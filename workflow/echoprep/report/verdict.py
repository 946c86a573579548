"""The first screen of the subject report: one picture of the verdict and one sentence.

The picture shows every variant of the comparison (NORDIC off and on × single echo, optcom,
ICA-denoised) by the measure the recommendation ranks by (the fidelity to responses planted
into the session's data, else the held-out fidelity, unless neither could be computed), each
with its interval, the recommended variant marked and the variants the comparison cannot tell
apart from it shaded. Everything comes from the recommendation (``recommended_variant.json`` or
:func:`echoprep.kernels.ranking.recommend`): the group means of ``ranking``, the paired margins
of ``margins`` (older files: ``margin_over_runner_up`` and ``margin_over_baseline``) and the
``indistinguishable`` list, so the picture says what the words below it say.

The interval of a variant is its estimate ± :data:`echoprep.kernels.ranking.SHOWN_SE` paired
standard errors of its difference from the recommended variant (image bootstrap, or the spread
over subject-sessions when larger): a bar that reaches the recommended variant's dashed line is
a difference the data do not show. Without paired standard errors (a ranking by the noise
ceiling), the bars are ± 2 SEM over the subject-sessions when there are several, else absent.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from echoprep.kernels.margins import HELDOUT_METRICS
from echoprep.kernels.measures import PLANTED_NORDIC_READING
from echoprep.kernels.ranking import PLANTED_METRICS, SHOWN_SE, VARIANT_NAMES, VARIANTS
from echoprep.report.recommendation import measure_label

log = logging.getLogger(__name__)

#: The measures that estimate the betas' fidelity to the truth (the others measure repeat
#: agreement).
FIDELITY_METRICS = PLANTED_METRICS + HELDOUT_METRICS
#: What the planted estimate is known to misread, for the caption (the measured clause is
#: :data:`~echoprep.kernels.measures.PLANTED_NORDIC_READING`, as in the default rule).
PLANTED_CAVEAT = (
    f"Checked against simulated truth, this estimate {PLANTED_NORDIC_READING}, so a lead of a "
    "variant without NORDIC over a NORDIC variant counts only beyond the estimate's bias bound"
)

#: Size of the verdict figure in inches (at 96 CSS px per inch about 845 × 350 px: with the page
#: header and the sentence it fits a 1366 × 768 screen).
FIGSIZE = (8.8, 3.65)
#: Colours: NORDIC off, NORDIC on (as in the comparison figure), the recommended variant's mark
#: and line, the shading of the variants the data cannot tell apart.
COLOURS = {"raw": "#4c72b0", "nordic": "#c44e52", "mark": "#1b1b1b", "tied": "#fbe3b0"}
#: How an interval was obtained, in words (the figure's legend and caption).
INTERVAL_WORDS = {
    "paired": f"± {SHOWN_SE:g} standard errors of the difference from the recommended variant "
    "(paired)",
    "sem": f"± {SHOWN_SE:g} SEM over subject-sessions",
    "none": "no standard error known, so no bars",
}


@dataclass(frozen=True)
class VerdictRow:
    """One variant of the verdict figure.

    Attributes
    ----------
    variant, name
        The variant (e.g. ``"raw-optcom"``) and its readable name.
    estimate
        Group mean of the ranking measure (None: not ranked).
    low, high
        Its interval (None: no standard error known).
    difference, standard_error
        The recommended variant minus this one and its paired standard error (None for the
        recommended variant, or when unknown).
    recommended, indistinguishable
        Whether it is the recommendation, and is one the data cannot tell apart from the
        recommendation (the comparison's ``indistinguishable``).
    status
        The row's verdict in plain words.
    """

    variant: str
    name: str
    estimate: float | None
    low: float | None
    high: float | None
    difference: float | None
    standard_error: float | None
    recommended: bool
    indistinguishable: bool
    status: str

    @property
    def nordic(self) -> bool:
        return self.variant.startswith("nordic-")


@dataclass(frozen=True)
class VerdictData:
    """What the verdict figure shows.

    Attributes
    ----------
    measure, label
        The ranking measure (``rank_by``) and its display label.
    validated
        Whether the measure is a held-out fidelity (checked on simulated truth); else it only
        measures how well repeats agree.
    recommended
        The recommended variant.
    interval
        How the intervals were obtained: a key of :data:`INTERVAL_WORDS`.
    rows
        One per ranked variant, in canonical order (NORDIC off first).
    scope
        Whose comparison (e.g. ``"for sub-01 (its comparison sessions)"``).
    by_reference
        Whether a difference counts only where it holds under every reference (the
        recommendation's ``references``).
    fallback
        Whether the measure is the noise ceiling only because no held-out fidelity could be
        computed (else it was asked for, ``comparison.rank_by``).
    """

    measure: str
    label: str
    validated: bool
    recommended: str
    interval: str
    rows: tuple[VerdictRow, ...]
    scope: str = ""
    by_reference: bool = False
    fallback: bool = False
    requested: str = ""

    def row(self, variant: str) -> VerdictRow:
        """The row of a variant (KeyError when it is not ranked)."""
        for r in self.rows:
            if r.variant == variant:
                return r
        raise KeyError(variant)

    @property
    def grouped(self) -> list[str]:
        """The variants shaded together: the recommendation and those the data cannot tell
        apart from it (empty when there are none)."""
        tied = [r.variant for r in self.rows if r.indistinguishable]
        return [self.recommended, *tied] if tied else []


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _margins(rec: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Variant → margin of the recommended variant over it (``margins``, else the two margins
    older recommendation files hold)."""
    found = rec.get("margins")
    if found is None:
        found = [rec.get("margin_over_runner_up"), rec.get("margin_over_baseline")]
    return {str(m["variant"]): m for m in found if isinstance(m, Mapping) and "variant" in m}


def _status(
    rec: Mapping[str, Any], m: Mapping[str, Any] | None, tied: bool, first: bool = False
) -> str:
    """A row's verdict in words, from its margin and the comparison's ``indistinguishable``
    (``first``: the row ranks first but is not the recommendation)."""
    if rec.get("rank_by") not in FIDELITY_METRICS:
        return "ranks first (repeat agreement only)" if first else ""
    se = _finite(m.get("standard_error")) if m is not None else None
    if tied:
        if m is not None and m.get("beyond_noise"):
            return "cannot be told apart (within the estimate's bias bound)"
        if m is not None and se is not None and m.get("by_reference"):
            if abs(float(m["difference"])) > SHOWN_SE * se:
                return "cannot be told apart (depends on the reference)"
        return "cannot be told apart"
    if m is None or se is None:
        return "no standard error"
    return "clearly lower" if float(m["difference"]) > 0 else "clearly higher"


def verdict_data(rec: Mapping[str, Any], scope: str = "") -> VerdictData | None:
    """The verdict figure's content from a recommendation; None when no variant has a group
    mean of the ranking measure.

    Parameters
    ----------
    rec
        ``recommended_variant.json`` content (or :func:`echoprep.kernels.ranking.recommend`).
    scope
        Whose comparison, for the title.
    """
    by = str(rec.get("rank_by", "median_nc"))
    best = str(rec["variant"])
    first = str(rec.get("ranked_first", best))
    tied = {str(v) for v in rec.get("indistinguishable") or []}
    ranking = {str(r.get("variant")): r for r in rec.get("ranking") or []}
    estimates = {v: _finite(r.get(f"{by}_mean")) for v, r in ranking.items()}
    if best not in estimates or estimates[best] is None:
        return None
    margins = _margins(rec)
    paired = any(_finite(m.get("standard_error")) is not None for m in margins.values())
    sems = {v: _finite(r.get(f"{by}_sem")) for v, r in ranking.items()}
    interval = "paired" if paired else "sem" if any(sems.values()) else "none"
    order = [v for v in VARIANTS if v in estimates] + sorted(set(estimates) - set(VARIANTS))
    rows = []
    for v in order:
        est, m = estimates[v], margins.get(v)
        se = _finite(m.get("standard_error")) if m is not None else None
        if interval == "sem":
            se = sems[v]
        half = SHOWN_SE * se if se is not None and est is not None else None
        status = "recommended" if v == best else _status(rec, m, v in tied, v == first)
        if v == best and v != first:
            status = "recommended (default)"
        rows.append(
            VerdictRow(
                variant=v,
                name=VARIANT_NAMES.get(v, v),
                estimate=est,
                low=None if half is None or (interval == "paired" and v == best) else est - half,
                high=None if half is None or (interval == "paired" and v == best) else est + half,
                difference=_finite(m.get("difference")) if m is not None else None,
                standard_error=_finite(m.get("standard_error")) if m is not None else None,
                recommended=v == best,
                indistinguishable=v in tied,
                status=status,
            )
        )
    return VerdictData(
        measure=by,
        label=measure_label(rec, by),
        validated=by in FIDELITY_METRICS,
        recommended=best,
        interval=interval,
        rows=tuple(rows),
        scope=scope,
        by_reference=bool(rec.get("references")),
        fallback=by != str(rec.get("rank_by_requested", by))
        and str(rec.get("rank_by_requested", by)) in FIDELITY_METRICS,
        requested=str(rec.get("rank_by_requested", by)),
    )


def _who(variant: str) -> str:
    return f"{variant} ({VARIANT_NAMES.get(variant, variant)})"


def _either(variants: Sequence[str]) -> str:
    items = list(variants)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def verdict_sentence(rec: Mapping[str, Any]) -> str:
    """The recommendation and why, in one plain sentence (the first screen of the report)."""
    by = str(rec.get("rank_by", "median_nc"))
    best = str(rec["variant"])
    first = str(rec.get("ranked_first", best))
    label = measure_label(rec, by)
    tied = [str(v) for v in rec.get("indistinguishable") or []]
    use = f"Use {_who(best)}"
    if by in FIDELITY_METRICS:
        betas = "its single-trial betas" if "trial" in by else "its betas"
        what = (
            f"{betas} follow the responses planted into your data"
            if by in PLANTED_METRICS
            else f"{betas} agree with independent held-out data"
        )
        if first != best:
            return (
                f"{use}: {first} scores higher on {label}, but its lead is not clear in these "
                "data, and NORDIC is recommended only where its advantage is clear."
            )
        if tied:
            return (
                f"{use}: {what} best, but the data cannot tell it apart from {_either(tied)}, "
                "so it is the default as the first-ranked of them."
            )
        every = " under every reference" if rec.get("references") else ""
        bounded = any(m.get("bias_bound") for m in rec.get("margins") or [])
        bound = " and beyond the estimate's bias bound" if bounded else ""
        return (
            f"{use}: {what} better than every other variant's, by more than "
            f"{SHOWN_SE:g} standard errors{every}{bound}."
        )
    repeats = "which measures how well repeats agree, not how faithful the betas are"
    requested = str(rec.get("rank_by_requested", by))
    if requested in FIDELITY_METRICS:
        if first != best:
            return (
                f"{use}: {_missing(requested)}, and {first} leads only on "
                f"{label}, {repeats}, so the recommendation is the best variant without NORDIC."
            )
        return f"{use}: {_missing(requested)}, so it is chosen by {label}, {repeats}."
    return f"{use}: it ranks first by {label} (comparison.rank_by), {repeats}."


def _fmt(value: float | None, measure: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if measure in FIDELITY_METRICS else f"{value:.2f}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _missing(requested: str) -> str:
    """Why the ranking fell back to repeat agreement, in words."""
    if requested in PLANTED_METRICS:
        return "neither the planted nor the held-out fidelity could be computed"
    return "no held-out fidelity could be computed"


def _why_not_validated(data: VerdictData) -> str:
    if data.fallback:
        return _missing(data.requested)
    return f"comparison.rank_by is {data.measure}"


def verdict_caption(data: VerdictData) -> str:
    """What the figure shows, in words (below the sentence)."""
    bars = "" if data.interval == "none" else "bars: "
    text = (
        _cap(f"{data.label} per variant {data.scope}".rstrip())
        + f"; dots: group means, {bars}{INTERVAL_WORDS[data.interval]}"
        + ("; dashed line: the recommended variant" if data.interval == "paired" else "")
    )
    if data.grouped:
        every = " under every reference" if data.by_reference else ""
        bound = " and the estimate's bias bound"
        text += (
            "; shaded: the recommended variant and those the data cannot tell apart from it (a "
            f"difference counts only where it exceeds {SHOWN_SE:g} standard errors{every}{bound})"
        )
    if not data.validated:
        text += (
            f". {_cap(data.label)} measures how well repeats agree, not how faithful the betas "
            f"are; it is the ranking criterion here only because {_why_not_validated(data)}"
        )
    else:
        if data.measure in PLANTED_METRICS:
            text += (
                ". Measured on responses planted into your own data: a small copy of the "
                "image responses measured in your data (in your other comparison sessions where "
                "they show the same images, else at the images' odd-numbered presentations) was "
                "added to the raw echoes, every variant's chain sent it through the decisions it "
                "made on your data, and its betas were scored against the images' other "
                "presentations in the session. " + PLANTED_CAVEAT
            )
        elif data.fallback:
            text += (
                ". No responses could be planted into these data, so the held-out fidelity ranks"
            )
        text += (
            ". The noise ceiling as LAION-fMRI reported it is not the ranking criterion: it is "
            "in the summary below and in the comparison section"
        )
    return text + "."


def verdict_table(data: VerdictData) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the figure in numbers (every row's estimate, interval and margin)."""
    header = [
        "variant",
        data.label,
        "interval",
        f"{data.recommended} minus it",
        "standard error",
        "verdict",
    ]
    rows = []
    digits = 3 if data.measure in FIDELITY_METRICS else 2
    for r in data.rows:
        interval = (
            f"{_fmt(r.low, data.measure)} to {_fmt(r.high, data.measure)}"
            if r.low is not None and r.high is not None
            else ""
        )
        rows.append(
            [
                _who(r.variant),
                _fmt(r.estimate, data.measure),
                interval,
                "" if r.difference is None else f"{r.difference:+.{digits}f}",
                "" if r.standard_error is None else f"{r.standard_error:.{digits}f}",
                r.status,
            ]
        )
    return header, rows


def _axis_label(data: VerdictData) -> str:
    if data.measure in PLANTED_METRICS:
        return f"{data.label} (higher: betas closer to the planted responses)"
    if data.validated:
        return f"{data.label} (higher: betas closer to independent held-out data)"
    return f"{data.label} (repeat agreement)"


def verdict_figure(data: VerdictData):
    """The verdict figure: one row per variant (NORDIC off on top), dot at its group mean,
    bar its interval, the recommended variant as a star with a dashed line through its mean,
    the variants the data cannot tell apart shaded, each row's verdict in words on the right.

    Returns
    -------
    matplotlib.figure.Figure
        Not closed (:func:`to_svg` closes it).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    n = len(data.rows) + (0.6 if any(r.nordic for r in data.rows) else 0.0)
    height = min(FIGSIZE[1], 1.55 + 0.32 * n + (0.25 if not data.validated else 0.0))
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], height), constrained_layout=True)
    y, ys = 0.0, []
    for i, r in enumerate(data.rows):
        if i and r.nordic and not data.rows[i - 1].nordic:
            y += 0.6  # a gap between NORDIC off and on
        ys.append(y)
        y += 1.0
    grouped = set(data.grouped)
    best = data.row(data.recommended)
    for yy, r in zip(ys, data.rows, strict=True):
        colour = COLOURS["nordic" if r.nordic else "raw"]
        if r.variant in grouped:
            ax.axhspan(yy - 0.48, yy + 0.48, color=COLOURS["tied"], zorder=0, lw=0)
        if r.estimate is None:
            continue
        if r.low is not None and r.high is not None:
            ax.plot([r.low, r.high], [yy, yy], color=colour, lw=2.2, solid_capstyle="butt")
            ax.plot([r.low, r.high], [yy, yy], "|", color=colour, ms=9, mew=2)
        if r.recommended:
            ax.plot(r.estimate, yy, "*", ms=17, color=colour, mec=COLOURS["mark"], zorder=4)
        else:
            ax.plot(r.estimate, yy, "o", ms=7, color=colour, mec="white", zorder=3)
        weight = "bold" if r.recommended else "normal"
        ax.text(
            1.01, yy, r.status, transform=ax.get_yaxis_transform(), va="center", fontsize=8.5,
            fontweight=weight, color=COLOURS["mark"] if r.recommended else "0.3",
        )  # fmt: skip
    if data.interval == "paired" and best.estimate is not None:
        ax.axvline(best.estimate, color=COLOURS["mark"], ls="--", lw=1, zorder=1)
    ax.set_yticks(ys)
    ax.set_yticklabels([_who(r.variant) for r in data.rows], fontsize=9)
    for tick, r in zip(ax.get_yticklabels(), data.rows, strict=True):
        if r.recommended:
            tick.set_fontweight("bold")
    ax.set_ylim(ys[-1] + 0.6, -0.6)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(_axis_label(data), fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles = [
        Line2D([], [], marker="*", ls="", ms=12, color="0.5", mec=COLOURS["mark"]),
        Line2D([], [], marker="o", ls="", ms=6, color="0.5", mec="white"),
    ]
    names = ["recommended", "group mean"]
    if data.interval != "none":
        handles.append(Line2D([], [], color="0.4", lw=2.2))
        names.append(INTERVAL_WORDS[data.interval])
    if grouped:
        handles.append(Patch(color=COLOURS["tied"]))
        names.append("the data cannot tell these apart")
    fig.legend(
        handles, names, loc="outside lower center", ncol=2, fontsize=8, frameon=False,
        handletextpad=0.4, columnspacing=1.2,
    )  # fmt: skip
    title = f"The verdict {data.scope}: {data.label} per variant".replace("  ", " ")
    if not data.validated:
        title += f"\n(repeat agreement, not validated: {_why_not_validated(data)})"
    ax.set_title(title, fontsize=10, loc="left")
    return fig


def to_svg(fig) -> str:
    """An inline ``<svg>`` element of a figure (closed): no XML prolog, no metadata, fixed
    element ids (the same figure gives the same text)."""
    import matplotlib
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "echoprep-verdict"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)


@dataclass(frozen=True)
class FirstScreen:
    """The top of the report: the verdict figure, its sentence, caption and numbers.

    Attributes
    ----------
    sentence
        The recommendation and why (:func:`verdict_sentence`).
    svg
        The figure as an inline ``<svg>`` element, or '' when it could not be drawn.
    caption
        What the figure shows (or why it is missing).
    header, rows
        The figure in numbers (:func:`verdict_table`).
    data
        The figure's content, or None.
    """

    sentence: str
    svg: str = ""
    caption: str = ""
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    data: VerdictData | None = None


def first_screen(rec: Mapping[str, Any], scope: str = "") -> FirstScreen:
    """The first screen of a report from a recommendation: a figure that fails to draw leaves
    the sentence and a caption that says why (the rest of the report is not affected)."""
    sentence = verdict_sentence(rec)
    data = verdict_data(rec, scope)
    if data is None:
        return FirstScreen(sentence, caption="No variant has a group mean to draw.")
    header, rows = verdict_table(data)
    try:
        svg = to_svg(verdict_figure(data))
        caption = verdict_caption(data)
    except Exception as exc:  # the sentence and the rest of the page still show
        log.warning("report: the verdict figure failed: %s", exc)
        svg, caption = "", f"The verdict figure could not be drawn: {exc}"
    return FirstScreen(sentence, svg, caption, tuple(header), tuple(tuple(r) for r in rows), data)


__all__ = [
    "COLOURS",
    "FIGSIZE",
    "INTERVAL_WORDS",
    "PLANTED_CAVEAT",
    "FirstScreen",
    "VerdictData",
    "VerdictRow",
    "first_screen",
    "to_svg",
    "verdict_caption",
    "verdict_data",
    "verdict_figure",
    "verdict_sentence",
    "verdict_table",
]
