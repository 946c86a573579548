"""Echo handling stage: single-echo baseline, tedana optimal combination, tedana ICA denoising.

Each function validates its inputs, runs the computation (or tedana) in a private working
folder, moves the results to their BIDS-derivative names and writes JSON sidecars. Output
names come from :data:`OUTPUTS` through :func:`echoprep.io.paths.run_output`; the Snakemake
rules use the same table, so a name is defined once.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
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
    **tool_options: Any,
) -> dict[str, Path]:
    """Validate, run a tedana workflow in a private folder, move and describe its outputs."""
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
        workflow(
            [str(f) for f in inputs],
            [float(t) for t in echo_times],
            out_dir=tmp,
            combmode="t2s",
            overwrite=True,
            quiet=True,
            **tool_options,
        )
        parameters = {**parameters, "drop_volumes": drop_volumes}
        return _collect_tedana(Path(tmp), variant, outputs, files, parameters, extra)


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
    tree: str = "tedana_orig",
    ica_method: str = "fastica",
    n_robust_runs: int = 30,
    maxit: int = 500,
    maxrestart: int = 10,
    seed: int = 0,
    work_dir: str | Path | None = None,
    n_threads: int = 1,
    repetition_time: float | None = None,
    drop_volumes: int = 0,
) -> dict[str, Path]:
    """ICA-denoised optimal combination with tedana's ``tedana_workflow``.

    Parameters
    ----------
    echo_files
        4D magnitude image per echo (x, y, z, t), in echo-time order (at least 3 echoes).
    echo_times
        Echo times in s.
    outputs
        Keys of ``OUTPUTS["denoised"]`` (``bold``, ``metrics``, ``mixing``) to paths.
    fittype, masktype, tedpca, tree, ica_method, n_robust_runs, maxit, maxrestart
        Passed to tedana (``tedpca`` may be a number given as text).
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
    """
    from tedana.workflows import tedana_workflow

    pca: str | int | float = tedpca
    try:
        pca = float(tedpca)
        pca = int(pca) if pca >= 1 else pca
    except ValueError:
        pass
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
    return _run_tedana_workflow(
        tedana_workflow,
        "denoised",
        echo_files,
        echo_times,
        outputs,
        parameters={**tool, "tedpca": tedpca},
        description="tedana ICA-denoised optimal combination (rejected components removed)",
        work_dir=work_dir,
        repetition_time=repetition_time,
        min_echoes=3,
        drop_volumes=drop_volumes,
        tedpca=pca,
        no_reports=True,
        n_threads=n_threads,
        **tool,
    )
