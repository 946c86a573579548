"""Echo handling of one run: the outputs, the options, the checks, single echo and optcom.

Each function validates its inputs, runs the computation (or tedana, through
:mod:`echoprep.adapters.tedana`) in a private working folder, moves the results to their
BIDS-derivative names and writes JSON sidecars. Output names come from the output registry
(:mod:`echoprep.io.outputs`, stage ``combine``), which the plan also gives the Snakemake rules,
so a name is defined once. Options: one frozen object per config section (``single_echo``,
``optcom``, ``tedana``), defaults and allowed values from the config schema. ICA denoising:
:mod:`echoprep.stages.combine.ica`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nibabel as nib
import numpy as np

from echoprep.adapters import tedana as tedana_adapter
from echoprep.io.atomic import atomic_path
from echoprep.io.bids_uri import localize
from echoprep.io.images import (
    StageInputError,
    atomic_save,
    check_same_grid,
    copy_if_float32,
    float_image,
    load_image,
    save_tool_output,
)
from echoprep.io.paths import sidecar_path
from echoprep.io.sidecars import write_sidecar
from echoprep.options import parse_options
from echoprep.variants import MIN_ECHOES

log = logging.getLogger(__name__)


#: Units and descriptions written into the sidecars of each output key.
_DESCRIPTIONS: dict[str, dict[str, Any]] = {
    "t2star": {"Units": "s", "Description": "T2* map from tedana (full, unlimited fit)"},
    "s0": {"Units": "arbitrary", "Description": "S0 map from tedana"},
    "mask": {
        "Description": "tedana adaptive mask: number of echoes with good signal per voxel",
    },
    "metrics": {"Description": "tedana ICA component table with classifications"},
    "mixing": {"Description": "tedana ICA mixing matrix (volumes x components)"},
}


# --- options -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SingleEchoOptions:
    """The ``single_echo:`` config section (defaults and allowed values: the config schema)."""

    echo: int


@dataclass(frozen=True)
class OptcomOptions:
    """The ``optcom:`` config section (tedana ``t2smap_workflow``)."""

    fittype: str
    masktype: tuple[str, ...]


@dataclass(frozen=True)
class TedanaOptions:
    """The ``tedana:`` config section (tedana ``tedana_workflow``); ``nordic_tedpca`` applies
    to NORDIC-denoised echoes only."""

    fittype: str
    masktype: tuple[str, ...]
    tedpca: str
    nordic_tedpca: str | int
    max_components: float | None
    tree: str
    ica_method: str
    n_robust_runs: int
    maxit: int
    maxrestart: int


#: The config section of each variant's options.
SECTIONS: dict[str, tuple[str, type]] = {
    "single": ("single_echo", SingleEchoOptions),
    "optcom": ("optcom", OptcomOptions),
    "denoised": ("tedana", TedanaOptions),
}

_O = TypeVar("_O")

#: Key of the ICA-denoised outputs' sidecar record (read back by
#: :func:`echoprep.stages.combine.ica.read_component_count`).
ICA_RECORD = "TedanaICA"


def section_options(
    cls: type[_O], section: str, given: _O | Mapping[str, Any] | None, source: str = "options"
) -> _O:
    """``given`` itself when it is a ``cls``, else parsed from (part of) its config section
    (missing keys: schema defaults; unknown keys and values the schema refuses: an
    :class:`echoprep.options.OptionsError`)."""
    return parse_options(cls, section, given, source=source)


def validate_echoes(
    echo_files: Sequence[str | Path], echo_times: Sequence[float], *, min_echoes: int = 1
) -> tuple[int, int, int, int]:
    """Check that a run's echo images can be combined.

    Parameters
    ----------
    echo_files
        One 4D magnitude image per echo, in echo-time order.
    echo_times
        Echo times in seconds, same order.
    min_echoes
        Fewest echoes the caller needs (tedana needs 3 for ICA denoising, 2 for a T2* fit).

    Returns
    -------
    tuple
        The common shape ``(x, y, z, t)``.

    Raises
    ------
    StageInputError
        Naming the file, what was expected, what was found and how to fix it.
    """
    files = [Path(f) for f in echo_files]
    if len(files) != len(echo_times):
        raise StageInputError(
            f"expected one echo time per echo file; found {len(files)} files and "
            f"{len(echo_times)} echo times. Fix: pass --te once per --echo."
        )
    if len(files) < min_echoes:
        raise StageInputError(
            f"{files[0] if files else '<no files>'}: expected at least {min_echoes} echoes; "
            f"found {len(files)}. Fix: provide all echoes of the run."
        )
    tes = np.asarray(echo_times, dtype=float)
    if np.any(tes <= 0) or np.any(tes > 0.5):
        raise StageInputError(
            f"{files[0]}: expected echo times in seconds (0 < TE < 0.5); found {tes.tolist()}. "
            "Fix: give EchoTime in seconds (divide milliseconds by 1000)."
        )
    if np.any(np.diff(tes) <= 0):
        raise StageInputError(
            f"{files[0]}: expected echoes in increasing echo-time order; found {tes.tolist()}. "
            "Fix: order the echo files by echo time."
        )
    ref_img = load_image(files[0], "NIfTI image")
    shape = ref_img.shape
    if len(shape) != 4 or shape[3] < 2:
        raise StageInputError(
            f"{files[0]}: expected a 4D BOLD series (x, y, z, volumes); found shape {shape}. "
            "Fix: pass the 4D BOLD image of the echo, not a single volume."
        )
    for f in files[1:]:
        img = load_image(f, "NIfTI image")
        if img.shape != shape:
            raise StageInputError(
                f"{f}: expected the same shape as {files[0].name} {shape}; found {img.shape}. "
                "Fix: all echoes of a run must come from the same acquisition."
            )
        check_same_grid(
            img,
            ref_img,
            path=f,
            ref_path=files[0],
            what="echo",
            fix="Fix: all echoes of a run must share one voxel grid.",
        )
    return shape  # type: ignore[return-value]


#: Sidecar fields of the echoes that a combined series keeps: its sampling in time (BIDS
#: ``SliceTimingCorrected``, ``StartTime``, written by the spatial stage's slice-timing
#: correction). A reader takes a series without them as sampled at each slice's acquisition
#: time (the planted design's shape fit, first-level tools such as nilearn's).
TIMING_FIELDS = ("SliceTimingCorrected", "StartTime")


def _echo_sidecar(echo_files: Sequence[str | Path]) -> tuple[Path, dict[str, Any]]:
    """The first echo's sidecar path and its fields (``{}`` when it has none or it is not a
    JSON object)."""
    side = sidecar_path(Path(echo_files[0]))
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError):
        return side, {}
    return side, meta if isinstance(meta, dict) else {}


def _spatial_reference(echo_files: Sequence[str | Path]) -> dict[str, Any]:
    """``{"SpatialReference": ...}`` of echoes in a named space (the spatial stage's resampled
    echoes record their grid image in their sidecars), else ``{}``: outputs that carry the
    space entity need it (BIDS derivatives)."""
    side, meta = _echo_sidecar(echo_files)
    ref = meta.get("SpatialReference")
    return {"SpatialReference": localize(ref, side)} if ref else {}


def _timing(echo_files: Sequence[str | Path]) -> dict[str, Any]:
    """The echoes' :data:`TIMING_FIELDS` (those their sidecar has), for the combined series."""
    _, meta = _echo_sidecar(echo_files)
    return {k: meta[k] for k in TIMING_FIELDS if k in meta}


def write_single_echo(
    echo_files: Sequence[str | Path],
    echo_times: Sequence[float],
    outputs: Mapping[str, str | Path],
    *,
    options: SingleEchoOptions | Mapping[str, Any] | None = None,
    repetition_time: float | None = None,
    drop_volumes: int = 0,
) -> dict[str, Path]:
    """The single-echo baseline: one echo of the run, unchanged, as float32.

    Parameters
    ----------
    echo_files, echo_times
        All echoes of the run (4D magnitude images) and their echo times in s.
    outputs
        ``{"bold": path}``.
    options
        The ``single_echo:`` config section (``echo``: 1-based echo in echo-time order).
    repetition_time
        TR in s, recorded in the sidecar.
    drop_volumes
        Trailing (noise) volumes to leave out.
    """
    echo = section_options(SingleEchoOptions, "single_echo", options).echo
    validate_echoes(echo_files, echo_times)
    if not 1 <= echo <= len(echo_files):
        raise StageInputError(
            f"{echo_files[0]}: expected single_echo.echo between 1 and {len(echo_files)}; "
            f"found {echo}. Fix: set single_echo.echo in the config to an existing echo."
        )
    src = Path(echo_files[echo - 1])
    img = nib.load(src)
    n_keep = img.shape[3] - drop_volumes
    if n_keep < 2:
        raise StageInputError(
            f"{src}: expected more volumes than the {drop_volumes} noise volumes to drop; "
            f"found {img.shape[3]}. Fix: set nordic.noise_volumes correctly."
        )
    out = Path(outputs["bold"])
    # the usual input (the resampling's float32 output) is written as it is, not decoded and
    # encoded again (docs/performance.md)
    if drop_volumes or not copy_if_float32(src, out):
        atomic_save(float_image(img.slicer[..., :n_keep].get_fdata(dtype=np.float32), img), out)
    extra: dict[str, Any] = {
        "EchoTime": float(echo_times[echo - 1]),
        "Description": f"Single-echo baseline: echo {echo} of {len(echo_files)}, unchanged",
        "SkullStripped": False,
        **_spatial_reference([src]),
        **_timing([src]),
    }
    if repetition_time is not None:
        extra["RepetitionTime"] = float(repetition_time)
    write_sidecar(
        out, sources=[src], parameters={"echo": echo, "drop_volumes": drop_volumes}, extra=extra
    )
    log.info("single echo %d -> %s", echo, out)
    return {"bold": out}


def _collect_tedana(
    produced: Mapping[str, Path],
    outputs: Mapping[str, str | Path],
    sources: Sequence[Path],
    parameters: Mapping[str, Any],
    extra: Mapping[str, Any],
    record: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Move tedana's files (``produced``: output key -> file) to the requested outputs (each
    renamed into place atomically) and write their sidecars."""
    written: dict[str, Path] = {}
    for key, path in produced.items():
        if key not in outputs:
            continue
        if not path.exists():
            raise RuntimeError(
                f"tedana did not write {path.name} in {path.parent}; see the job log for its "
                "messages"
            )
        out = Path(outputs[key])
        if out.name.endswith((".nii.gz", ".nii")):
            save_tool_output(path, out)  # our NIfTI conventions (units), tedana's voxels
        else:
            with atomic_path(out) as tmp:
                shutil.move(path, tmp)
        side = dict(extra) if key == "bold" else {}
        side.update(_DESCRIPTIONS.get(key, {}))
        if record:
            side[ICA_RECORD] = dict(record)
        if out.name.endswith(".nii.gz") and key != "mask":
            side["SkullStripped"] = True  # tedana zeroes voxels outside its adaptive mask
        if out.name.endswith(".nii.gz"):
            side.update(_spatial_reference(sources))
        write_sidecar(out, sources=sources, parameters=parameters, extra=side, software=["tedana"])
        written[key] = out
    return written


def run_tedana_tool(
    tool: Callable[..., dict[str, Path]],
    variant: str,
    files: Sequence[Path],
    echo_times: Sequence[float],
    outputs: Mapping[str, str | Path],
    *,
    parameters: Mapping[str, Any],
    description: str,
    work_dir: str | Path | None,
    repetition_time: float | None,
    drop_volumes: int,
    inspect: Callable[[Path, float], dict[str, Any]] | None = None,
    **tool_options: Any,
) -> dict[str, Path]:
    """Run an adapter function of :mod:`echoprep.adapters.tedana` in a private folder (under
    ``work_dir``, removed afterwards) on the echoes without their dropped volumes, then move
    and describe its outputs.

    ``inspect(folder, seconds)``, when given, reads tedana's folder after the run (before its
    outputs move) and returns the record written into every output's sidecar
    (:data:`ICA_RECORD`).
    """
    extra: dict[str, Any] = {
        "EchoTime": [float(t) for t in echo_times],
        "Description": description,
        **_timing(files),
    }
    if repetition_time is not None:
        extra["RepetitionTime"] = float(repetition_time)
    base = Path(work_dir) if work_dir else None
    if base:
        base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix=f"{variant}-") as tmp:
        inputs = tedana_adapter.trimmed_echoes(files, drop_volumes, Path(tmp))
        t0 = time.perf_counter()
        produced = tool(inputs, echo_times, tmp, **tool_options)
        record = inspect(Path(tmp), time.perf_counter() - t0) if inspect else None
        parameters = {**parameters, "drop_volumes": drop_volumes}
        return _collect_tedana(produced, outputs, files, parameters, extra, record)


def run_optcom(
    echo_files: Sequence[str | Path],
    echo_times: Sequence[float],
    outputs: Mapping[str, str | Path],
    *,
    options: OptcomOptions | Mapping[str, Any] | None = None,
    work_dir: str | Path | None = None,
    n_threads: int = 1,
    repetition_time: float | None = None,
    drop_volumes: int = 0,
) -> dict[str, Path]:
    """T2*/S0 fit and optimal combination with tedana's ``t2smap_workflow``.

    Parameters
    ----------
    echo_files
        4D magnitude image per echo (x, y, z, t), in echo-time order.
    echo_times
        Echo times in s.
    outputs
        Keys of the registry's ``combine`` outputs of ``optcom`` (``bold``, ``t2star``, ``s0``,
        ``mask``) to paths.
    options
        The ``optcom:`` config section (``fittype``, ``masktype``), passed to tedana.
    work_dir
        Parent of the private tedana working folder (removed afterwards).
    n_threads
        Threads tedana may use.
    repetition_time
        TR in s, recorded in the sidecar of the combined series.
    drop_volumes
        Trailing (noise) volumes to leave out.
    """
    opts = section_options(OptcomOptions, "optcom", options)
    files = [Path(f) for f in echo_files]
    validate_echoes(files, echo_times, min_echoes=MIN_ECHOES["optcom"])
    masktype = list(opts.masktype)
    return run_tedana_tool(
        tedana_adapter.run_t2smap,
        "optcom",
        files,
        echo_times,
        outputs,
        parameters={"fittype": opts.fittype, "masktype": masktype, "combmode": "t2s"},
        description="tedana optimal combination (T2*-weighted) of the echoes",
        work_dir=work_dir,
        repetition_time=repetition_time,
        drop_volumes=drop_volumes,
        fittype=opts.fittype,
        masktype=masktype,
        n_threads=n_threads,
    )
