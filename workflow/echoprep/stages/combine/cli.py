"""``echoprep combine {single,optcom,denoised}``: the echo handling of one run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from echoprep.io.arguments import key_paths
from echoprep.stages.combine.echoes import (
    SECTIONS,
    run_optcom,
    section_options,
    write_single_echo,
)
from echoprep.stages.combine.ica import FALLBACK_FRACTION, run_tedana


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep combine {single,optcom,denoised}`` arguments to a sub-command
    parser."""
    parser.add_argument("variant", choices=list(SECTIONS))
    parser.add_argument(
        "--echo",
        nargs="+",
        required=True,
        type=Path,
        help="4D magnitude image per echo, in echo-time order",
    )
    parser.add_argument("--te", nargs="+", required=True, type=float, help="echo times in s")
    parser.add_argument(
        "--out",
        nargs="+",
        required=True,
        metavar="KEY=PATH",
        help="output paths by key (see echoprep.stages.combine.OUTPUTS)",
    )
    parser.add_argument(
        "--options-json",
        default=None,
        help="the variant's config section as JSON (single: single_echo, optcom: optcom, "
        "denoised: tedana); missing keys: schema defaults",
    )
    parser.add_argument(
        "--nordic",
        action="store_true",
        help="denoised: the echoes are NORDIC-denoised (their ICA dimensionality follows "
        "tedana.nordic_tedpca)",
    )
    parser.add_argument("--tr", type=float, default=None, help="repetition time in s")
    parser.add_argument(
        "--drop-volumes", type=int, default=0, help="trailing (noise) volumes to leave out"
    )
    parser.add_argument(
        "--raw-components",
        type=Path,
        default=None,
        help="sidecar (or *_mixing.tsv) of the ICA-denoised output of the run without NORDIC",
    )
    parser.add_argument(
        "--fallback-fraction",
        type=float,
        default=FALLBACK_FRACTION,
        help="raw_run without --raw-components: components = fraction x volumes",
    )
    parser.add_argument("--seed", type=int, default=0, help="tedana's fixed_seed")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run the chosen echo handling from parsed arguments; exit status 0."""
    section, cls = SECTIONS[args.variant]
    given = json.loads(args.options_json) if args.options_json else {}
    opts = section_options(cls, section, given, source="--options-json")
    outputs = key_paths(args.out)
    common = {"repetition_time": args.tr, "drop_volumes": args.drop_volumes}
    if args.variant == "single":
        write_single_echo(args.echo, args.te, outputs, options=opts, **common)
    elif args.variant == "optcom":
        run_optcom(
            args.echo,
            args.te,
            outputs,
            options=opts,
            work_dir=args.work_dir,
            n_threads=args.threads,
            **common,
        )
    else:
        run_tedana(
            args.echo,
            args.te,
            outputs,
            options=opts,
            nordic=args.nordic,
            raw_components=args.raw_components,
            fallback_fraction=args.fallback_fraction,
            seed=args.seed,
            work_dir=args.work_dir,
            n_threads=args.threads,
            **common,
        )
    return 0


__all__ = ["add_arguments", "run_from_args"]
