"""The ``echoprep`` command line: simulate data, check inputs, run single stages.

The Snakemake rules call the stage sub-commands (``python -m echoprep combine ...``), so every
rule can also be run by hand on one run for debugging.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from echoprep import __version__


def _cmd_simulate(args: argparse.Namespace) -> int:
    from echoprep.simulate import simulate_dataset
    from echoprep.simulate.response import REGIMES

    if args.response not in REGIMES:
        print(
            f"echoprep simulate: expected --response one of {', '.join(sorted(REGIMES))}; "
            f"found {args.response!r}",
            file=sys.stderr,
        )
        return 2
    try:
        out = simulate_dataset(
            args.out,
            args.preset,
            seed=args.seed,
            subjects=args.subjects,
            sessions=args.sessions,
            runs=args.runs,
            motion=args.motion,
            fieldmap=args.fieldmap,
            fieldmap_kind=args.fieldmap_kind,
            field_dynamics=args.field_dynamics,
            distortion=args.distortion,
            phase=not args.no_phase,
            subject_offset=args.subject_offset,
            response=args.response,
            t1w_kind=args.t1w_kind,
            fieldmaps_per_session=args.fieldmaps_per_session,
            t2w=args.t2w,
            anat_session=args.anat_session,
            gradient_nonlinearity=args.gradient_nonlinearity,
            freesurfer=not args.no_freesurfer,
            shared_images=args.shared_images,
        )
    except (ValueError, FileExistsError) as exc:  # refused arguments: a message, no traceback
        print(f"echoprep simulate: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


def _cmd_discover(args: argparse.Namespace) -> int:
    from echoprep.io.bids import BIDSInputError, discover

    try:
        ds = discover(
            args.bids_dir,
            participant_label=args.participant_label or None,
            sessions=args.sessions or None,
            task=args.task,
        )
    except BIDSInputError as exc:
        print(exc, file=sys.stderr)
        return 1
    for sub in ds.subjects():
        for ses in ds.sessions(sub):
            runs = ds.runs_of(sub, ses)
            complex_runs = sum(r.has_phase for r in runs)
            phase = (
                "mag+phase"
                if complex_runs == len(runs)
                else "magnitude only"
                if not complex_runs
                else f"mag+phase in {complex_runs} of {len(runs)} runs, the others magnitude only"
            )
            # runs of a session may differ in echoes and TR (legal; discovery warns)
            kinds = Counter(
                f"{len(r.echoes)} echoes (TE {', '.join(f'{t * 1000:.2f}' for t in r.echo_times)}"
                f" ms), TR {r.repetition_time} s"
                for r in runs
            )
            if len(kinds) == 1:
                what = f"{next(iter(kinds))}, {phase}"
            else:
                what = f"{phase}; " + "; ".join(f"{n} with {kind}" for kind, n in kinds.items())
            print(f"sub-{sub} ses-{ses}: {len(runs)} runs, {what}")
    return 0


#: Stage sub-commands that bring their own arguments: the module has
#: ``add_arguments(parser) -> parser`` and ``run_from_args(args) -> int``. Values: (module, help).
STAGE_COMMANDS: dict[str, tuple[str, str]] = {
    "nordic": ("echoprep.stages.nordic", "NORDIC denoising of the echoes of one run"),
    "combine": (
        "echoprep.stages.combine",
        "echo handling of one run (single/optcom/denoised)",
    ),
    "anatomy": (
        "echoprep.stages.anatomy",
        "T1w bias correction, brain mask, tissue classes and template registration",
    ),
    "spatial": (
        "echoprep.stages.spatial",
        "spatial preprocessing: run geometry, the functional grid, one resampling per echo",
    ),
    "glm": (
        "echoprep.stages.glm",
        "GLMsingle single-trial betas of one session (FITHRF_GLMDENOISE_RR)",
    ),
    "glm-heldout": (
        "echoprep.stages.glm.heldout",
        "GLMsingle on each half of a session's runs apart: the comparison's held-out image means",
    ),
    "analysis-mask": (
        "echoprep.stages.glm.mask",
        "the analysis mask of one session: brain voxels with data in every run of every variant",
    ),
    "noiseceiling": (
        "echoprep.stages.noiseceiling",
        "noise ceilings (NSD ncsnr) of a session's or a subject's single-trial betas",
    ),
    "surface": (
        "echoprep.stages.surface",
        "the cortical surface: FreeSurfer surfaces in T1w space, maps to fsnative and fsaverage",
    ),
    "rois": (
        "echoprep.stages.rois",
        "ROI masks on the functional grid, the visually responsive ROI, ROI tables",
    ),
    "planted": (
        "echoprep.stages.comparison.planting",
        "responses planted into a comparison session: the design, a run's planted echoes, the "
        "variants' planted series",
    ),
    "glm-planted": (
        "echoprep.stages.glm.planted",
        "a variant's GLM fit, frozen, on what its series carry of the planted responses",
    ),
    "comparison": (
        "echoprep.stages.comparison",
        "the 2x3 preprocessing comparison (median ROI noise ceiling, d') and its recommendation",
    ),
    "diagnostics": (
        "echoprep.stages.diagnostics",
        "NORDIC diagnostics of one subject (tSNR gain, amplitude ratio, pattern FWHM, whiteness)",
    ),
    "report": ("echoprep.stages.report", "the self-contained HTML report of one subject"),
    "gradient-warp": (
        "echoprep.stages.gradients",
        "gradient-nonlinearity displacement field (Siemens .grad) on a reference image's grid",
    ),
    "publish": (
        "echoprep.stages.publish",
        "one variant under the LAION-fMRI loader's names (links or copies, the meanR2gt15mask)",
    ),
}


def _cmd_describe(args: argparse.Namespace) -> int:
    """Write a derivative folder's dataset_description.json, .bidsignore and README.md from the
    output registry: the folder's kind follows from its name (``combine-raw`` -> ``combine``)."""
    from echoprep.io.describe import describe_folder
    from echoprep.io.outputs import FOLDERS, folder_kind

    if args.out.name != "dataset_description.json":
        raise SystemExit(f"describe: OUT must end in dataset_description.json, got {args.out}")
    root = args.out.parent
    try:
        kind = folder_kind(root.name)
    except KeyError as exc:
        raise SystemExit(f"describe: {exc.args[0]}; known: {sorted(FOLDERS)}") from None
    if args.stage is not None and args.stage != kind:
        raise SystemExit(f"describe: {root.name} is a {kind} folder, not {args.stage}")
    config = _config_arg(args) or {}
    describe_folder(root, source=str(args.source), config=config, folders=args.folders)
    return 0


def _config_arg(args: argparse.Namespace) -> dict | None:
    """The workflow configuration of ``--config-file PATH`` (a JSON file: what the rules pass)
    or ``--config-json TEXT``; None when neither is given."""
    if getattr(args, "config_file", None) is not None:
        try:
            return json.loads(args.config_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(
                f"--config-file {args.config_file}: expected a JSON file with the workflow"
                f" configuration; could not read it ({exc}). The rule config_snapshot writes"
                " it: run the workflow again to rewrite it."
            ) from None
    return json.loads(args.config_json) if args.config_json else None


def _stage_command(module_name: str):
    """A ``func`` for a :data:`STAGE_COMMANDS` sub-command (imports its module when run)."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(importlib.import_module(module_name).run_from_args(args) or 0)

    return run


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """Refuse abbreviated options on every (sub-)parser: a removed flag must not silently
    match a longer one (``--bootstrap`` is not ``--bootstrap-table``)."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _no_abbreviations(child)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``echoprep`` command.

    Parameters
    ----------
    command
        The sub-command about to be parsed: only its stage module is imported to add its
        arguments (None: every stage module).
    """
    parser = argparse.ArgumentParser(prog="echoprep", description=__doc__)
    parser.add_argument("--version", action="version", version=f"echoprep {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="write a simulated multi-echo BIDS dataset")
    sim.add_argument("out", type=Path, help="folder to create")
    sim.add_argument("--preset", choices=["tiny", "demo", "regime", "laion"], default="tiny")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--subjects", type=int, default=None, help="number of subjects")
    sim.add_argument("--sessions", type=int, default=None, help="sessions per subject")
    sim.add_argument("--runs", type=int, default=None, help="runs per session")
    sim.add_argument(
        "--shared-images",
        action="store_true",
        help="every session of a subject shows the images of its session 1 (each in its own "
        "order, runs and repeat counts, its own noise); an image's true response is the same "
        "in every session",
    )
    sim.add_argument(
        "--subject-offset",
        type=int,
        default=0,
        help="number new subjects from OFFSET+1 and add them to OUT",
    )
    sim.add_argument("--motion", action=argparse.BooleanOptionalAction, default=None)
    sim.add_argument("--fieldmap", action=argparse.BooleanOptionalAction, default=None)
    sim.add_argument(
        "--fieldmap-kind",
        default="phasediff",
        help="phasediff (dual-echo GRE) or epi (a reversed phase-encoding pair, dir-AP/dir-PA)",
    )
    sim.add_argument(
        "--field-dynamics",
        action="store_true",
        help="the B0 field changes over each run (respiration, drift, pitch); truth per volume",
    )
    sim.add_argument(
        "--fieldmaps-per-session",
        type=int,
        default=None,
        metavar="N",
        help="N GRE fieldmaps per session at known times between the runs (run-01..run-0N, no "
        "IntendedFor; AcquisitionTime and scans.tsv), the field drifting over the session",
    )
    sim.add_argument(
        "--gradient-nonlinearity",
        action="store_true",
        help="acquire BOLD, SBRefs and GRE fieldmaps with a synthetic nonlinear gradient coil "
        "(its .grad file in code/gradients/; docs/gradients.md)",
    )
    sim.add_argument(
        "--distortion",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="distort the BOLD by the B0 field (default: when the dataset has fieldmaps)",
    )
    sim.add_argument("--no-phase", action="store_true", help="magnitude-only dataset")
    sim.add_argument(
        "--response",
        default="default",
        metavar="REGIME",
        help="response model: a name of echoprep.simulate.response.REGIMES (spatial structure "
        "of the image-specific response and trial variability, amplitude, noise mix); "
        "default: the default model",
    )
    sim.add_argument(
        "--t1w-kind",
        default="mprage",
        help="mprage (default) or mp2rage (an MP2RAGE UNI T1w: uint16, noise background)",
    )
    sim.add_argument("--t2w", action="store_true", help="also a T2w, aligned to the T1w")
    sim.add_argument(
        "--anat-session",
        default=None,
        metavar="LABEL",
        help="put the anatomy in an anatomy-only session ses-LABEL/anat (e.g. PrismaAnat, no "
        "BOLD); default: ses-01/anat",
    )
    sim.add_argument(
        "--no-freesurfer",
        action="store_true",
        help="no FreeSurfer-like subject in derivatives/freesurfer (then no surface outputs)",
    )
    sim.set_defaults(func=_cmd_simulate)

    dis = sub.add_parser("discover", help="check a BIDS dataset and summarise its runs")
    dis.add_argument("bids_dir", type=Path)
    dis.add_argument("--participant-label", nargs="*", default=[])
    dis.add_argument("--sessions", nargs="*", default=[])
    dis.add_argument("--task", default=None)
    dis.set_defaults(func=_cmd_discover)

    des = sub.add_parser(
        "describe", help="write a derivative folder's dataset_description.json, .bidsignore, README"
    )
    des.add_argument("out", type=Path, help="<output_dir>/<folder>/dataset_description.json")
    des.add_argument(
        "--stage", default=None, help="the folder's kind, checked against its name (optional)"
    )
    des.add_argument("--source", required=True, help="the raw BIDS dataset")
    des.add_argument(
        "--folders", nargs="*", default=[], help="the run's derivative folders (DatasetLinks)"
    )
    des.add_argument("--config-json", default=None, help="workflow configuration as JSON")
    des.add_argument(
        "--config-file", type=Path, default=None, help="workflow configuration: a JSON file"
    )
    des.set_defaults(func=_cmd_describe)

    from echoprep import install_profile

    ins = sub.add_parser(
        "install-profile",
        help="link this checkout's profiles/slurm into ~/.config/snakemake, so that "
        "`snakemake --profile slurm` finds it",
        description=install_profile.DESCRIPTION,
    )
    install_profile.add_arguments(ins)
    ins.set_defaults(func=install_profile.run_from_args)

    import importlib

    # a stage module is imported only for its own command (or for all when none is given):
    # the report stage needs matplotlib, which the other rules' envs do not carry
    for name, (module_name, help_text) in STAGE_COMMANDS.items():
        stage_parser = sub.add_parser(name, help=help_text)
        if command is None or command == name:
            importlib.import_module(module_name).add_arguments(stage_parser)
        stage_parser.set_defaults(func=_stage_command(module_name))
    _no_abbreviations(parser)
    return parser


def _command_of(argv: Sequence[str]) -> str:
    """The sub-command named in ``argv`` (its first word that is not an option), or ""."""
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``echoprep``; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_command_of(argv)).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.func(args) or 0)
