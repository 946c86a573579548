"""ROI stage: user ROI masks on the functional grid, the visually responsive ROI, ROI tables.

Three jobs, each a sub-command of ``echoprep rois``:

``mask``
    One user ROI mask (T1w or template space, from the folder ``rois.dir`` of the config) brought
    into the subject's functional grid with nearest-neighbour interpolation →
    ``rois/sub-X/<category>/sub-X[_space-T1w]_res-<res>_label-<ROI>_mask.nii.gz``.
``visual``
    The data-driven "visually responsive" ROI (``rois/sub-X/visual/..._label-visuallyResponsive_
    mask.nii.gz``), computed once per subject from one fixed GLM variant and session, so that
    every variant is summarised over the same voxels.
``table``
    Per session and variant: ROI, voxels, median and mean noise ceiling, median R² →
    ``glmsingle-<variant>/sub-X/ses-Y/func/sub-X_ses-Y_task-T_desc-ROIs_summary.tsv``.

**User ROI folder.** BIDS-like: ``<dir>/[sub-<label>/]<category>/<name>_mask.nii.gz`` where the
name carries ``space-T1w`` or ``space-MNI152NLin2009aSym`` and ``label-<ROI>``, e.g.
``rois/sub-01/visual/sub-01_space-T1w_label-V1_mask.nii.gz`` or, for a template atlas shared by
every subject, ``rois/category/space-MNI152NLin2009aSym_label-FFA_mask.nii.gz``. A file with a
``sub-`` entity is used for that subject only. The category is the folder the file sits in.
Template-space masks go through the anatomy stage's ``from-<template>_to-T1w`` transform
(with :func:`echoprep.adapters.ants.apply_to_grid`).

One module per job: :mod:`.masks`, :mod:`.visual`, :mod:`.table`; the user ROI folder's names in
:mod:`echoprep.io.rois`; the options (:class:`RoiOptions`, config section ``rois``: defaults and
allowed values in the config schema) in :mod:`.options`. The array code (nearest-neighbour
resampling, the voxel selections) is in :mod:`echoprep.kernels.rois` and
:mod:`echoprep.kernels.visual`.
Every public name is importable from ``echoprep.stages.rois``.

Errors name the file, what was expected, what was found and how to fix it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from echoprep.io.arguments import key_paths
from echoprep.io.outputs import TEMPLATE
from echoprep.io.rois import (
    DEFAULT_CATEGORY,
    ROI_SPACES,
    VISUAL_CATEGORY,
    VISUAL_LABEL,
    RoiFile,
    find_roi_files,
    res_label,
    roi_name,
)
from echoprep.stages.rois.masks import check_binary_mask, roi_to_grid, run_roi_mask
from echoprep.stages.rois.options import RoiOptions, VisualRoiOptions, parse_roi_options
from echoprep.stages.rois.table import TABLE_COLUMNS, load_masks, run_roi_table
from echoprep.stages.rois.visual import count_blank_trials, run_visual_roi

# ---------------------------------------------------------------------------------------------
# command line


def _out(item: str, key: str) -> Path:
    """The path of a single-output sub-command's ``--out KEY=PATH``."""
    return key_paths([item], keys=(key,), form=f"{key}=PATH")[key]


def _visual_options(args: argparse.Namespace) -> RoiOptions:
    """The ``rois`` section of ``--options-json``."""
    given = json.loads(args.options_json) if args.options_json else {}
    return parse_roi_options(given, "--options-json")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep rois {mask,visual,table}`` arguments to a sub-command parser."""
    sub = parser.add_subparsers(dest="rois_command", required=True)
    m = sub.add_parser("mask", help="one user ROI mask to the functional grid")
    m.add_argument("--mask", required=True, type=Path)
    m.add_argument("--space", required=True, choices=ROI_SPACES)
    m.add_argument("--reference", required=True, type=Path, help="functional grid image")
    m.add_argument("--xfm-from-template", type=Path, default=None)
    m.add_argument("--category", default=None)
    m.add_argument(
        "--grid-space",
        default="T1w",
        help="T1w (grid aligned to the T1w) or native (not aligned: placed by world coordinates)",
    )
    m.add_argument("--out", required=True, metavar="mask=PATH")
    v = sub.add_parser("visual", help="the visually responsive ROI of a subject")
    v.add_argument("--betas", required=True, type=Path)
    v.add_argument("--trials", required=True, type=Path)
    v.add_argument("--summary", required=True, type=Path)
    v.add_argument("--onoff-r2", type=Path, default=None)
    v.add_argument("--brain-mask", type=Path, default=None)
    v.add_argument(
        "--analysis-mask", type=Path, default=None, help="analysis mask of the source session"
    )
    v.add_argument(
        "--options-json",
        default=None,
        help="the config rois: section (or part of it) as JSON; missing keys take the defaults",
    )
    v.add_argument("--variant", default=None, help="the variant the GLM outputs come from")
    v.add_argument("--out", required=True, metavar="mask=PATH")
    t = sub.add_parser("table", help="ROI table of one session and variant")
    t.add_argument("--nc", required=True, type=Path)
    t.add_argument("--r2", type=Path, default=None)
    t.add_argument("--masks", nargs="+", required=True, type=Path)
    t.add_argument("--variant", default=None)
    t.add_argument("--surface-nc", nargs="*", default=None, metavar="L=PATH")
    t.add_argument("--surface-r2", nargs="*", default=None, metavar="L=PATH")
    t.add_argument(
        "--surface-rois", nargs="*", default=(), metavar="CATEGORY=PATH", help="surface ROI files"
    )
    t.add_argument("--out", required=True, metavar="tsv=PATH")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run the chosen ``rois`` sub-command; exit status 0."""
    if args.rois_command == "mask":
        run_roi_mask(
            args.mask,
            args.space,
            args.reference,
            _out(args.out, "mask"),
            xfm_from_template=args.xfm_from_template,
            category=args.category,
            grid_space=args.grid_space,
        )
    elif args.rois_command == "visual":
        run_visual_roi(
            args.betas,
            args.trials,
            args.summary,
            _out(args.out, "mask"),
            onoff_r2=args.onoff_r2,
            brain_mask=args.brain_mask,
            analysis_mask=args.analysis_mask,
            options=_visual_options(args),
            variant=args.variant,
        )
    else:
        run_roi_table(
            args.nc,
            args.masks,
            _out(args.out, "tsv"),
            r2=args.r2,
            variant=args.variant,
            surface_nc=key_paths(args.surface_nc, "--surface-nc", form="L=PATH") or None,
            surface_r2=key_paths(args.surface_r2, "--surface-r2", form="L=PATH") or None,
            surface_roi_files=[
                (category, path)
                for category, _, path in (w.partition("=") for w in args.surface_rois)
            ],
        )
    return 0


__all__ = [
    "DEFAULT_CATEGORY",
    "ROI_SPACES",
    "TABLE_COLUMNS",
    "TEMPLATE",
    "VISUAL_CATEGORY",
    "VISUAL_LABEL",
    "RoiFile",
    "RoiOptions",
    "VisualRoiOptions",
    "add_arguments",
    "check_binary_mask",
    "count_blank_trials",
    "find_roi_files",
    "load_masks",
    "parse_roi_options",
    "res_label",
    "roi_name",
    "roi_to_grid",
    "run_from_args",
    "run_roi_mask",
    "run_roi_table",
    "run_visual_roi",
]
