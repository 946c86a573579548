"""Anatomy stage: one T1w per subject → N4-corrected T1w, brain mask, tissues, template transforms.

Steps (all in the T1w's own grid; nothing is resampled except what goes to the template and
the gradient-nonlinearity correction). First, when the plan gives a coefficient file for the
T1w's scanner (``--gradient-json``, decided from the T1w's own sidecar: docs/gradients.md,
"Anatomy and SBRefs"), the T1w is taken at ``p + d(p)`` on its own grid (cubic B-spline)
before anything else; every sidecar then records ``GradientNonlinearity`` and the coefficient
file is a source (without one, nothing changes). Then:

0. **Noise background** of an MP2RAGE UNI T1w (uniform noise outside the head) set to 0 when
   detected (``anatomy.uni_background``, :mod:`.background`; docs/anatomy.md); any other T1w
   is untouched.
1. **N4** bias-field correction (ANTs, through antspyx) inside a head mask
   → ``desc-preproc_T1w`` (not skull-stripped, as fMRIPrep's).
2. **Brain mask** with deepbet (a CNN; its weights ship inside the package) on the corrected T1w
   → ``desc-brain_mask``.
3. **Registration** of the skull-stripped T1w to the skull-stripped template (ANTs rigid → affine
   → SyN, seeded) → ``from-T1w_to-<template>_mode-image_xfm.h5`` and its inverse
   ``from-<template>_to-T1w_mode-image_xfm.h5``.
4. **Tissue classes** with ANTs Atropos inside the brain mask: by default initialised with the
   template's GM/WM/CSF probability maps brought into the T1w through the inverse transform and
   kept as priors (``prior_weight``), or intensity-only k-means (``segmentation="kmeans"``)
   → ``label-{GM,WM,CSF}_probseg`` and ``dseg`` (BIDS labels 0 BG, 1 GM, 2 WM, 3 CSF, with the
   ``dseg.tsv`` look-up table).

Every ANTs call (and the transform files) is in :mod:`echoprep.adapters.ants`, deepbet in
:mod:`echoprep.adapters.deepbet`, the tissue arithmetic in :mod:`echoprep.kernels.tissue`; this
package validates and loads the T1w (:mod:`.t1w`), calls them and writes the outputs
(:mod:`.run`, with the output names) and the options in :mod:`.options`
(:class:`AnatomyOptions`: config section ``anatomy``; defaults and allowed values in the config
schema). Every public name is importable from ``echoprep.stages.anatomy``.

**Unusual input is a warning, not an error.** A field of view below 80 mm along an axis, a brain
mask under 100 ml, a poor fit to the template (Dice < 0.5) and Atropos failing with the template
priors (then k-means initialisation is used) are logged and listed under ``Warnings`` in every
sidecar (an empty list when there is nothing to say). Only unusable input stops the stage: what
discovery already refuses from the header (:func:`echoprep.io.bids_checks.check_t1w_header`),
NaN or constant voxel values, an empty brain mask, or Atropos failing without priors too.

**Template.** nilearn's bundled MNI152 files are ``mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a``,
i.e. the ICBM 2009a *nonlinear symmetric* template (the image is exactly left-right symmetric;
nilearn's docstring calls it asymmetric, its file names and its data say symmetric), skull-stripped
and rescaled by nilearn. Its TemplateFlow / BIDS label is ``MNI152NLin2009aSym`` (not fMRIPrep's
``MNI152NLin2009cAsym``); :data:`TEMPLATE` holds it and every name below uses it.

**Transforms.** Each direction is one ITK/ANTs *composite* transform in HDF5 (``.h5``: the affine
and the SyN displacement field together, as fMRIPrep writes ``*_xfm.h5``):

* ``from-T1w_to-<template>``: moving = an image in T1w space, reference = a template-space grid;
* ``from-<template>_to-T1w``: moving = an image in template space (e.g. an ROI mask), reference =
  the T1w (or any T1w-aligned grid).

Apply them with :func:`echoprep.adapters.ants.apply_to_grid` (re-exported here as
:func:`apply_to_grid`, the name the transforms' sidecars give), e.g. an MNI-space ROI to the
functional grid: ``apply_to_grid(roi, [<T1w→func>, <MNI→T1w .h5>], func_grid, "label")``.

**Threads and determinism.** :func:`run_anatomy` sets ITK's thread count (and torch's) before
antspyx is first used; a process that already used antspyx keeps its first setting.
Registration is seeded (``--random-seed seed+1``: ANTs takes a non-zero seed) and uses
correlation metrics (GC for the linear stages, CC for SyN: ANTs's "Repro" settings), which give
identical results on repeated multi-threaded runs (Mattes MI does not, even seeded); Atropos runs
with its constant internal seed; deepbet's CPU inference is deterministic. The same inputs,
options and thread count give identical NIfTI outputs (checked by the unit tests), and
byte-identical ``*_xfm.h5`` files (their HDF5 object times are set to 0).

**Defaults and cost** (2 shared cores, simulated T1w, default options): ``registration="quick"``
on a template grid of the T1w's voxel size (1 mm for a 1 mm T1w) — tiny (4 mm) 13-23 s, demo
(2 mm) 51-60 s, LAION-like 1 mm 474 s (431 s of it registration; ``template_resolution=2``
brings it to 143 s with a slightly worse fit). The unit tests use ``registration="fast"``.

**Segmentation and the simulator.** The simulated T1w's contrast is the template's own T1 and its
truth labels are the template's GM/WM maps under a similarity transform, so intensity-only
k-means does poorly on it (GM Dice 0.75 tiny, 0.83 demo) and template priors do well; a larger
``prior_weight`` scores higher there for that circular reason (0.5: GM 0.94), so the default
stays at ANTs's usual 0.25 (GM 0.86 tiny, 0.91 demo, 0.92 LAION-like).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from echoprep.adapters.ants import REGISTRATION_PRESETS, apply_to_grid
from echoprep.io.arguments import key_paths
from echoprep.stages.anatomy.options import AnatomyOptions, parse_anatomy_options
from echoprep.stages.anatomy.run import (
    OUTPUTS,
    REQUIRED_OUTPUTS,
    TEMPLATE,
    TEMPLATE_INFO,
    run_anatomy,
)
from echoprep.stages.anatomy.t1w import MIN_FOV_MM, VOXEL_RANGE_MM, template_maps, validate_t1w

# ---------------------------------------------------------------------------------------------
# command line (wired into ``echoprep`` by cli.py)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep anatomy`` arguments to ``parser`` (a sub-command parser)."""
    parser.add_argument("--t1w", required=True, type=Path, help="the subject's T1w image")
    parser.add_argument(
        "--out",
        nargs="+",
        required=True,
        metavar="KEY=PATH",
        help=f"output paths by key ({', '.join(OUTPUTS)}); preproc, brain_mask, dseg required",
    )
    parser.add_argument(
        "--options-json",
        default=None,
        help='the config anatomy: section as JSON, e.g. {"registration": "precise"}; '
        "missing keys take the defaults",
    )
    parser.add_argument(
        "--gradient-json",
        default=None,
        help='gradient-nonlinearity correction of the T1w: {"coefficients": .grad file, '
        '"patient_position": "HFS"} (docs/gradients.md)',
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`run_anatomy` from parsed :func:`add_arguments` arguments; exit status 0."""
    import json

    outputs = key_paths(args.out)
    given = json.loads(args.options_json) if args.options_json else None
    run_anatomy(
        args.t1w,
        outputs,
        seed=args.seed,
        n_threads=args.threads,
        options=parse_anatomy_options(given, "--options-json"),
        gradient=json.loads(args.gradient_json) if args.gradient_json else None,
    )
    return 0


__all__ = [
    "MIN_FOV_MM",
    "OUTPUTS",
    "REGISTRATION_PRESETS",
    "REQUIRED_OUTPUTS",
    "TEMPLATE",
    "TEMPLATE_INFO",
    "VOXEL_RANGE_MM",
    "AnatomyOptions",
    "add_arguments",
    "apply_to_grid",
    "parse_anatomy_options",
    "run_anatomy",
    "run_from_args",
    "template_maps",
    "validate_t1w",
]
