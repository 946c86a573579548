"""GLM stage outputs: their names, and writing betas, maps, trials table, model and summary.

In ``glmsingle-<nordic>-<combine>/sub-X/ses-Y/func/`` (LAION-fMRI's names, docs/glm.md §11),
every image with a JSON sidecar; images are 0 outside the fitted mask.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from echoprep.io.atomic import atomic_path
from echoprep.io.bids_uri import file_label
from echoprep.io.events import TRIALS_FILE_COLUMNS, SessionDesign
from echoprep.io.images import StageInputError, atomic_save, float_image
from echoprep.io.outputs import session_key, stage_outputs, stage_table
from echoprep.io.sidecars import write_json, write_sidecar
from echoprep.kernels.glm.voxels import scatter

log = logging.getLogger(__name__)

#: The trials table's session and run columns (names that are no BIDS entity).
_SESSION, _RUN = TRIALS_FILE_COLUMNS["session"], TRIALS_FILE_COLUMNS["run"]

#: Output key -> (suffix, derivative entities, extension), from the output registry.
OUTPUTS: dict[str, tuple[str, dict[str, str], str]] = stage_table("glm")
#: Outputs that are images on the functional grid (they get ``space-<label>``).
SPATIAL_KEYS = tuple(k for k, o in stage_outputs("glm").items() if o.spatial)
#: The outputs of an ordinary fit (``model`` needs h5py and ``glm.hdf5: true``; ``betas_typeb``,
#: the type-B betas the visual ROI's test reads, only when asked): pass them as
#: ``echoprep.io.outputs.paths_in(root, "glm", key, keys=DEFAULT_OUTPUTS)``.
DEFAULT_OUTPUTS = tuple(k for k in OUTPUTS if k not in ("model", "betas_typeb"))
#: Outputs every call must be given (``stop_at="typeb"``: only ``betas_typeb``).
REQUIRED_OUTPUTS = ("betas", "trials", "summary")


@dataclass
class SessionFit:
    """A session's fit and what its outputs record.

    Attributes
    ----------
    results
        The engine's results (types A-D, ``params``), arrays ``(V, ...)`` over the fitted voxels.
    kind, model
        The model whose betas are written (``typed``, ``typec`` or ``typeb``) and its dict.
    fit_mask
        ``(X, Y, Z)`` bool: the fitted voxels (C order = the rows of the results).
    ref
        The first run's image (geometry of every map).
    info
        :func:`echoprep.stages.glm.inputs.load_session`'s ``info``.
    design
        The session's designs and trials.
    engine
        ``echoprep`` or ``glmsingle``.
    wantlibrary
        Whether the HRF was chosen per voxel from the library (else the assumed HRF).
    parameters
        The ``Parameters`` of every image sidecar (and the summary's ``Options``).
    sources
        Input files recorded in the sidecars.
    bold, events, labels
        The runs' BOLD and events files and run labels.
    session, space
        BIDS session and space labels (or None).
    blank_trial_types, onset_tolerance
        As configured (trials sidecar).
    stimdur, tr
        Stimulus duration and sampling interval used, s.
    messages
        The engine's warnings.
    """

    results: Mapping[str, Any]
    kind: str
    model: Mapping[str, Any]
    fit_mask: np.ndarray
    ref: nib.Nifti1Image
    info: Mapping[str, Any]
    design: SessionDesign
    engine: str
    wantlibrary: bool
    parameters: Mapping[str, Any]
    sources: Sequence[Path]
    bold: Sequence[Path]
    events: Sequence[Path]
    labels: Sequence[str]
    session: str | None
    space: str | None
    blank_trial_types: Sequence[str]
    onset_tolerance: float | None
    stimdur: float
    tr: float
    messages: Sequence[str]


def write_outputs(
    fit: SessionFit,
    outputs: Mapping[str, str | Path],
    *,
    timings: dict[str, float],
    started: float,
) -> dict[str, Path]:
    """Write the outputs named in ``outputs`` (keys of :data:`OUTPUTS`) with their sidecars.

    Parameters
    ----------
    fit
        The session's fit.
    outputs
        Output key -> path.
    timings
        Load and fit timings (s); ``write_s`` is added (from ``started``, a
        :func:`time.perf_counter` value) before the summary is written.

    Returns
    -------
    dict
        Key -> written path.
    """
    results, kind, model, fit_mask, ref = fit.results, fit.kind, fit.model, fit.fit_mask, fit.ref
    info, design, engine, parameters = fit.info, fit.design, fit.engine, fit.parameters
    sources, space, stimdur, series_dt = fit.sources, fit.space, fit.stimdur, fit.tr
    n_vox = int(fit_mask.sum())
    written: dict[str, Path] = {}
    # the space, and where the engine's heavy steps ran (glm.device; docs/glm.md §14, "GPU")
    device = results.get("params", {}).get("device")
    notes = {**({"Space": space} if space else {}), **({"Device": device} if device else {})}
    excluded = {
        "ConstantVoxelsExcluded": info["n_constant_excluded"],
        "ConstantVoxelsByRun": info["constant_by_run"],
        "NonfiniteVoxelsExcluded": info["n_nonfinite_excluded"],
        "NonfiniteVoxelsByRun": info["nonfinite_by_run"],
    }
    betas = np.asarray(model["betasmd"]).reshape(n_vox, -1)
    for key, kind_written in (("betas", kind), ("betas_typeb", "typeb")):
        if key not in outputs:
            continue
        values = betas if kind_written == kind else results.get("typeb", {}).get("betasmd")
        if values is None:
            raise RuntimeError("the GLM engine returned no type-B betas (wantlibrary off?)")
        values = np.asarray(values).reshape(n_vox, -1)
        out = Path(outputs[key])
        atomic_save(_image(scatter(values, fit_mask), ref), out)
        hrf = (
            "the library HRF chosen per voxel"
            if fit.wantlibrary
            else "the assumed (canonical) HRF in every voxel"
        )
        note = (
            f" Type B: {hrf} and ordinary least squares (no GLMdenoise PCs, no ridge), a "
            "reference free of the denoising steps."
            if kind_written == "typeb"
            else ""
        )
        write_sidecar(
            out,
            sources=sources,
            parameters=parameters,
            software=_software(engine),
            extra={
                **notes,
                "Units": "% BOLD (of |mean signal|)",
                "Description": f"Single-trial betas (GLMsingle {MODEL_NAMES[kind_written]}), "
                "one volume per modelled trial in chronological order (row beta_index of the "
                f"trials TSV); 0 outside the fitted mask.{note}",
                "ModelType": MODEL_NAMES[kind_written],
                "NumberOfTrials": int(values.shape[1]),
                "VoxelsFitted": n_vox,
                **excluded,
            },
        )
        written[key] = out
    if "trials" in outputs:
        written["trials"] = write_trials(Path(outputs["trials"]), fit)
    maps = {
        "r2": (
            model.get("R2"),
            np.float32,
            {"Units": "%", "Description": "Variance explained by the task part of the model"},
        ),
        "onoff_r2": (
            results.get("typea", {}).get("onoffR2"),
            np.float32,
            {
                "Units": "%",
                "Description": "Type-A ON-OFF R² (all trials as one condition, canonical HRF)",
            },
        ),
        "hrfindex": (
            model.get("HRFindex"),
            np.int16,
            {
                "Description": "0-based index (0-19) of the library HRF chosen per voxel; "
                "voxels outside the fitted mask are 0 too (see the mask)",
            },
        ),
        "fracridge": (
            model.get("FRACvalue") if kind == "typed" else np.ones(n_vox, np.float32),
            np.float32,
            {
                "Units": "1",
                "Description": "Ridge fraction chosen per voxel (1 = no shrinkage; all 1 when "
                "type D was not computed); 0 outside the fitted mask",
            },
        ),
        "mask": (
            np.ones(n_vox, np.uint8),
            np.uint8,
            {
                "Type": "Brain",
                "Description": f"Voxels fitted (mask: {file_label(info['mask_source'])}), less "
                "those without data in some run (constant or NaN/Inf series)",
                **excluded,
            },
        ),
    }
    for key, (values, dtype, extra) in maps.items():
        if key not in outputs:
            continue
        if values is None:
            values = np.zeros(n_vox, np.float32)
        out = Path(outputs[key])
        vol = scatter(np.asarray(values).reshape(n_vox), fit_mask, dtype=dtype)
        atomic_save(_image(vol, ref, dtype), out)
        write_sidecar(
            out,
            sources=sources,
            parameters=parameters,
            software=_software(engine),
            extra={**notes, **extra, "ModelType": MODEL_NAMES[kind]},
        )
        written[key] = out
    if "model" in outputs:
        written["model"] = write_hdf5(Path(outputs["model"]), results, fit_mask)
        write_sidecar(
            written["model"],
            sources=sources,
            parameters=parameters,
            software=[*_software(engine), "h5py"],
            extra={
                **notes,
                "Description": "All GLMsingle results (types A-D, fitted-voxel layout) and the "
                "fitted mask",
                "ModelType": MODEL_NAMES[kind],
            },
        )
    timings["write_s"] = round(time.perf_counter() - started, 3)
    summary = {
        "Engine": engine,
        **({"Device": device} if device else {}),
        "ModelType": MODEL_NAMES[kind],
        "Options": parameters,
        "ResolvedOptions": _resolved(results.get("params", {})),
        "RunsUsed": [
            {"run": lab, "bold": str(b), "events": str(e), "volumes": n}
            for lab, b, e, n in zip(
                fit.labels, fit.bold, fit.events, info["n_volumes"], strict=True
            )
        ],
        "Session": fit.session,
        "Space": space,
        "pcnum": int(model.get("pcnum", 0)) if kind != "typeb" else 0,
        "xvaltrend": _list(results.get("typec", {}).get("xvaltrend")),
        "NumberOfTrials": len(design.trials),
        "NumberOfConditions": len(design.conditions),
        "ConditionsInSeveralRuns": int((design.trials.groupby("label")["run"].nunique() > 1).sum()),
        "LabelColumn": design.label_column,
        "ExcludedEvents": int(design.excluded),
        "MaxOnsetRoundingError_s": float(design.max_rounding_error),
        "StimulusDuration_s": float(stimdur),
        "RepetitionTime_s": series_dt,
        "VoxelsFitted": n_vox,
        "MaskSource": info["mask_source"],
        **excluded,
        "Warnings": list(fit.messages),
        "Timings_s": timings,
        "SoftwareVersions": _software_versions(engine),
    }
    if "summary" in outputs:
        write_json(Path(outputs["summary"]), summary)
        written["summary"] = Path(outputs["summary"])
    log.info(
        "GLMsingle: %s betas of %d trials -> %s",
        kind,
        betas.shape[1],
        written.get("betas", written.get("betas_typeb")),
    )
    return written


def write_trials(out: Path, fit: SessionFit) -> Path:
    """Write the trials table (row i = volume i of the betas) and its sidecar."""
    design = fit.design
    trials = _trials_table(design, fit.session)
    with atomic_path(out) as tmp:
        trials.to_csv(tmp, sep="\t", index=False, na_rep="n/a")
    write_sidecar(
        out,
        sources=fit.events,
        parameters={
            "label_column": design.label_column,
            "blank_trial_types": fit.blank_trial_types,
            "onset_tolerance": fit.onset_tolerance,
            "tr": fit.tr,
            "run_labels": fit.labels,
            "session": fit.session,
        },
        extra={
            "Description": "Modelled trials in chronological order (run, then onset); row i is "
            "volume i of the single-trial betas",
            # column names that are no BIDS entity: pybids reads a sidecar's column keys as
            # metadata and refuses "session" beside the file's own ses- (docs/glm.md §11)
            _SESSION: {"Description": "BIDS session label (ses-<label>); n/a without sessions"},
            _RUN: {
                "Description": "BIDS run label (run-<label>), or the run's position in the "
                "session when the runs have none"
            },
            "beta_index": {"Description": "0-based volume index in the betas"},
            "label": {"Description": f"condition (events column {design.label_column!r})"},
            "onset": {"Description": "onset from the events file", "Units": "s"},
            "onset_volume": {"Description": "0-based volume the onset was rounded to"},
            "trial_type": {"Description": "trial_type from the events file"},
        },
    )
    return out


MODEL_NAMES = {
    "typeb": "FITHRF",
    "typec": "FITHRF_GLMDENOISE",
    "typed": "FITHRF_GLMDENOISE_RR",
}


def _software(engine: str) -> list[str]:
    return ["glmsingle"] if engine == "glmsingle" else []


def _software_versions(engine: str) -> dict[str, str]:
    from echoprep.io.sidecars import software_versions

    return software_versions(_software(engine))


def _list(value: Any) -> list | None:
    return None if value is None else np.asarray(value).tolist()


def _resolved(params: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar and short resolved engine parameters (no HRF arrays)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if k in ("hrflibrary", "hrftoassume"):
            continue
        if isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating):
            out[k] = np.round(v, 10).tolist()
        elif isinstance(v, np.ndarray | list | tuple):
            arr = [np.asarray(x).tolist() for x in v] if isinstance(v, tuple | list) else v.tolist()
            out[k] = arr
        elif isinstance(v, np.generic):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def _trials_table(design: SessionDesign, session: str | None) -> pd.DataFrame:
    t = design.trials
    return pd.DataFrame(
        {
            _SESSION: session or "n/a",
            _RUN: t["run_label"],
            "beta_index": t["beta_index"].astype(int),
            "label": t["label"],
            "onset": t["onset"],
            "onset_volume": t["onset_volume"].astype(int),
            "trial_type": t["trial_type"],
        }
    )


def _image(data: np.ndarray, ref: nib.Nifti1Image, dtype=np.float32) -> nib.Nifti1Image:
    if np.issubdtype(dtype, np.integer):
        header = ref.header.copy()
        header.set_data_dtype(dtype)
        img = nib.Nifti1Image(np.asarray(data, dtype), ref.affine, header)
        img.header.set_slope_inter(1.0, 0.0)
    else:
        img = float_image(data, ref)
    if data.ndim == 3:
        img.header.set_xyzt_units(xyz="mm")
    return img


def write_hdf5(path: Path, results: Mapping[str, Any], mask: np.ndarray) -> Path:
    """All arrays of ``results`` (types A-D, mask-voxel layout) and the mask in one HDF5 file.

    Raises
    ------
    StageInputError
        h5py is not installed (it is optional: ``pip install h5py``).
    """
    try:
        import h5py
    except ImportError as exc:
        raise StageInputError(
            f"{path}: glm.hdf5 is true, which needs the optional package h5py; found it not "
            "installed. Fix: install h5py in the workflow's environment or set glm.hdf5: false."
        ) from exc
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        fh.create_dataset("mask", data=mask.astype(np.uint8), compression="gzip")
        for model, content in results.items():
            if not isinstance(content, Mapping):
                continue
            group = fh.create_group(model)
            for key, value in content.items():
                if isinstance(value, list | tuple):
                    sub = group.create_group(key)
                    for i, v in enumerate(value):
                        sub.create_dataset(str(i), data=np.asarray(v))
                elif value is not None:
                    group.create_dataset(key, data=np.asarray(value))
    return path


__all__ = [
    "DEFAULT_OUTPUTS",
    "MODEL_NAMES",
    "OUTPUTS",
    "REQUIRED_OUTPUTS",
    "SPATIAL_KEYS",
    "SessionFit",
    "session_key",
    "write_hdf5",
    "write_outputs",
    "write_trials",
]
