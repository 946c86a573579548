"""Echo handling stage: single-echo baseline, tedana optimal combination, tedana ICA denoising.

Each function validates its inputs, runs the computation (or tedana) in a private working
folder, moves the results to their BIDS-derivative names and writes JSON sidecars. Output
names come from :data:`OUTPUTS` through :func:`echoprep.io.paths.run_output`; the Snakemake
rules use the same table, so a name is defined once.

On NORDIC-denoised echoes tedana's dimensionality criteria fail (nearly one component per
volume); :func:`choose_components` gives such runs the count tedana kept on the same run
without NORDIC, and every ICA-denoised sidecar records the count, its source and the FastICA
attempts (``TedanaICA``).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.io.images import StageInputError, atomic_save, float_image, load_image
from echoprep.io.paths import sidecar_path
from echoprep.io.sidecars import write_dataset_description, write_sidecar

log = logging.getLogger(__name__)

#: Per variant: output key -> (suffix, derivative entities, extension, tedana's own BIDS name).
#: tedana's names (its ``bidsv1.5.0`` convention) are what it writes into its working folder.
OUTPUTS: dict[str, dict[str, tuple[str, dict[str, str], str, str | None]]] = {
    "single": {
        "bold": ("bold", {"desc": "single"}, ".nii.gz", None),
    },
    "optcom": {
        "bold": ("bold", {"desc": "optcom"}, ".nii.gz", "desc-optcom_bold.nii.gz"),
        "t2star": ("T2starmap", {}, ".nii.gz", "T2starmap.nii.gz"),
        "s0": ("S0map", {}, ".nii.gz", "S0map.nii.gz"),
        "mask": (
            "mask",
            {"desc": "adaptiveGoodSignal"},
            ".nii.gz",
            "desc-adaptiveGoodSignal_mask.nii.gz",
        ),
    },
    "denoised": {
        "bold": ("bold", {"desc": "denoised"}, ".nii.gz", "desc-denoised_bold.nii.gz"),
        "metrics": ("metrics", {"desc": "tedana"}, ".tsv", "desc-tedana_metrics.tsv"),
        "mixing": ("mixing", {"desc": "ICA"}, ".tsv", "desc-ICA_mixing.tsv"),
    },
}

#: Output names the BIDS specification does not (yet) define; listed in ``.bidsignore``.
BIDSIGNORE = ("*_T2starmap.*", "*_S0map.*", "*_mixing.*", "*_metrics.*")

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


# --- ICA dimensionality and convergence ----------------------------------------------------

#: ``tedana.nordic_tedpca`` values besides a component count given as text.
NORDIC_TEDPCA_MODES = ("raw_run", "same")
#: Components kept on a NORDIC-denoised run, as a fraction of its volumes, when ``raw_run`` is
#: asked for but no count of the run without NORDIC is given (the stage called by itself).
FALLBACK_FRACTION = 0.2
#: Key of the ICA-denoised outputs' sidecar record (read back by :func:`read_component_count`).
ICA_RECORD = "TedanaICA"


@dataclass(frozen=True)
class ComponentChoice:
    """The dimensionality tedana is given for one run.

    Attributes
    ----------
    tedpca
        What tedana's ``tedpca`` receives: a criterion name (``"aic"``), a component count
        (``int``) or a variance fraction (``float`` < 1).
    source
        Where it came from, in words (recorded in the sidecars).
    fallback
        True when the rule for runs without a count of the run without NORDIC was used.
    """

    tedpca: str | int | float
    source: str
    fallback: bool = False


def parse_tedpca(tedpca: str | int | float) -> str | int | float:
    """tedana's ``tedpca`` from config text: ``"aic"`` stays, ``"30"`` -> 30, ``"0.9"`` -> 0.9."""
    if isinstance(tedpca, int | float) and not isinstance(tedpca, bool):
        return int(tedpca) if float(tedpca) >= 1 else float(tedpca)
    try:
        value = float(tedpca)
    except ValueError:
        return str(tedpca)
    return int(value) if value >= 1 else value


def choose_components(
    tedpca: str,
    *,
    nordic_tedpca: str | None,
    raw_components: int | None,
    n_volumes: int,
    fallback_fraction: float = FALLBACK_FRACTION,
) -> ComponentChoice:
    """Pick the dimensionality of tedana's ICA for one run.

    On NORDIC-denoised data tedana's information criteria (``aic``, ``kic``, ``mdl``) keep
    nearly as many components as volumes: NORDIC removes the flat thermal-noise floor of the
    eigenvalue spectrum these criteria look for, so FastICA then faces ~volumes components and
    fails to converge. The count estimated on the same run without NORDIC is valid for both:
    NORDIC removes thermal noise, not sources of signal.

    Parameters
    ----------
    tedpca
        ``tedana.tedpca`` of the config (a criterion or a number as text).
    nordic_tedpca
        None for a run without NORDIC (``tedpca`` is used). For a NORDIC-denoised run
        ``tedana.nordic_tedpca``: ``"raw_run"`` (the count tedana kept on the same run without
        NORDIC, ``raw_components``), ``"same"`` (``tedpca`` as for raw runs: the old
        behaviour) or a component count as text (``"20"``).
    raw_components
        Components tedana kept on the same run without NORDIC (``raw_run``); None when that run
        was not given.
    n_volumes
        Volumes tedana decomposes (after dropped noise volumes).
    fallback_fraction
        ``raw_run`` without ``raw_components``: keep ``floor(fraction * n_volumes)``
        components (at least 1). On NORDIC data the criteria would keep almost every volume, so
        a cap on them is this number; 0.2 is above what ``aic`` keeps on raw runs (14 of 120 on
        the demo, 24 of 163 at LAION geometry).

    Returns
    -------
    ComponentChoice

    Raises
    ------
    ValueError
        Unknown ``nordic_tedpca``, a count outside ``1 .. n_volumes - 1``, or a fraction outside
        (0, 1).
    """
    if nordic_tedpca is None or nordic_tedpca == "same":
        where = "tedana.tedpca" + ("" if nordic_tedpca is None else " (nordic_tedpca: same)")
        return ComponentChoice(parse_tedpca(tedpca), f"{where} = {tedpca}")
    if nordic_tedpca == "raw_run":
        if raw_components is not None:
            n = _check_count(raw_components, n_volumes, "the run without NORDIC")
            return ComponentChoice(n, f"same run without NORDIC (tedana kept {n} components)")
        if not 0 < fallback_fraction < 1:
            raise ValueError(
                f"expected a fallback fraction of the volumes in (0, 1); found "
                f"{fallback_fraction}. Fix: pass e.g. 0.2."
            )
        n = max(1, math.floor(fallback_fraction * n_volumes))
        return ComponentChoice(
            n,
            f"fallback: floor({fallback_fraction:g} x {n_volumes} volumes) = {n} (no component "
            "count of the run without NORDIC was given)",
            fallback=True,
        )
    try:
        count = int(str(nordic_tedpca))
    except ValueError:
        raise ValueError(
            f"expected tedana.nordic_tedpca to be one of {', '.join(NORDIC_TEDPCA_MODES)} or a "
            f"component count; found {nordic_tedpca!r}. Fix: set tedana.nordic_tedpca: raw_run."
        ) from None
    n = _check_count(count, n_volumes, "tedana.nordic_tedpca")
    return ComponentChoice(n, f"tedana.nordic_tedpca = {n}")


def _check_count(n: int, n_volumes: int, what: str) -> int:
    if not 1 <= int(n) < n_volumes:
        raise ValueError(
            f"expected a component count from {what} between 1 and {n_volumes - 1} (the run "
            f"has {n_volumes} volumes); found {n}. Fix: give a count below the number of "
            "volumes, or tedana.nordic_tedpca: raw_run."
        )
    return int(n)


def read_component_count(path: str | Path) -> int:
    """Components tedana kept on a run, from its ICA-denoised outputs.

    Parameters
    ----------
    path
        The JSON sidecar of an ICA-denoised output of this stage (its ``TedanaICA`` record,
        ``NComponents``), or a tedana mixing matrix (``*_mixing.tsv``: one column per
        component).

    Raises
    ------
    StageInputError
        Unreadable file or no component count in it.
    """
    path = Path(path)
    if path.suffix == ".tsv":
        try:
            header = path.read_text().splitlines()[0]
        except (OSError, IndexError) as exc:
            raise StageInputError(
                f"{path}: expected a tedana mixing matrix (one column per component); could "
                f"not read it ({exc or 'empty file'}). Fix: re-run the ICA-denoised job of the "
                "run without NORDIC."
            ) from None
        return len(header.split("\t"))
    try:
        record = json.loads(path.read_text()).get(ICA_RECORD, {})
        n = record["NComponents"]
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
        raise StageInputError(
            f"{path}: expected the sidecar of an ICA-denoised output with "
            f"{ICA_RECORD}.NComponents; found none ({type(exc).__name__}: {exc}). Fix: re-run "
            "the ICA-denoised job of the run without NORDIC with this version of echoprep, or "
            "pass its *_mixing.tsv."
        ) from None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise StageInputError(
            f"{path}: expected {ICA_RECORD}.NComponents to be a positive integer; found {n!r}. "
            "Fix: re-run the ICA-denoised job of the run without NORDIC."
        )
    return n


@dataclass(frozen=True)
class IcaAttempts:
    """FastICA attempts read from tedana's log.

    Attributes
    ----------
    attempts
        FastICA fits run (each restart with a new seed is one more).
    failed
        Fits that stopped at ``maxit`` without converging.
    decompositions
        ICA calls: 1 plus tedana's re-runs after a decomposition with no BOLD component.
    converged
        Whether the decomposition tedana kept converged.
    """

    attempts: int
    failed: int
    decompositions: int
    converged: bool

    @property
    def restarts(self) -> int:
        """Fits beyond the first."""
        return max(self.attempts - 1, 0)


def count_ica_attempts(lines: Iterable[str]) -> IcaAttempts:
    """Count FastICA attempts in tedana's log (its warnings are enough).

    tedana (``decomposition.ica.f_ica``) logs, per attempt that does not converge, a warning
    ``ICA with random seed S failed to converge after N iterations``, followed by ``Random
    seed updated to S+1`` when it restarts; a converged attempt is logged at INFO only. A
    decomposition that yields no BOLD component is re-run (``No BOLD components found.
    Re-attempting ICA.``). Each decomposition therefore contributes its failures plus one
    converged fit, unless its last failure was not followed by a restart (restarts used up).

    Parameters
    ----------
    lines
        Lines of tedana's log file (``tedana_<time>.tsv`` in its output folder).

    Returns
    -------
    IcaAttempts
    """
    segments: list[tuple[int, int]] = [(0, 0)]  # per decomposition: (failures, restarts)
    for line in lines:
        fails, restarts = segments[-1]
        if "failed to converge" in line:
            segments[-1] = (fails + 1, restarts)
        elif "Random seed updated" in line:
            segments[-1] = (fails, restarts + 1)
        elif "Re-attempting ICA" in line:
            segments.append((0, 0))
    attempts = failed = 0
    converged = True
    for fails, restarts in segments:
        converged = fails <= restarts  # a failure without a restart after it: gave up
        attempts += fails + (1 if converged else 0)
        failed += fails
    return IcaAttempts(attempts, failed, len(segments), converged)


def _read_ica_log(folder: Path) -> IcaAttempts | None:
    logs = sorted(folder.glob("tedana_*.tsv"))
    if not logs:
        return None
    return count_ica_attempts(logs[-1].read_text().splitlines())


def write_description(root: str | Path, *, config: Mapping[str, Any], source: str | Path) -> Path:
    """``dataset_description.json`` (and ``.bidsignore``) of a ``combine-<variant>`` folder."""
    return write_dataset_description(
        root,
        f"echoprep echo handling ({Path(root).name})",
        description="single-echo baseline, tedana optimal combination and ICA denoising",
        config=config,
        source_datasets=[str(source)],
        bidsignore=BIDSIGNORE,
    )


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
        if not np.allclose(img.affine, ref_img.affine, atol=1e-3):
            raise StageInputError(
                f"{f}: expected the same affine as {files[0].name}; found a different one. "
                "Fix: all echoes of a run must share one voxel grid."
            )
    return shape  # type: ignore[return-value]


def _spatial_reference(echo_files: Sequence[str | Path]) -> dict[str, Any]:
    """``{"SpatialReference": ...}`` of echoes in a named space (the spatial stage's resampled
    echoes record their grid image in their sidecars), else ``{}``: outputs that carry the
    space entity need it (BIDS derivatives)."""
    side = sidecar_path(Path(echo_files[0]))
    try:
        ref = json.loads(side.read_text()).get("SpatialReference")
    except (OSError, ValueError, AttributeError):
        return {}
    return {"SpatialReference": ref} if ref else {}


def _trimmed_inputs(files: Sequence[Path], drop: int, folder: Path) -> list[Path]:
    """Copies of the echo files without their last ``drop`` volumes (``files`` when 0)."""
    if drop <= 0:
        return list(files)
    out = []
    for f in files:
        img = nib.load(f)
        n = img.shape[3]
        if drop >= n:
            raise StageInputError(
                f"{f}: expected more volumes than the {drop} noise volumes to drop; found {n}. "
                "Fix: set nordic.noise_volumes to the number of trailing no-RF volumes."
            )
        dest = folder / f"trimmed-{f.name}"
        nib.save(img.slicer[..., : n - drop], dest)
        out.append(dest)
    return out


def write_single_echo(
    echo_files: Sequence[str | Path],
    echo_times: Sequence[float],
    outputs: Mapping[str, str | Path],
    *,
    echo: int = 2,
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
    echo
        1-based echo index in echo-time order.
    repetition_time
        TR in s, recorded in the sidecar.
    drop_volumes
        Trailing (noise) volumes to leave out.
    """
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
    atomic_save(float_image(img.slicer[..., :n_keep].get_fdata(dtype=np.float32), img), out)
    extra: dict[str, Any] = {
        "EchoTime": float(echo_times[echo - 1]),
        "Description": f"Single-echo baseline: echo {echo} of {len(echo_files)}, unchanged",
        "SkullStripped": False,
        **_spatial_reference([src]),
    }
    if repetition_time is not None:
        extra["RepetitionTime"] = float(repetition_time)
    write_sidecar(
        out, sources=[src], parameters={"echo": echo, "drop_volumes": drop_volumes}, extra=extra
    )
    log.info("single echo %d -> %s", echo, out)
    return {"bold": out}


def _collect_tedana(
    tmp: Path,
    variant: str,
    outputs: Mapping[str, str | Path],
    sources: Sequence[Path],
    parameters: Mapping[str, Any],
    extra: Mapping[str, Any],
    record: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    written: dict[str, Path] = {}
    for key, (_suffix, _ents, _ext, tedana_name) in OUTPUTS[variant].items():
        if key not in outputs:
            continue
        produced = tmp / str(tedana_name)
        if not produced.exists():
            raise RuntimeError(
                f"tedana did not write {tedana_name} in {tmp}; see the job log for its messages"
            )
        out = Path(outputs[key])
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(produced, out)
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


def _run_tedana_workflow(
    workflow: Callable[..., Any],
    variant: str,
    echo_files: Sequence[str | Path],
    echo_times: Sequence[float],
    outputs: Mapping[str, str | Path],
    *,
    parameters: Mapping[str, Any],
    description: str,
    work_dir: str | Path | None,
    repetition_time: float | None,
    min_echoes: int,
    drop_volumes: int = 0,
    inspect: Callable[[Path, float], dict[str, Any]] | None = None,
    **tool_options: Any,
) -> dict[str, Path]:
    """Validate, run a tedana workflow in a private folder, move and describe its outputs.

    ``inspect(folder, seconds)``, when given, reads tedana's folder after the run (before its
    outputs move) and returns the record written into every output's sidecar
    (:data:`ICA_RECORD`).
    """
    files = [Path(f) for f in echo_files]
    validate_echoes(files, echo_times, min_echoes=min_echoes)
    extra: dict[str, Any] = {
        "EchoTime": [float(t) for t in echo_times],
        "Description": description,
    }
    if repetition_time is not None:
        extra["RepetitionTime"] = float(repetition_time)
    base = Path(work_dir) if work_dir else None
    if base:
        base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix=f"{variant}-") as tmp:
        inputs = _trimmed_inputs(files, drop_volumes, Path(tmp))
        t0 = time.perf_counter()
        workflow(
            [str(f) for f in inputs],
            [float(t) for t in echo_times],
            out_dir=tmp,
            combmode="t2s",
            overwrite=True,
            quiet=True,
            **tool_options,
        )
        record = inspect(Path(tmp), time.perf_counter() - t0) if inspect else None
        parameters = {**parameters, "drop_volumes": drop_volumes}
        return _collect_tedana(Path(tmp), variant, outputs, files, parameters, extra, record)


def run_optcom(
    echo_files: Sequence[str | Path],
    echo_times: Sequence[float],
    outputs: Mapping[str, str | Path],
    *,
    fittype: str = "loglin",
    masktype: Sequence[str] = ("dropout",),
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
        Keys of ``OUTPUTS["optcom"]`` (``bold``, ``t2star``, ``s0``, ``mask``) to paths.
    fittype, masktype
        Passed to tedana.
    work_dir
        Parent of the private tedana working folder (removed afterwards).
    n_threads
        Threads tedana may use.
    repetition_time
        TR in s, recorded in the sidecar of the combined series.
    drop_volumes
        Trailing (noise) volumes to leave out.
    """
    from tedana.workflows import t2smap_workflow

    return _run_tedana_workflow(
        t2smap_workflow,
        "optcom",
        echo_files,
        echo_times,
        outputs,
        parameters={"fittype": fittype, "masktype": list(masktype), "combmode": "t2s"},
        description="tedana optimal combination (T2*-weighted) of the echoes",
        work_dir=work_dir,
        repetition_time=repetition_time,
        min_echoes=2,
        drop_volumes=drop_volumes,
        fittype=fittype,
        masktype=list(masktype),
        n_threads=n_threads,
    )


def run_tedana(
    echo_files: Sequence[str | Path],
    echo_times: Sequence[float],
    outputs: Mapping[str, str | Path],
    *,
    fittype: str = "loglin",
    masktype: Sequence[str] = ("dropout",),
    tedpca: str = "aic",
    nordic_tedpca: str | None = None,
    raw_components: str | Path | None = None,
    fallback_fraction: float = FALLBACK_FRACTION,
    tree: str = "tedana_orig",
    ica_method: str = "fastica",
    n_robust_runs: int = 30,
    maxit: int = 500,
    maxrestart: int = 3,
    seed: int = 0,
    work_dir: str | Path | None = None,
    n_threads: int = 1,
    repetition_time: float | None = None,
    drop_volumes: int = 0,
) -> dict[str, Path]:
    """ICA-denoised optimal combination with tedana's ``tedana_workflow``.

    Every output's sidecar gets a ``TedanaICA`` record: the ``tedpca`` asked for, the one
    used and where it came from (:func:`choose_components`), the components kept
    (``NComponents``), the FastICA attempts, restarts and whether the kept decomposition
    converged (:func:`count_ica_attempts`, from tedana's log), and tedana's wall time.

    Parameters
    ----------
    echo_files
        4D magnitude image per echo (x, y, z, t), in echo-time order (at least 3 echoes).
    echo_times
        Echo times in s.
    outputs
        Keys of ``OUTPUTS["denoised"]`` (``bold``, ``metrics``, ``mixing``) to paths.
    fittype, masktype, tedpca, tree, ica_method, n_robust_runs, maxit
        Passed to tedana (``tedpca`` may be a number given as text).
    nordic_tedpca
        None for echoes without NORDIC. For NORDIC-denoised echoes how the dimensionality is
        chosen (:func:`choose_components`): ``"raw_run"``, ``"same"`` or a count as text.
    raw_components
        ``raw_run``: the sidecar (or ``*_mixing.tsv``) of the ICA-denoised output of the same
        run without NORDIC (:func:`read_component_count`).
    fallback_fraction
        ``raw_run`` without ``raw_components``: components as a fraction of the volumes.
    maxrestart
        FastICA attempts (tedana's ``maxrestart``: the first fit counts, so 1 = no restart);
        when none converges a warning names the fix and the sidecar says ``ICAConverged:
        false``.
    seed
        tedana's ``fixed_seed``: same seed, same components.
    work_dir
        Parent of the private tedana working folder (removed afterwards).
    n_threads
        Threads tedana may use.
    repetition_time
        TR in s, recorded in the sidecar of the denoised series.
    drop_volumes
        Trailing (noise) volumes to leave out.

    Raises
    ------
    StageInputError
        Invalid echoes, an unreadable ``raw_components`` or a count tedana cannot use.
    """
    from tedana.workflows import tedana_workflow

    files = [Path(f) for f in echo_files]
    shape = validate_echoes(files, echo_times, min_echoes=3)
    n_volumes = int(shape[3]) - drop_volumes
    if maxrestart < 1:
        raise StageInputError(
            f"{files[0]}: expected tedana.maxrestart >= 1 (FastICA attempts; 1 = no restart); "
            f"found {maxrestart}. Fix: set tedana.maxrestart to 1 or more."
        )
    raw_n = None
    if raw_components is not None and nordic_tedpca == "raw_run":
        raw_n = read_component_count(raw_components)
    try:
        choice = choose_components(
            tedpca,
            nordic_tedpca=nordic_tedpca,
            raw_components=raw_n,
            n_volumes=n_volumes,
            fallback_fraction=fallback_fraction,
        )
    except ValueError as exc:
        where = raw_components if raw_n is not None else files[0]
        raise StageInputError(f"{where}: {exc}") from None
    if choice.fallback:
        log.warning(
            "%s: NORDIC-denoised run without the component count of the same run without "
            "NORDIC; using %s. Fix: pass the sidecar of that run's ICA-denoised output "
            "(--raw-components) for the count estimated where the criteria are valid.",
            files[0],
            choice.source,
        )
    tool = {
        "fittype": fittype,
        "masktype": list(masktype),
        "tree": tree,
        "ica_method": ica_method,
        "n_robust_runs": n_robust_runs,
        "maxit": maxit,
        "maxrestart": maxrestart,
        "fixed_seed": seed,
    }

    def inspect(folder: Path, seconds: float) -> dict[str, Any]:
        return _ica_record(
            folder,
            seconds,
            files[0],
            tedpca=tedpca,
            nordic_tedpca=nordic_tedpca,
            choice=choice,
            raw_components=raw_components if raw_n is not None else None,
            n_volumes=n_volumes,
            ica_method=ica_method,
            n_robust_runs=n_robust_runs,
            maxit=maxit,
            maxrestart=maxrestart,
        )

    return _run_tedana_workflow(
        tedana_workflow,
        "denoised",
        echo_files,
        echo_times,
        outputs,
        parameters={**tool, "tedpca": tedpca, "nordic_tedpca": nordic_tedpca},
        description="tedana ICA-denoised optimal combination (rejected components removed)",
        work_dir=work_dir,
        repetition_time=repetition_time,
        min_echoes=3,
        drop_volumes=drop_volumes,
        inspect=inspect,
        tedpca=choice.tedpca,
        no_reports=True,
        n_threads=n_threads,
        **tool,
    )


#: How the sidecar's attempt counts were obtained.
_COUNTED_FROM = (
    "tedana's log: one 'failed to converge' warning per unconverged FastICA fit, 'Random seed "
    "updated' per restart, 'Re-attempting ICA' per re-run without BOLD components"
)


def _ica_record(
    folder: Path,
    seconds: float,
    first_echo: Path,
    *,
    tedpca: str,
    nordic_tedpca: str | None,
    choice: ComponentChoice,
    raw_components: str | Path | None,
    n_volumes: int,
    ica_method: str,
    n_robust_runs: int,
    maxit: int,
    maxrestart: int,
) -> dict[str, Any]:
    """The ``TedanaICA`` sidecar record of a finished tedana run (warns when ICA failed)."""
    n_components = read_component_count(folder / str(OUTPUTS["denoised"]["mixing"][3]))
    record: dict[str, Any] = {
        "TedpcaRequested": tedpca,
        "NordicTedpca": nordic_tedpca,
        "TedpcaUsed": choice.tedpca,
        "ComponentSource": choice.source,
        "ComponentSourceFile": str(raw_components) if raw_components is not None else None,
        "Fallback": choice.fallback,
        "NComponents": n_components,
        "NVolumes": n_volumes,
        "ICAMethod": ica_method,
        "MaxRestart": maxrestart,
        "MaxIterations": maxit,
    }
    if ica_method.lower() == "fastica":
        attempts = _read_ica_log(folder)
        if attempts is None:
            record.update(ICAAttempts=None, ICARestarts=None, ICAConverged=None)
            record["ICAAttemptsCountedFrom"] = "not counted: tedana wrote no log file"
        else:
            record.update(
                ICAAttempts=attempts.attempts,
                ICARestarts=attempts.restarts,
                ICAFailedAttempts=attempts.failed,
                ICADecompositions=attempts.decompositions,
                ICAConverged=attempts.converged,
                ICAAttemptsCountedFrom=_COUNTED_FROM,
            )
            if not attempts.converged:
                log.warning(
                    "%s: FastICA did not converge in %d attempts (tedana.maxrestart %d, "
                    "maxit %d) with %d components of %d volumes; tedana kept the last, "
                    "unconverged decomposition, so the ICA-denoised series is unreliable. "
                    "Fix: fewer components (tedana.nordic_tedpca: raw_run on NORDIC runs, or "
                    "a count in tedana.tedpca), or a larger tedana.maxit.",
                    first_echo,
                    attempts.attempts,
                    maxrestart,
                    maxit,
                    n_components,
                    n_volumes,
                )
    else:  # robustica: n_robust_runs fits; tedana counts those that did not converge
        metrics = folder / "desc-ICACrossComponent_metrics.json"
        try:
            failed = json.loads(metrics.read_text()).get("fastica_convergence_warning_count")
        except (OSError, ValueError):
            failed = None
        record.update(ICAAttempts=n_robust_runs, ICAFailedAttempts=failed, ICAConverged=None)
        record["ICAAttemptsCountedFrom"] = f"{metrics.name}: fastica_convergence_warning_count"
    if 2 * n_components >= n_volumes:
        log.warning(
            "%s: tedana kept %d components of %d volumes (half or more; tedana's FAQ calls "
            "nearly as many components as volumes a failure of the dimensionality estimate, "
            "common after NORDIC). Fix: tedana.nordic_tedpca: raw_run, or a count in "
            "tedana.tedpca.",
            first_echo,
            n_components,
            n_volumes,
        )
    record["TedanaSeconds"] = round(seconds, 1)
    return record
