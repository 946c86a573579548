"""The report's figure of the planted responses: per variant, what its betas carry of the
responses planted into the session against the planted truth.

Input: the subject's transfer table (``echoprep comparison subject``, ``desc-transfer``):
per variant the planted truth and the recovered image responses, each standardised per voxel of
the visual ROI, averaged in quantile bins of the truth. A line of slope 1 is a variant whose
betas carry the planted responses without distortion; attenuation of the image-specific
pattern, spatial mixing and the leakage of neighbouring trials flatten it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from echoprep.kernels.ranking import VARIANT_NAMES, VARIANTS

#: Colours by NORDIC setting, line styles by echo handling.
COLOURS = {"raw": "#4c72b0", "nordic": "#c44e52"}
STYLES = {"single": ":", "optcom": "-", "denoised": "--"}


def transfer_caption(subject: str) -> str:
    """The figure's caption."""
    return (
        f"sub-{subject}: responses planted into the session's own echoes (x: the planted truth, "
        "y: what each variant's betas carry of it; both standardised per voxel of the visual "
        "ROI and averaged in bins of the truth; grey: slope 1). A flatter line is a variant "
        "that attenuates, mixes or leaks the image responses; the ranking weighs this against "
        "each variant's own noise."
    )


def plot_transfer(frame: pd.DataFrame) -> Any:
    """The figure (matplotlib), one line per variant (mean over the subject's sessions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 4.4), constrained_layout=True)
    lim = 0.0
    for v in [v for v in VARIANTS if v in set(frame["variant"])]:
        part = frame[frame["variant"] == v].groupby("bin")[["planted", "recovered"]].mean()
        nordic, combine = v.split("-", 1)
        x, y = part["planted"].to_numpy(float), part["recovered"].to_numpy(float)
        slope = float(np.polyfit(x, y, 1)[0]) if x.size > 1 else float("nan")
        ax.plot(
            x,
            y,
            STYLES.get(combine, "-"),
            color=COLOURS.get(nordic, "k"),
            marker="o",
            ms=3,
            label=f"{VARIANT_NAMES.get(v, v)} (slope {slope:.2f})",
        )
        lim = max(lim, float(np.nanmax(np.abs(x))) if x.size else 0.0)
    lim = lim or 1.0
    ax.plot([-lim, lim], [-lim, lim], color="0.6", lw=1, zorder=0)
    ax.set_xlabel("planted truth (SD per voxel)")
    ax.set_ylabel("carried by the betas (SD per voxel)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    return fig


__all__ = ["plot_transfer", "transfer_caption"]
