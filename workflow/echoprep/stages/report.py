"""Report stage: one self-contained HTML page per subject (``<out>/reports/sub-X.html``).

(Module over 700 lines: the page's sections are built in one function, in the order of the page.)

The page opens with the verdict: one figure and one sentence (:mod:`echoprep.report.verdict`).
Then the sections (each shows why it is empty when its inputs are not available):

1. **Summary**: the recommended variant and its margins (from ``recommended_variant.json``).
2. **tSNR before/after NORDIC**: one run's series of the same echo handling without and with
   NORDIC (mosaics, histograms, median tSNR).
3. **T2\\* map**: tedana's T2* of that run.
4. **Head motion**: translations, rotations and framewise displacement of the session's runs.
5. **R² and noise ceiling**: the GLM R² and the noise-ceiling maps of every variant of the
   comparison session over the T1w (or the functional reference when there is no T1w-aligned
   output).
   Noise-ceiling maps with a ring of implausibly high values at the brain edge are flagged.
6. **ROI tables**: ROI, voxels, median/mean NC (%), median R² (%) per variant.
   **Noise ceiling on the cortical surface** (only for a subject with a FreeSurfer folder): the
   R² map's variant's session noise ceiling on the inflated surface, one figure per hemisphere
   (:mod:`echoprep.report.surface`, docs/surface.md).
7. **NORDIC diagnostics**: tSNR gain, evoked-amplitude ratio in the visual ROI, smoothness of
   the image-specific beta patterns and whiteness of the removed part
   (the table of ``echoprep diagnostics``), with a plain-words reading
   (:func:`echoprep.report.diagnostics.reading`).
8. **Comparison**: the subject's own 2×3 comparison (figure, the planted responses against
   what each variant's betas carry of them, table, ranking over its comparison sessions), from
   the subject's comparison tables (``echoprep comparison subject``) so that the page depends
   on no other subject; the group figure and ranking when given. NC and d′ as LAION-fMRI
   reported them, the validated measures next to them, the recommendation, and a warning box
   when the measures disagree or the margins are implausible.
9. **Options and versions**: the software behind the outputs shown (the ``SoftwareVersions`` of
   the inputs' sidecars, followed back through their ``Sources``:
   :mod:`echoprep.report.provenance`) and the workflow configuration, folded.

Every map (tSNR, T2*, R², noise ceiling) is drawn on one display per subject
(:func:`echoprep.report.figures.display_grid`): one underlay, the same axial slices, the visual
ROI outlined; values opaque inside the brain, transparent outside. The ROI and the masks come
from the arguments or else from the sidecars of the ROI tables and the maps. Table headers
carry units (from the tables' sidecars, else :mod:`echoprep.report.labels`).

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
from echoprep.io.bids_uri import relative_paths
from echoprep.io.images import StageInputError, check_same_grid
from echoprep.io.outputs import folder_name, get, group_key
from echoprep.io.paths import sidecar_path
from echoprep.io.sidecars import software_versions
from echoprep.io.tables import (
    read_bootstrap_table,
    read_comparison_table,
    read_diagnostics_table,
)
from echoprep.kernels.diagnostics import edge_share
from echoprep.kernels.ranking import RANK_METRICS, recommend
from echoprep.options import parse_options, section_defaults
from echoprep.report import figures, labels, provenance
from echoprep.report.comparison import plot_comparison
from echoprep.report.diagnostics import reading
from echoprep.report.distortion import sdc_figure
from echoprep.report.html import Section, render
from echoprep.report.planted import plot_transfer, transfer_caption
from echoprep.report.recommendation import (
    measure_label,
    ranking_table,
    recommendation_lines,
    recommendation_warnings,
)
from echoprep.report.surface import surface_section
from echoprep.report.verdict import first_screen

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


#: Packages the report itself draws and writes with (listed with its inputs' software).
REPORT_SOFTWARE = ("matplotlib", "jinja2", "pillow", "snakemake")

#: A noise-ceiling map is flagged when at least this share of its brain-edge voxels (and
#: EDGE_MIN_VOXELS voxels) exceed EDGE_NC %, and at least twice the share inside.
EDGE_NC, EDGE_SHARE, EDGE_MIN_VOXELS = 80.0, 0.02, 10


def _try(section: Section, what: str, fn, *args, **kwargs) -> Any:
    """Call ``fn``; on failure note it in the section instead of failing the whole report."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # a broken figure must not hide the rest of the report
        log.warning("report: %s failed: %s", what, exc)
        section.missing = f"{what} could not be drawn: {exc}"
        return None


def _table_rows(path: str | Path) -> tuple[list[str], list[list[Any]]]:
    """Header (readable, with units from the table's sidecar) and rows of a TSV."""
    t = pd.read_csv(path, sep="\t", na_values=["n/a"], dtype={"subject": str, "session": str})
    return _frame_rows(t, path)


def _frame_rows(
    table: pd.DataFrame, path: str | Path | None = None
) -> tuple[list[str], list[list[Any]]]:
    """Header (with units) and rows of a table read by a stage's reader."""
    units = provenance.column_units(path) if path is not None else {}
    rows = table.astype(object).where(table.notna(), None).values.tolist()
    return labels.headers([str(c) for c in table.columns], units), rows


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


def _png(plot, table: pd.DataFrame) -> bytes:
    """A figure of ``table`` (``plot(table)``) as PNG bytes."""
    return figures.to_png(plot(table))


def _display(
    nc_maps: Mapping[str, str | Path] | None,
    r2: str | Path | None,
    t2star: str | Path | None,
    bold: str | Path | None,
    underlay: str | Path | None,
    brain: str | Path | None,
    roi: str | Path | None,
    roi_tables: Mapping[str, str | Path] | None,
) -> tuple[figures.Display | None, Path | None]:
    """The subject's display (one grid, underlay, slice set and ROI outline for every map) and
    the brain mask it uses (``brain``, else the fitted mask recorded in the first map's
    sidecar). None when there is no map, or the display cannot be built (each figure then uses
    its own grid)."""
    maps = [*(nc_maps or {}).values(), r2, t2star, bold]
    reference = next((m for m in maps if m is not None), None)
    if reference is None:
        return None, Path(brain) if brain is not None else None
    inside = Path(brain) if brain is not None else None
    for m in [*(nc_maps or {}).values(), r2]:
        if inside is None and m is not None:
            inside = provenance.source_mask(m)
    if roi is None:
        roi = next(
            (r for r in map(provenance.table_roi_mask, (roi_tables or {}).values()) if r), None
        )
    try:
        display = figures.display_grid(reference, underlay, brain=inside, roi=roi)
    except Exception as exc:  # the figures still draw, each on its own grid
        log.warning("report: no common display for the maps: %s", exc)
        return None, inside
    return display, inside


def _cap(text: str) -> str:
    """A caption sentence from a phrase (capitalised, full stop), or ''."""
    return f"{text[:1].upper()}{text[1:]}." if text else ""


def _software(files: Sequence[str | Path | None]) -> list[list[str]]:
    """Rows ``[package, version, output folders]``: the provenance of ``files``
    (:func:`echoprep.report.provenance.collect_software`) and the report's own packages."""
    found = provenance.collect_software(files)
    own = software_versions(REPORT_SOFTWARE)
    own["python"] = platform.python_version()
    found.add(own, folder_name("report"))
    return found.rows()


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
    roi: str | Path | None = None,
    rank_by: str | None = None,
    comparison_table: str | Path | None = None,
    comparison_bootstrap: str | Path | None = None,
    comparison_planted: str | Path | None = None,
    comparison_transfer: str | Path | None = None,
    comparison_png: str | Path | None = None,
    comparison_tsv: str | Path | None = None,
    recommendation: str | Path | None = None,
    diagnostics: str | Path | None = None,
    config: Mapping[str, Any] | None = None,
    session: str | None = None,
    sdc_run: Sequence[str | Path] | None = None,
    surface: tuple[Mapping[str, Path], Mapping[str, Path]] | None = None,
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
        The subject's brain mask on the noise-ceiling maps' grid (the edge check's outside, the
        slices' span, where maps without a fitted mask are opaque); None: the maps' own support
        and the fitted mask recorded in the first map's sidecar.
    roi
        The visual ROI mask, outlined on every map; None: the visual ROI that the first ROI
        table summarised (from its sidecar), if any.
    rank_by
        Metric the subject's variants are ranked by (:data:`RANK_METRICS`); None: the
        schema default of ``comparison.rank_by``.
    comparison_table, comparison_bootstrap, comparison_planted, comparison_transfer
        This subject's comparison table, held-out and planted replicates and planted curves
        (``echoprep comparison subject``): the report ranks the subject's variants from them
        (it depends on no other subject: adding a subject reruns only its report).
    comparison_png, comparison_tsv, recommendation
        Group comparison outputs (optional; shown when given).
    diagnostics
        The subject's NORDIC diagnostics table (:mod:`echoprep.stages.diagnostics`).
    config
        The workflow configuration (shown folded; its ``spatial`` section says why a motion
        section is empty).
    session
        The session the maps come from (for the captions).
    sdc_run
        ``(raw reference echo, boldref, geometry .npz)`` of the session's first run: the
        distortion correction's before/after figure (:mod:`echoprep.report.distortion`).
    surface
        ``(noise ceiling, mesh)``, each ``L``/``R`` -> file: the ``r2_variant``'s session noise
        ceiling on fsnative and the inflated surface (:mod:`echoprep.report.surface`).
    """
    sections: list[Section] = []
    summary: list[str] = []
    warnings: list[str] = []
    ses = f" ses-{session}" if session else ""

    if rank_by is None:
        rank_by = section_defaults("comparison")["rank_by"]
    rec, scope, own_table, own_error, screen = None, "", None, None, None
    if comparison_table is not None:
        try:
            own_table = read_comparison_table(comparison_table)
            boot = read_bootstrap_table(comparison_bootstrap)
            planted = read_bootstrap_table(comparison_planted)
            rec = recommend(own_table, rank_by, boot, planted)
            scope = f"for sub-{subject} (its comparison sessions)"
        except Exception as exc:  # the group outputs below still show
            log.warning("report: the subject's own comparison failed: %s", exc)
            own_table, own_error = None, f"The subject's own comparison failed: {exc}"
    if rec is None and recommendation is not None and Path(recommendation).is_file():
        rec = json.loads(Path(recommendation).read_text())
        scope = "over all subjects"
    if rec is not None:
        screen = first_screen(rec, scope)
        summary.extend(recommendation_lines(rec, scope))
        warnings.extend(recommendation_warnings(rec))

    display, inside = _display(nc_maps, r2, t2star, bold_raw, underlay, brain, roi, roi_tables)
    where = display.describe() if display is not None else ""
    if display is not None and display.roi is not None:
        where += "; red outline: the visually responsive ROI"

    s = Section("tSNR before and after NORDIC")
    if bold_raw and bold_nordic:
        res = _try(s, "tSNR", figures.tsnr_figure, bold_raw, bold_nordic, display=display)
        if res is not None:
            png, stats = res
            s.figures.append(
                (
                    f"tSNR (mean / SD over time) of {Path(bold_raw).name} without (top) and with "
                    f"NORDIC; median {stats['median_before']:.1f} → {stats['median_after']:.1f} "
                    f"(× {stats['ratio']:.2f}). {_cap(where)}",
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
        png = _try(s, "T2* map", figures.t2star_figure, t2star, display=display)
        if png:
            s.figures.append((f"T2* (ms) of {Path(t2star).name}. {_cap(where)}", png))
    else:
        s.missing = "Not available: no optimal-combination (optcom) output in this configuration."
    sections.append(s)

    s = Section("Head motion")
    spatial = _section(config, "spatial")
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
    elif not spatial["enabled"]:
        s.missing = (
            "Not available: spatial preprocessing (head-motion estimation) is off "
            "(spatial.enabled: false)."
        )
    else:
        s.missing = (
            "Not available: spatial preprocessing is on (spatial.output_space: "
            f"{spatial['output_space']}), but the report was given no head-motion confounds "
            f"({folder_name('spatial')}/*_{get('spatial.confounds').file_name('')}) for "
            f"sub-{subject}{ses}."
        )
    sections.append(s)

    s = Section("Distortion correction")
    if sdc_run:
        res = _try(s, "distortion figure", sdc_figure, *sdc_run)
        if res is not None:
            png, st = res
            method = json.loads(sidecar_path(sdc_run[2]).read_text()).get("FieldmapCorrection", {})
            change = f"; the shifts change by up to {st['change_p95']:.3f} voxels over the run"
            s.figures.append(
                (
                    f"{Path(sdc_run[0]).name}: method {method.get('Method', 'none')}, "
                    f"largest shift {st['max_shift']:.2f} voxels"
                    f"{change if st['framewise'] else ''} (docs/distortion.md)",
                    png,
                )
            )
    elif not spatial["enabled"]:
        s.missing = "Not available: spatial preprocessing is off (spatial.enabled: false)."
    else:
        s.missing = (
            "Not available: spatial preprocessing is on, but the report was given no run "
            f"geometry ({folder_name('spatial')}/*_{get('spatial.xfm').file_name('')}) for "
            f"sub-{subject}{ses}."
        )
    sections.append(s)

    s = Section("R² and noise ceiling")
    over = underlay_kind if underlay else "map itself"
    if r2:
        png = _try(
            s,
            "R² map",
            figures.overlay_figure,
            {f"R² {r2_variant or ''}".strip(): r2},
            label="R² (%)",
            title=f"GLMsingle R² (%) over the {over}",
            display=display,
            inside={"r2": provenance.source_mask(r2) or inside},
        )
        if png:
            s.figures.append((f"R² (%) of {Path(r2).name}. {_cap(where)}", png))
    if nc_maps:
        png = _try(
            s,
            "noise-ceiling maps",
            figures.overlay_figure,
            dict(nc_maps),
            label="noise ceiling (%)",
            title=f"Noise ceiling (%) per variant{ses} over the {over}",
            display=display,
            inside={v: provenance.source_mask(p) or inside for v, p in nc_maps.items()},
        )
        if png:
            s.figures.append(
                (
                    "Session noise ceiling (%, NSD ncsnr), one row per variant, one colour "
                    "scale for all; opaque where the GLM was fitted (dark purple = 0 %, "
                    f"yellow = the highest values). {_cap(where)}",
                    png,
                )
            )
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
    if surface:
        sections.append(surface_section(*surface, r2_variant))

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
            header, rows = _frame_rows(table, diagnostics)
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
        s.warnings.extend(recommendation_warnings(rec))
        for m, info in (rec.get("measures") or {}).items():
            if isinstance(info, Mapping) and info.get("description"):
                s.text.append(f"{measure_label(rec, m)}: {info['description']}")
    if own_table is not None:
        png = _try(s, "comparison figure", _png, plot_comparison, own_table)
        if png:
            s.figures.append(
                (
                    f"sub-{subject}: fidelity to planted responses and held-out fidelity (r), "
                    "median noise ceiling (%) in the visually responsive ROI and d′ per variant "
                    f"({labels.DOTS})",
                    png,
                )
            )
        transfer = read_bootstrap_table(comparison_transfer)
        if transfer is not None and not transfer.empty:
            png = _try(s, "planted responses figure", _png, plot_transfer, transfer)
            if png:
                s.figures.append((transfer_caption(subject), png))
        header, rows = _frame_rows(own_table, comparison_table)
        s.tables.append((f"sub-{subject}", header, rows))
    if comparison_png and Path(comparison_png).is_file():
        s.figures.append(
            (
                "All subjects: fidelity to planted responses and held-out fidelity (r), median "
                f"noise ceiling (%) in the visually responsive ROI and d′ per variant "
                f"({labels.DOTS})",
                Path(comparison_png).read_bytes(),
            )
        )
    if comparison_tsv and Path(comparison_tsv).is_file() and own_table is None:
        header, rows = _table_rows(comparison_tsv)
        mine = [r for r in rows if str(r[0]) == subject]
        s.tables.append((f"sub-{subject}", header, mine))
    if rec is not None:
        over = "sessions" if own_table is not None else "subjects"
        header, rows = ranking_table(rec)
        s.tables.append((f"Ranking {scope} (means over {over})", header, rows))
        s.text.append(
            "The group ranking over all subjects, which decides the recommended variant, is in "
            f"{get('comparison.json').path('', group_key())} (and in `snakemake --report`)."
        )
    if not s.figures and not s.tables:
        s.missing = "Not available: the comparison was not run."
    sections.append(s)

    s = Section("Options and versions")
    shown = [
        bold_raw,
        bold_nordic,
        t2star,
        *confounds,
        *(sdc_run or ()),
        underlay,
        r2,
        *(nc_maps or {}).values(),
        *(roi_tables or {}).values(),
        brain,
        roi,
        comparison_table,
        comparison_tsv,
        recommendation,
        diagnostics,
    ]
    s.text.append(
        "Software that produced the outputs shown on this page (the SoftwareVersions of their "
        "sidecars, followed back through their Sources) and that drew this page (reports):"
    )
    s.tables.append(
        ("Software", ["package", "version", "used for (output folders)"], _software(shown))
    )
    s.details.append(
        (
            "Workflow configuration (JSON; folders relative to this page)",
            json.dumps(
                relative_paths(dict(config or {}), Path(out).parent), indent=2, sort_keys=True
            ),
        )
    )
    sections.append(s)

    text = render(
        f"echoprep report: sub-{subject}",
        sections,
        subtitle=f"Multi-echo fMRI preprocessing and single-trial GLM quality{ses}.",
        summary=summary,
        warnings=list(dict.fromkeys(warnings)),
        footer=f"Generated by echoprep {__version__}. Self-contained: figures are embedded.",
        verdict=screen,
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
    for flag in ("--bold-raw", "--bold-nordic", "--t2star", "--underlay", "--r2"):
        parser.add_argument(flag, type=Path, default=None)
    parser.add_argument("--confounds", nargs="*", type=Path, default=[])
    parser.add_argument(
        "--sdc-run", nargs=3, type=Path, default=None, metavar=("ECHO", "BOLDREF", "GEOMETRY")
    )
    parser.add_argument("--underlay-kind", default="T1w")
    parser.add_argument("--r2-variant", default=None)
    for flag in ("--nc", "--roi-table"):
        parser.add_argument(flag, nargs="*", default=[], metavar="VARIANT=PATH")
    for flag in ("--surface-nc", "--surface-mesh"):
        parser.add_argument(flag, nargs="*", default=[], metavar="L=PATH")
    parser.add_argument(
        "--brain", type=Path, default=None, help="brain mask on the noise-ceiling maps' grid"
    )
    parser.add_argument(
        "--roi",
        type=Path,
        default=None,
        help="the visual ROI mask, outlined on every map (default: from the ROI tables' sidecars)",
    )
    parser.add_argument(
        "--rank-by",
        choices=RANK_METRICS,
        default=None,
        help="comparison.rank_by (default: the schema's)",
    )
    for flag, what in (
        ("--comparison-table", "comparison table"),
        ("--comparison-bootstrap", "held-out fidelity bootstrap table"),
        ("--comparison-planted", "planted fidelity bootstrap table"),
        ("--comparison-transfer", "planted-against-recovered table"),
        ("--diagnostics", "NORDIC diagnostics table"),
    ):
        parser.add_argument(flag, type=Path, default=None, help=f"the subject's {what}")
    parser.add_argument("--comparison-png", type=Path, default=None)
    parser.add_argument("--comparison-tsv", type=Path, default=None)
    parser.add_argument("--recommendation", type=Path, default=None)
    parser.add_argument(
        "--config-json", default=None, help="the workflow configuration shown on the page"
    )
    parser.add_argument(
        "--config-file", type=Path, default=None, help="the same, as a JSON file (the rules')"
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
        sdc_run=args.sdc_run,
        underlay=args.underlay,
        underlay_kind=args.underlay_kind,
        r2=args.r2,
        r2_variant=args.r2_variant,
        nc_maps=key_paths(args.nc, "--nc", form="VARIANT=PATH"),
        roi_tables=key_paths(args.roi_table, "--roi-table", form="VARIANT=PATH"),
        brain=args.brain,
        roi=args.roi,
        rank_by=args.rank_by,
        comparison_table=args.comparison_table,
        comparison_bootstrap=args.comparison_bootstrap,
        comparison_planted=args.comparison_planted,
        comparison_transfer=args.comparison_transfer,
        comparison_png=args.comparison_png,
        comparison_tsv=args.comparison_tsv,
        recommendation=args.recommendation,
        diagnostics=args.diagnostics,
        config=(
            json.loads(args.config_file.read_text())
            if args.config_file
            else json.loads(args.config_json)
            if args.config_json
            else None
        ),
        session=args.session,
        surface=(key_paths(args.surface_nc), key_paths(args.surface_mesh))
        if args.surface_nc
        else None,
    )
    return 0


__all__ = [
    "ReportOptions",
    "add_arguments",
    "build_report",
    "run_from_args",
    "stage_options",
]
