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
   Noise-ceiling maps with a ring of implausibly high values at the brain edge are flagged.
6. **ROI tables**: ROI, voxels, median/mean NC, median R² per variant.
7. **NORDIC diagnostics**: tSNR gain, evoked-amplitude ratio in the visual ROI, smoothness of
   the image-specific beta patterns and whiteness of the removed part
   (the table of ``echoprep diagnostics``), with a plain-words reading
   (:func:`echoprep.report.diagnostics.reading`).
8. **Comparison**: the subject's own 2×3 comparison (figure, table, ranking over its comparison
   sessions), from the subject's comparison table (``echoprep comparison subject``) so that the
   page depends on no other subject; the group figure and ranking when given. NC and d′ as
   LAION-fMRI reported them, the validated measure next to them, the recommendation, and a
   warning box when the measures disagree or the margins are implausible.
9. **Options and versions**: the workflow configuration and the software versions.

Every figure is a PNG inlined as a base64 data URI and the CSS is inline: the page needs no
network and no other file. The tables of other stages are read with :mod:`echoprep.io.tables`
(no stage imports another).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echoprep import __version__
from echoprep.io.arguments import key_paths
from echoprep.io.atomic import write_text
from echoprep.io.images import StageInputError, check_same_grid
from echoprep.io.outputs import get
from echoprep.io.sidecars import software_versions
from echoprep.io.tables import (
    read_bootstrap_table,
    read_comparison_table,
    read_diagnostics_table,
)
from echoprep.kernels.diagnostics import edge_share
from echoprep.kernels.ranking import RANK_METRICS, recommend
from echoprep.options import parse_options, section_defaults
from echoprep.report import figures
from echoprep.report.comparison import plot_comparison
from echoprep.report.diagnostics import reading
from echoprep.report.html import Section, render

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportOptions:
    """The ``report:`` config section (schema defaults). ``enabled`` is the workflow's switch;
    the page itself shows the whole configuration (``config``), which is an input."""

    enabled: bool


def stage_options(
    given: ReportOptions | Mapping[str, Any] | None, source: str = "options"
) -> ReportOptions:
    """The options from (part of) the ``report:`` section; unknown keys and values the schema
    refuses raise :class:`echoprep.options.OptionsError`."""
    return parse_options(ReportOptions, "report", given, source=source)


def _section(config: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """A config section with the schema defaults of its missing keys (for what the page says
    about the configuration)."""
    return {**section_defaults(name), **dict((config or {}).get(name) or {})}


#: Packages whose versions the report lists.
REPORT_SOFTWARE = ("matplotlib", "jinja2", "antspyx", "snakemake")

#: Labels of the comparison measures when recommended_variant.json does not name them.
MEASURE_LABELS: dict[str, str] = {
    "median_nc": "median NC (%)",
    "dprime": "d′",
    "gain": "NC gain (%)",
    "heldout_r": "held-out fidelity (r)",
}
#: Measures that only say how well repeats agree (not validated against truth).
REPEAT_AGREEMENT = ("median_nc", "dprime", "gain")
#: A noise-ceiling map is flagged when at least this share of its brain-edge voxels (and
#: EDGE_MIN_VOXELS voxels) exceed EDGE_NC %, and at least twice the share inside.
EDGE_NC, EDGE_SHARE, EDGE_MIN_VOXELS = 80.0, 0.02, 10


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


def _label(rec: Mapping[str, Any], measure: str) -> str:
    """Display label of a comparison measure (from the JSON's ``measures`` when given)."""
    info = (rec.get("measures") or {}).get(measure) or {}
    return str(info.get("label") or MEASURE_LABELS.get(measure, measure))


def _recommendation_lines(rec: Mapping[str, Any], scope: str) -> list[str]:
    """Summary lines of a recommendation (``recommended_variant.json`` content)."""
    by = rec.get("rank_by", "median_nc")
    line = (
        f"Recommended variant {scope}: {rec['variant']} ({rec.get('name', '')}), ranked first "
        f"by {by}" + (f" ({_label(rec, by)})" if _label(rec, by) != by else "")
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
    nc_winner = rec.get("nc_winner")
    if nc_winner and by != "median_nc":
        same = nc_winner == rec["variant"]
        lines.append(
            f"The highest median noise ceiling: {nc_winner}"
            + (" (the same variant)." if same else " (another variant: see the warning).")
        )
    if rec.get("winner_below_baseline"):
        worse = ", ".join(
            f"sub-{w['subject']}"
            + (f" ses-{w['session']}" if w.get("session") not in (None, "n/a") else "")
            for w in rec["winner_below_baseline"]
        )
        lines.append(f"Below the baseline for: {worse}.")
    return lines


def _recommendation_warnings(rec: Mapping[str, Any]) -> list[str]:
    """Warnings of a recommendation: the disagreement paragraph first, then the JSON's own
    warnings, then a note when a NORDIC variant wins on repeat agreement alone."""
    out: list[str] = []
    by = rec.get("rank_by", "median_nc")
    if rec.get("disagreement"):
        out.append(str(rec["disagreement"]))
    elif rec.get("agreement") is False and rec.get("nc_winner"):
        out.append(
            f"The measures disagree: the median noise ceiling ranks {rec['nc_winner']} first, "
            f"{_label(rec, by)} ranks {rec['variant']} first. The recommendation follows "
            f"{_label(rec, by)}."
        )
    out.extend(str(w) for w in rec.get("warnings") or [])
    if by in REPEAT_AGREEMENT and str(rec.get("variant", "")).startswith("nordic"):
        out.append(
            f"{rec['variant']} is ranked first by {_label(rec, by)}, a measure of how well the "
            "repeats of an image agree. Noise-ceiling gains from low-rank denoising such as "
            "NORDIC are not evidence of better betas: NORDIC can make the repeats agree more "
            "while the betas follow the true responses less. Do not choose NORDIC on this "
            "number alone; see the NORDIC diagnostics."
        )
    return out


def _ranking_table(rec: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a recommendation's ranking: NC and d′ as LAION-fMRI reported them,
    the validated measure(s) next to them (mean ± SEM where the SEM is known)."""
    ranking = list(rec.get("ranking") or [])
    measures = ["median_nc", "dprime"]
    for m in [*(rec.get("measures") or {}), rec.get("rank_by", "median_nc")]:
        if m not in measures and m != "gain" and any(f"{m}_mean" in r for r in ranking):
            measures.append(m)

    def value(row: Mapping[str, Any], m: str) -> Any:
        mean, sem = row.get(f"{m}_mean"), row.get(f"{m}_sem")
        if mean is None:
            return None
        return f"{mean:.3g} ± {sem:.2g}" if sem is not None else float(mean)

    header = ["rank", "variant", *(_label(rec, m) for m in measures), "NC gain (%)"]
    header += ["below baseline", "note"]
    rows = []
    for i, r in enumerate(ranking):
        note = []
        if r.get("variant") == rec.get("variant"):
            note.append("recommended")
        if r.get("variant") == rec.get("nc_winner"):
            note.append("highest NC")
        rows.append(
            [
                i + 1,
                r.get("variant"),
                *(value(r, m) for m in measures),
                r.get("gain_mean"),
                r.get("below_baseline"),
                ", ".join(note),
            ]
        )
    return header, rows


def _edge_warnings(nc_maps: Mapping[str, str | Path], brain: str | Path | None) -> list[str]:
    """Noise-ceiling maps with a ring of NC > 80 % at the brain edge (see :data:`EDGE_NC`)."""
    import nibabel as nib

    brain_img = nib.load(brain) if brain is not None and Path(brain).is_file() else None
    out = []
    for variant, path in nc_maps.items():
        img = nib.load(path)
        nc = np.asarray(img.dataobj, np.float64).reshape(img.shape[:3])
        support = np.isfinite(nc) & (nc != 0)
        inside = None
        if brain_img is not None:
            try:  # a brain mask on another grid is not used (the map's support only)
                check_same_grid(brain_img, img, path=str(brain), ref_path=path, what="brain mask")
                inside = (np.asanyarray(brain_img.dataobj) > 0).reshape(img.shape[:3])
            except StageInputError as exc:
                log.warning("report: edge check without the brain mask: %s", exc)
        e = edge_share(nc, support, above=EDGE_NC, brain=inside)
        share, interior = e["edge_share"], e["interior_share"]
        interior = 0.0 if not np.isfinite(interior) else interior
        if e["edge_above"] >= EDGE_MIN_VOXELS and share >= EDGE_SHARE and share >= 2 * interior:
            out.append(
                f"{variant}: {e['edge_above']} of the {e['edge_voxels']} voxels at the brain "
                f"edge ({100 * share:.0f} %) have a noise ceiling above {EDGE_NC:.0f} % "
                f"(inside: {100 * interior:.1f} %). A ring of very high NC at the edge is "
                "implausible: it usually comes from voxels that have data in only some runs "
                "(check the analysis mask) and inflates the ROI statistics."
            )
    return out


def _figure_png(table: pd.DataFrame) -> bytes:
    return figures.to_png(plot_comparison(table))


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
    brain: str | Path | None = None,
    rank_by: str | None = None,
    comparison_table: str | Path | None = None,
    comparison_bootstrap: str | Path | None = None,
    comparison_png: str | Path | None = None,
    comparison_tsv: str | Path | None = None,
    recommendation: str | Path | None = None,
    diagnostics: str | Path | None = None,
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
    brain
        The subject's brain mask on the grid of the noise-ceiling maps (their edge check counts
        voxels outside it as edge voxels); None: the maps' own support only.
    rank_by
        Metric the subject's variants are ranked by (:data:`RANK_METRICS`); None: the
        schema default of ``comparison.rank_by``.
    comparison_table, comparison_bootstrap
        This subject's comparison table and its bootstrap replicates (``echoprep comparison
        subject``): the report ranks the subject's variants from them (the report does not
        depend on other subjects, so adding a subject reruns only its report).
    comparison_png, comparison_tsv, recommendation
        Group comparison outputs (optional; shown when given).
    diagnostics
        The subject's NORDIC diagnostics table (:mod:`echoprep.stages.diagnostics`).
    config
        The workflow configuration (shown).
    session
        The session the maps come from (for the captions).
    """
    sections: list[Section] = []
    summary: list[str] = []
    warnings: list[str] = []
    ses = f" ses-{session}" if session else ""

    if rank_by is None:
        rank_by = section_defaults("comparison")["rank_by"]
    rec, scope, own_table, own_error = None, "", None, None
    if comparison_table is not None:
        try:
            own_table = read_comparison_table(comparison_table)
            boot = read_bootstrap_table(comparison_bootstrap)
            rec = recommend(own_table, rank_by, boot)
            scope = f"for sub-{subject} (its comparison sessions)"
        except Exception as exc:  # the group outputs below still show
            log.warning("report: the subject's own comparison failed: %s", exc)
            own_table, own_error = None, f"The subject's own comparison failed: {exc}"
    if rec is None and recommendation is not None and Path(recommendation).is_file():
        rec = json.loads(Path(recommendation).read_text())
        scope = "over all subjects"
    if rec is not None:
        summary.extend(_recommendation_lines(rec, scope))
        warnings.extend(_recommendation_warnings(rec))

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
        flags = _try(s, "edge check of the noise-ceiling maps", _edge_warnings, nc_maps, brain)
        s.warnings.extend(flags or [])
        warnings.extend(flags or [])
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

    s = Section("NORDIC diagnostics")
    nordic_on = bool(_section(config, "nordic")["enabled"])
    if diagnostics and Path(diagnostics).is_file():
        table = _try(s, "NORDIC diagnostics table", read_diagnostics_table, diagnostics)
        if table is not None:
            s.text.append(
                "Vizioli et al. 2021 report that NORDIC raises tSNR while the evoked amplitude and "
                "the point-spread stay unchanged. The same runs and GLM with NORDIC off and on, "
                "on this subject's data:"
            )
            s.text.extend(reading(table))
            header = list(table.columns)
            rows = table.astype(object).where(table.notna(), None).values.tolist()
            s.tables.append((f"sub-{subject}: NORDIC on vs off", header, rows))
    elif not nordic_on:
        s.missing = "Not available: NORDIC is off (nordic.enabled: false)."
    else:
        s.missing = (
            "Not available: the diagnostics need a GLM fit with NORDIC off and one with NORDIC "
            "on of the same echo handling in a comparison session (this configuration or "
            "subject has no such pair)."
        )
    sections.append(s)

    s = Section("Preprocessing comparison")
    if own_error:
        s.text.append(own_error)
    if rec is not None:
        s.warnings.extend(_recommendation_warnings(rec))
        for m, info in (rec.get("measures") or {}).items():
            if isinstance(info, Mapping) and info.get("description"):
                s.text.append(f"{_label(rec, m)}: {info['description']}")
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
        header, rows = _ranking_table(rec)
        s.tables.append((f"Ranking {scope} (means over {over})", header, rows))
        s.text.append(
            "The group ranking over all subjects, which decides the recommended variant, is in "
            f"comparison/{get('comparison.json').filename} (and in `snakemake --report`)."
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
        warnings=list(dict.fromkeys(warnings)),
        footer=f"Generated by echoprep {__version__}. Self-contained: figures are embedded.",
        preformatted=pre,
    )
    out = write_text(out, text)
    log.info("report: %s (%d kB)", out, len(text) // 1024)
    return out


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep report`` arguments to a sub-command parser."""
    parser.add_argument("--subject", required=True)
    parser.add_argument("--session", default=None)
    parser.add_argument(
        "--out", nargs="+", required=True, metavar="KEY=PATH", help="output paths: html=..."
    )
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
        "--brain", type=Path, default=None, help="brain mask on the noise-ceiling maps' grid"
    )
    parser.add_argument(
        "--rank-by",
        choices=RANK_METRICS,
        default=None,
        help="comparison.rank_by (default: the schema's)",
    )
    parser.add_argument(
        "--comparison-table", type=Path, default=None, help="the subject's comparison table"
    )
    parser.add_argument(
        "--comparison-bootstrap",
        type=Path,
        default=None,
        help="the subject's held-out fidelity bootstrap table",
    )
    parser.add_argument("--comparison-png", type=Path, default=None)
    parser.add_argument("--comparison-tsv", type=Path, default=None)
    parser.add_argument("--recommendation", type=Path, default=None)
    parser.add_argument(
        "--diagnostics", type=Path, default=None, help="the subject's NORDIC diagnostics table"
    )
    parser.add_argument(
        "--config-json", default=None, help="the workflow configuration shown on the page"
    )
    parser.add_argument(
        "--options-json", default=None, help="the report: config section as JSON (checked)"
    )
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`build_report` from parsed arguments; exit status 0."""
    stage_options(json.loads(args.options_json) if args.options_json else None, "--options-json")
    outputs = key_paths(args.out, form="html=PATH", keys=("html",))
    if "html" not in outputs:
        raise SystemExit("--out needs html=...")
    build_report(
        args.subject,
        outputs["html"],
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
        brain=args.brain,
        rank_by=args.rank_by,
        comparison_table=args.comparison_table,
        comparison_bootstrap=args.comparison_bootstrap,
        comparison_png=args.comparison_png,
        comparison_tsv=args.comparison_tsv,
        recommendation=args.recommendation,
        diagnostics=args.diagnostics,
        config=json.loads(args.config_json) if args.config_json else None,
        session=args.session,
    )
    return 0


__all__ = [
    "ReportOptions",
    "add_arguments",
    "build_report",
    "report_path",
    "run_from_args",
    "stage_options",
]
