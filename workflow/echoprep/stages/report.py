"""Report stage: one self-contained HTML page per subject (``<out>/reports/sub-X.html``).

Sections (each shows why it is empty when its inputs are not available):

1. **Summary**: the recommended variant and its margins (from ``recommended_variant.json``).
2. **tSNR before/after NORDIC**: one run's series of the same echo handling without and with
   NORDIC (mosaics, histograms, median tSNR).
3. **T2\\* map**: tedana's T2* of that run.
4. **Head motion**: translations, rotations and framewise displacement of the session's runs.
5. **R² and noise ceiling**: the GLM R² and the noise-ceiling maps of every variant of the
   comparison session over the T1w (or the functional reference when there is no T1w-aligned
   output).
6. **ROI tables**: ROI, voxels, median/mean NC, median R² per variant.
7. **Comparison**: the subject's own 2×3 comparison (figure, table, ranking over its comparison
   sessions), computed here from its noise-ceiling maps and ROI so that the page depends on no
   other subject; the group figure and ranking when given.
8. **Options and versions**: the workflow configuration and the software versions.

Every figure is a PNG inlined as a base64 data URI and the CSS is inline: the page needs no
network and no other file.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from echoprep import __version__
from echoprep.io.sidecars import software_versions, write_dataset_description
from echoprep.report import figures
from echoprep.report.html import Section, render
from echoprep.stages import comparison as comparison_stage
from echoprep.stages.arguments import key_paths

log = logging.getLogger(__name__)

#: Packages whose versions the report lists.
REPORT_SOFTWARE = ("matplotlib", "jinja2", "antspyx", "snakemake")


def report_path(root: str | Path, subject: str) -> Path:
    """``<root>/sub-<subject>.html``."""
    return Path(root) / f"sub-{subject}.html"


def _try(section: Section, what: str, fn, *args, **kwargs) -> Any:
    """Call ``fn``; on failure note it in the section instead of failing the whole report."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # a broken figure must not hide the rest of the report
        log.warning("report: %s failed: %s", what, exc)
        section.missing = f"{what} could not be drawn: {exc}"
        return None


def _table_rows(path: str | Path) -> tuple[list[str], list[list[Any]]]:
    t = pd.read_csv(path, sep="\t", na_values=["n/a"], dtype={"subject": str, "session": str})
    return list(t.columns), t.astype(object).where(t.notna(), None).values.tolist()


def _recommendation_lines(rec: Mapping[str, Any], scope: str) -> list[str]:
    """Summary lines of a recommendation (``recommended_variant.json`` content)."""
    by = rec.get("rank_by", "median_nc")
    line = (
        f"Recommended variant {scope}: {rec['variant']} ({rec.get('name', '')}), ranked first "
        f"by {by}"
    )
    mb = rec.get("margin_over_baseline")
    if mb:
        rel = mb.get("relative_percent")
        rel_text = f" ({rel:+.1f} %)" if rel is not None else ""
        line += f"; {mb['difference']:+.2f} over the baseline {mb['variant']}{rel_text}"
    mr = rec.get("margin_over_runner_up")
    if mr:
        line += f"; {mr['difference']:+.2f} over the runner-up {mr['variant']}"
    lines = [line + "."]
    if rec.get("winner_below_baseline"):
        worse = ", ".join(
            f"sub-{w['subject']}"
            + (f" ses-{w['session']}" if w.get("session") not in (None, "n/a") else "")
            for w in rec["winner_below_baseline"]
        )
        lines.append(f"Below the baseline for: {worse}.")
    return lines


def _figure_png(table: pd.DataFrame) -> bytes:
    return figures.to_png(comparison_stage.plot_comparison(table))


def build_report(
    subject: str,
    out: str | Path,
    *,
    bold_raw: str | Path | None = None,
    bold_nordic: str | Path | None = None,
    t2star: str | Path | None = None,
    confounds: Sequence[str | Path] = (),
    underlay: str | Path | None = None,
    underlay_kind: str = "T1w",
    r2: str | Path | None = None,
    r2_variant: str | None = None,
    nc_maps: Mapping[str, str | Path] | None = None,
    roi_tables: Mapping[str, str | Path] | None = None,
    comparison_entries: Sequence[comparison_stage.Entry] = (),
    rank_by: str = "median_nc",
    comparison_png: str | Path | None = None,
    comparison_tsv: str | Path | None = None,
    recommendation: str | Path | None = None,
    config: Mapping[str, Any] | None = None,
    session: str | None = None,
) -> Path:
    """Write the HTML report of one subject; returns its path.

    Parameters
    ----------
    subject
        Subject label without ``sub-``.
    out
        The HTML file.
    bold_raw, bold_nordic
        The same run's 4D series without and with NORDIC (tSNR section).
    t2star
        T2* map of that run.
    confounds
        Confounds TSVs of the session's runs (motion section).
    underlay, underlay_kind
        Anatomical background of the maps (the T1w, or the functional reference) and its name.
    r2, r2_variant
        The GLM R² map (%) and its variant.
    nc_maps
        Variant → session noise-ceiling map.
    roi_tables
        Variant → ROI table TSV.
    comparison_entries, rank_by
        This subject's noise-ceiling maps (every variant of its comparison sessions) with its
        ROI and brain mask: the report computes the subject's own comparison from them (the
        report does not depend on other subjects, so adding a subject reruns only its report).
    comparison_png, comparison_tsv, recommendation
        Group comparison outputs (optional; shown when given).
    config
        The workflow configuration (shown).
    session
        The session the maps come from (for the captions).
    """
    sections: list[Section] = []
    summary: list[str] = []
    ses = f" ses-{session}" if session else ""

    rec, scope, own_table = None, "", None
    if comparison_entries:
        own_table = comparison_stage.comparison_table(comparison_entries)
        rec = comparison_stage.recommend(own_table, rank_by)
        scope = f"for sub-{subject} (its comparison sessions)"
    elif recommendation is not None and Path(recommendation).is_file():
        rec = json.loads(Path(recommendation).read_text())
        scope = "over all subjects"
    if rec is not None:
        summary.extend(_recommendation_lines(rec, scope))

    s = Section("tSNR before and after NORDIC")
    if bold_raw and bold_nordic:
        res = _try(s, "tSNR", figures.tsnr_figure, bold_raw, bold_nordic)
        if res is not None:
            png, stats = res
            s.figures.append(
                (
                    f"tSNR of {Path(bold_raw).name} (top) and its NORDIC counterpart; median "
                    f"{stats['median_before']:.1f} → {stats['median_after']:.1f} "
                    f"(× {stats['ratio']:.2f})",
                    png,
                )
            )
            summary.append(
                f"Median tSNR {stats['median_before']:.1f} without and "
                f"{stats['median_after']:.1f} with NORDIC (× {stats['ratio']:.2f})."
            )
    else:
        s.missing = "Not available: NORDIC is off (nordic.enabled: false) or the run is missing."
    sections.append(s)

    s = Section("T2* map")
    if t2star:
        png = _try(s, "T2* map", figures.t2star_figure, t2star)
        if png:
            s.figures.append((f"T2* of {Path(t2star).name}", png))
    else:
        s.missing = "Not available: no optimal-combination (optcom) output in this configuration."
    sections.append(s)

    s = Section("Head motion")
    if confounds:
        res = _try(s, "motion trace", figures.motion_figure, list(confounds))
        if res is not None:
            png, stats = res
            s.figures.append(
                (
                    f"{len(confounds)} run(s) of sub-{subject}{ses}; FD mean "
                    f"{stats['mean_fd']:.3f} mm, max {stats['max_fd']:.3f} mm",
                    png,
                )
            )
    else:
        s.missing = "Not available: spatial preprocessing (head-motion estimation) is off."
    sections.append(s)

    s = Section("R² and noise ceiling")
    if r2:
        png = _try(
            s,
            "R² map",
            figures.overlay_figure,
            {f"R² {r2_variant or ''}".strip(): r2},
            underlay,
            label="R² (%)",
            title=f"GLMsingle R² over the {underlay_kind if underlay else 'map itself'}",
            threshold=0.0,
        )
        if png:
            s.figures.append((f"R² of {Path(r2).name}", png))
    if nc_maps:
        png = _try(
            s,
            "noise-ceiling maps",
            figures.overlay_figure,
            dict(nc_maps),
            underlay,
            label="noise ceiling (%)",
            title=f"Noise ceiling per variant{ses} over the "
            f"{underlay_kind if underlay else 'map itself'}",
            threshold=0.0,
        )
        if png:
            s.figures.append(("Session noise ceiling (NSD ncsnr), one row per variant", png))
    if not r2 and not nc_maps:
        s.missing = "Not available: no GLM outputs for this subject."
    sections.append(s)

    s = Section("ROI tables")
    for variant, path in (roi_tables or {}).items():
        header, rows = _table_rows(path)
        s.tables.append((f"{variant}{ses}", header, rows))
    if not roi_tables:
        s.missing = "Not available: no ROI tables for this subject."
    sections.append(s)

    s = Section("Preprocessing comparison")
    if own_table is not None:
        png = _try(s, "comparison figure", _figure_png, own_table)
        if png:
            s.figures.append(
                (
                    f"sub-{subject}: median noise ceiling in the visually responsive ROI and d′ "
                    "per variant (one dot per session; bars: mean ± SEM over sessions)",
                    png,
                )
            )
        header = list(own_table.columns)
        rows = own_table.astype(object).where(own_table.notna(), None).values.tolist()
        s.tables.append((f"sub-{subject}", header, rows))
    if comparison_png and Path(comparison_png).is_file():
        s.figures.append(
            (
                "All subjects: median noise ceiling in the visually responsive ROI and d′ per "
                "variant (bars: group mean ± SEM; dots: subjects)",
                Path(comparison_png).read_bytes(),
            )
        )
    if comparison_tsv and Path(comparison_tsv).is_file() and own_table is None:
        header, rows = _table_rows(comparison_tsv)
        mine = [r for r in rows if str(r[0]) == subject]
        s.tables.append((f"sub-{subject}", header, mine))
    if rec is not None:
        over = "sessions" if own_table is not None else "subjects"
        s.tables.append(
            (
                f"Ranking {scope} (means over {over})",
                ["rank", "variant", "median NC", "d′", "gain (%)", "below baseline"],
                [
                    [
                        i + 1,
                        r["variant"],
                        r.get("median_nc_mean"),
                        r.get("dprime_mean"),
                        r.get("gain_mean"),
                        r.get("below_baseline"),
                    ]
                    for i, r in enumerate(rec["ranking"])
                ],
            )
        )
        s.text.append(
            "The group ranking over all subjects, which decides the recommended variant, is in "
            "comparison/recommended_variant.json (and in `snakemake --report`)."
        )
    if not s.figures and not s.tables:
        s.missing = "Not available: the comparison was not run."
    sections.append(s)

    s = Section("Options and versions")
    versions = software_versions(REPORT_SOFTWARE)
    versions["python"] = platform.python_version()
    s.tables.append(("Software", ["package", "version"], sorted(versions.items())))
    sections.append(s)
    pre = {"Options and versions": json.dumps(dict(config or {}), indent=2, sort_keys=True)}

    text = render(
        f"echoprep report: sub-{subject}",
        sections,
        subtitle=f"Multi-echo fMRI preprocessing and single-trial GLM quality{ses}.",
        summary=summary,
        footer=f"Generated by echoprep {__version__}. Self-contained: figures are embedded.",
        preformatted=pre,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    log.info("report: %s (%d kB)", out, len(text) // 1024)
    return out


def write_description(root: str | Path, *, config: Mapping[str, Any], source: str | Path) -> Path:
    """``dataset_description.json`` (and ``.bidsignore``) of the ``reports`` folder."""
    return write_dataset_description(
        root,
        "echoprep reports",
        description="One self-contained HTML quality report per subject: tSNR with and "
        "without NORDIC, T2*, head motion, R² and noise ceilings, ROI tables, the comparison",
        config=config,
        source_datasets=[str(source)],
        bidsignore=["*.html"],
    )


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep report`` arguments to a sub-command parser."""
    parser.add_argument("--subject", required=True)
    parser.add_argument("--session", default=None)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--bold-raw", type=Path, default=None)
    parser.add_argument("--bold-nordic", type=Path, default=None)
    parser.add_argument("--t2star", type=Path, default=None)
    parser.add_argument("--confounds", nargs="*", type=Path, default=[])
    parser.add_argument("--underlay", type=Path, default=None)
    parser.add_argument("--underlay-kind", default="T1w")
    parser.add_argument("--r2", type=Path, default=None)
    parser.add_argument("--r2-variant", default=None)
    parser.add_argument("--nc", nargs="*", default=[], metavar="VARIANT=PATH")
    parser.add_argument("--roi-table", nargs="*", default=[], metavar="VARIANT=PATH")
    parser.add_argument(
        "--entry",
        nargs=6,
        action="append",
        default=[],
        metavar=("SUBJECT", "SESSION", "VARIANT", "NC", "ROI", "BRAIN"),
        help="one of the subject's noise-ceiling maps for its own comparison (as `echoprep "
        "comparison --entry`); repeat per session and variant",
    )
    parser.add_argument("--rank-by", choices=comparison_stage.RANK_METRICS, default="median_nc")
    parser.add_argument("--comparison-png", type=Path, default=None)
    parser.add_argument("--comparison-tsv", type=Path, default=None)
    parser.add_argument("--recommendation", type=Path, default=None)
    parser.add_argument("--config-json", default=None)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`build_report` from parsed arguments; exit status 0."""
    build_report(
        args.subject,
        args.out,
        bold_raw=args.bold_raw,
        bold_nordic=args.bold_nordic,
        t2star=args.t2star,
        confounds=args.confounds,
        underlay=args.underlay,
        underlay_kind=args.underlay_kind,
        r2=args.r2,
        r2_variant=args.r2_variant,
        nc_maps=key_paths(args.nc, "--nc", form="VARIANT=PATH"),
        roi_tables=key_paths(args.roi_table, "--roi-table", form="VARIANT=PATH"),
        comparison_entries=[
            comparison_stage.Entry(
                sub, None if ses == "n/a" else ses, var, Path(nc), Path(roi), Path(brain)
            )
            for sub, ses, var, nc, roi, brain in args.entry
        ],
        rank_by=args.rank_by,
        comparison_png=args.comparison_png,
        comparison_tsv=args.comparison_tsv,
        recommendation=args.recommendation,
        config=json.loads(args.config_json) if args.config_json else None,
        session=args.session,
    )
    return 0


__all__ = [
    "add_arguments",
    "build_report",
    "report_path",
    "run_from_args",
    "write_description",
]
