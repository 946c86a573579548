"""Write a simulated raw BIDS dataset and its ground truth (:func:`simulate_dataset`)."""

from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echoprep.io.paths import bids_path, sidecar_path
from echoprep.io.sidecars import write_json
from echoprep.simulate import seeds
from echoprep.simulate.acquisition import (
    TASK,
    bold_sidecar,
    total_readout_time,
)
from echoprep.simulate.anatomy import (
    KAPPA,
    ROI_DEFINITIONS,
    SubjectAnatomy,
    functional_grid,
    subject_anatomy,
)
from echoprep.simulate.anatomy_files import anatomy_options, write_anatomy
from echoprep.simulate.dataset_root import update_participants, write_root
from echoprep.simulate.design import HRF_PEAKS, session_design, single_trial_betas
from echoprep.simulate.fieldmaps import FIELDMAP_KINDS, write_epi_pair, write_gre_fieldmap
from echoprep.simulate.geometry import (
    PE_DIRECTION,
    PE_SIGN,
    voxel_shift_map,
)
from echoprep.simulate.gradient_coil import (
    coil_path,
    max_displacement,
    true_positions,
    write_coil,
)
from echoprep.simulate.presets import PRESETS, Preset
from echoprep.simulate.response import DEFAULT, ResponseModel, resolve
from echoprep.simulate.session_fieldmaps import (
    FIELD_DRIFT_HZ_PER_MIN,
    check_fieldmaps_per_session,
    clock_text,
    drifted_run,
    session_clock,
    write_session_fieldmaps,
)
from echoprep.simulate.signal import (
    RunModel,
    build_run,
    reference_image,
    run_volumes,
    thermal_sigma,
)
from echoprep.simulate.truth import (
    DESCRIPTIONS,
    ROI_NAMES,
    artifact_path,
    motion_path,
    run_field_path,
    truth_paths,
    vsm_path,
)
from echoprep.simulate.writer import (
    NiftiWriter,
    nifti_header,
    quantize_magnitude,
    write_nifti,
    write_tsv,
)

log = logging.getLogger(__name__)


def simulate_dataset(
    out: str | Path,
    preset: str = "tiny",
    *,
    seed: int = 0,
    subjects: int | None = None,
    sessions: int | None = None,
    runs: int | None = None,
    motion: bool | None = None,
    fieldmap: bool | None = None,
    distortion: bool | None = None,
    phase: bool = True,
    subject_offset: int = 0,
    response: ResponseModel | str | None = None,
    fieldmap_kind: str = "phasediff",
    field_dynamics: bool = False,
    fieldmaps_per_session: int | None = None,
    t1w_kind: str = "mprage",
    t2w: bool = False,
    anat_session: str | None = None,
    gradient_nonlinearity: bool = False,
    freesurfer: bool = True,
    shared_images: bool = False,
) -> Path:
    """Write a simulated raw BIDS dataset with ground truth; see :mod:`echoprep.simulate`.

    Parameters
    ----------
    out
        Dataset root. Must be absent or empty, or (to add subjects) a dataset written by this
        function that does not have the new subjects yet.
    preset
        ``"tiny"``, ``"demo"`` or ``"laion"`` (:data:`PRESETS`).
    seed
        Non-negative integer; with the same preset and overrides the output is byte-identical
        on one machine type (module doc).
    subjects, sessions, runs
        Override the preset's counts.
    motion, fieldmap
        Override the preset's head-motion and fieldmap defaults.
    fieldmap_kind
        The fieldmaps written: ``"phasediff"`` (a dual-echo GRE: magnitude1, magnitude2,
        phasediff) or ``"epi"`` (a reversed phase-encoding pair, ``dir-AP`` along the BOLD's
        ``j-`` and ``dir-PA`` along ``j``: one spin-echo EPI volume each, distorted by the
        same field as the BOLD in opposite directions).
    field_dynamics
        Let the B0 field change over each run (respiration, drift and a pitch-dependent
        change; :func:`echoprep.simulate.signal.build_run`): every volume is distorted by its
        own field, the phase images follow it at every echo, and the truth holds each run's
        field per volume (:func:`~echoprep.simulate.truth.run_field_path`). The fieldmaps
        show the static field.
    fieldmaps_per_session
        Write this many GRE fieldmaps per session instead of one per run, acquired at known
        times between the BOLD runs (``run-01`` .. ``run-0N`` of their own, no
        ``IntendedFor``), with ``AcquisitionTime`` in every BOLD and fieldmap sidecar and a
        ``scans.tsv`` per session; the field drifts linearly over the session, each fieldmap
        measures it at its time and head position, each run is distorted by it at the run's
        centre (:mod:`echoprep.simulate.session_fieldmaps`). None: one fieldmap per run.
    distortion
        Distort the BOLD and SBRef along the phase-encoding axis by the B0 field
        (:mod:`echoprep.simulate.geometry`); default: when fieldmaps are written.
    phase
        Write the ``part-phase`` images (``part-mag`` names are kept either way).
    subject_offset
        Number the subjects from ``subject_offset + 1``; with an existing dataset the new
        subjects are added (and appended to participants.tsv). A subject's files depend only on
        ``seed``, its number and the preset/overrides, so adding subjects changes no existing file
        except participants.tsv.
    response
        Response model (:mod:`echoprep.simulate.response`): a
        :class:`~echoprep.simulate.response.ResponseModel` or a name of
        :data:`~echoprep.simulate.response.REGIMES`; None = the default model (the same files
        as before the model existed). A non-default model is recorded under ``response`` in
        the simulation parameters; every dataset records it in the sidecar of the truth image
        means.
    t1w_kind, t2w, anat_session
        The anatomy (:mod:`echoprep.simulate.anatomy_files`, docs/anatomy.md): ``"mprage"``
        (the default T1w) or ``"mp2rage"`` (an MP2RAGE UNI: uint16, salt-and-pepper noise
        background); also a T2w aligned to the T1w; ``anat_session`` puts them in an
        anatomy-only session ``ses-<label>/anat`` (e.g. ``"PrismaAnat"``, no BOLD), None in
        ``ses-01/anat``. Non-default values are recorded in the simulation parameters.
    gradient_nonlinearity
        BOLD, SBRefs and GRE fieldmaps acquired with a nonlinear coil (not the anatomy, not
        with ``fieldmap_kind="epi"``; :mod:`echoprep.simulate.gradient_coil`); the motion and
        the field of every volume are then in the truth for every run.
    freesurfer
        A FreeSurfer-like subject per participant (``derivatives/freesurfer/``, docs/surface.md).
    shared_images
        Every session of a subject shows the images of its session 1 (``img0001`` ..), each
        session in its own order, run assignment and repeat counts, with its own
        trial-to-trial variability and noise; an image's true mean response
        (``image_means`` in the truth) is the same in every session that shows it. Default:
        each session shows its own images (session k the k-th block of image numbers).
        Recorded as ``shared_images`` in the simulation parameters when on; adding subjects
        to a dataset needs the same value.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    ValueError
        Unknown preset or response regime, invalid counts or seed, or adding to a dataset of
        another preset or response model.
    FileExistsError
        ``out`` is a non-empty folder that is not a simulated dataset, or a subject to be
        written exists already.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    n_sub = p.n_subjects if subjects is None else int(subjects)
    n_ses = p.n_sessions if sessions is None else int(sessions)
    n_runs = p.n_runs if runs is None else int(runs)
    for name, value in (("subjects", n_sub), ("sessions", n_ses), ("runs", n_runs)):
        if value < 1:
            raise ValueError(f"--{name} ({name}=): expected at least 1; found {value}")
    if subject_offset < 0 or seed < 0:
        raise ValueError(
            "--seed and --subject-offset (seed=, subject_offset=): expected non-negative "
            f"integers; found {seed} and {subject_offset}"
        )
    if fieldmap_kind not in FIELDMAP_KINDS:
        raise ValueError(
            f"--fieldmap-kind (fieldmap_kind=): expected one of {', '.join(FIELDMAP_KINDS)}; "
            f"found {fieldmap_kind!r}"
        )
    p.images_for_runs(n_runs)
    if gradient_nonlinearity and fieldmap_kind == "epi":
        raise ValueError(
            "--gradient-nonlinearity with --fieldmap-kind epi: expected GRE fieldmaps; the "
            "simulator does not warp reversed phase-encoding pairs. Fix: drop one of the two"
        )
    n_fmaps = check_fieldmaps_per_session(fieldmaps_per_session, n_runs, fieldmap, fieldmap_kind)
    anat_params = anatomy_options(t1w_kind, t2w, anat_session, n_ses, freesurfer)
    model = resolve(response)
    use_motion = p.motion if motion is None else bool(motion)
    use_fmap = bool(n_fmaps) or (p.fieldmap if fieldmap is None else bool(fieldmap))
    use_distortion = use_fmap if distortion is None else bool(distortion)
    params: dict[str, Any] = {
        "preset": preset,
        "seed": int(seed),
        "sessions": n_ses,
        "runs": n_runs,
        "motion": use_motion,
        "fieldmap": use_fmap,
        "distortion": use_distortion,
        "phase": bool(phase),
    }
    if model != DEFAULT:
        params["response"] = model.as_dict()
    if fieldmap_kind != "phasediff":  # (datasets of GRE fieldmaps keep their description)
        params["fieldmap_kind"] = fieldmap_kind
    if field_dynamics:
        params["field_dynamics"] = True
    if shared_images:
        params["shared_images"] = True
    params |= anat_params
    if n_fmaps:
        params |= {"fieldmaps_per_session": n_fmaps, "field_drift": FIELD_DRIFT_HZ_PER_MIN}
    grid = functional_grid(p)
    if gradient_nonlinearity:
        params["gradient_nonlinearity"] = {
            "Coefficients": coil_path("").as_posix(),
            "MaxDisplacementMm": round(max_displacement(grid.shape, grid.affine), 4),
        }

    root = Path(out)
    labels = [f"{i:02d}" for i in range(subject_offset + 1, subject_offset + n_sub + 1)]
    description = root / "dataset_description.json"
    if description.exists():
        clash = [f"sub-{lab}" for lab in labels if (root / f"sub-{lab}").exists()]
        if clash:
            raise FileExistsError(
                f"{root} already has {', '.join(clash)}. Fix: to add subjects, number them "
                f"after the existing ones with --subject-offset {subject_offset + n_sub} "
                f"(subject_offset={subject_offset + n_sub} in Python), or write to a new folder"
            )
        old = json.loads(description.read_text()).get("echoprepSimulation", {})
        if old and old.get("preset") != preset:
            raise ValueError(
                f"{root} was simulated with preset {old.get('preset')!r}, not {preset!r}"
            )
        if old and old.get("response") != params.get("response"):
            raise ValueError(
                f"{root}: expected new subjects with the dataset's response model "
                f"{old.get('response', {}).get('name', 'default')!r}; found {model.name!r}. "
                "Fix: pass the same response model or write to a new folder"
            )
        if old and bool(old.get("shared_images", False)) != bool(shared_images):
            raise ValueError(
                f"{root}: expected new subjects with the dataset's shared_images "
                f"({bool(old.get('shared_images', False))}); found {bool(shared_images)}. "
                "Fix: pass the same --shared-images choice or write to a new folder"
            )
    elif root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"{root} is not empty and is not a simulated dataset; use a new folder"
        )
    else:
        write_root(root, p, params)
    points = None
    if gradient_nonlinearity:
        write_coil(root)
        points = true_positions(grid.shape, grid.affine)

    for lab in labels:
        t0 = time.perf_counter()
        _simulate_subject(
            root,
            p,
            int(lab),
            seed,
            (n_ses, n_runs),
            (use_motion, use_fmap, use_distortion, phase),
            params,
            model,
            (fieldmap_kind, bool(field_dynamics), n_fmaps),
            (t1w_kind, bool(t2w), anat_session, freesurfer),
            points,
            bool(shared_images),
        )
        log.info("sub-%s written in %.1f s", lab, time.perf_counter() - t0)
    update_participants(root, seed, labels)
    return root


# ---------------------------------------------------------------------------------------------
# one subject


def _map(path: Path, arr: np.ndarray, affine: np.ndarray, sidecar: dict[str, Any]) -> None:
    dtype = np.uint8 if arr.dtype == bool or arr.dtype == np.uint8 else np.float32
    write_nifti(path, nifti_header(arr.shape, affine, dtype), np.asarray(arr).astype(dtype))
    write_json(sidecar_path(path), sidecar)


def _simulate_subject(
    root: Path,
    p: Preset,
    sub: int,
    seed: int,
    counts: tuple[int, int],
    options: tuple[bool, bool, bool, bool],
    params: dict[str, Any],
    response: ResponseModel = DEFAULT,
    field: tuple[str, bool, int] = ("phasediff", False, 0),
    anatomy: tuple[str, bool, str | None, bool] = ("mprage", False, None, True),
    points: np.ndarray | None = None,
    shared_images: bool = False,
) -> None:
    """Write one subject: ``counts`` = (sessions, runs), ``options`` = (motion, fieldmap,
    distortion, phase); ``field`` = (fieldmap_kind, field_dynamics, fieldmaps_per_session)
    of :func:`simulate_dataset`; ``anatomy`` = (t1w_kind, t2w, anat_session, freesurfer);
    ``points``: the gradient coil's true positions of the grid voxels, or None;
    ``shared_images``: every session shows session 1's images (:func:`simulate_dataset`)."""
    fieldmap_kind, field_dynamics, n_fmaps = field
    n_ses, n_runs = counts
    motion, fieldmap, distortion, phase = options
    label = f"{sub:02d}"
    anat = subject_anatomy(p, seed, sub, response)
    write_anatomy(root, p, seed, sub, *anatomy)
    for ses in range(1, n_ses + 1):
        ses_label = f"{ses:02d}"
        design = session_design(p, n_runs, seed, sub, ses, shared_images)
        truth = single_trial_betas(anat, design, seed, sub, ses, response, shared_images)
        _write_session_truth(root, p, label, ses_label, anat, design, truth, params, response)
        if distortion:
            _write_vsm(root, p, label, ses_label, anat)
        image_trials = design[design["image"] >= 0].reset_index(drop=True)
        clock = session_clock(p, n_runs, n_fmaps, ses) if n_fmaps else None
        timed: list[tuple[Path, float]] = []
        for run in range(1, n_runs + 1):
            t0 = time.perf_counter()
            run_label = f"{run:02d}"
            ents = {"sub": label, "ses": ses_label, "task": TASK, "run": run_label}
            events = design[design["run"] == run]
            write_tsv(
                bids_path(root, ents, "events", ".tsv"),
                ["onset", "duration", "trial_type", "stim_name"],
                events[["onset", "duration", "trial_type", "stim_name"]].itertuples(index=False),
            )
            cols = np.flatnonzero(image_trials["run"].to_numpy() == run)
            model = build_run(
                p,
                anat,
                image_trials["onset"].to_numpy()[cols],
                truth["betas"][:, cols],
                seed=seed,
                subject=sub,
                session=ses,
                run=run,
                motion=motion,
                distortion=distortion,
                response=response,
                field_dynamics=field_dynamics,
                gradient_points=points,
            )
            sigma = thermal_sigma(p, response)
            when = clock.run_starts[run - 1] if clock else None
            if clock:  # the field of the run's time
                model = drifted_run(model, anat, clock, run)
            written = _write_bold(root, p, ents, model, seed, (sub, ses, run), phase, sigma, when)
            timed += [(path, when) for path in written if when is not None]
            if fieldmap and fieldmap_kind == "epi":
                write_epi_pair(root, p, ents, anat, seed, (sub, ses, run), phase)
            elif fieldmap and not clock:
                write_gre_fieldmap(root, p, ents, anat, seed, (sub, ses, run), phase, points=points)
            if model.motion is not None:
                _write_motion(root, label, ses_label, run_label, model)
            if (model.dynamic or clock or points is not None) and model.distorted:
                _write_run_field(root, (label, ses_label, run_label), model)
            _write_artifact(root, label, ses_label, run_label, model.s0_courses[-1])
            log.info(
                "sub-%s ses-%s run-%s: %.1f s",
                label,
                ses_label,
                run_label,
                time.perf_counter() - t0,
            )
        if clock:
            ses_ents = {"sub": label, "ses": ses_label}
            write_session_fieldmaps(root, p, ses_ents, anat, seed, (sub, ses), clock, timed, points)


def _write_bold(
    root: Path,
    p: Preset,
    ents: dict[str, str],
    model: Any,
    seed: int,
    key: tuple[int, int, int],
    phase: bool,
    sigma: float,
    when: float | None = None,
) -> list[Path]:
    """A run's BOLD and SBRef images and sidecars (with ``AcquisitionTime`` when ``when``, s
    since midnight, is given); returns their paths."""
    sub, ses, run = key
    extra = {"AcquisitionTime": clock_text(when)} if when is not None else {}
    shape4 = (*model.shape, model.n_volumes)
    parts = ("mag", "phase") if phase else ("mag",)
    rngs = [seeds.rng(seed, sub, ses, run, seeds.NOISE, echo) for echo in range(1, len(p.tes) + 1)]
    with ExitStack() as stack:
        writers = {}
        for echo in range(1, len(p.tes) + 1):
            for part in parts:
                path = bids_path(root, ents | {"echo": str(echo), "part": part}, "bold", ".nii.gz")
                hdr = nifti_header(shape4, model.affine, np.int16, tr=p.tr)
                writers[echo, part] = stack.enter_context(NiftiWriter(path, hdr))
        for block in run_volumes(model, p.tes, rngs, p.chunk_volumes, phase=phase):
            for echo, (mag, ph) in enumerate(block, start=1):
                writers[echo, "mag"].write(mag)
                if phase:
                    writers[echo, "phase"].write(ph)
    written = [w.path for w in writers.values()]
    for (echo, part), w in writers.items():
        write_json(sidecar_path(w.path), bold_sidecar(p, echo, part) | extra)
    for echo, te in enumerate(p.tes, start=1):
        # single-band reference: the fluctuation-free image in the head position of volume 0
        # (distorted like the run) with g = 1 noise
        r = seeds.rng(seed, sub, ses, run, seeds.SBREF, echo)
        img = reference_image(model, te)
        noise = sigma * r.standard_normal((2, *model.shape), dtype=np.float32)
        sbref = quantize_magnitude(np.hypot(img + noise[0], noise[1]))
        sb_path = bids_path(root, ents | {"echo": str(echo)}, "sbref", ".nii.gz")
        write_nifti(sb_path, nifti_header(model.shape, model.affine, np.int16), sbref)
        write_json(sidecar_path(sb_path), bold_sidecar(p, echo, None) | extra)
        written.append(sb_path)
    return written


def _write_motion(root: Path, sub: str, ses: str, run: str, model: RunModel) -> None:
    path = motion_path(root, sub, ses, run)
    cols = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    write_tsv(path, cols, ([float(v) for v in row] for row in model.motion))
    write_json(
        sidecar_path(path),
        {
            "Description": (
                "True rigid head motion per volume: a point x of the motion-free head (the "
                "pose of the functional truth maps) is at M_t x = c + R (x - c) + d in the "
                "scanner during volume t, d = (trans_x, trans_y, trans_z) in mm, "
                "R = Rz(rot_z) Ry(rot_y) Rx(rot_x) with Rx(a) = [[1, 0, 0], [0, cos a, -sin a], "
                "[0, sin a, cos a]] (right-handed, angles in rad), c = RotationCenter = centre "
                "of the functional grid (world coordinates of voxel (nx-1, ny-1, nz-1)/2); "
                "world = scanner RAS mm. The head of volume t relative to volume 0 is "
                "M_t inv(M_0); the SBRef is in the position of volume 0. Values are rounded to "
                "6 significant digits. With distortion the field moves with the head."
            ),
            "RotationCenter": model.center.tolist(),
            "RotationOrder": "R = Rz Ry Rx (x first)",
            **{c: {"Units": "mm" if c.startswith("trans") else "rad"} for c in cols},
        },
    )


def _write_vsm(root: Path, p: Preset, sub: str, ses: str, anat: SubjectAnatomy) -> None:
    trt = total_readout_time(p)
    path = vsm_path(root, sub, ses)
    extra = {
        "PhaseEncodingDirection": PE_DIRECTION,
        "PhaseEncodingSign": PE_SIGN,
        "TotalReadoutTime": trt,
        "VoxelSizeAlongPE": float(anat.grid.affine[1, 1]),
    }
    vsm = voxel_shift_map(anat.b0_hz, trt)
    _map(path, vsm, anat.grid.affine, DESCRIPTIONS["vsm"] | extra)


def _write_run_field(root: Path, key: tuple[str, str, str], model: RunModel) -> None:
    """The field (Hz) that distorted each volume of a run, 4D float32 on the BOLD grid."""
    path = run_field_path(root, *key)
    field = np.stack([model.field_hz(t) for t in range(model.n_volumes)], axis=-1)
    description = (
        "Off-resonance (Hz) that distorted each volume, in the scanner frame: the static "
        "field in the volume's head position plus drift, respiration and the pitch-dependent "
        f"change (voxel shift along +j = {PE_SIGN} x field x TotalReadoutTime)"
    )
    _map(path, field, model.affine, {"Description": description, "Units": "Hz"})


def _write_artifact(root: Path, sub: str, ses: str, run: str, course: np.ndarray) -> None:
    path = artifact_path(root, sub, ses, run)
    write_tsv(path, ["artifact"], ([float(v)] for v in course))
    write_json(
        sidecar_path(path),
        {
            "Description": (
                "Non-BOLD (S0, echo-time independent) artefact per volume: steps and spikes, "
                "unit SD; it changes S0 in CSF and at the brain edge by up to "
                "echoprep.simulate.signal.ARTIFACT_SD"
            ),
            "artifact": {"Units": "arbitrary (unit SD)"},
        },
    )


def _write_session_truth(
    root: Path,
    p: Preset,
    sub: str,
    ses: str,
    anat: SubjectAnatomy,
    design: pd.DataFrame,
    truth: dict[str, np.ndarray],
    params: dict[str, Any],
    response: ResponseModel = DEFAULT,
) -> None:
    paths = truth_paths(root, sub, ses)
    aff = anat.grid.affine
    active = anat.active
    images = design[design["image"] >= 0]
    n_rep = images.groupby("image")["n_repeats"].first().to_numpy()
    mean_inv = float(np.mean(1.0 / n_rep))
    s = np.zeros(anat.grid.shape, np.float32)
    t = np.zeros(anat.grid.shape, np.float32)
    nc = np.zeros(anat.grid.shape, np.float32)
    s[active], t[active] = truth["s"], truth["t"]
    nc[active] = 100 * truth["s"] ** 2 / (truth["s"] ** 2 + truth["t"] ** 2 * mean_inv)
    maps = {
        "T2star": anat.t2s,
        "S0": anat.s0,
        "brain_mask": anat.brain_mask,
        "gm_mask": anat.gm_mask,
        "g_factor": anat.gfactor,
        "fieldmap_hz": anat.b0_hz,
        "active_mask": active,
        "hrf_peak": anat.hrf_peak * anat.brain_mask,
        "s": s,
        "t": t,
        "nc": nc,
    }
    extra: dict[str, dict[str, Any]] = {
        "g_factor": {"NoiseSigma": thermal_sigma(p, response)},
        "hrf_peak": {"LibraryPeaks": HRF_PEAKS.round(4).tolist()},
        "nc": {"MeanInverseRepeats": mean_inv},
    }
    for key, arr in maps.items():
        _map(paths[key], arr, aff, DESCRIPTIONS[key] | extra.get(key, {}))
    for name in ROI_NAMES:
        roi = {"Description": f"ROI '{name}': {ROI_DEFINITIONS[name]}"}
        _map(paths[f"roi_{name}"], anat.rois[name], aff, roi)

    # trials and betas
    trials = images.reset_index(drop=True)
    columns = ["session", "run", "onset", "label", "beta_index", "trial_type", "n_repeats"]
    rows = (
        (ses, f"{r.run:02d}", float(r.onset), r.stim_name, i, r.trial_type, int(r.n_repeats))
        for i, r in enumerate(trials.itertuples(index=False))
    )
    write_tsv(paths["trials"], columns, rows)
    write_json(sidecar_path(paths["trials"]), DESCRIPTIONS["trials"])
    shape4 = (*anat.grid.shape, len(trials))
    with NiftiWriter(paths["betas"], nifti_header(shape4, aff, np.float32)) as w:
        vol = np.zeros(anat.grid.shape, np.float32)
        for j in range(len(trials)):
            vol[active] = truth["betas"][:, j]
            w.write(vol)
    te2 = p.tes[1]
    write_json(
        sidecar_path(paths["betas"]),
        DESCRIPTIONS["betas"]
        | {
            "PercentSignalChangeEcho2": f"100 * (exp({te2} * beta) - 1), about "
            f"{100 * te2:.3f} * beta: peak % signal change at echo 2 (TE {te2} s); at another "
            "echo use its TE",
            "Model": _model_text(response),
            "Trials": paths["trials"].name,
            "echoprepSimulation": params,
        },
    )
    _write_image_means(paths, anat, images, truth, response)


def _model_text(response: ResponseModel) -> str:
    """The beta model of the truth sidecar (the historical text for the default model)."""
    if response == DEFAULT:
        return f"beta = a(v) (1 + {KAPPA} z(v, image)) + t(v) eps; s(v) = {KAPPA} a(v)"
    amp = response.amplitude_scale
    k = response.kappa
    return (
        f"beta = mu + t(v) eps, mu = {amp} a(v) (1 + {k} z(v, image)); s(v) = {k} {amp} a(v); "
        f"response model {response.name!r} (see the truth image means' sidecar)"
    )


def _write_image_means(
    paths: dict, anat: SubjectAnatomy, images: pd.DataFrame, truth: dict, response: ResponseModel
) -> None:
    """The true image means (4D, one volume per image) and the images TSV."""
    ids = truth["images"]
    first = images.groupby("image")[["stim_name", "n_repeats"]].first()
    rows = (
        (i, int(img), first.loc[img, "stim_name"], int(first.loc[img, "n_repeats"]))
        for i, img in enumerate(ids.tolist())
    )
    write_tsv(paths["images"], ["volume_index", "image", "label", "n_repeats"], rows)
    write_json(sidecar_path(paths["images"]), DESCRIPTIONS["images"])
    shape4 = (*anat.grid.shape, len(ids))
    with NiftiWriter(paths["image_means"], nifti_header(shape4, anat.grid.affine, np.float32)) as w:
        vol = np.zeros(anat.grid.shape, np.float32)
        for j in range(len(ids)):
            vol[anat.active] = truth["mu"][:, j]
            w.write(vol)
    write_json(
        sidecar_path(paths["image_means"]),
        DESCRIPTIONS["image_means"]
        | {"Images": paths["images"].name, "ResponseModel": response.as_dict()},
    )
