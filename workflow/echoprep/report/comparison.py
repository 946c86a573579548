"""The figure of the 2×3 preprocessing comparison (group outputs and the subject report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from echoprep.io.atomic import atomic_path
from echoprep.io.bids_model import label_order
from echoprep.kernels.ranking import VARIANT_NAMES, VARIANTS, sem
from echoprep.report.labels import DOTS


def plot_comparison(
    table: pd.DataFrame, png: str | Path | None = None, svg: str | Path | None = None
):
    """Figure: per variant, one dot per subject-session (row of ``table``) and the mean ± SEM
    over the dots of held-out fidelity, median NC (%) and d′; the title says so in the words of
    :data:`echoprep.report.labels.DOTS`, which the captions repeat.

    Parameters
    ----------
    table
        A comparison table (columns of :data:`echoprep.kernels.ranking.TABLE_COLUMNS`).
    png, svg
        Files to write (atomically; the SVG is reproducible: no date, fixed element ids).

    Returns
    -------
    matplotlib.figure.Figure
        Closed after saving when paths are given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [v for v in VARIANTS if v in set(table["variant"])]
    subjects = sorted(
        set(zip(table["subject"], table["session"], strict=True)),
        key=lambda pair: (label_order(str(pair[0])), label_order(str(pair[1]))),
    )
    cmap = plt.get_cmap("tab10")
    panels = [
        ("planted_r", "fidelity to planted responses r"),
        ("heldout_r", "held-out fidelity r"),
        ("median_nc", "median NC in visual ROI (%)"),
        ("dprime", "d′ (NC, ROI vs rest of brain)"),
    ]
    panels = [
        (m, label)
        for m, label in panels
        if m not in ("planted_r", "heldout_r")
        or (m in table and np.isfinite(table[m].to_numpy(float)).any())
    ]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.2 * len(panels), 4.2), constrained_layout=True
    )
    for ax, (metric, ylabel) in zip(np.atleast_1d(axes), panels, strict=True):
        for i, v in enumerate(variants):
            sub = table[table["variant"] == v]
            vals = sub[metric].to_numpy(float)
            mean = np.nanmean(vals) if np.isfinite(vals).any() else np.nan
            colour = "#c44e52" if v.startswith("nordic") else "#4c72b0"
            ax.bar(i, mean, width=0.6, color=colour, alpha=0.35, edgecolor=colour)
            ax.errorbar(i, mean, yerr=sem(vals), color="k", capsize=4, lw=1.2)
            for s, ss, val in zip(sub["subject"], sub["session"], vals, strict=True):
                k = subjects.index((s, ss))
                off = (k - (len(subjects) - 1) / 2) * min(0.08, 0.4 / max(len(subjects), 1))
                label = f"sub-{s}" + (f" ses-{ss}" if ss != "n/a" else "") if i == 0 else None
                ax.plot(i + off, val, "o", ms=5, color=cmap(k % 10), label=label, zorder=3)
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels([VARIANT_NAMES[v].replace(" + ", "\n+ ") for v in variants], fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    if subjects:
        np.atleast_1d(axes)[0].legend(fontsize=7, loc="upper left", frameon=False)
    fig.suptitle(f"Preprocessing variants: {DOTS}")
    if png is not None:
        with atomic_path(png) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    if svg is not None:
        # reproducible SVG: no date, element ids from a fixed salt (else a random one per run)
        with matplotlib.rc_context({"svg.hashsalt": "echoprep"}), atomic_path(svg) as tmp:
            fig.savefig(tmp, metadata={"Date": None}, format="svg")
    if png is not None or svg is not None:
        plt.close(fig)
    return fig


__all__ = ["plot_comparison"]
