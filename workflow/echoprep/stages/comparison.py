"""The 2×3 preprocessing comparison: NORDIC {off, on} × {single echo, optcom, ICA-denoised}.

For every comparison session (config ``comparison.sessions``, default the first session of each
subject) and every variant ``<nordic>-<combine>``, from the session's noise-ceiling map:

- ``median_nc``: median NC (%) over the subject's visually responsive ROI (the same mask for all
  variants, ``echoprep.stages.rois``);
- ``dprime``: ``(mean NC in ROI − mean NC outside) / pooled SD``, outside = the subject's brain
  mask minus the ROI (:func:`echoprep.kernels.noiseceiling.d_prime`);
- ``gain``: ``100 (median_nc / median_nc of raw-single − 1)``, % over the baseline of the same
  subject and session (NaN when the baseline is not among the variants).

Variants are ranked by the group mean of the ranking metric (config ``comparison.rank_by``,
default ``median_nc``) over the subject-sessions; ties keep the canonical variant order. The
winner, its margins over the runner-up and over the baseline, the per-variant group statistics
and the whole ranking go to ``recommended_variant.json``; nothing is assumed about the order.
Outputs in ``<out>/comparison/``::

    task-<T>_desc-variants_comparison.tsv   subject, session, variant, nordic, combine, voxels,
                                            median_nc, mean_nc, dprime, gain
    task-<T>_desc-variants_comparison.png   subject dots, group mean ± SEM per variant
    task-<T>_desc-variants_comparison.svg   the same figure as vectors
    recommended_variant.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echoprep.io.images import StageInputError, load_image
from echoprep.io.paths import bids_name
from echoprep.io.sidecars import (
    software_versions,
    write_dataset_description,
    write_json,
    write_sidecar,
)
from echoprep.kernels.noiseceiling import d_prime
from echoprep.stages.arguments import key_paths

log = logging.getLogger(__name__)

#: The six variants in canonical order (NORDIC off first, then echo handling).
VARIANTS: tuple[str, ...] = tuple(
    f"{n}-{c}" for n in ("raw", "nordic") for c in ("single", "optcom", "denoised")
)
#: The baseline every gain is relative to.
BASELINE = "raw-single"
#: Metrics a ranking can use (group mean, larger is better).
RANK_METRICS = ("median_nc", "dprime", "gain")
#: Human-readable names of the variants.
VARIANT_NAMES: dict[str, str] = {
    "raw-single": "single echo",
    "raw-optcom": "optcom",
    "raw-denoised": "ICA-denoised",
    "nordic-single": "NORDIC + single echo",
    "nordic-optcom": "NORDIC + optcom",
    "nordic-denoised": "NORDIC + ICA-denoised",
}
TABLE_COLUMNS = (
    "subject",
    "session",
    "variant",
    "nordic",
    "combine",
    "voxels",
    "median_nc",
    "mean_nc",
    "dprime",
    "gain",
)


def output_paths(root: str | Path, task: str) -> dict[str, Path]:
    """Paths of the comparison outputs (``tsv``, ``png``, ``svg``, ``json``) under ``root``."""
    root = Path(root)
    ents = {"task": task, "desc": "variants"}
    return {
        "tsv": root / bids_name(ents, "comparison", ".tsv"),
        "png": root / bids_name(ents, "comparison", ".png"),
        "svg": root / bids_name(ents, "comparison", ".svg"),
        "json": root / "recommended_variant.json",
    }


@dataclass(frozen=True)
class Entry:
    """One noise-ceiling map in the comparison.

    Attributes
    ----------
    subject, session, variant
        Labels (session None when the dataset has no sessions).
    nc
        The session's noise-ceiling map (%).
    roi
        The subject's visually responsive ROI mask.
    brain
        The subject's brain mask on the same grid (outside = brain − ROI).
    """

    subject: str
    session: str | None
    variant: str
    nc: Path
    roi: Path
    brain: Path


def variant_metrics(nc: np.ndarray, roi: np.ndarray, brain: np.ndarray) -> dict[str, float | int]:
    """Voxels, median and mean NC in the ROI and d′ against the rest of the brain.

    Parameters
    ----------
    nc
        NC map (%), any shape.
    roi, brain
        Boolean masks of ``nc``'s shape; ``outside = brain & ~roi``.

    Returns
    -------
    dict
        ``voxels``, ``median_nc``, ``mean_nc``, ``dprime``.
    """
    nc = np.asarray(nc, np.float64)
    roi = np.asarray(roi, bool)
    brain = np.asarray(brain, bool)
    vals = nc[roi]
    return {
        "voxels": int(vals.size),
        "median_nc": float(np.median(vals)) if vals.size else math.nan,
        "mean_nc": float(np.mean(vals)) if vals.size else math.nan,
        "dprime": d_prime(nc, roi, brain & ~roi),
    }


def _load_mask(path: Path, like: Any, what: str) -> np.ndarray:
    img = load_image(path, what)
    if tuple(img.shape[:3]) != tuple(like.shape[:3]) or not np.allclose(
        img.affine, like.affine, atol=1e-4
    ):
        raise StageInputError(
            f"{path}: expected a {what} on the grid of the noise-ceiling maps "
            f"({like.shape[:3]}); found {img.shape[:3]} or another affine. Fix: all variants "
            "must share the subject's functional grid (rerun the ROI rules)."
        )
    return np.asanyarray(img.dataobj).reshape(like.shape[:3]) > 0


def comparison_table(entries: Sequence[Entry]) -> pd.DataFrame:
    """One row per entry with the metrics and the gain over the baseline (see module doc).

    Raises
    ------
    StageInputError
        An empty ROI, masks on another grid, a duplicate (subject, session, variant).
    """
    rows = []
    seen: set[tuple[str, str | None, str]] = set()
    for e in entries:
        key = (e.subject, e.session, e.variant)
        if key in seen:
            raise StageInputError(f"comparison: {key} given twice")
        seen.add(key)
        img = load_image(e.nc, "noise-ceiling map")
        nc = np.asarray(img.dataobj, np.float64).reshape(img.shape[:3])
        roi = _load_mask(e.roi, img, "ROI mask")
        brain = _load_mask(e.brain, img, "brain mask")
        if not roi.any():
            raise StageInputError(
                f"{e.roi}: expected a non-empty visually responsive ROI; found 0 voxels. Fix: "
                "lower rois.visual.threshold."
            )
        nordic, combine = e.variant.split("-", 1)
        rows.append(
            {
                "subject": e.subject,
                "session": e.session if e.session is not None else "n/a",
                "variant": e.variant,
                "nordic": nordic,
                "combine": combine,
                **variant_metrics(nc, roi, brain),
            }
        )
    table = pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS if c != "gain"])
    base = table[table["variant"] == BASELINE].set_index(["subject", "session"])["median_nc"]
    ref = [
        base.get((s, ss), math.nan)
        for s, ss in zip(table["subject"], table["session"], strict=True)
    ]
    with np.errstate(divide="ignore", invalid="ignore"):
        table["gain"] = 100.0 * (table["median_nc"].to_numpy() / np.asarray(ref, float) - 1.0)
    order = {v: i for i, v in enumerate(VARIANTS)}
    table["_o"] = table["variant"].map(order)
    return table.sort_values(["subject", "session", "_o"]).drop(columns="_o").reset_index(drop=True)


def _sem(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else math.nan


def group_statistics(table: pd.DataFrame) -> pd.DataFrame:
    """Per variant (canonical order): n, mean and SEM of median_nc, dprime, gain; min gain and
    the number of subject-sessions below the baseline."""
    out = []
    for v in [v for v in VARIANTS if v in set(table["variant"])]:
        sub = table[table["variant"] == v]
        row: dict[str, Any] = {"variant": v, "n": len(sub)}
        for m in RANK_METRICS:
            vals = sub[m].to_numpy(float)
            row[f"{m}_mean"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
            row[f"{m}_sem"] = _sem(vals)
        gains = sub["gain"].to_numpy(float)
        row["gain_min"] = float(np.nanmin(gains)) if np.isfinite(gains).any() else math.nan
        row["below_baseline"] = int((gains < 0).sum())
        out.append(row)
    return pd.DataFrame(out)


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def recommend(table: pd.DataFrame, rank_by: str = "median_nc") -> dict[str, Any]:
    """Rank the variants by the group mean of ``rank_by`` and describe the winner's margins.

    Returns
    -------
    dict
        ``variant`` (the winner), ``rank_by``, ``ranking`` (variants, best first, with their
        group statistics), ``margin_over_runner_up`` and ``margin_over_baseline`` (difference of
        the group means of ``rank_by``, and for NC also the relative difference in %), and the
        subject-sessions where the winner is below the baseline.

    Raises
    ------
    ValueError
        Unknown metric, or no variant with a finite value.
    """
    if rank_by not in RANK_METRICS:
        raise ValueError(f"comparison: rank_by must be one of {RANK_METRICS}; got {rank_by!r}")
    stats = group_statistics(table)
    key = f"{rank_by}_mean"
    finite = stats[np.isfinite(stats[key].to_numpy(float))]
    if finite.empty:
        raise ValueError(
            f"comparison: no variant has a finite {rank_by}; check the noise-ceiling maps and "
            "the ROI (and, for gain, that raw-single is among the variants)"
        )
    order = {v: i for i, v in enumerate(VARIANTS)}
    ranked = finite.assign(_o=finite["variant"].map(order)).sort_values(
        [key, "_o"], ascending=[False, True], kind="mergesort"
    )
    ranking = [
        {k: _clean(v) for k, v in row.items() if k != "_o"}
        for row in ranked.to_dict(orient="records")
    ]
    best = ranking[0]

    def margin(other: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if other is None:
            return None
        diff = best[key] - other[key]
        out: dict[str, Any] = {"variant": other["variant"], "difference": diff}
        if rank_by == "median_nc" and other[key]:
            out["relative_percent"] = 100.0 * diff / other[key]
        return out

    base = next((r for r in ranking if r["variant"] == BASELINE), None)
    winner_rows = table[table["variant"] == best["variant"]]
    below = winner_rows[winner_rows["gain"].to_numpy(float) < 0]
    return {
        "variant": best["variant"],
        "name": VARIANT_NAMES.get(best["variant"], best["variant"]),
        "rank_by": rank_by,
        "baseline": BASELINE,
        "margin_over_runner_up": margin(ranking[1] if len(ranking) > 1 else None),
        "margin_over_baseline": None if best["variant"] == BASELINE else margin(base),
        "winner_below_baseline": [
            {"subject": s, "session": ss, "gain": g}
            for s, ss, g in zip(below["subject"], below["session"], below["gain"], strict=True)
        ],
        "ranking": ranking,
        "subject_sessions": int(table[["subject", "session"]].drop_duplicates().shape[0]),
    }


def plot_comparison(
    table: pd.DataFrame, png: str | Path | None = None, svg: str | Path | None = None
):
    """Figure: per variant, subject dots and the group mean ± SEM of median NC and d′.

    Returns the matplotlib figure (closed after saving when paths are given).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [v for v in VARIANTS if v in set(table["variant"])]
    subjects = sorted(set(zip(table["subject"], table["session"], strict=True)))
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, metric, ylabel in (
        (axes[0], "median_nc", "median NC in visual ROI (%)"),
        (axes[1], "dprime", "d′ (NC, ROI vs rest of brain)"),
    ):
        for i, v in enumerate(variants):
            sub = table[table["variant"] == v]
            vals = sub[metric].to_numpy(float)
            mean = np.nanmean(vals) if np.isfinite(vals).any() else np.nan
            colour = "#c44e52" if v.startswith("nordic") else "#4c72b0"
            ax.bar(i, mean, width=0.6, color=colour, alpha=0.35, edgecolor=colour)
            ax.errorbar(i, mean, yerr=_sem(vals), color="k", capsize=4, lw=1.2)
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
        axes[0].legend(fontsize=7, loc="upper left", frameon=False)
    fig.suptitle("Preprocessing variants: bars = group mean ± SEM, dots = subjects")
    if png is not None:
        fig.savefig(png, dpi=120)
    if svg is not None:
        # reproducible SVG: no date, element ids from a fixed salt (else a random one per run)
        with matplotlib.rc_context({"svg.hashsalt": "echoprep"}):
            fig.savefig(svg, metadata={"Date": None})
    if png is not None or svg is not None:
        plt.close(fig)
    return fig


def run_comparison(
    entries: Sequence[Entry],
    outputs: Mapping[str, str | Path],
    *,
    rank_by: str = "median_nc",
) -> dict[str, Any]:
    """Compute the table, figure and recommendation and write them.

    Parameters
    ----------
    entries
        One per (subject, session, variant).
    outputs
        Keys of :func:`output_paths` (``tsv``, ``png``, ``svg``, ``json``) to paths.
    rank_by
        Ranking metric (:data:`RANK_METRICS`).

    Returns
    -------
    dict
        The recommendation written to ``json``.
    """
    if not entries:
        raise StageInputError("comparison: no noise-ceiling maps given")
    table = comparison_table(entries)
    tsv = Path(outputs["tsv"])
    tsv.parent.mkdir(parents=True, exist_ok=True)
    tmp = tsv.with_name(f".{tsv.name}.tmp")
    table.to_csv(tmp, sep="\t", index=False, na_rep="n/a", float_format="%.4f")
    tmp.replace(tsv)
    parameters = {
        "RankBy": rank_by,
        "Baseline": BASELINE,
        "Entries": [
            {"subject": e.subject, "session": e.session, "variant": e.variant} for e in entries
        ],
    }
    write_sidecar(
        tsv,
        sources=sorted({str(p) for e in entries for p in (e.nc, e.roi, e.brain)}),
        parameters=parameters,
        software=["matplotlib"],
        extra={
            "Description": "2x3 preprocessing comparison: one row per subject, session and variant",
            "voxels": {"Description": "voxels in the visually responsive ROI"},
            "median_nc": {"Description": "median noise ceiling in the ROI", "Units": "%"},
            "mean_nc": {"Description": "mean noise ceiling in the ROI", "Units": "%"},
            "dprime": {
                "Description": "(mean NC in ROI - mean NC in the rest of the brain mask) / "
                "pooled SD (ddof=1)"
            },
            "gain": {
                "Description": f"median_nc relative to {BASELINE} of the same session",
                "Units": "%",
            },
        },
    )
    if "png" in outputs or "svg" in outputs:
        for key in ("png", "svg"):
            if key in outputs:
                Path(outputs[key]).parent.mkdir(parents=True, exist_ok=True)
        plot_comparison(table, outputs.get("png"), outputs.get("svg"))
    rec = recommend(table, rank_by)
    rec["SoftwareVersions"] = software_versions(["matplotlib"])
    rec["Sources"] = [str(tsv)]
    rec["Parameters"] = parameters
    write_json(outputs["json"], rec)
    log.info(
        "comparison: %s ranked first by %s (%s)",
        rec["variant"],
        rank_by,
        ", ".join(f"{r['variant']} {r[f'{rank_by}_mean']:.2f}" for r in rec["ranking"]),
    )
    return rec


def write_description(root: str | Path, *, config: Mapping[str, Any], source: str | Path) -> Path:
    """``dataset_description.json`` (and ``.bidsignore``) of the ``comparison`` folder."""
    return write_dataset_description(
        root,
        "echoprep preprocessing comparison",
        description="NORDIC off/on x single echo/optcom/ICA-denoised: median noise ceiling in "
        "the visually responsive ROI and d', with the recommended variant",
        config=config,
        source_datasets=[str(source)],
        bidsignore=["*_comparison.*", "recommended_variant.json"],
    )


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep comparison`` arguments to a sub-command parser."""
    parser.add_argument(
        "--entry",
        nargs=6,
        action="append",
        required=True,
        metavar=("SUBJECT", "SESSION", "VARIANT", "NC", "ROI", "BRAIN"),
        help="one noise-ceiling map with the subject's ROI and brain mask (session 'n/a' for "
        "none); repeat for every subject, session and variant",
    )
    parser.add_argument("--rank-by", choices=RANK_METRICS, default="median_nc")
    parser.add_argument(
        "--out",
        nargs="+",
        required=True,
        metavar="KEY=PATH",
        help="output paths: tsv=..., png=..., svg=..., json=...",
    )
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`run_comparison` from parsed arguments; exit status 0."""
    outputs = key_paths(args.out, form="tsv|png|svg|json=PATH", keys=("tsv", "png", "svg", "json"))
    if "tsv" not in outputs or "json" not in outputs:
        raise SystemExit("--out needs tsv=... and json=...")
    entries = [
        Entry(sub, None if ses == "n/a" else ses, var, Path(nc), Path(roi), Path(brain))
        for sub, ses, var, nc, roi, brain in args.entry
    ]
    for e in entries:
        if e.variant not in VARIANTS:
            raise SystemExit(f"--entry: unknown variant {e.variant!r}; expected one of {VARIANTS}")
    run_comparison(entries, outputs, rank_by=args.rank_by)
    return 0


def read_recommendation(path: str | Path) -> dict[str, Any]:
    """The content of a ``recommended_variant.json``."""
    return json.loads(Path(path).read_text())


__all__ = [
    "BASELINE",
    "RANK_METRICS",
    "VARIANTS",
    "Entry",
    "add_arguments",
    "comparison_table",
    "group_statistics",
    "output_paths",
    "plot_comparison",
    "read_recommendation",
    "recommend",
    "run_comparison",
    "run_from_args",
    "variant_metrics",
    "write_description",
]
