"""Margins between the 2×3 variants: paired standard errors and margins under each reference.

Pure table code (pandas in, numbers out): the helpers of
:func:`echoprep.kernels.ranking.recommend`. A subject's bootstrap table is either the long table
of every variant against every reference variant (:data:`echoprep.io.tables.BOOTSTRAP_COLUMNS`,
replicate 0 the estimate; :func:`echoprep.stages.comparison.fidelity.pair_rows`) or, without a
``reference`` column, one score replicate per row and variant. From the long table come the
replicates of each variant's score (its mean over its references, :func:`score_replicates`) and
the margin of two variants under each reference that is neither of them
(:func:`reference_margins`), on which a lead must hold to count as shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from echoprep.kernels.fidelity_pairs import pair_references
from echoprep.variants import ALL_VARIANTS

#: The held-out measures (a column each in the bootstrap tables).
HELDOUT_METRICS = ("heldout_r", "heldout_trial_r")


def group_replicates(
    bootstrap: pd.DataFrame | None,
    sessions: set[tuple[str, str]] | None = None,
    metric: str = "heldout_r",
    first: int = 0,
) -> dict[str, np.ndarray]:
    """variant -> replicates of the group mean of ``metric`` (replicate-wise mean over the
    ``sessions`` given: (subject, session) pairs; None: all). ``first`` is the first replicate
    that is a bootstrap draw: 1 where replicate 0 is the estimate itself (the planted table),
    which is not a draw and would pull the spread towards it."""
    if bootstrap is None or bootstrap.empty or metric not in bootstrap:
        return {}
    boot = bootstrap[bootstrap["replicate"] >= first] if first else bootstrap
    if sessions is not None:
        keys = list(zip(boot["subject"].astype(str), boot["session"].astype(str), strict=True))
        boot = boot[[k in sessions for k in keys]]
        if boot.empty:
            return {}
    means = boot.groupby(["variant", "replicate"])[metric].mean()
    return {v: means.loc[v].to_numpy(float) for v in means.index.get_level_values(0).unique()}


def is_pairwise(bootstrap: pd.DataFrame | None) -> bool:
    """Whether ``bootstrap`` is the long table of every variant against every reference
    (:data:`echoprep.io.tables.BOOTSTRAP_COLUMNS`; replicate 0 the estimate)."""
    return bootstrap is not None and not bootstrap.empty and "reference" in bootstrap


def score_replicates(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per subject, session, variant and replicate (>= 1), the mean of each held-out measure
    over the variant's references (:func:`echoprep.kernels.fidelity_pairs.pair_references` of the
    session's variants): the bootstrap replicates of the table's ``heldout_r`` and
    ``heldout_trial_r``."""
    rows = []
    for (sub, ses), one in pairs.groupby(["subject", "session"], sort=False):
        present = [v for v in ALL_VARIANTS if v in set(one["variant"])]
        same = same_data(one)
        for v in present:
            refs = pair_references(present, v, same=same)
            own = one[(one["variant"] == v) & one["reference"].isin(refs)]
            own = own[own["replicate"] >= 1]
            means = own.groupby("replicate")[list(HELDOUT_METRICS)].mean()
            rows.append(means.assign(subject=sub, session=ses, variant=v).reset_index())
    if not rows:
        return pd.DataFrame(columns=["subject", "session", "variant", "replicate"])
    return pd.concat(rows, ignore_index=True)


def same_data(pairs: pd.DataFrame) -> list[tuple[str, ...]]:
    """Pairs of different variants the long table marks as holding identical data (column
    ``same_data``; absent: none), as groups for
    :func:`echoprep.kernels.fidelity_pairs.pair_references`."""
    if "same_data" not in pairs:
        return []
    flagged = pairs[pairs["same_data"].astype(str).str.lower().isin(["true", "1"])]
    flagged = flagged[flagged["variant"] != flagged["reference"]]
    return sorted(
        {tuple(sorted(p)) for p in zip(flagged["variant"], flagged["reference"], strict=True)}
    )


def reference_margins(
    a: str, b: str, pairs: pd.DataFrame, sessions: set[tuple[str, str]], metric: str
) -> list[dict[str, Any]]:
    """The margin of ``a`` over ``b`` under each admissible reference (every variant present
    in all ``sessions`` that is neither of the two; with none, each of the two): per reference
    the group mean of ``metric(a, r) - metric(b, r)`` over the sessions, with the standard
    error of :func:`pair_se` (image bootstrap, or the spread over sessions when larger)."""
    keys = list(zip(pairs["subject"].astype(str), pairs["session"].astype(str), strict=True))
    sub = pairs[[k in sessions for k in keys]]
    if sub.empty:
        return []
    per_session = [
        set(g["reference"]) & set(g["variant"]) for _, g in sub.groupby(["subject", "session"])
    ]
    present = [v for v in ALL_VARIANTS if all(v in s for s in per_session)]
    if a not in present or b not in present:
        return []
    same = same_data(sub)
    out = []
    for ref in pair_references(present, a, b, same=same):
        one = sub[sub["reference"] == ref].set_index(["subject", "session", "replicate", "variant"])
        wide = one[metric].unstack("variant")
        d = (wide[a] - wide[b]).reset_index(name="d")
        est = d[d["replicate"] == 0].set_index(["subject", "session"])["d"].to_numpy(float)
        reps = d[d["replicate"] >= 1].groupby("replicate")["d"].mean().to_numpy(float)
        errors = []
        if reps.size > 1:
            errors.append(float(np.std(reps, ddof=1)))
        if est.size >= 2:
            errors.append(float(np.std(est, ddof=1) / np.sqrt(est.size)))
        out.append(
            {
                "reference": ref,
                "difference": float(np.mean(est)) if est.size else math.nan,
                "standard_error": max(errors) if errors else math.nan,
            }
        )
    return out


def pair_se(
    a: str, b: str, table: pd.DataFrame, metric: str, replicates: Mapping[str, np.ndarray]
) -> float:
    """Standard error of the difference of the group means of ``metric`` between variants
    ``a`` and ``b``: the larger of the image-bootstrap one (paired replicates) and the one
    from the spread of the per-session differences (subject-to-subject disagreement; two
    sessions or more). NaN when neither is known."""
    out = []
    ra, rb = replicates.get(a), replicates.get(b)
    if ra is not None and rb is not None and len(ra) == len(rb) and len(ra) > 1:
        out.append(float(np.std(ra - rb, ddof=1)))
    pa = table[table["variant"] == a].set_index(["subject", "session"])[metric]
    pb = table[table["variant"] == b].set_index(["subject", "session"])[metric]
    d = (pa - pb).dropna().to_numpy(float)
    if d.size >= 2:
        out.append(float(np.std(d, ddof=1) / np.sqrt(d.size)))
    return max(out) if out else math.nan


__all__ = [
    "HELDOUT_METRICS",
    "group_replicates",
    "is_pairwise",
    "pair_se",
    "reference_margins",
    "same_data",
    "score_replicates",
]
