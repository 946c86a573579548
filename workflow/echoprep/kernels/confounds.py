"""fMRIPrep's confound expansions of a head-motion table (pure array code).

fMRIPrep's ``desc-confounds_timeseries.tsv`` carries, beside the six rigid-body parameters and
the framewise displacement, their first temporal derivatives and squares (the 24-parameter
model of Friston et al. 1996 / Satterthwaite et al. 2013) and a discrete cosine basis for a
128-s high-pass filter. nilearn's ``load_confounds`` reads exactly these columns: ``motion``
``"derivatives"``, ``"power2"`` and ``"full"`` (its default) need the expansions, ``high_pass``
the ``cosine`` columns. :func:`fmriprep_confounds` adds them to the columns of
:func:`echoprep.kernels.geometry.motion.motion_confounds`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from echoprep.kernels.geometry.motion import CONFOUND_COLUMNS, HEAD_RADIUS_MM

#: The rigid-body parameters whose expansions are added (fMRIPrep's names; the first six
#: columns of :func:`echoprep.kernels.geometry.motion.motion_confounds`).
MOTION_COLUMNS = CONFOUND_COLUMNS[:6]
#: Period (s) of the slowest drift the cosine basis removes: fMRIPrep's (and SPM's) 128 s.
HIGH_PASS_PERIOD_S = 128.0


def cosine_basis(
    n_volumes: int, repetition_time: float, period: float = HIGH_PASS_PERIOD_S
) -> np.ndarray:
    """The discrete cosine (DCT-II) drift basis of fMRIPrep's ``cosine`` columns.

    As nipype's ``_cosine_drift`` (used by fMRIPrep): ``order = floor(2 n TR / period)``
    functions ``sqrt(2 / n) cos(pi k (t + 0.5) / n)``, ``k = 1 .. order - 1``, without the
    constant term.

    Parameters
    ----------
    n_volumes
        Volumes of the run (``n``).
    repetition_time
        TR in s.
    period
        Slowest drift period kept out, s (1 / the high-pass cut-off).

    Returns
    -------
    numpy.ndarray
        ``(n_volumes, order - 1)`` float64; no columns when the run is shorter than half the
        period.
    """
    if n_volumes < 1 or repetition_time <= 0 or period <= 0:
        raise ValueError(
            f"cosine_basis: expected n_volumes >= 1, repetition_time > 0 and period > 0; found "
            f"{n_volumes}, {repetition_time}, {period}"
        )
    order = int(np.floor(2.0 * n_volumes * repetition_time / period))
    t = np.arange(n_volumes)[:, None] + 0.5
    k = np.arange(1, max(order, 1))[None, :]
    return np.sqrt(2.0 / n_volumes) * np.cos(np.pi * t * k / n_volumes)


def fmriprep_confounds(
    table: pd.DataFrame, repetition_time: float, period: float = HIGH_PASS_PERIOD_S
) -> pd.DataFrame:
    """A motion table with fMRIPrep's expansions and cosine columns added.

    Parameters
    ----------
    table
        ``(t, k)`` with at least :data:`MOTION_COLUMNS` (mm, rad), e.g. the output of
        :func:`echoprep.kernels.geometry.motion.motion_confounds`.
    repetition_time
        TR of the series the rows describe, s.
    period
        High-pass period of the cosine basis, s.

    Returns
    -------
    pandas.DataFrame
        The columns of ``table``, each motion parameter ``p`` followed by
        ``p_derivative1`` (backward difference, NaN in the first row as in fMRIPrep),
        ``p_derivative1_power2`` and ``p_power2``, then ``cosine00``, ``cosine01``, ...
        (:func:`cosine_basis`).

    Raises
    ------
    ValueError
        A motion column is missing.
    """
    missing = [c for c in MOTION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"fmriprep_confounds: expected the columns {list(MOTION_COLUMNS)}; missing {missing}"
        )
    columns: dict[str, np.ndarray] = {}
    for name in table.columns:
        values = table[name].to_numpy(np.float64)
        columns[name] = values
        if name in MOTION_COLUMNS:
            derivative = np.concatenate([[np.nan], np.diff(values)])
            columns[f"{name}_derivative1"] = derivative
            columns[f"{name}_derivative1_power2"] = derivative**2
            columns[f"{name}_power2"] = values**2
    basis = cosine_basis(len(table), repetition_time, period)
    for j in range(basis.shape[1]):
        columns[f"cosine{j:02d}"] = basis[:, j]
    return pd.DataFrame(columns, index=range(len(table)))


def column_descriptions(
    columns: list[str] | tuple[str, ...], period: float = HIGH_PASS_PERIOD_S
) -> dict[str, dict[str, str]]:
    """BIDS column descriptions (``Description``, ``Units``) of a :func:`fmriprep_confounds`
    table's columns (others are left out)."""
    units = {"trans": "mm", "rot": "rad"}
    found: dict[str, dict[str, str]] = {}
    for name in columns:
        base = next((m for m in MOTION_COLUMNS if name.startswith(m)), None)
        if base is not None:
            unit = units[base.split("_")[0]]
            what = {
                base: ("rigid-body parameter", unit),
                f"{base}_derivative1": ("backward difference of " + base, unit),
                f"{base}_derivative1_power2": ("square of " + base + "_derivative1", unit + "^2"),
                f"{base}_power2": ("square of " + base, unit + "^2"),
            }.get(name)
            if what is not None:
                found[name] = {"Description": what[0], "Units": what[1]}
        elif name == "framewise_displacement":
            found[name] = {
                "Description": "Power's framewise displacement (head radius "
                f"{HEAD_RADIUS_MM:g} mm)",
                "Units": "mm",
            }
        elif name.startswith("cosine"):
            found[name] = {
                "Description": f"discrete cosine drift basis of a {period:g}-s high-pass "
                "filter (as fMRIPrep's; regress all of them, or none when the model has its own "
                "drift terms)",
                "Units": "arbitrary",
            }
    return found


__all__ = [
    "HIGH_PASS_PERIOD_S",
    "MOTION_COLUMNS",
    "column_descriptions",
    "cosine_basis",
    "fmriprep_confounds",
]
