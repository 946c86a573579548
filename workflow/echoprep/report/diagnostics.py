"""The plain-words reading of a NORDIC diagnostics table (the subject report's text).

The table is the one :mod:`echoprep.stages.diagnostics` writes (read back with
:func:`echoprep.io.tables.read_diagnostics_table`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _fmt_pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def reading(table: pd.DataFrame, *, tolerance: float = 0.1, white: float = 0.1) -> list[str]:
    """Plain-words reading of a diagnostics table, one sentence per finding.

    Parameters
    ----------
    table
        Rows of a diagnostics table (:func:`echoprep.stages.diagnostics.diagnostics_table`).
    tolerance
        Relative change read as "about unchanged" (0.1: within 10 %).
    white
        Largest absolute neighbour correlation read as spatially white.
    """
    lines: list[str] = []
    for _, r in table.iterrows():
        where = f"{r['combine']}" + (
            f", ses-{r['session']}" if str(r["session"]) not in ("n/a", "nan", "None") else ""
        )
        if np.isfinite(r["tsnr_gain"]):
            lines.append(
                f"{where}: NORDIC changed the median tSNR from {r['tsnr_raw']:.1f} to "
                f"{r['tsnr_nordic']:.1f} (× {r['tsnr_gain']:.2f})."
            )
        a = r["amplitude_ratio"]
        if np.isfinite(a):
            verdict = (
                "about unchanged, as Vizioli et al. 2021 report"
                if abs(a - 1) <= tolerance
                else "lower: NORDIC removed part of the evoked response"
                if a < 1
                else "higher than without NORDIC"
            )
            lines.append(
                f"{where}: NORDIC kept {_fmt_pct(a)} of the evoked amplitude in the visual ROI "
                f"({r['amplitude_raw']:.3g} → {r['amplitude_nordic']:.3g} % signal change; "
                f"{verdict})."
            )
        elif np.isfinite(r["amplitude_raw"]):
            lines.append(
                f"{where}: the mean beta in the visual ROI without NORDIC is "
                f"{r['amplitude_raw']:.3g} % (not positive), so no amplitude ratio is given."
            )
        f = r["fwhm_ratio"]
        if np.isfinite(f):
            verdict = (
                "about unchanged"
                if abs(f - 1) <= tolerance
                else "NORDIC made them smoother (spatially blurred)"
                if f > 1
                else "NORDIC made them less smooth"
            )
            lines.append(
                f"{where}: the image-specific beta patterns have a FWHM of {r['fwhm_raw']:.2f} mm "
                f"without and {r['fwhm_nordic']:.2f} mm with NORDIC (× {f:.2f}; {verdict})."
            )
    nn = table[["removed_nn_x", "removed_nn_y", "removed_nn_z"]].to_numpy(float)
    if nn.size and np.isfinite(nn).any():
        worst = float(np.nanmax(np.abs(nn)))
        axis = "xyz"[int(np.nanargmax(np.nanmax(np.abs(nn), axis=0)))]
        if worst <= white:
            lines.append(
                f"The part NORDIC removed is spatially white (neighbour correlation at most "
                f"{worst:.2f}): it behaves like thermal noise."
            )
        else:
            lines.append(
                f"The part NORDIC removed is spatially correlated (neighbour correlation up to "
                f"{worst:.2f} along {axis}): besides thermal noise it removed structured signal "
                "(or the raw noise itself is correlated, e.g. after partial Fourier or "
                "interpolation)."
            )
    return lines


__all__ = ["reading"]
