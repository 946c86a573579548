"""The 2×3 preprocessing comparison: NORDIC {off, on} × {single echo, optcom, ICA-denoised}.

Two steps. Per subject (``echoprep comparison subject``), for every comparison session and
variant ``<nordic>-<combine>``:

- ``median_nc``, ``mean_nc``: the noise ceiling (%) over the subject's visually responsive ROI,
  as LAION-fMRI reported it, restricted to the voxels every variant of the session fitted (the
  intersection of the GLM fit masks): no voxel enters a statistic as a fake 0;
- ``dprime``: ``(mean NC in ROI − mean NC outside) / pooled SD``, outside = the fitted brain
  voxels minus the ROI (:func:`echoprep.kernels.noiseceiling.d_prime`);
- ``gain``: ``100 (median_nc / median_nc of raw-single − 1)``, % over the baseline;
- ``heldout_r``: the held-out fidelity (:mod:`echoprep.kernels.fidelity`): each half of the
  runs fitted apart (``glm_heldout`` jobs, :mod:`echoprep.stages.glm.heldout`), the variant's
  half-A image means against a reference variant's half-B image means and vice versa,
  normalised by the spread of both all-repeat image means; the median over the ROI, averaged
  over ``comparison.splits`` splits of the runs, and over the variant's references: every
  OTHER variant of the session (never itself: its own halves would count its image-locked
  errors as signal). Proportional to the correlation of the variant's all-repeat image means
  with the true image means (``docs/comparison.md``);
- ``heldout_truth``: ``heldout_r`` divided by ``reference_reliability``, the mean of the
  references' own all-repeat fidelities estimated from their halves: on the scale of a
  correlation with the truth;
- ``heldout_trial_r``, ``heldout_trial_truth``: the same for single trials: proportional to
  the correlation of the single-trial betas with the true image responses (for analyses of
  single trials rather than of repeat-averaged responses);
- ``splithalf_r``: the variant's own split-half reliability (its half-A against its half-B
  image means; a repeat-agreement measure like NC, for contrast);
- ``edge_nc80``: the share of fitted brain-edge voxels with NC > 80 % (a sign of voxels without
  valid data in some run).

Per group (``echoprep comparison group``): the subject tables are joined, the variants ranked
by the group mean of ``comparison.rank_by`` (default ``heldout_r``), and the winner, its
margins (with image-bootstrap standard errors for ``heldout_r``), the variant NC alone would
pick, a plain-words paragraph where the two disagree, and warnings on implausible maps and
margins go to ``recommended_variant.json``. Outputs::

    comparison/sub-<S>/sub-<S>_task-<T>_desc-variants_comparison.tsv    one row per session, variant
    comparison/sub-<S>/sub-<S>_task-<T>_desc-bootstrap_comparison.tsv   variant x reference pairs
    comparison/task-<T>_desc-variants_comparison.{tsv,png,svg}          all subjects, figure
    comparison/recommended_variant.json
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

from echoprep.io.arguments import ENTRY_KEYS, entry_words, key_paths
from echoprep.io.images import StageInputError, check_same_grid, load_image, load_mask_on_grid
from echoprep.io.outputs import stage_outputs
from echoprep.io.sidecars import (
    software_versions,
    write_json,
    write_sidecar,
)
from echoprep.io.tables import BOOTSTRAP_COLUMNS, write_tsv
from echoprep.io.tables import read_bootstrap_table as read_bootstrap
from echoprep.io.tables import read_bootstrap_table as read_planted
from echoprep.io.tables import read_comparison_table as read_table
from echoprep.kernels.comparison import (
    edge_share,
    fitted_voxels,
    gains,
    ordered,
    variant_metrics,
)
from echoprep.kernels.planted_fidelity import SMOOTHING_MM
from echoprep.kernels.ranking import (
    BASELINE,
    DEFAULT_RULE,
    EDGE_NC,
    MEASURES,
    RANK_METRICS,
    REFERENCE_RULE,
    TABLE_COLUMNS,
    VALIDATED,
    VARIANTS,
    group_statistics,
    implausibility_warnings,
    recommend,
)
from echoprep.options import parse_options, section_schema
from echoprep.report.comparison import plot_comparison
from echoprep.stages.comparison.fidelity import GRID_ATOL, SessionFidelity, session_fidelity
from echoprep.stages.comparison.planted import (
    PLANTED_COLUMNS,
    TRANSFER_COLUMNS,
    session_planted,
)
from echoprep.variants import Variant

log = logging.getLogger(__name__)

#: The group step's outputs (``tsv``, ``png``, ``svg``, ``json``: registry ``comparison.<key>``;
#: ``echoprep.io.outputs.paths_in(root, "comparison", group_key(task), keys=GROUP_OUTPUTS)``).
GROUP_OUTPUTS = tuple(k for k, o in stage_outputs("comparison").items() if o.level == "group")


@dataclass(frozen=True)
class ComparisonOptions:
    """The ``comparison:`` config section (defaults and allowed values: the config schema).
    ``bootstrap`` is used by the subject step, ``rank_by`` by the group step; ``sessions``
    chooses the workflow's inputs; ``reference`` is no longer used (kept so that configs of
    earlier versions validate)."""

    sessions: tuple[str, ...]
    rank_by: str
    bootstrap: int
    reference: str | None
    splits: int
    planted: Mapping[str, Any]


def stage_options(
    given: ComparisonOptions | Mapping[str, Any] | None, source: str = "options"
) -> ComparisonOptions:
    """The options from (part of) the ``comparison:`` section: missing keys take the schema
    default; unknown keys and values the schema refuses raise
    :class:`echoprep.options.OptionsError`."""
    return parse_options(ComparisonOptions, "comparison", given, source=source)


def planted_options(options: ComparisonOptions) -> dict[str, Any]:
    """The ``comparison.planted`` settings with the schema's defaults filled in."""
    schema = section_schema("comparison")["properties"]["planted"]["properties"]
    return {k: options.planted.get(k, v.get("default")) for k, v in schema.items()}


@dataclass(frozen=True)
class Entry:
    """One variant of one subject's session in the comparison.

    Attributes
    ----------
    subject, session, variant
        Labels (session None when the dataset has no sessions).
    nc
        The session's noise-ceiling map (%).
    roi
        The subject's visually responsive ROI mask.
    brain
        The subject's brain mask on the same grid.
    mask
        The variant's GLM fit mask (voxels with valid data in every run); None: the brain mask.
    betas, trials
        The variant's single-trial betas (4D, the fit on all runs) and their trials table.
    heldout, heldout_volumes
        The variant's held-out image means (each half of the runs fitted apart) and their
        volume table; None: no held-out fidelity for this entry.
    planted_design, planted, planted_typeb
        The session's planted design, the variant's planted betas and (for the reference
        variant) its planted type-B betas; None: no planted measures for this entry.
    """

    subject: str
    session: str | None
    variant: str
    nc: Path
    roi: Path
    brain: Path
    mask: Path | None = None
    betas: Path | None = None
    trials: Path | None = None
    heldout: Path | None = None
    heldout_volumes: Path | None = None
    planted_design: Path | None = None
    planted: Path | None = None
    planted_typeb: Path | None = None


def _load_mask(path: Path, like: Any, what: str, like_path: Path) -> np.ndarray:
    """A mask (> 0) on the grid of the noise-ceiling map ``like`` (file ``like_path``)."""
    fix = "Fix: all variants must share the subject's functional grid (rerun the ROI rules)."
    return load_mask_on_grid(path, like, like_path=like_path, what=what, fix=fix, atol=GRID_ATOL)


def comparison_table(
    entries: Sequence[Entry],
    *,
    n_boot: int = 0,
    seed: int = 0,
    smoothing_mm: float = SMOOTHING_MM,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One row per entry with the measures of the module doc, and the bootstrap replicates.

    Parameters
    ----------
    entries
        The variants of one or more subject-sessions.
    n_boot
        Image-bootstrap replicates of ``heldout_r`` (0: none).
    seed
        Seed of the bootstrap (the same replicates for every variant of a session).

    Returns
    -------
    table
        Columns :data:`TABLE_COLUMNS`, canonical order.
    bootstrap
        Columns :data:`echoprep.io.tables.BOOTSTRAP_COLUMNS`: every variant against every
        reference, replicate 0 the estimate
        (:func:`echoprep.stages.comparison.fidelity.pair_rows`).
    planted, transfer
        The planted measures' replicates (:data:`.planted.PLANTED_COLUMNS`, replicate 0 the
        estimate) and the binned planted-against-recovered curves
        (:data:`.planted.TRANSFER_COLUMNS`) of the planted sessions.

    Raises
    ------
    StageInputError
        An empty ROI (inside the fitted voxels), masks on another grid, a duplicate
        (subject, session, variant), betas that do not match their trials.
    """
    seen: set[tuple[str, str | None, str]] = set()
    groups: dict[tuple[str, str | None], list[Entry]] = {}
    for e in entries:
        key = (e.subject, e.session, e.variant)
        if key in seen:
            raise StageInputError(f"comparison: {key} given twice")
        seen.add(key)
        groups.setdefault((e.subject, e.session), []).append(e)
    rows, boots, planted_rows, transfer_rows = [], [], [], []
    for (subject, session), group in groups.items():
        first = group[0]
        like = load_image(first.nc, "noise-ceiling map")
        maps, fits = {}, []
        for e in group:
            img = load_image(e.nc, "noise-ceiling map")
            check_same_grid(
                img,
                like,
                path=e.nc,
                ref_path=first.nc,
                what="noise-ceiling map",
                fix="Fix: all variants must share the subject's functional grid.",
                atol=GRID_ATOL,
            )
            maps[e.variant] = np.asarray(img.dataobj, np.float64).reshape(img.shape[:3])
            fits.append(_load_mask(e.mask or e.brain, like, "GLM fit mask", first.nc))
        valid = fitted_voxels(fits)
        brain = _load_mask(first.brain, like, "brain mask", first.nc) & valid
        roi_mask = _load_mask(first.roi, like, "ROI mask", first.nc)
        roi = roi_mask & brain
        if not roi.any():
            raise StageInputError(
                f"{first.roi}: expected a visually responsive ROI with voxels that every variant "
                f"fitted; found 0 (ROI {int(roi_mask.sum())} voxels, fitted by all variants "
                f"{int(valid.sum())}). Fix: check the GLM fit masks and lower "
                "rois.visual.threshold."
            )
        fidelity, pairs = session_fidelity(group, roi, like, n_boot=n_boot, seed=seed)
        boots.extend(pairs)
        planted = session_planted(
            group,
            roi,
            like,
            subject=subject,
            session=session if session is not None else "n/a",
            n_boot=n_boot,
            seed=seed,
            smoothing_mm=smoothing_mm,
        )
        planted_rows.extend(planted.replicates)
        transfer_rows.extend(planted.transfer)
        nan = math.nan
        none = SessionFidelity(nan, nan, nan, nan, nan, nan, ())
        for e in group:
            nordic, combine = Variant(e.variant).parts()
            fid = fidelity.get(e.variant, none)
            rows.append(
                {
                    "subject": subject,
                    "session": session if session is not None else "n/a",
                    "variant": e.variant,
                    "nordic": nordic,
                    "combine": combine,
                    **variant_metrics(maps[e.variant], roi, brain),
                    **planted.by_variant.get(
                        e.variant,
                        {"planted_r": nan, "planted_trial_r": nan, "planted_gain": nan},
                    ),
                    "planted_source": planted.source,
                    "heldout_r": fid.heldout_r,
                    "heldout_truth": fid.heldout_truth,
                    "heldout_trial_r": fid.trial_r,
                    "heldout_trial_truth": fid.trial_truth,
                    "reference_reliability": fid.reliability,
                    "reference": ",".join(fid.references) or None,
                    "splithalf_r": fid.splithalf_r,
                    "edge_nc80": edge_share(maps[e.variant], brain),
                }
            )
    columns = [c for c in TABLE_COLUMNS if c != "gain"]
    table = pd.DataFrame(rows, columns=columns)
    table.insert(columns.index("dprime") + 1, "gain", gains(table))
    bootstrap = pd.DataFrame(boots, columns=list(BOOTSTRAP_COLUMNS))
    return (
        ordered(table),
        bootstrap,
        pd.DataFrame(planted_rows, columns=list(PLANTED_COLUMNS)),
        pd.DataFrame(transfer_rows, columns=list(TRANSFER_COLUMNS)),
    )


def _fmt(value: Any) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _column_descriptions() -> dict[str, Any]:
    out: dict[str, Any] = {
        "voxels": {"Description": "ROI voxels fitted by every variant of the session"},
        "mean_nc": {"Description": "mean noise ceiling in the ROI", "Units": "%"},
        "edge_nc80": {
            "Description": f"share of the fitted brain-edge voxels with NC > {EDGE_NC:.0f} %"
        },
        "reference": {
            "Description": "the variants whose half fits are this variant's references in the "
            "held-out measures (comma-separated): every other variant of the session, never "
            "the variant itself; n/a where the session has no held-out measures"
        },
        "planted_source": {
            "Description": "where the session's planted responses came from (the planted "
            "design's source; it sets the bias bound of a NORDIC-off variant's lead over a "
            "NORDIC variant); n/a where nothing was planted",
            "Levels": {
                "other_sessions": "the images' mean responses in the subject's other "
                "comparison sessions",
                "other_runs": "the images' later presentations in the session's other runs",
                "session": "the session's own half A (odd-numbered presentations)",
            },
        },
    }
    for key, m in MEASURES.items():
        out[key] = {"Description": m["description"]}
        if key in ("median_nc", "gain"):
            out[key]["Units"] = "%"
    return out


def run_subject_comparison(
    entries: Sequence[Entry],
    outputs: Mapping[str, str | Path],
    *,
    options: ComparisonOptions | Mapping[str, Any] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Compute one subject's comparison table (and bootstrap replicates) and write them.

    Parameters
    ----------
    entries
        Every variant of the subject's comparison sessions.
    outputs
        ``tsv`` and ``bootstrap`` paths (registry outputs ``comparison.subject_table`` and
        ``comparison.subject_bootstrap``).
    options
        The ``comparison:`` config section (``bootstrap``: image-bootstrap replicates of the
        held-out fidelity).
    seed
        Seed of the bootstrap.
    """
    opts = stage_options(options)
    n_boot = opts.bootstrap
    if not entries:
        raise StageInputError("comparison: no noise-ceiling maps given")
    table, boot, planted, transfer = comparison_table(
        entries,
        n_boot=n_boot,
        seed=seed,
        smoothing_mm=float(planted_options(opts)["smoothing_mm"]),
    )
    sources = sorted(
        {
            str(p)
            for e in entries
            for p in (
                e.nc,
                e.roi,
                e.brain,
                e.mask,
                e.betas,
                e.trials,
                e.heldout,
                e.planted_design,
                e.planted,
                e.planted_typeb,
            )
            if p is not None
        }
    )
    parameters = {
        "Bootstrap": n_boot,
        "Seed": seed,
        "Entries": [
            {"subject": e.subject, "session": e.session, "variant": e.variant} for e in entries
        ],
        "Reference": REFERENCE_RULE,
        "Splits": opts.splits,
    }
    tsv = write_tsv(table, outputs["tsv"])
    write_sidecar(
        tsv,
        sources=sources,
        parameters=parameters,
        extra={
            "Description": "2x3 preprocessing comparison of one subject: one row per session "
            "and variant",
            **_column_descriptions(),
        },
    )
    if "bootstrap" in outputs:
        path = write_tsv(boot, outputs["bootstrap"])
        write_sidecar(
            path,
            sources=[str(tsv)],
            parameters=parameters,
            extra={
                "Description": "the held-out fidelity of every variant against every reference "
                "variant of each session: replicate 0 is the estimate on the images as "
                "sampled, 1..B image-bootstrap replicates (the same resampled images for every "
                "pair of a session); a row whose reference is the variant itself is its own "
                "halves' agreement, used only for a comparison of two variants",
            },
        )
    for key, frame, text in (
        (
            "planted",
            planted,
            "the fidelity of every variant to the responses planted into each session's echoes "
            "(planted_r: repeat averages, planted_trial_r: single trials; estimates of the "
            "correlation with the true image responses): replicate 0 is the estimate, 1..B "
            "image-bootstrap replicates (the same resampled images for every variant)",
        ),
        (
            "transfer",
            transfer,
            "planted against recovered image responses per variant: the planted truth and "
            "what the variant's betas carry of the planted responses, each standardised per "
            "voxel of the ROI, averaged in quantile bins of the truth (slope 1: nothing lost)",
        ),
    ):
        if key in outputs:
            path = write_tsv(frame, outputs[key])
            write_sidecar(
                path, sources=[str(tsv)], parameters=parameters, extra={"Description": text}
            )
    return table


def run_comparison(
    tables: Sequence[str | Path],
    outputs: Mapping[str, str | Path],
    *,
    options: ComparisonOptions | Mapping[str, Any] | None = None,
    bootstraps: Sequence[str | Path] = (),
    planted: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Join the subject tables, rank, recommend and write the group outputs.

    Parameters
    ----------
    tables, bootstraps
        The subjects' comparison and bootstrap tables (:func:`run_subject_comparison`).
    outputs
        Keys of :data:`GROUP_OUTPUTS` (``tsv``, ``png``, ``svg``, ``json``) to paths.
    options
        The ``comparison:`` config section (``rank_by``: the ranking metric,
        :data:`RANK_METRICS`).

    Returns
    -------
    dict
        The recommendation written to ``json``.
    """
    rank_by = stage_options(options).rank_by
    if not tables:
        raise StageInputError("comparison: no subject tables given")
    table = ordered(pd.concat([read_table(t) for t in tables], ignore_index=True))
    boots = [b for b in (read_bootstrap(p) for p in bootstraps) if b is not None]
    boot = pd.concat(boots, ignore_index=True) if boots else None
    planted_frames = [f for f in (read_planted(p) for p in planted) if f is not None]
    planted_boot = pd.concat(planted_frames, ignore_index=True) if planted_frames else None
    tsv = write_tsv(table, outputs["tsv"])
    has_heldout = "reference" in table and table["reference"].notna().any()
    parameters: dict[str, Any] = {"RankBy": rank_by, "Baseline": BASELINE}
    if has_heldout:
        parameters["Reference"] = REFERENCE_RULE
    write_sidecar(
        tsv,
        sources=[str(t) for t in tables],
        parameters=parameters,
        software=["matplotlib"],
        extra={
            "Description": "2x3 preprocessing comparison: one row per subject, session and variant",
            **_column_descriptions(),
        },
    )
    if "png" in outputs or "svg" in outputs:
        plot_comparison(table, outputs.get("png"), outputs.get("svg"))
    rec = recommend(table, rank_by, boot, planted_boot)
    rec["SoftwareVersions"] = software_versions(["matplotlib"])
    rec["Sources"] = [str(tsv)]
    rec["Parameters"] = parameters
    write_json(outputs["json"], rec)
    metric = f"{rec['rank_by']}_mean"
    log.info(
        "comparison: %s ranked first by %s (%s)",
        rec["variant"],
        rec["rank_by"],
        ", ".join(f"{r['variant']} {_fmt(r[metric])}" for r in rec["ranking"]),
    )
    for line in [rec["disagreement"], *rec["warnings"]]:
        if line:
            log.warning("comparison: %s", line)
    return rec


# ---------------------------------------------------------------------------------------------
# command line

_REQUIRED = ("subject", "session", "variant", "nc", "roi", "brain")


def parse_entry(words: Sequence[str]) -> Entry:
    """An :class:`Entry` from ``key=value`` words (:data:`ENTRY_KEYS`; session ``n/a`` for
    none).

    Raises
    ------
    SystemExit
        A malformed word, an unknown or missing key, an unknown variant.
    """
    values: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or key not in ENTRY_KEYS or not value:
            raise SystemExit(
                f"--entry expects KEY=VALUE words with KEY in {', '.join(ENTRY_KEYS)}; got {word!r}"
            )
        values[key] = value
    missing = [k for k in _REQUIRED if k not in values]
    if missing:
        raise SystemExit(f"--entry: missing {', '.join(missing)} in {' '.join(words)!r}")
    if values["variant"] not in VARIANTS:
        raise SystemExit(
            f"--entry: unknown variant {values['variant']!r}; expected one of {VARIANTS}"
        )
    paths = {k: Path(v) for k, v in values.items() if k not in ("subject", "session", "variant")}
    return Entry(
        values["subject"],
        None if values["session"] == "n/a" else values["session"],
        values["variant"],
        **paths,
    )


def _options_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--options-json",
        default=None,
        help="the comparison: config section as JSON (missing keys: schema defaults)",
    )


def _given_options(args: argparse.Namespace) -> ComparisonOptions:
    given = json.loads(args.options_json) if args.options_json else {}
    return stage_options(given, source="--options-json")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep comparison {subject,group}`` arguments to a sub-command parser."""
    sub = parser.add_subparsers(dest="comparison_command", required=True)
    s = sub.add_parser("subject", help="one subject's comparison table")
    s.add_argument(
        "--entry",
        nargs="+",
        action="append",
        required=True,
        metavar="KEY=VALUE",
        help="one variant of one session: "
        + " ".join(f"{k}=..." for k in ENTRY_KEYS)
        + " (mask, betas, trials, heldout, heldout_volumes optional); repeat per variant",
    )
    _options_argument(s)
    s.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    s.add_argument(
        "--out",
        nargs="+",
        required=True,
        metavar="KEY=PATH",
        help="output paths: tsv=..., bootstrap=..., planted=..., transfer=...",
    )
    g = sub.add_parser("group", help="join subject tables, rank and recommend")
    g.add_argument("--table", nargs="+", required=True, help="subject comparison tables")
    g.add_argument("--bootstrap-table", nargs="*", default=[], help="subject bootstrap tables")
    g.add_argument("--planted-table", nargs="*", default=[], help="subject planted tables")
    g.add_argument(
        "--transfer-table", nargs="*", default=[], help="subject transfer tables (not read)"
    )
    _options_argument(g)
    g.add_argument(
        "--out",
        nargs="+",
        required=True,
        metavar="KEY=PATH",
        help="output paths: tsv=..., png=..., svg=..., json=...",
    )
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run the chosen comparison step from parsed arguments; exit status 0."""
    if args.comparison_command == "subject":
        outputs = key_paths(
            args.out,
            form="tsv|bootstrap|planted|transfer=PATH",
            keys=("tsv", "bootstrap", "planted", "transfer"),
        )
        if "tsv" not in outputs:
            raise SystemExit("--out needs tsv=...")
        entries = [parse_entry(words) for words in args.entry]
        options = _given_options(args)
        run_subject_comparison(entries, outputs, options=options, seed=args.seed)
        return 0
    outputs = key_paths(args.out, form="tsv|png|svg|json=PATH", keys=GROUP_OUTPUTS)
    if "tsv" not in outputs or "json" not in outputs:
        raise SystemExit("--out needs tsv=... and json=...")
    options = _given_options(args)
    run_comparison(
        args.table,
        outputs,
        options=options,
        bootstraps=args.bootstrap_table,
        planted=args.planted_table,
    )
    return 0


__all__ = [
    "BASELINE",
    "DEFAULT_RULE",
    "EDGE_NC",
    "ENTRY_KEYS",
    "GROUP_OUTPUTS",
    "MEASURES",
    "RANK_METRICS",
    "REFERENCE_RULE",
    "VALIDATED",
    "VARIANTS",
    "ComparisonOptions",
    "Entry",
    "add_arguments",
    "comparison_table",
    "edge_share",
    "entry_words",
    "group_statistics",
    "implausibility_warnings",
    "parse_entry",
    "plot_comparison",
    "read_bootstrap",
    "read_table",
    "recommend",
    "run_comparison",
    "run_from_args",
    "run_subject_comparison",
    "stage_options",
    "variant_metrics",
]
