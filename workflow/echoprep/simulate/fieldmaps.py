"""The simulator's fieldmaps: a dual-echo GRE (``phasediff``) or a reversed phase-encoding
``epi`` pair per run, in the motion-free head position, with ``IntendedFor`` naming the run's
BOLD files (:func:`echoprep.simulate.simulate_dataset`, ``fieldmap_kind``); or, with
``fieldmaps_per_session``, GRE fieldmaps of the session's field at their own times and head
positions, without ``IntendedFor`` (:mod:`echoprep.simulate.session_fieldmaps`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from echoprep.io.paths import bids_path, sidecar_path
from echoprep.io.sidecars import write_json
from echoprep.simulate import seeds
from echoprep.simulate.acquisition import (
    FMAP_TES,
    epi_fmap_sidecar,
    fmap_sidecar,
    total_readout_time,
)
from echoprep.simulate.anatomy import SubjectAnatomy
from echoprep.simulate.geometry import PE_DIRECTION, distort, rigid_matrix, voxel_shift_map
from echoprep.simulate.presets import Preset
from echoprep.simulate.writer import (
    nifti_header,
    quantize_magnitude,
    quantize_phase,
    write_nifti,
)

#: Fieldmap acquisitions the simulator writes.
FIELDMAP_KINDS = ("phasediff", "epi")


def posed_maps(
    anat: SubjectAnatomy,
    field: np.ndarray,
    pose: np.ndarray | None,
    points: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """S0, R2*, phase at TE 0 and the field (Hz) of the head moved by ``pose`` (rigid
    parameters ``(trans_x, trans_y, trans_z [mm], rot_x, rot_y, rot_z [rad])`` about the grid
    centre, :func:`echoprep.simulate.geometry.rigid_matrix`; cubic B-spline, 0 outside), each
    (nx, ny, nz); the maps as they are for None or a zero pose. ``points``: gradient
    nonlinearity, the true positions imaged at the grid voxels ``(3, nvox)``
    (:func:`echoprep.simulate.gradient_coil.true_positions`): the maps are sampled there."""
    maps = (anat.s0, anat.r2s, anat.phase0, field)
    if points is None and (pose is None or not np.any(pose)):
        return maps
    a = anat.grid.affine
    centre = a[:3, :3] @ ((np.asarray(anat.grid.shape) - 1) / 2) + a[:3, 3]
    move = np.eye(4) if pose is None else rigid_matrix(pose, centre)
    m = np.linalg.inv(a) @ np.linalg.inv(move) @ a
    if points is None:
        s0, r2s, phase0, moved = (
            ndimage.affine_transform(x, m[:3, :3], m[:3, 3], order=3, mode="constant") for x in maps
        )
    else:
        w = np.linalg.inv(a) @ np.linalg.inv(move)
        coords = w[:3, :3] @ points + w[:3, 3:4]
        s0, r2s, phase0, moved = (
            ndimage.map_coordinates(x, coords, order=3, mode="constant").reshape(x.shape)
            for x in maps
        )
    return np.maximum(s0, 0), np.maximum(r2s, 0), phase0, moved


def write_gre_fieldmap(
    root: Path,
    p: Preset,
    ents: dict[str, str],
    anat: SubjectAnatomy,
    seed: int,
    key: tuple[int, int, int],
    phase: bool,
    *,
    field: np.ndarray | None = None,
    pose: np.ndarray | None = None,
    sidecar: dict[str, Any] | None = None,
    points: np.ndarray | None = None,
) -> None:
    """A dual-echo GRE fieldmap of run ``key`` = (subject, session, run): ``magnitude1``,
    ``magnitude2`` and ``phasediff`` (Siemens units) of the static field in the motion-free
    position, with complex noise; ``IntendedFor`` names the run's BOLD files. Same arguments
    as :func:`write_epi_pair`. A session's fieldmap (``field`` given: the field at its time,
    Hz, on the grid) names no run, is in the head position ``pose`` (:func:`posed_maps`) and
    adds ``sidecar`` to its sidecars (``AcquisitionTime``). ``points``: gradient nonlinearity
    (:func:`posed_maps`)."""
    sub, ses, run = key
    r = seeds.rng(seed, sub, ses, run, seeds.FIELDMAP)
    fents = {k: ents[k] for k in ("sub", "ses", "run")}
    targets = intended_bold(root, p, ents, phase) if field is None else None
    s0, r2s, phase0, b0 = posed_maps(anat, anat.b0_hz if field is None else field, pose, points)
    sigma = 0.5 * p.noise_sigma
    signals = []
    for te in FMAP_TES:
        clean = s0 * np.exp(-te * r2s) * np.exp(1j * (phase0 + 2 * np.pi * b0 * te))
        signals.append(
            clean + sigma * (r.standard_normal(clean.shape) + 1j * r.standard_normal(clean.shape))
        )
    images = {
        "magnitude1": quantize_magnitude(np.abs(signals[0])),
        "magnitude2": quantize_magnitude(np.abs(signals[1])),
        "phasediff": quantize_phase(np.angle(signals[1] * np.conj(signals[0]))),
    }
    for kind, arr in images.items():
        path = bids_path(root, fents, kind, ".nii.gz", "fmap")
        write_nifti(path, nifti_header(arr.shape, anat.grid.affine, np.int16), arr)
        write_json(sidecar_path(path), fmap_sidecar(p, kind, targets) | (sidecar or {}))


def intended_bold(root: Path, p: Preset, ents: dict[str, str], phase: bool) -> list[str]:
    """``IntendedFor`` of a run's fieldmap: every BOLD file of the run (``bids::`` URIs)."""
    targets = []
    for echo in range(1, len(p.tes) + 1):
        for part in ("mag", "phase") if phase else ("mag",):
            path = bids_path(root, ents | {"echo": str(echo), "part": part}, "bold", ".nii.gz")
            targets.append("bids::" + path.relative_to(root).as_posix())
    return targets


def write_epi_pair(
    root: Path,
    p: Preset,
    ents: dict[str, str],
    anat: SubjectAnatomy,
    seed: int,
    key: tuple[int, int, int],
    phase: bool,
) -> None:
    """A reversed phase-encoding pair: ``dir-AP`` along the BOLD's ``j-``, ``dir-PA`` along
    ``j``; each one spin-echo-like volume (the first echo's S0 weighting, no T2* dropout) in
    the motion-free position, distorted by the subject's field with the BOLD's readout
    (signal-conserving, :func:`echoprep.simulate.geometry.distort`), plus Rician noise."""
    sub, ses, run = key
    r = seeds.rng(seed, sub, ses, run, seeds.FIELDMAP)
    fents = {k: ents[k] for k in ("sub", "ses", "run")}
    targets = intended_bold(root, p, ents, phase)
    clean = (anat.s0 * np.exp(-p.tes[0] * anat.r2s * 0.5)).astype(np.float32)
    shift = voxel_shift_map(anat.b0_hz, total_readout_time(p))  # along +j for "j-"
    sigma = 0.5 * p.noise_sigma
    for label, direction, sign in (("AP", PE_DIRECTION, 1.0), ("PA", "j", -1.0)):
        img = distort(clean, (sign * shift).astype(np.float32))
        noise = sigma * r.standard_normal((2, *img.shape), dtype=np.float32)
        arr = quantize_magnitude(np.hypot(img + noise[0], noise[1]))
        path = bids_path(root, fents | {"dir": label}, "epi", ".nii.gz", "fmap")
        write_nifti(path, nifti_header(arr.shape, anat.grid.affine, np.int16), arr)
        write_json(sidecar_path(path), epi_fmap_sidecar(p, direction, targets))


__all__ = ["FIELDMAP_KINDS", "intended_bold", "posed_maps", "write_epi_pair", "write_gre_fieldmap"]
