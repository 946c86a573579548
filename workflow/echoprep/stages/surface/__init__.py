"""Surface stage: FreeSurfer surfaces in the T1w space, maps sampled to fsnative and fsaverage.

Two jobs, each a sub-command of ``echoprep surface`` (docs/surface.md):

``anatomy``
    One subject's FreeSurfer surfaces aligned to the anatomy stage's T1w (FreeSurfer's own
    geometry, refined by a rigid registration of ``orig.mgz``) →
    ``anat/sub-X/anat/sub-X_from-fsnative_to-T1w_mode-image_xfm.txt`` and per hemisphere
    ``sub-X_hemi-<L|R>_{white,pial,midthickness}.surf.gii`` (T1w world) and
    ``sub-X_hemi-<L|R>_desc-reg_sphere.surf.gii`` (:mod:`.align`).
``sample``
    Maps of the functional grid (single-trial betas, noise ceilings, R², BOLD series) sampled
    through the cortical ribbon to fsnative and resampled to fsaverage →
    ``..._hemi-<L|R>_space-<fsnative|fsaverage>_..._statmap.func.gii`` beside the volume
    (:mod:`.sample`).

Options: :class:`SurfaceOptions` (config section ``surface``). Array code:
:mod:`echoprep.kernels.surface`; FreeSurfer and GIFTI files: :mod:`echoprep.io.freesurfer`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from echoprep.adapters import ants
from echoprep.io.arguments import key_paths
from echoprep.options import parse_options
from echoprep.stages.surface.align import run_surface_anatomy
from echoprep.stages.surface.sample import output_key, parse_output_key, run_surface_sample


@dataclass(frozen=True)
class SurfaceOptions:
    """Options of the surface stage: the config's ``surface`` section (defaults, allowed
    values and descriptions in the config schema). ``enabled``, ``freesurfer_dir``,
    ``fsaverage`` and ``bold`` are read by the workflow (which subjects, which template,
    which series), ``depths`` and ``alignment`` by the stage."""

    enabled: bool
    freesurfer_dir: str | None
    fsaverage: str | None
    depths: int
    alignment: str
    bold: bool


def parse_surface_options(given: Mapping[str, Any] | None, source: str) -> SurfaceOptions:
    """:class:`SurfaceOptions` from (part of) the ``surface`` section."""
    return parse_options(SurfaceOptions, "surface", given, source=source)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep surface {anatomy,sample}`` arguments to a sub-command parser."""
    sub = parser.add_subparsers(dest="surface_command", required=True)
    a = sub.add_parser("anatomy", help="FreeSurfer surfaces aligned to the T1w, as GIFTI")
    a.add_argument("--orig", required=True, help="FreeSurfer's mri/orig.mgz")
    a.add_argument("--surf", nargs="+", required=True, metavar="lh.white=PATH")
    a.add_argument("--t1w", required=True, help="the anatomy stage's preprocessed T1w")
    a.add_argument("--brain-mask", required=True)
    a.add_argument("--options-json", default=None, help="the config's surface section")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--out", nargs="+", required=True, metavar="KEY=PATH")
    s = sub.add_parser("sample", help="maps of the functional grid to fsnative and fsaverage")
    s.add_argument("--map", nargs="+", required=True, metavar="NAME=PATH")
    s.add_argument("--mask", nargs="+", required=True, help="mask(s) of the maps' grid (the GLM's)")
    s.add_argument("--surfaces", nargs="+", required=True, metavar="white_L=PATH")
    s.add_argument("--template", default=None, help="template space label (fsaverage)")
    s.add_argument("--template-sphere", nargs="*", default=None, metavar="L=PATH")
    s.add_argument("--options-json", default=None, help="the config's surface section")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out", nargs="+", required=True, metavar="betas_L_fsnative=PATH")
    return parser


def _options(args: argparse.Namespace) -> SurfaceOptions:
    given = json.loads(args.options_json) if args.options_json else {}
    return parse_surface_options(given, "--options-json")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the chosen ``surface`` sub-command; exit status 0."""
    opts = _options(args)
    if args.surface_command == "anatomy":
        ants.set_itk_threads(args.threads)
        run_surface_anatomy(
            args.orig,
            key_paths(args.surf, "--surf", form="lh.white=PATH"),
            args.t1w,
            args.brain_mask,
            key_paths(args.out),
            alignment=opts.alignment,
            seed=int(args.seed) + 1,
        )
        return 0
    run_surface_sample(
        key_paths(args.map, "--map", form="NAME=PATH"),
        list(args.mask),
        key_paths(args.surfaces, "--surfaces", form="white_L=PATH"),
        key_paths(args.out),
        depths=opts.depths,
        template=args.template,
        template_spheres=key_paths(args.template_sphere, "--template-sphere", form="L=PATH")
        or None,
    )
    return 0


__all__ = [
    "SurfaceOptions",
    "add_arguments",
    "output_key",
    "parse_output_key",
    "parse_surface_options",
    "run_from_args",
    "run_surface_anatomy",
    "run_surface_sample",
]
