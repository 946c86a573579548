"""The report's first screen: the verdict figure (its data and what it draws), the one sentence,
and where they sit on the page."""

from __future__ import annotations

import copy
import html
import json
import math

import pandas as pd
import pytest
from matplotlib.patches import Rectangle

from echoprep.kernels.measures import PLANTED_DEFAULT_RULE, PLANTED_NORDIC_READING
from echoprep.kernels.ranking import SHOWN_SE, recommend
from echoprep.report import verdict as vd
from echoprep.stages.report import build_report
from helpers.recommendations import DEMOTED_NORDIC, pairwise_recommendation

SCOPE = "for sub-01 (its comparison sessions)"


@pytest.fixture(scope="module")
def demoted() -> dict:
    """Six variants; nordic-optcom first within the noise, so raw-optcom is the default."""
    return pairwise_recommendation()


def test_the_comparison_gives_the_margin_over_every_other_variant(demoted):
    margins = demoted["margins"]
    others = [r["variant"] for r in demoted["ranking"] if r["variant"] != demoted["variant"]]
    assert [m["variant"] for m in margins] == others
    assert margins[0] == demoted["margin_over_runner_up"]
    assert [m["variant"] for m in margins if not m["shown"]] == demoted["indistinguishable"]
    assert all(m["by_reference"] and m["standard_error"] > 0 for m in margins)


def test_the_figure_data_follow_the_recommendation(demoted):
    assert demoted["variant"] == "raw-optcom" and demoted["ranked_first"] == "nordic-optcom"
    assert sorted(demoted["indistinguishable"]) == ["nordic-optcom", "raw-denoised"]
    data = vd.verdict_data(demoted, SCOPE)
    assert data is not None and data.validated and data.interval == "paired"
    # the six variants in canonical order, NORDIC off first
    assert [r.variant for r in data.rows] == list(DEMOTED_NORDIC)
    # the recommended one is marked, and only it
    assert [r.variant for r in data.rows if r.recommended] == ["raw-optcom"]
    assert data.row("raw-optcom").status == "recommended (default)"
    # grouped: the recommendation and the variants the comparison cannot tell apart from it
    assert set(data.grouped) == {"raw-optcom", *demoted["indistinguishable"]}
    assert {r.variant for r in data.rows if r.indistinguishable} == {
        "raw-denoised",
        "nordic-optcom",
    }
    assert data.row("raw-denoised").status == "cannot be told apart"
    assert data.row("raw-single").status == "clearly lower"
    # estimates are the ranking's group means; intervals are the estimate ± 2 paired SEs of
    # the JSON's margins, whose differences are the recommended estimate minus the row's
    means = {r["variant"]: r["heldout_r_mean"] for r in demoted["ranking"]}
    best = data.row("raw-optcom")
    assert best.estimate == means["raw-optcom"] and best.low is best.high is None
    for m in demoted["margins"]:
        row = data.row(m["variant"])
        assert row.estimate == means[m["variant"]]
        assert row.low == pytest.approx(row.estimate - SHOWN_SE * m["standard_error"])
        assert row.high == pytest.approx(row.estimate + SHOWN_SE * m["standard_error"])
        assert row.difference == m["difference"] == pytest.approx(best.estimate - row.estimate)
        # a bar that reaches the recommended mean is a difference within 2 standard errors
        assert (row.low <= best.estimate <= row.high) == (
            abs(m["difference"]) <= SHOWN_SE * m["standard_error"]
        )


def test_the_figure_draws_what_the_data_say(demoted):
    data = vd.verdict_data(demoted, SCOPE)
    fig = vd.verdict_figure(data)
    (ax, *_) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"{r.variant} ({r.name})" for r in data.rows]
    ys = dict(zip([r.variant for r in data.rows], ax.get_yticks(), strict=True))
    # one shaded band per grouped variant, on its row
    bands = [p for p in ax.patches if isinstance(p, Rectangle)]
    centres = sorted(p.get_y() + p.get_height() / 2 for p in bands)
    assert centres == pytest.approx(sorted(ys[v] for v in data.grouped))
    # the star is at the recommended mean, on its row; the bars span the intervals
    stars = [ln for ln in ax.lines if ln.get_marker() == "*"]
    assert len(stars) == 1
    assert (stars[0].get_xdata()[0], stars[0].get_ydata()[0]) == (
        data.row("raw-optcom").estimate,
        ys["raw-optcom"],
    )
    bars = {
        round(float(ln.get_ydata()[0]), 6): tuple(ln.get_xdata())
        for ln in ax.lines
        if ln.get_linestyle() == "-" and len(ln.get_xdata()) == 2 and ln.get_marker() == "None"
    }
    for r in data.rows:
        if r.low is not None:
            assert bars[round(float(ys[r.variant]), 6)] == pytest.approx((r.low, r.high))
    # the dashed line through the recommended mean, each row's verdict in words
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_xdata()[0] == data.row("raw-optcom").estimate
    assert [t.get_text() for t in ax.texts] == [r.status for r in data.rows]
    assert "held-out fidelity" in ax.get_title(loc="left")
    assert "noise" not in ax.get_title(loc="left") and "NC" not in ax.get_xlabel()
    svg = vd.to_svg(fig)
    assert svg.startswith("<svg") and "<metadata" not in svg and "<script" not in svg
    assert svg == vd.to_svg(vd.verdict_figure(data))  # the same figure, the same text


def test_the_one_sentence(demoted):
    sentence = vd.verdict_sentence(demoted)
    assert sentence == (
        "Use raw-optcom (optcom): nordic-optcom scores higher on held-out fidelity, but its lead "
        "is not clear in these data, and NORDIC is recommended only where its advantage is clear."
    )
    # a clear winner
    clear = pairwise_recommendation({**DEMOTED_NORDIC, "raw-optcom": 0.36})
    assert clear["variant"] == "raw-optcom" and clear["indistinguishable"] == []
    assert vd.verdict_sentence(clear) == (
        "Use raw-optcom (optcom): its betas agree with independent held-out data better than "
        "every other variant's, by more than 2 standard errors under every reference and "
        "beyond the estimate's bias bound."
    )
    assert vd.verdict_data(clear).grouped == []
    # first, but not told apart from another variant
    tied = pairwise_recommendation({**DEMOTED_NORDIC, "nordic-optcom": 0.18})
    assert tied["variant"] == tied["ranked_first"] == "raw-optcom"
    assert vd.verdict_sentence(tied) == (
        "Use raw-optcom (optcom): its betas agree with independent held-out data best, but the "
        "data cannot tell it apart from raw-denoised, so it is the default as the first-ranked "
        "of them."
    )
    for rec in (demoted, clear, tied):  # one sentence
        text = vd.verdict_sentence(rec)
        assert text.endswith(".") and ". " not in text and text.count(":") == 1


def _nc_table(sessions: int) -> pd.DataFrame:
    rows = []
    for s in range(1, sessions + 1):
        for v, nc in (("raw-single", 10.0), ("raw-optcom", 12.0), ("nordic-optcom", 18.0)):
            rows.append(
                {
                    "subject": f"{s:02d}",
                    "session": "01",
                    "variant": v,
                    "median_nc": nc + s,
                    "dprime": 1.0,
                    "gain": 0.0,
                    "heldout_r": math.nan,
                    "splithalf_r": 0.1,
                    "edge_nc80": 0.0,
                    "voxels": 100,
                }
            )
    return pd.DataFrame(rows)


def test_without_held_out_fidelity_the_noise_ceiling_is_labelled_as_a_fallback():
    rec = recommend(_nc_table(3), "heldout_r")
    assert rec["rank_by"] == "median_nc" and rec["variant"] == "raw-optcom"
    data = vd.verdict_data(rec)
    assert not data.validated and data.fallback and data.interval == "sem"
    sems = {r["variant"]: r["median_nc_sem"] for r in rec["ranking"]}
    for r in data.rows:
        assert r.high - r.low == pytest.approx(2 * SHOWN_SE * sems[r.variant])
    assert data.row("nordic-optcom").status == "ranks first (repeat agreement only)"
    fig = vd.verdict_figure(data)
    title = fig.axes[0].get_title(loc="left")
    assert "repeat agreement, not validated: no held-out fidelity could be computed" in title
    assert "it is the ranking criterion here only because no held-out fidelity" in (
        vd.verdict_caption(data)
    )
    assert vd.verdict_sentence(rec) == (
        "Use raw-optcom (optcom): no held-out fidelity could be computed, and nordic-optcom "
        "leads only on median NC (%), which measures how well repeats agree, not how faithful "
        "the betas are, so the recommendation is the best variant without NORDIC."
    )
    # asked for (comparison.rank_by: median_nc): followed, and said so
    asked = recommend(_nc_table(1), "median_nc")
    assert vd.verdict_data(asked).interval == "none"
    assert vd.verdict_sentence(asked) == (
        "Use nordic-optcom (NORDIC + optcom): it ranks first by median NC (%) "
        "(comparison.rank_by), which measures how well repeats agree, not how faithful the "
        "betas are."
    )


def test_an_older_recommendation_without_margins_uses_the_two_it_holds(demoted):
    old = copy.deepcopy(demoted)
    del old["margins"]
    data = vd.verdict_data(old)
    with_interval = {r.variant for r in data.rows if r.low is not None}
    assert with_interval == {
        old["margin_over_runner_up"]["variant"],
        old["margin_over_baseline"]["variant"],
    }
    assert data.row("raw-denoised").status == "cannot be told apart"
    assert data.row("nordic-single").status == "no standard error"


def test_a_figure_that_fails_leaves_the_sentence(demoted, monkeypatch):
    def broken(data):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(vd, "verdict_figure", broken)
    screen = vd.first_screen(demoted, SCOPE)
    assert screen.svg == "" and "could not be drawn: no fonts" in screen.caption
    assert screen.sentence == vd.verdict_sentence(demoted)


def test_the_page_opens_with_the_figure_and_the_sentence(tmp_path, demoted):
    rec = tmp_path / "recommended_variant.json"
    rec.write_text(json.dumps(demoted))
    text = build_report("01", tmp_path / "r.html", recommendation=rec).read_text()
    plain = html.unescape(text)
    body = text.split("<body>", 1)[1]
    figure, sentence = (
        body.index('<figure id="verdict-figure"><svg'),
        body.index('id="verdict-sentence"'),
    )
    summary, nav = body.index('<div class="summary">'), body.index("<nav>")
    # title and subtitle, the figure, the sentence, then the summary lines and the sections
    assert body.index("<h1>") < figure < sentence < summary < nav
    assert body[: body.index("<figure")].count("<p>") == 1  # only the subtitle above it
    assert text.count("<svg") == 1 and "<img " not in text
    assert plain.count(vd.verdict_sentence(demoted)) == 1
    # the figure in numbers, and the paragraphs that were the top of the page, below it
    assert "<caption>The figure in numbers</caption>" in text
    assert "<td>raw-denoised (ICA-denoised)</td><td>0.319</td>" in plain
    lines = html.unescape(body[summary:])
    assert "Recommended variant over all subjects: raw-optcom (optcom)" in lines
    assert "Where the data cannot tell variants apart, the default is" in lines
    assert "The noise ceiling as LAION-fMRI reported it is not the ranking criterion" in plain
    # no recommendation: no first screen
    text = build_report("02", tmp_path / "none.html").read_text()
    assert 'id="verdict"' not in text and "<svg" not in text


def test_a_planted_ranking_says_which_way_its_estimate_is_known_to_err(demoted):
    held_out = vd.verdict_data(demoted)
    planted = vd.VerdictData(**{**held_out.__dict__, "measure": "planted_r"})
    caption = vd.verdict_caption(planted)
    assert "Measured on responses planted into your own data" in caption
    assert "reads the NORDIC variants low on average, by about 4 % of their true" in caption
    assert "up to a third where NORDIC removes most of a response" in caption
    assert "up to 0.03 in r high in some datasets" in caption
    # one measured clause, the same in the caption and in the default rule
    assert PLANTED_NORDIC_READING in caption and PLANTED_NORDIC_READING in PLANTED_DEFAULT_RULE
    assert caption.count(vd.PLANTED_CAVEAT) == 1
    assert vd.PLANTED_CAVEAT not in vd.verdict_caption(held_out)
