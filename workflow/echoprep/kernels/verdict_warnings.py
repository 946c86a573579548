"""Warnings of the 2×3 verdict on maps, margins and data a scientist should not trust at face
value: brain-edge noise ceilings, implausible gains, collapsed noise ceilings, small ROIs, and
data that show no image responses (docs/comparison.md, "The verdict in words")."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from echoprep.kernels.measures import BASELINE, VARIANT_NAMES

#: NC (%) above which a brain-edge voxel is implausible, and the share that triggers a warning.
EDGE_NC = 80.0
EDGE_SHARE = 0.01
#: Gains (%) over the baseline above which the margin is flagged as implausible.
GAIN_LIMIT = 100.0
#: Median NC (%) at or below which a variant's noise ceiling has collapsed (explained when its
#: held-out fidelity is positive).
COLLAPSED_NC = 0.5
#: Fewest ROI voxels for a comparison without a warning.
MIN_ROI_VOXELS = 30


def no_response_warning(
    ranking: Sequence[Mapping[str, Any]],
    key: str,
    replicates: Mapping[str, np.ndarray],
    shown_se: float,
) -> str | None:
    """A warning where no variant's fidelity (``key``: a group mean of ``planted_r``,
    ``heldout_r`` or a trial twin) is shown above 0: each lies within ``shown_se`` of its own
    bootstrap standard errors of 0 (the verdict's :data:`echoprep.kernels.ranking.SHOWN_SE`).
    None where one lies beyond, or where a variant has no replicates.

    Both estimates are read against the images' other presentations, so where none is above
    0 an image's presentations are no more alike in the ROI than different images: the
    data show no image responses there, and the ranking is only its default."""
    if not ranking:
        return None
    for row in ranking:
        reps = np.asarray(replicates.get(row["variant"], ()), float)
        reps = reps[np.isfinite(reps)]
        value = row.get(key)
        if reps.size < 2 or value is None:
            return None
        if value > shown_se * float(np.std(reps, ddof=1)):
            return None
    return (
        "No variant's fidelity is shown above 0 (each lies within "
        f"{shown_se:g} standard errors of 0): the images' presentations are no more alike in the "
        "visual ROI than different images, so the data show no image responses there and the "
        "recommendation is only the default rule's. Check that each events file belongs to its "
        "run (onsets in seconds from the run's first volume) and that glm.label_column names the "
        "image shown; a session without reliable responses can be left out of the comparison with "
        "comparison.sessions."
    )


def implausibility_warnings(
    table: pd.DataFrame, winner: str | None, responses: bool = True
) -> list[str]:
    """Plain-words warnings on maps and margins a scientist should not trust at face value.
    ``responses`` False (:func:`no_response_warning` said the data show none): no warning
    says that a variant's betas carry the image responses."""
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
        held = getattr(row, "heldout_r", math.nan)
        if (
            responses
            and math.isfinite(row.median_nc)
            and row.median_nc <= COLLAPSED_NC
            and math.isfinite(held)
            and held > 0
        ):
            out.append(
                f"{where}, {row.variant}: median noise ceiling {row.median_nc:.1f} % in the ROI, "
                f"while its held-out fidelity is {held:.3f}: its betas carry the image "
                "responses, but repeats of an image agree no better than different images. On "
                "NORDIC data this is seen when GLMdenoise and ridge make the betas of "
                "neighbouring trials strongly correlated (docs/comparison.md); the noise "
                "ceiling assumes independent trial errors, so read this variant by its held-out "
                "fidelity, not by its NC or NC gain."
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


__all__ = [
    "COLLAPSED_NC",
    "EDGE_NC",
    "EDGE_SHARE",
    "GAIN_LIMIT",
    "MIN_ROI_VOXELS",
    "implausibility_warnings",
    "no_response_warning",
]
