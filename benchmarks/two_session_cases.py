"""Every kept case of ``comparison_regimes.py`` read again by the verdict as it now stands, and
pooled over the cases.

For each case (a folder kept by ``comparison_regimes.py --keep`` and the ``--table`` TSV it
wrote), from the kept comparison's planted table (``*_desc-planted_comparison.tsv``, replicate
0 the estimate, 1.. the image bootstrap) and the truth in the TSV (``r_truth_roi``: r of each
variant's repeat-averaged betas with the true image means over the comparison's ROI;
``r_truth``: over every truly active voxel, the recommendation's gap):

- ``mae``: mean absolute error of ``planted_r`` against the truth over the six variants;
- ``bias``: the NORDIC-dependent bias (mean error of the NORDIC variants less that of the
  NORDIC-off ones) and ``bias_se``, its image-bootstrap standard error;
- ``nordic_read``: the NORDIC variants' ``planted_r`` over their truth relative to the NORDIC-off
  variants' (geometric means; 1: no bias against NORDIC);
- the recommendation (from the TSV) and its gap to the truly best;
- ``shown`` / ``false``: the leads the verdict's rule shows (``comparison_regimes.shown_pairs``:
  beyond twice :func:`echoprep.kernels.margins.pair_se` and
  :func:`echoprep.kernels.ranking.bias_bound` for the planted responses' source in the
  comparison table, ``--source`` for a table written before it had that column) and those
  the truth reverses;
- ``over_read``: the largest amount by which a NORDIC-off variant's lead over a NORDIC variant
  was read above its truth (``nordic_over_read``: a NORDIC variant's over a NORDIC-off one);
  ``over_read_small`` (``nordic_over_read_small``): the same over the leads truly under 0.03
  (the estimate's errors grow with each variant's r, so a large true lead is over-read most,
  while what a bound is there for is a lead that is truly none or the other way);
- ``true_leads`` / ``true_leads_shown``: true leads of 0.03 or more between a NORDIC and a
  NORDIC-off variant, and how many the rule shows; each one not shown is counted by why
  (``held_back``: within the noise, within the bound, or both);
- ``z``: (estimated less true lead) over the verdict's standard error, for every pair of
  variants of the same NORDIC setting and across NORDIC (sign: NORDIC-off less NORDIC);
- ``planted_r`` / ``r_truth_roi``: each variant's estimate beside its truth;
- ``r_truth_mean_roi``, ``mae_vs_mean``, ``bias_vs_mean`` (:func:`against_mean`): the truth's
  mean over the voxels instead of their median, and the two figures against it, where it is
  known (pooled as ``mean_cases_*``, beside the median's figures over the same cases; reported,
  never what the acceptance counts);
- ``shared_scale``: an error every variant shares, the one factor ``s`` whose removal
  (the estimates divided by it) leaves the smallest mean absolute error, and that error,
  ``mae_beyond_scale``. The estimate divides each variant's planted covariance by one
  session-wide response variance and reference gain, so an error in either scales every
  variant alike and moves no ranking; ``mae_beyond_scale`` is what no such error explains
  (the bias against NORDIC and each variant's own error). A diagnostic: the acceptance counts
  ``mae``.
- what the estimate's own sampling noise allows, were it free of bias:
  ``bias_within_0.01_unbiased`` (:func:`bias_within_unbiased`), the chance that a bias of 0 is
  read within 0.01 given ``bias_se`` (normal); from the bootstrap draws about the estimate
  (:func:`noise_figures`; cases read from their folder, a JSON keeps the figures),
  ``mae_unbiased``, the mean absolute error of a draw about the estimate (the error an unbiased
  estimate of this precision makes on average), ``mae_within_0.02_unbiased``, the share of draws
  within 0.02 of the estimate, and ``shared_scale_se``, the draws' spread of the shared scale
  about the estimate. Pooled, their sums are the counts of cases an unbiased estimate would
  bring within the acceptance's figures. The bootstrap resamples images only, and understates
  the errors between variants (``z``, pooled), so these are upper bounds on what noise alone
  allows.
- ``session_z``: for every pair of variants, each session's estimated lead less that session's
  true lead, the difference of the two sessions' errors over the image bootstrap's standard
  error of it (each session's draws): SD 1 where the bootstrap is right about how much one
  session's estimate errs. Only for cases read from their folder with two sessions (the
  per-session truth is computed from the case's ``bids`` and ``results``, as
  ``comparison_regimes.py`` does).
- what holds the true leads across NORDIC back, were the estimate free of bias:
  ``bound_held_leads`` (:func:`bound_held_leads`), the true leads of a NORDIC-off variant over
  a NORDIC one of at least 0.03 and under the bound (``bound_over_nordic``), which an unbiased
  estimate reads beyond the bound less than half the time; and for cases read from their folder
  with two sessions (:func:`power_unbiased`), each bootstrap draw's errors added to each
  session's truth and read by the verdict's rule: ``power_every_unbiased`` (with the bound) and
  ``power_every_unbiased_no_bound``, the chance that every true lead is shown (the verdict's
  standard error, ``pair_se``, on each draw), and
  ``split_held_leads``, the leads whose two sessions' truths disagree so much that the rule's
  standard error (the larger of the bootstrap's and the sessions' spread) holds them back from
  an estimate free of noise too. Pooled, the chances sum to the expected number of cases.

Usage::

    .venv/bin/python benchmarks/two_session_cases.py [CASE_DIR:TABLE.tsv ...] \\
        [--previous FILE] [--json FILE] [--source other_sessions]

It prints one Markdown row per case (the table of docs/comparison.md, "Every two-session case,
read by the verdict's current rules") and the pooled figures. Reads only; about 10 s a case (each
session's truth reads every variant's betas).

A kept case is a few GB and does not outlive the machine it ran on; its figures do, in the
JSON. ``--previous`` takes an earlier ``--json`` output and pools its cases with the ones read
now (a case read now replaces the one of the same label). A case without its per-variant
figures gets ``shared_scale`` and ``over_read_small`` from its estimates and truths where the
JSON holds them (the earliest cases' were entered from the docs table, three decimals:
``per_variant_decimals``). A JSON written before it kept each case's pairs (``z_same``,
``z_across``, ``nordic_lead_shortfall``) pools the figures made of pairs over the cases that
keep them only, and says over how many (``pair_cases``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from comparison_regimes import session_truth_scores, shown_pairs

from echoprep.kernels.margins import group_replicates, pair_se
from echoprep.kernels.ranking import SHOWN_SE, bias_bound
from echoprep.stages.comparison import read_table

#: True leads at least this large (in r with the truth) are the ones the power figure counts.
TRUE_LEAD = 0.03
#: The bias bound of a NORDIC-off variant's lead over a NORDIC one with responses from the other
#: sessions (the two-session cases'), for cases from a JSON written before each case kept its own.
OVER_NORDIC_BOUND = bias_bound("raw-single", "nordic-single", True, "other_sessions")


def is_nordic(variant: str) -> bool:
    return variant.startswith("nordic-")


def case_label(folder: Path) -> str:
    """``regime`` seed S, N runs, from a kept case's folder name."""
    name = folder.name
    regime, rest = name.split("_seed", 1)
    seed = rest.split("_", 1)[0]
    runs = rest.split("_runs", 1)[1].split("_", 1)[0] if "_runs" in rest else "preset"
    return f"`{regime}` seed {seed}, {6 if runs == 'preset' else runs} runs"


def read_case(folder: Path, tsv: Path) -> dict:
    """The truth (``comparison_regimes.py --table``), the planted replicates and the
    comparison table of one kept case."""
    comparison = folder / "results" / "comparison"
    truth = pd.read_csv(tsv, sep="\t").set_index("variant")
    reps = pd.read_csv(
        next(comparison.rglob("*_desc-planted_comparison.tsv")),
        sep="\t",
        dtype={"subject": str, "session": str},
    )
    sessions = sorted(reps["session"].unique())
    scores = {
        ses: session_truth_scores(folder / "bids", folder / "results", list(truth.index), True, ses)
        for ses in sessions
    }
    return {
        "truth": truth,
        "reps": reps,
        "table": read_table(next(comparison.rglob("sub-*_desc-variants_comparison.tsv"))),
        "session_truth": {ses: x["r_truth"] for ses, x in scores.items()},
        "session_truth_mean": {ses: x["r_truth_mean"] for ses, x in scores.items()},
    }


def session_draws(reps: pd.DataFrame, sessions: list[str]) -> tuple[dict, dict]:
    """Per session of the planted table (``session``, ``variant``, ``replicate``, ``planted_r``;
    replicate 0 the estimate, 1.. the draws): the estimate (variant -> r) and the draws (one row
    per replicate, one column per variant)."""
    est, draws = {}, {}
    for ses in sessions:
        one = reps[reps["session"].astype(str) == ses]
        table = one.pivot_table(index="replicate", columns="variant", values="planted_r")
        est[ses], draws[ses] = table.loc[0], table.loc[table.index >= 1]
    return est, draws


def session_errors(reps: pd.DataFrame, session_truth: dict[str, dict[str, float]]) -> list[float]:
    """``session_z`` (module docstring): per pair of variants ``a < b``, (error of session 1's
    lead less session 2's) over the image bootstrap's standard error of that difference.

    Parameters
    ----------
    reps
        The planted table (``session``, ``variant``, ``replicate``, ``planted_r``; replicate 0
        the estimate, 1.. the draws).
    session_truth
        Session label -> variant -> true r (two sessions; anything else gives ``[]``).
    """
    if len(session_truth) != 2 or "session" not in reps:
        return []
    s1, s2 = sorted(session_truth)
    est, draws = session_draws(reps, [s1, s2])
    variants = sorted(set(est[s1].index) & set(est[s2].index) & set(session_truth[s1]))
    out = []
    for i, a in enumerate(variants):
        for b in variants[i + 1 :]:
            err = [
                est[ses][a] - est[ses][b] - (session_truth[ses][a] - session_truth[ses][b])
                for ses in (s1, s2)
            ]
            se = np.hypot(*(np.std(draws[ses][a] - draws[ses][b], ddof=1) for ses in (s1, s2)))
            if se > 0:
                out.append(float((err[0] - err[1]) / se))
    return out


def bound_held_leads(
    planted_r: dict[str, float], r_truth_roi: dict[str, float], bound: float
) -> dict:
    """``bound_held_leads`` (module docstring): the true leads of a NORDIC-off variant over a
    NORDIC variant of at least :data:`TRUE_LEAD` and under ``bound`` (r with the truth), which
    an estimate free of bias reads beyond the bound less than half the time, whatever its
    precision."""
    n = sum(
        TRUE_LEAD <= r_truth_roi[a] - r_truth_roi[b] < bound
        for a in planted_r
        for b in planted_r
        if not is_nordic(a) and is_nordic(b)
    )
    return {"bound_held_leads": int(n)}


def power_unbiased(
    reps: pd.DataFrame, session_truth: dict[str, dict[str, float]], bound: float
) -> dict:
    """What an estimate free of bias, with this case's precision, would show of the true leads
    across NORDIC (module docstring, ``power_unbiased``).

    Each bootstrap draw's deviation from the estimate, session by session (the variants'
    errors together, as the draws have them), is added to that session's truth; the verdict's
    rule is applied to the result (mean over the sessions beyond twice the larger of the case's
    own bootstrap standard error of the pair and the two sessions' spread, and beyond ``bound``
    where a NORDIC-off variant leads a NORDIC one), and, to show what the bound costs, without
    the bound.

    Parameters
    ----------
    reps, session_truth
        As for :func:`session_errors` (anything but two sessions gives ``{}``).
    bound
        The bias bound of a NORDIC-off variant's lead over a NORDIC variant (r).

    Returns
    -------
    dict
        ``power_leads``: true leads counted (the two sessions' mean truth, at least
        :data:`TRUE_LEAD`); ``power_every_unbiased`` / ``power_every_unbiased_no_bound``: the
        share of draws in which every one is shown; ``power_share_unbiased`` /
        ``power_share_unbiased_no_bound``: the mean share shown; ``split_held_leads``: the
        true leads that the sessions' own truths hold back (the mean true lead within twice the
        standard error of their spread: even an estimate free of noise and bias is not shown).
        The same keys ending in ``_4_sessions``: four sessions like these two (each twice, the
        second time with other draws of its errors: the draws shifted by half their number),
        what comparing on more sessions would give were the sessions' truths as spread.
    """
    if len(session_truth) != 2 or "session" not in reps:
        return {}
    sessions = sorted(session_truth)
    est, draws = session_draws(reps, sessions)
    dev = {ses: (draws[ses] - est[ses]).reset_index(drop=True) for ses in sessions}
    n = min(len(dev[s]) for s in sessions)
    variants = sorted(
        set.intersection(*(set(est[s].index) & set(session_truth[s]) for s in sessions))
    )
    if n < 2 or not variants:
        return {}
    truths = [np.array([session_truth[s][v] for v in variants]) for s in sessions]
    devs = [dev[s][variants].to_numpy()[:n] for s in sessions]
    out = _power(truths, devs, variants, bound, "")
    if out.get("power_leads"):
        # four sessions like these two: each again, with other draws of its errors
        again = [np.roll(d, n // 2, axis=0) for d in devs]
        out |= _power(truths + truths, devs + again, variants, bound, "_4_sessions")
    return out


def _power(
    truths: list[np.ndarray], devs: list[np.ndarray], variants: list[str], bound: float, tag: str
) -> dict:
    """:func:`power_unbiased` for sessions with these truths (one array of the variants' r
    each) and these draws' errors (draws x variants each); keys end in ``tag``. The standard
    error is the verdict's own (:func:`echoprep.kernels.margins.pair_se`: the bootstrap's, from
    the draws' mean over the sessions, or the sessions' spread, whichever is larger)."""
    k = len(truths)
    labels = [f"{i + 1:02d}" for i in range(k)]
    replicates = dict(zip(variants, (sum(devs) / k).T, strict=True))

    def table(values: list[np.ndarray]) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"subject": "01", "session": ses, "variant": v, "planted_r": float(x[i])}
                for ses, x in zip(labels, values, strict=True)
                for i, v in enumerate(variants)
            ]
        )

    draws = [
        table([t + d[n] for t, d in zip(truths, devs, strict=True)]) for n in range(len(devs[0]))
    ]
    noise_free = table(truths)
    shown: dict[bool, list[np.ndarray]] = {True: [], False: []}
    split = 0
    for i, a in enumerate(variants):
        for j, b in enumerate(variants):
            if is_nordic(a) == is_nordic(b):
                continue
            true_lead = np.mean([t[i] - t[j] for t in truths])
            if true_lead < TRUE_LEAD:
                continue
            split += bool(true_lead <= SHOWN_SE * pair_se(a, b, noise_free, "planted_r", {}))
            lead = true_lead + np.array([d[:, i] - d[:, j] for d in devs]).mean(axis=0)
            se = np.array([pair_se(a, b, t, "planted_r", replicates) for t in draws])
            beyond = lead > SHOWN_SE * se
            held = bound if not is_nordic(a) else 0.0
            shown[True].append(beyond & (lead > held))
            shown[False].append(beyond)
    if not shown[True]:
        return {f"power_leads{tag}": 0}
    out: dict = {f"power_leads{tag}": len(shown[True]), f"split_held_leads{tag}": split}
    for with_bound, suffix in ((True, ""), (False, "_no_bound")):
        x = np.stack(shown[with_bound])  # leads x draws
        out[f"power_every_unbiased{suffix}{tag}"] = float(x.all(axis=0).mean())
        out[f"power_share_unbiased{suffix}{tag}"] = float(x.mean())
    return out


def scale_figures(planted_r: dict[str, float], r_truth_roi: dict[str, float]) -> dict:
    """``shared_scale`` and ``mae_beyond_scale`` (module docstring) of one case's per-variant
    estimates and truths (variant -> r; the same variants in both).

    ``mean |est / s - truth|`` is convex and piecewise linear in ``1 / s``, so its minimum lies
    at one of the variants' ``truth / est``.
    """
    est = pd.Series(planted_r, dtype=float)
    truth = pd.Series(r_truth_roi, dtype=float)[est.index].to_numpy()
    e = est.to_numpy()
    inverse = truth / e
    mae = np.abs(inverse[:, None] * e[None, :] - truth[None, :]).mean(axis=1)
    best = int(np.argmin(mae))
    return {"shared_scale": float(1 / inverse[best]), "mae_beyond_scale": float(mae[best])}


def bias_within_unbiased(bias_se: float) -> dict:
    """``bias_within_0.01_unbiased`` (module docstring): the chance that an unbiased estimate
    with standard error ``bias_se`` (r) reads the NORDIC-dependent bias within 0.01 (normal);
    ``{}`` where the standard error is 0 or not finite."""
    if bias_se > 0 and np.isfinite(bias_se):
        return {"bias_within_0.01_unbiased": float(math.erf(0.01 / (bias_se * math.sqrt(2))))}
    return {}


def noise_figures(est: pd.Series, draws: pd.DataFrame) -> dict:
    """What the estimate's sampling noise allows were it unbiased, from its bootstrap draws
    (module docstring): ``mae_unbiased``, ``mae_within_0.02_unbiased``, ``shared_scale_se``.

    Parameters
    ----------
    est
        Each variant's estimate (variant -> r).
    draws
        Bootstrap draws, one row per replicate and one column per variant (none: ``{}``).
    """
    if not len(draws):
        return {}
    d = draws[est.index]
    mae = (d - est).abs().mean(axis=1)
    scales = [
        scale_figures(row.to_dict(), est.to_dict())["shared_scale"] for _, row in d.iterrows()
    ]
    return {
        "mae_unbiased": float(mae.mean()),
        "mae_within_0.02_unbiased": float((mae <= 0.02).mean()),
        "shared_scale_se": float(np.std(scales, ddof=1)) if len(scales) > 1 else float("nan"),
    }


def small_over_reads(planted_r: dict[str, float], r_truth_roi: dict[str, float]) -> dict:
    """``over_read_small`` and ``nordic_over_read_small`` (module docstring) from each variant's
    estimate and truth (a lead is the difference of two variants' estimates, as in the verdict's
    pairs). NaN where no such lead exists."""
    small: dict[bool, list[float]] = {True: [], False: []}
    for a in planted_r:
        for b in planted_r:
            true_lead = r_truth_roi[a] - r_truth_roi[b]
            if is_nordic(a) != is_nordic(b) and true_lead < TRUE_LEAD:
                lead = planted_r[a] - planted_r[b]
                small[is_nordic(b)].append(lead - true_lead)
    return {
        "over_read_small": float(max(small[True])) if small[True] else float("nan"),
        "nordic_over_read_small": float(max(small[False])) if small[False] else float("nan"),
    }


def case_figures(case: dict, source: str | None = "other_sessions") -> dict:
    """The per-case figures of the module docstring."""
    d, reps = case["truth"], case["reps"]
    est = reps[reps["replicate"] == 0].groupby("variant")["planted_r"].mean()[d.index]
    boot = group_replicates(reps, None, "planted_r", first=1)
    pairs = shown_pairs(reps, case["table"], source)
    truth = d["r_truth_roi"]
    err = est - truth
    nor = [v for v in d.index if is_nordic(v)]
    off = [v for v in d.index if not is_nordic(v)]
    draws = pd.DataFrame(boot)
    ratio = est / truth
    rec = str(d.index[d["recommended"].astype(bool)][0])
    best = str(d["r_truth"].idxmax())
    out: dict = {
        "mae": float(err.abs().mean()),
        "bias": float(err[nor].mean() - err[off].mean()),
        "bias_se": float((draws[nor].mean(1) - draws[off].mean(1)).std()),
        "nordic_read": float(np.exp(np.log(ratio[nor]).mean() - np.log(ratio[off]).mean())),
        "recommended": rec,
        "truly_best": best,
        "gap": float(d["r_truth"].max() - d.loc[rec, "r_truth"]),
        "shown": 0,
        "false": 0,
        "over_read": float("nan"),
        "true_leads": 0,
        "true_leads_shown": 0,
        "held_back": Counter(),
        "nordic_lead_shortfall": [],
        "z_same": [],
        "z_across": [],
        "planted_r": {v: float(est[v]) for v in d.index},
        "r_truth_roi": {v: float(truth[v]) for v in d.index},
    }
    over, over_nordic = [], []
    variants = [v for v in d.index if v in boot]
    for a in variants:
        for b in variants:
            if a == b:
                continue
            pair = pairs[f"{a}>{b}"]
            lead, se, bound = pair["lead"], pair["se"], pair["bound"]
            true_lead = float(truth[a] - truth[b])
            across = is_nordic(a) != is_nordic(b)
            beyond_noise, beyond_bound = pair["beyond_noise"], lead > bound
            shown = pair["shown"]
            out["shown"] += shown
            out["false"] += shown and true_lead < 0
            if across:
                (over if is_nordic(b) else over_nordic).append(lead - true_lead)
            if across and true_lead >= TRUE_LEAD:
                out["true_leads"] += 1
                out["true_leads_shown"] += shown
                if is_nordic(a):
                    out["nordic_lead_shortfall"].append(lead - true_lead)
                if not shown:
                    why = (
                        "noise"
                        if bound == 0 or (beyond_bound and not beyond_noise)
                        else "bound"
                        if beyond_noise
                        else "noise and bound"
                    )
                    direction = "NORDIC ahead" if is_nordic(a) else "NORDIC-off ahead"
                    out["held_back"][f"{direction}: {why}"] += 1
            if a < b and np.isfinite(se) and se > 0:
                e = (lead - true_lead) * (-1 if across and is_nordic(a) else 1)
                out["z_across" if across else "z_same"].append(e / se)
    out["over_read"] = float(max(over)) if over else float("nan")
    out["nordic_over_read"] = float(max(over_nordic)) if over_nordic else float("nan")
    out |= against_mean(est, case, nor, off)
    out |= small_over_reads(out["planted_r"], out["r_truth_roi"])
    out |= scale_figures(out["planted_r"], out["r_truth_roi"])
    out |= bias_within_unbiased(out["bias_se"]) | noise_figures(est, draws)
    bound = pairs[f"{off[0]}>{nor[0]}"]["bound"] if off and nor else OVER_NORDIC_BOUND
    out["bound_over_nordic"] = float(bound)
    out |= bound_held_leads(out["planted_r"], out["r_truth_roi"], bound)
    if "session_truth" in case:
        out["session_z"] = session_errors(reps, case["session_truth"])
        out |= power_unbiased(reps, case["session_truth"], bound)
    return out


def against_mean(est: pd.Series, case: dict, nordic: list[str], off: list[str]) -> dict:
    """The estimate against the mean over the ROI's truly active voxels of their r, beside
    the median the acceptance judges by (the estimate's reading follows the mean where the
    voxels' r is skewed: docs/comparison.md, "The reading follows the mean over the voxels; the
    truth is their median"): ``r_truth_mean_roi`` per variant, ``mae_vs_mean`` and
    ``bias_vs_mean`` (as ``mae`` and ``bias``). From the table's ``r_truth_mean_roi``
    (``comparison_regimes.py`` writes it), else from each session's truth read from the case's
    folder (``session_truth_mean``, averaged over the sessions); ``{}`` where neither is there
    (a table written before it, pooled from an earlier JSON)."""
    d = case["truth"]
    if "r_truth_mean_roi" in d and np.isfinite(d["r_truth_mean_roi"].to_numpy(float)).all():
        mean = d["r_truth_mean_roi"].astype(float)
    elif case.get("session_truth_mean"):
        per = pd.DataFrame(case["session_truth_mean"])
        mean = per.mean(axis=1)
    else:
        return {}
    err = est - mean[est.index]
    return {
        "r_truth_mean_roi": {v: float(mean[v]) for v in est.index},
        "mae_vs_mean": float(err.abs().mean()),
        "bias_vs_mean": float(err[nordic].mean() - err[off].mean()),
    }


def markdown_row(label: str, f: dict) -> str:
    """One row of the docs' table."""
    rec = f"{f['recommended']} ({f['gap']:.3f}"
    rec += ")" if f["recommended"] == f["truly_best"] else f"; {f['truly_best']} truly best)"
    bias = f"{f['bias']:+.3f}".replace("-", "−")
    return (
        f"| {label} | {f['mae']:.3f} | {bias} ({f['bias_se']:.3f}) | ×{f['nordic_read']:.3f} | "
        f"{rec} | {f['shown']} ({f['false']}) | {f['over_read']:.3f} | "
        f"{f['true_leads_shown']} of {f['true_leads']} |"
    )


def pooled(figures: dict[str, dict]) -> dict:
    """The figures over every case."""
    fs = list(figures.values())
    bias = np.array([f["bias"] for f in fs])
    se = np.array([f["bias_se"] for f in fs])
    w = 1 / se**2
    read = np.array([f["nordic_read"] for f in fs])
    held = sum((Counter(f["held_back"]) for f in fs), Counter())
    small = {
        k: [f[k] for f in fs if np.isfinite(f.get(k, np.nan))]
        for k in ("over_read_small", "nordic_over_read_small")
    }
    # cases from a JSON written before the pairs were kept lack them
    paired = [f for f in fs if "z_same" in f]
    short = np.concatenate(
        [np.asarray(f["nordic_lead_shortfall"], float) for f in paired] or [np.empty(0)]
    )
    z = {
        k: np.concatenate([np.asarray(f[k], float) for f in paired] or [np.empty(0)])
        for k in ("z_same", "z_across")
    }
    twelve = [n for n in figures if "12 runs" in n and figures[n]["true_leads"]]
    # cases whose truth's mean over the voxels is known (read from their folder or a table that
    # has it): the same figures against it and, for these cases, against the median
    meaned = [f for f in fs if "mae_vs_mean" in f]
    # cases from a JSON written before the per-variant values were kept lack them
    scaled = [f for f in fs if "shared_scale" in f]
    scales = np.array([f["shared_scale"] for f in scaled])
    # the two sessions' errors against the bootstrap's, over the cases read from their folders
    session_z = [f["session_z"] for f in fs if f.get("session_z")]
    session_z_all = np.concatenate(session_z) if session_z else np.empty(0)
    # what an unbiased estimate of each drawn case's precision would show, with and without
    # the bound, over the cases with true leads across NORDIC
    powered = {n: f for n, f in figures.items() if f.get("power_leads")}
    held_cases = [n for n, f in figures.items() if f.get("bound_held_leads")]
    # the figures an unbiased estimate of each case's precision would reach (expected counts)
    drawn = [f for f in fs if "mae_unbiased" in f]
    unbiased_bias = [f["bias_within_0.01_unbiased"] for f in fs if "bias_within_0.01_unbiased" in f]
    return {
        "cases": len(fs),
        "recommendation_within_0.02": sum(f["gap"] <= 0.02 for f in fs),
        "truly_best": sum(f["gap"] == 0 for f in fs),
        "shown": sum(f["shown"] for f in fs),
        "false": sum(f["false"] for f in fs),
        "mae_within_0.02": int(sum(f["mae"] <= 0.02 for f in fs)),
        "bias_within_0.01": int(sum(abs(f["bias"]) <= 0.01 for f in fs)),
        "bias_mean": float(bias.mean()),
        "bias_mean_se": float(bias.std(ddof=1) / np.sqrt(bias.size)) if bias.size > 1 else None,
        "bias_inverse_variance": float((w * bias).sum() / w.sum()),
        "bias_chi2_about_mean": float((((bias - bias.mean()) / se) ** 2).sum()),
        "nordic_read_mean": float(read.mean()),
        "nordic_read_sd": float(read.std(ddof=1)) if read.size > 1 else None,
        "over_read_max": float(max(f["over_read"] for f in fs)),
        "nordic_over_read_max": float(max(f["nordic_over_read"] for f in fs)),
        # None where no case has such a lead (or every case comes from a JSON written before
        # it was kept)
        **{f"{k}_max": max(v) if v else None for k, v in small.items()},
        **{f"{k}_cases": len(v) for k, v in small.items()},
        "true_leads": sum(f["true_leads"] for f in fs),
        "true_leads_shown": sum(f["true_leads_shown"] for f in fs),
        "cases_every_true_lead_shown": sum(
            f["true_leads"] > 0 and f["true_leads_shown"] == f["true_leads"] for f in fs
        ),
        "cases_with_true_leads": sum(f["true_leads"] > 0 for f in fs),
        "twelve_runs_every_true_lead_shown": sum(
            figures[n]["true_leads_shown"] == figures[n]["true_leads"] for n in twelve
        ),
        "twelve_runs_cases": len(twelve),
        "bound_held_cases": len(held_cases),
        "bound_held_leads": int(sum(figures[n]["bound_held_leads"] for n in held_cases)),
        "twelve_runs_bound_held_cases": sum(n in held_cases for n in twelve),
        "power_cases": len(powered),
        **{
            f"power_every_expected_unbiased{k}": float(
                sum(f[f"power_every_unbiased{k}"] for f in powered.values())
            )
            for k in ("", "_no_bound")
        },
        **{
            f"power_every_expected_unbiased{k}_4_sessions": float(
                sum(f[f"power_every_unbiased{k}_4_sessions"] for f in powered.values())
            )
            for k in ("", "_no_bound")
        },
        "power_every_unbiased_by_case": {
            n: [
                round(f[k], 3)
                for k in (
                    "power_every_unbiased",
                    "power_every_unbiased_no_bound",
                    "power_every_unbiased_4_sessions",
                    "power_every_unbiased_no_bound_4_sessions",
                )
            ]
            for n, f in powered.items()
        },
        "power_leads": int(sum(f["power_leads"] for f in powered.values())),
        # the true leads an unbiased estimate would show, expected, and those the estimate shows
        **{
            f"power_leads_expected_unbiased{k}": float(
                sum(f[f"power_share_unbiased{k}"] * f["power_leads"] for f in powered.values())
            )
            for k in ("", "_no_bound", "_4_sessions", "_no_bound_4_sessions")
        },
        "power_cases_true_leads_shown": int(sum(f["true_leads_shown"] for f in powered.values())),
        "power_cases_true_leads": int(sum(f["true_leads"] for f in powered.values())),
        "split_held_leads": int(sum(f.get("split_held_leads", 0) for f in powered.values())),
        "split_held_cases": sum(bool(f.get("split_held_leads")) for f in powered.values()),
        "held_back": dict(sorted(held.items())),
        "scale_cases": len(scaled),
        "mae_beyond_scale_within_0.02": int(sum(f["mae_beyond_scale"] <= 0.02 for f in scaled)),
        "shared_scale_mean": float(scales.mean()) if scales.size else None,
        "shared_scale_sd": float(scales.std(ddof=1)) if scales.size > 1 else None,
        "shared_scale_range": [float(scales.min()), float(scales.max())] if scales.size else None,
        "bias_within_0.01_expected_unbiased": float(sum(unbiased_bias)),
        "bias_se_median": float(np.median(se)),
        "drawn_cases": len(drawn),
        "drawn_cases_mae_within_0.02": int(sum(f["mae"] <= 0.02 for f in drawn)),
        "mae_within_0.02_expected_unbiased": (
            float(sum(f["mae_within_0.02_unbiased"] for f in drawn)) if drawn else None
        ),
        "mae_unbiased_mean": float(np.mean([f["mae_unbiased"] for f in drawn])) if drawn else None,
        "shared_scale_se_mean": (
            float(np.mean([f["shared_scale_se"] for f in drawn])) if drawn else None
        ),
        "session_z_cases": len(session_z),
        "session_z_sd": float(session_z_all.std()) if session_z else None,
        "session_z_beyond_2": float(np.mean(np.abs(session_z_all) > 2)) if session_z else None,
        "session_z_median_abs": {
            n: float(np.median(np.abs(f["session_z"])))
            for n, f in figures.items()
            if f.get("session_z")
        },
        "pair_cases": len(paired),
        "nordic_lead_read_minus_true_mean": float(short.mean()) if short.size else None,
        "z_sd": {k: float(v.std()) if v.size else None for k, v in z.items()},
        "z_mean": {k: float(v.mean()) if v.size else None for k, v in z.items()},
        "z_beyond_2": {k: float(np.mean(np.abs(v) > 2)) if v.size else None for k, v in z.items()},
        "mean_cases": len(meaned),
        **(
            {
                "mean_cases_mae_within_0.02": {
                    "median": int(sum(f["mae"] <= 0.02 for f in meaned)),
                    "mean": int(sum(f["mae_vs_mean"] <= 0.02 for f in meaned)),
                },
                "mean_cases_bias_within_0.01": {
                    "median": int(sum(abs(f["bias"]) <= 0.01 for f in meaned)),
                    "mean": int(sum(abs(f["bias_vs_mean"]) <= 0.01 for f in meaned)),
                },
                "mean_cases_bias_mean": {
                    "median": float(np.mean([f["bias"] for f in meaned])),
                    "mean": float(np.mean([f["bias_vs_mean"] for f in meaned])),
                },
            }
            if meaned
            else {}
        ),
    }


def previous_cases(path: Path) -> dict[str, dict]:
    """The per-case figures of an earlier ``--json`` output, in the order it has them."""
    try:
        cases = json.loads(path.read_text())["cases"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"--previous {path}: expected a JSON written by --json ({exc})") from exc
    out = {n: f | {"held_back": Counter(f.get("held_back", {}))} for n, f in cases.items()}
    for f in out.values():
        f.setdefault("bound_over_nordic", OVER_NORDIC_BOUND)
        if "bias_within_0.01_unbiased" not in f:
            f |= bias_within_unbiased(f["bias_se"])
        if "planted_r" in f:
            f |= scale_figures(f["planted_r"], f["r_truth_roi"])
            if "over_read_small" not in f:
                f |= small_over_reads(f["planted_r"], f["r_truth_roi"])
            f |= bound_held_leads(f["planted_r"], f["r_truth_roi"], f["bound_over_nordic"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="CASE_DIR:TABLE.tsv")
    parser.add_argument(
        "--previous",
        type=Path,
        default=None,
        help="an earlier --json output whose cases are pooled with the ones read now",
    )
    parser.add_argument(
        "--source",
        default="other_sessions",
        choices=["other_sessions", "session", "other_runs"],
        help="the planted responses' source where a comparison table lacks planted_source "
        "(written before that column; sets the bias bound)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    if not args.cases and args.previous is None:
        parser.error("give kept cases (CASE_DIR:TABLE.tsv), --previous FILE, or both")
    figures = previous_cases(args.previous) if args.previous else {}
    for spec in args.cases:
        folder, tsv = spec.rsplit(":", 1)
        label = case_label(Path(folder))
        figures[label] = case_figures(read_case(Path(folder), Path(tsv)), args.source)
        print(markdown_row(label, figures[label]))
    summary = pooled(figures)
    for key, value in summary.items():
        print(f"{key}: {value}")
    if args.json:
        per_case = {n: f | {"held_back": dict(f["held_back"])} for n, f in figures.items()}
        args.json.write_text(json.dumps({"cases": per_case, "pooled": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
