"""The TSV tables the comparison and diagnostics stages write, and their readers.

Writers and readers live together here so that a table written by one stage is read back by
another (the report) without importing that stage. Missing values are written and read as
``n/a`` (BIDS); subject and session labels are kept as text (``"01"`` stays ``"01"``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from echoprep.io.atomic import atomic_path

#: Columns of a comparison bootstrap table: one row per variant, reference variant and
#: replicate (0: the estimate on the images as sampled; 1..B: image-bootstrap replicates);
#: ``same_data``: the reference is the variant or holds identical data.
BOOTSTRAP_COLUMNS = (
    "subject",
    "session",
    "variant",
    "reference",
    "same_data",
    "replicate",
    "heldout_r",
    "heldout_trial_r",
)


def write_tsv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a table atomically: tab-separated, no index, ``n/a`` for missing values, floats
    with 4 decimals; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="n/a", float_format="%.4f")
    return path


def read_comparison_table(path: str | Path) -> pd.DataFrame:
    """A comparison table (one row per subject, session and variant; sessions kept as text)."""
    return pd.read_csv(
        path,
        sep="\t",
        dtype={"subject": str, "session": str},
        na_values="n/a",
        keep_default_na=False,
    )


def read_bootstrap_table(path: str | Path | None) -> pd.DataFrame | None:
    """A comparison bootstrap table (:data:`BOOTSTRAP_COLUMNS`); None when there is no file."""
    if path is None or not Path(path).is_file():
        return None
    return pd.read_csv(
        path,
        sep="\t",
        dtype={"subject": str, "session": str},
        na_values="n/a",
        keep_default_na=False,
    )


def read_diagnostics_table(path: str | Path) -> pd.DataFrame:
    """A NORDIC diagnostics table (one row per session and echo handling)."""
    return pd.read_csv(path, sep="\t", na_values=["n/a"], dtype={"subject": str, "session": str})


__all__ = [
    "BOOTSTRAP_COLUMNS",
    "read_bootstrap_table",
    "read_comparison_table",
    "read_diagnostics_table",
    "write_tsv",
]
