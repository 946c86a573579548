"""The planted responses of one comparison session (``echoprep planted design``).

Reads the type-B betas of the visual ROI's source fit (plain least squares: amplitudes are not
shrunk), their trials, every fitted variant's HRF choice and fit mask, the analysis mask and
the visual ROI (and, with ``comparison.planted.source: other_sessions``, the other comparison
sessions' type-B betas), and writes the design (:data:`DESIGN_KEYS`): the voxels that receive a
planted response (analysis mask and every fit), each image's planted response (its mean in the
other sessions, else its later odd-numbered presentations in other runs than its first, else
its own odd-numbered presentations), the truth it is scored against (its even-numbered
presentations in this session), each voxel's response curve (the shape of the
session's own responses, one curve estimated from the reference fit's series over the ROI; or
the library HRF of the voxel) and the planting factor. docs/comparison.md, "Responses
planted in your data".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.io.atomic import atomic_path
from echoprep.io.events import read_trials
from echoprep.io.images import (
    StageInputError,
    check_same_grid,
    load_image,
    load_mask_on_grid,
    series_tr,
)
from echoprep.io.paths import sidecar_path
from echoprep.io.sidecars import write_sidecar
from echoprep.kernels.planted import (
    MAX_RESPONSE_PERCENT,
    consensus_hrf,
    half_means,
    image_sums,
    later_presentations,
    planting_amplitude,
    plausible_voxels,
    presentation_halves,
    response_curves,
)
from echoprep.kernels.planted_shape import (
    cross_amplitudes,
    fit_shape,
    shape_moments,
    spline_basis,
)

log = logging.getLogger(__name__)

#: Arrays of a design file.
DESIGN_KEYS = (
    "voxels",
    "shape",
    "affine",
    "images",
    "planted",
    "truth",
    "hrf",
    "curves",
    "factor",
    "te_ref",
    "stimdur",
    "roi",
    "source",
)
#: Fewest images shown at least twice for a planting.
MIN_IMAGES = 10
#: Shapes of the planted responses (``comparison.planted.shape``).
SHAPES = ("estimated", "library")
#: Where the planted responses come from (``comparison.planted.source``): the same images'
#: responses in the subject's other comparison sessions, else the session's own half A; the
#: images' later presentations in the session's other runs
#: (:func:`echoprep.kernels.planted.later_presentations`), else half A; or half A always.
SOURCES = ("other_sessions", "other_runs", "session")
#: How NORDIC's decisions pass the planted echoes, per source (``echoprep nordic
#: --companion-map``): a source whose noise NORDIC has not seen needs NORDIC's first-order
#: response (the tangent map); half A's noise, shaped by NORDIC's kept components, is offset
#: by the frozen map's loss (docs/comparison.md, "Responses from your other sessions").
COMPANION_MAP = {"other_sessions": "tangent", "other_runs": "tangent", "session": "frozen"}
#: Volumes read at a time from a series (memory: voxels x this x 4 bytes, per run).
CHUNK_VOLUMES = 64
_GRID_ATOL = 1e-4


def read_design(path: str | Path) -> dict[str, Any]:
    """The arrays of a design file (:data:`DESIGN_KEYS`), labels as str."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except Exception as exc:  # numpy raises several types for unreadable files
        raise StageInputError(
            f"{p}: expected a planted design (echoprep planted design); found an unreadable file "
            f"({exc}). Fix: delete it and rerun the planted_design rule."
        ) from exc
    out.setdefault("source", np.asarray("session"))  # designs written before sources
    missing = [k for k in DESIGN_KEYS if k not in out]
    if missing:
        raise StageInputError(
            f"{p}: expected the arrays {list(DESIGN_KEYS)}; missing {missing}. Fix: rerun the "
            "planted_design rule with this version of echoprep."
        )
    out["images"] = out["images"].astype(str)
    return out


def make_design(
    reference: str | Path,
    trials: str | Path,
    hrf_maps: Sequence[str | Path],
    fit_masks: Sequence[str | Path],
    mask: str | Path,
    roi: str | Path,
    output: str | Path,
    *,
    te_ref: float,
    stimdur: float,
    amplitude: float | None = None,
    series: Sequence[str | Path] = (),
    run_labels: Sequence[str] = (),
    slice_timing: Sequence[float] | None = None,
    slice_axis: int = 2,
    shape: str = "estimated",
    source: str = "other_sessions",
    source_betas: Sequence[str | Path] = (),
    source_trials: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Choose and write a session's planted responses.

    Parameters
    ----------
    reference
        4D type-B betas (one volume per trial, % signal change) of the visual ROI's source
        fit.
    trials
        That fit's trials table (``label`` per beta volume, in volume order).
    hrf_maps, fit_masks
        Every fitted variant's HRF index map and fit mask (same order).
    mask, roi
        The session's analysis mask and the subject's visual ROI (same grid).
    output
        The design file (``.npz``; a JSON sidecar beside it).
    te_ref
        Echo time of the reference's series, s (the single echo's).
    stimdur
        Stimulus duration of the fits, s.
    amplitude
        Planting factor; None: :func:`echoprep.kernels.planted.planting_amplitude` over the
        ROI.
    series, run_labels
        The reference fit's series (4D, one per run, on the betas' grid) and their runs'
        labels in the trials table: the data the response shape is estimated from.
    slice_timing, slice_axis
        SliceTiming of the runs (s, in slice-index order) and the slices' image axis, for series
        not corrected for slice timing.
    shape
        ``"estimated"``: every voxel's planted time course has the shape of the session's own
        responses (one curve: :mod:`echoprep.kernels.planted_shape`; the library's where it
        cannot be estimated); ``"library"``: the library HRF GLMsingle chose.
    source
        ``"other_sessions"``: each image's planted response is its mean over
        ``source_betas`` (the subject's other comparison sessions that show it: noise no
        decision of this session's chains has seen), planted for the images they show (at
        least :data:`MIN_IMAGES`; else half A); ``"other_runs"``: its
        odd-numbered presentations from the third on that lie in other runs than its first
        (:func:`echoprep.kernels.planted.later_presentations`), planted for the images that
        have one (at least :data:`MIN_IMAGES`; else half A) and read at their first
        presentations; ``"session"``: half A.
    source_betas, source_trials
        The other sessions' type-B betas (4D, on this session's grid; a session on another
        grid is not used, with a warning) and their trials tables.

    Returns
    -------
    dict
        The design's arrays and ``path``.
    """
    if source not in SOURCES:
        raise StageInputError(
            f"comparison.planted.source: expected one of {list(SOURCES)}; found {source!r}. "
            "Fix: set it in the config."
        )
    if len(source_betas) != len(source_trials):
        raise StageInputError(
            f"{reference}: expected one trials table per source session's betas; found "
            f"{len(source_betas)} betas and {len(source_trials)} tables. Fix: pass "
            "--source-betas and --source-trials once per other session."
        )
    if shape not in SHAPES:
        raise StageInputError(
            f"comparison.planted.shape: expected one of {list(SHAPES)}; found {shape!r}. Fix: "
            "set it in the config."
        )
    ref_path = Path(reference)
    ref = load_image(ref_path, "type-B betas (x, y, z, trials)", ndim=4)
    fix = "Fix: every map of a session must share its functional grid (rerun the GLM rules)."
    voxels = load_mask_on_grid(
        mask, ref, like_path=ref_path, what="analysis mask", fix=fix, atol=_GRID_ATOL
    )
    if len(hrf_maps) != len(fit_masks) or not hrf_maps:
        raise StageInputError(
            f"{ref_path}: expected one HRF map per fit mask; found {len(hrf_maps)} and "
            f"{len(fit_masks)}. Fix: pass --hrf and --fit-mask once per fitted variant."
        )
    hrfs = []
    for h_path, m_path in zip(hrf_maps, fit_masks, strict=True):
        voxels &= load_mask_on_grid(
            m_path, ref, like_path=ref_path, what="GLM fit mask", fix=fix, atol=_GRID_ATOL
        )
        img = load_image(h_path, "HRF index map")
        check_same_grid(
            img,
            ref,
            path=Path(h_path),
            ref_path=ref_path,
            what="HRF index map",
            fix=fix,
            atol=_GRID_ATOL,
        )
        hrfs.append(np.asarray(img.dataobj).reshape(img.shape[:3]))
    roi_mask = load_mask_on_grid(
        roi, ref, like_path=ref_path, what="visual ROI", fix=fix, atol=_GRID_ATOL
    )
    table = read_trials(trials, required=("label", "run"), fix="Fix: rerun the GLM stage.")
    data = np.asanyarray(ref.dataobj)
    if data.shape[3] != len(table):
        raise StageInputError(
            f"{ref_path}: expected one beta volume per row of {trials} ({len(table)}); found "
            f"{data.shape[3]}. Fix: rerun the GLM rules of the session."
        )
    betas = np.asarray(data[voxels], np.float64)
    finite = np.isfinite(betas).all(axis=1)
    voxels[tuple(np.argwhere(voxels)[~finite].T)] = False
    betas = betas[finite]
    labels = table["label"].astype(str).to_numpy()
    images, half_a, half_b = half_means(betas, labels, table["run"].astype(str).to_numpy())
    plausible = plausible_voxels(half_a, half_b)
    beyond = int((~plausible).sum())
    if beyond:
        log.warning(
            "%s: %d of %d voxels have an image mean beyond %g %% signal change (largest "
            "%.3g %%): no BOLD response is that large (a run whose baseline is near 0 there, "
            "or a trial with almost none of its response in the run, gives such betas); they "
            "are left out of the planting and of the planted estimate",
            ref_path,
            beyond,
            plausible.size,
            MAX_RESPONSE_PERCENT,
            float(np.nanmax(np.abs(np.concatenate([half_a[~plausible], half_b[~plausible]], 1)))),
        )
        voxels[tuple(np.argwhere(voxels)[~plausible].T)] = False
        betas, half_a, half_b = betas[plausible], half_a[plausible], half_b[plausible]
    if images.size < MIN_IMAGES:
        # legal data (a design without repeats): nothing is planted, and the comparison ranks
        # this session by the held-out fidelity
        log.warning(
            "%s: %d images shown twice or more (at least %d are needed to plant responses); "
            "nothing is planted in this session and its comparison uses the held-out fidelity",
            trials,
            images.size,
            MIN_IMAGES,
        )
        images = images[:0]
        half_a, half_b = half_a[:, :0], half_b[:, :0]
    in_roi = roi_mask[voxels]
    if not images.size:
        factor = 0.0
    elif amplitude is None:
        use = in_roi if in_roi.any() else np.ones_like(in_roi)
        factor = planting_amplitude(half_a[use], half_b[use])
    else:
        factor = float(amplitude)
    hrf = consensus_hrf(np.stack([h[voxels] for h in hrfs]))
    curves = response_curves(stimdur)[1]
    shape_record: dict[str, Any] = {"Shape": "library"}
    if shape == "estimated" and images.size and in_roi.any():
        if len(series) != len(run_labels) or not series:
            raise StageInputError(
                f"{ref_path}: expected one reference series per run label to estimate the "
                f"response shape; found {len(series)} series and {len(run_labels)} labels. Fix: "
                "pass --series and --run-labels once per run, or set comparison.planted.shape: "
                "library."
            )
        curves, shape_record = _estimated_curves(
            series,
            run_labels,
            (slice_timing, slice_axis),
            table,
            ref,
            ref_path,
            np.argwhere(voxels)[in_roi],
            (images, half_a[in_roi], half_b[in_roi]),
            curves,
        )
    origin, source_record = "session", {"Source": "session"}
    if source == "other_sessions" and source_betas and images.size:
        got = _other_sessions(
            source_betas,
            source_trials,
            ref,
            ref_path,
            voxels,
            images,
            half_a,
            half_b,
            hrf,
            in_roi,
        )
        if got is not None:
            voxels, images, half_a, half_b, hrf, in_roi, source_record = got
            origin = "other_sessions"
        else:
            source_record = {"Source": "session", "OtherSessions": "too few shared images"}
    if source == "other_runs" and images.size:
        runs = table["run"].astype(str).to_numpy()
        got_runs = _other_runs(betas, labels, runs, images, half_b)
        if got_runs is not None:
            images, half_a, half_b, runs_record = got_runs
            source_record = {**source_record, **runs_record}
            origin = "other_runs"
        else:
            source_record = {**source_record, "OtherRuns": "too few images shown three times"}
    design = {
        "voxels": np.argwhere(voxels).astype(np.int32),
        "shape": np.asarray(voxels.shape, np.int32),
        "affine": np.asarray(ref.affine, np.float64),
        "images": images.astype(str),
        "planted": half_a.astype(np.float32),
        "truth": half_b.astype(np.float32),
        "hrf": hrf.astype(np.int16),
        "curves": curves.astype(np.float32),
        "factor": np.float64(factor),
        "te_ref": np.float64(te_ref),
        "stimdur": np.float64(stimdur),
        "roi": in_roi,
        "source": np.asarray(origin),
    }
    out = Path(output)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **design)
    write_sidecar(
        out,
        sources=[
            ref_path,
            Path(trials),
            *map(Path, hrf_maps),
            *map(Path, fit_masks),
            Path(mask),
            Path(roi),
            *map(Path, series),
            *map(Path, source_betas),
            *map(Path, source_trials),
        ],
        parameters={"amplitude": amplitude, "shape": shape, "source": source},
        extra={
            "Description": "responses planted into the session's raw echoes: for each image, "
            "a small copy of its own response as estimated by the visual ROI's source fit "
            "(type-B betas, % signal change, each run's mean removed) in the subject's other "
            "comparison sessions (ResponseSource other_sessions), at its odd-numbered "
            "presentations from the third on in other runs than its first (other_runs; read "
            "at the first presentations) or at its odd-numbered presentations in this one "
            "(session); scored against its even-numbered presentations in this session",
            "PlantingFactor": factor,
            "Images": int(images.size),
            "Voxels": int(voxels.sum()),
            "VoxelsBeyondResponseBound": beyond,
            "ROIVoxels": int(in_roi.sum()),
            "ReferenceEchoTime": te_ref,
            "StimulusDuration": stimdur,
            "HRF": "per voxel the median of the fitted variants' library HRF choices; the "
            "voxel's time course is curve `hrf` of `curves`",
            "ResponseShape": shape_record,
            "ResponseSource": source_record,
            "CompanionMap": COMPANION_MAP[origin],
            "Arrays": {k: _ARRAYS[k] for k in DESIGN_KEYS},
        },
    )
    log.info(
        "planted design: %d images, %d voxels (%d in the ROI), factor %.3f",
        images.size,
        int(voxels.sum()),
        int(in_roi.sum()),
        factor,
    )
    return {**design, "path": out}


_ARRAYS: Mapping[str, str] = {
    "voxels": "(V, 3) voxel indices on the functional grid of the planted voxels",
    "shape": "(3,) the functional grid's shape",
    "affine": "(4, 4) the functional grid's affine",
    "images": "(I,) labels of the images that receive a planted response",
    "planted": "(V, I) planted response, % signal change at ReferenceEchoTime, before the "
    "planting factor (the image's mean in the other sessions, its later presentations in other "
    "runs, or its half A: `source`)",
    "truth": "(V, I) the image's even-numbered presentations: the truth scored against",
    "hrf": "(V,) library HRF index (the median of the fits' choices): the column of `curves` "
    "that is the voxel's planted time course",
    "curves": "(n, H) response curve of each library HRF index, peak 1, every 0.1 s from the "
    "onset: where ResponseShape says estimated, the session's one curve in every column, else "
    "the library HRF convolved with the stimulus",
    "factor": "planting factor: the series carry factor x planted",
    "te_ref": "echo time of the reference series, s",
    "stimdur": "stimulus duration, s",
    "roi": "(V,) bool: voxel in the visual ROI",
    "source": "where `planted` comes from: other_sessions (the image's mean in the subject's "
    "other comparison sessions; NORDIC's tangent map), other_runs (its odd-numbered "
    "presentations from the third on, in other runs than its first; the tangent map; read at "
    "the first presentations) or session (half A; the frozen map)",
}


def _other_sessions(
    betas_paths: Sequence[str | Path],
    trials_paths: Sequence[str | Path],
    ref: Any,
    ref_path: Path,
    voxels: np.ndarray,
    images: np.ndarray,
    half_a: np.ndarray,
    half_b: np.ndarray,
    hrf: np.ndarray,
    in_roi: np.ndarray,
) -> tuple[Any, ...] | None:
    """The planted responses from the subject's other comparison sessions: each image's mean
    over their presentations of it (type-B betas, each run's mean removed), for the images
    they show; None where fewer than :data:`MIN_IMAGES` are shown there (or no ROI voxel is
    finite in every source). Returns the design's voxels, images, planted responses, truth
    (half B), HRF, ROI flags and the record, restricted to what the sources cover and
    centred over the images kept. A source on another grid is skipped with a warning."""
    ijk = np.argwhere(voxels)
    index = tuple(ijk.T)
    sums = np.zeros(half_a.shape)
    counts = np.zeros(images.size, np.int64)
    keep = np.ones(len(ijk), bool)
    used: list[str] = []
    skipped: list[str] = []
    fix = "Fix: rerun the GLM rules of that session."
    for b_path, t_path in zip(map(Path, betas_paths), map(Path, trials_paths), strict=True):
        img = load_image(b_path, "another session's type-B betas (x, y, z, trials)", ndim=4)
        try:
            check_same_grid(
                img,
                ref,
                path=b_path,
                ref_path=ref_path,
                what="another session's type-B betas",
                fix="Fix: use an output space the sessions share (output_space: T1w).",
                atol=_GRID_ATOL,
            )
        except StageInputError as exc:
            log.warning("%s Not used as a source of planted responses.", exc)
            skipped.append(str(b_path))
            continue
        table = read_trials(t_path, required=("label", "run"), fix=fix)
        if img.shape[3] != len(table):
            raise StageInputError(
                f"{b_path}: expected one beta volume per row of {t_path} ({len(table)}); "
                f"found {img.shape[3]}. {fix}"
            )
        data = np.asarray(np.asanyarray(img.dataobj)[index], np.float64)
        finite = np.isfinite(data).all(axis=1)
        keep &= finite
        data[~finite] = 0.0
        part, n = image_sums(
            data,
            table["label"].astype(str).to_numpy(),
            table["run"].astype(str).to_numpy(),
            images,
        )
        sums += part
        counts += n
        used.append(str(b_path))
        del data, part
    has = counts > 0
    if int(has.sum()) < MIN_IMAGES or not (keep & in_roi).any():
        log.warning(
            "planted responses: the subject's other comparison sessions show %d of this "
            "session's %d repeated images (at least %d are needed); half A of this session is "
            "planted instead",
            int(has.sum()),
            images.size,
            MIN_IMAGES,
        )
        return None
    means = sums[:, has] / counts[has]
    plausible = plausible_voxels(means)
    if not plausible.all():
        log.warning(
            "planted responses: %d voxels have a mean over the other sessions beyond %g %% "
            "signal change; they are left out of the planting",
            int((~plausible).sum()),
            MAX_RESPONSE_PERCENT,
        )
    keep &= plausible
    planted = means[keep]
    truth = half_b[keep][:, has]
    for m in (planted, truth):
        m -= m.mean(axis=1, keepdims=True)
    out = voxels.copy()
    out[tuple(ijk[~keep].T)] = False
    record = {
        "Source": "other_sessions",
        "Sessions": used,
        "SkippedOtherGrid": skipped,
        "Images": int(has.sum()),
        "ImagesNotShownElsewhere": int((~has).sum()),
        "Presentations": int(counts[has].sum()),
        "VoxelsNotFiniteElsewhere": int((~keep & plausible).sum()),
        "VoxelsBeyondResponseBoundElsewhere": int((~plausible).sum()),
    }
    log.info(
        "planted responses from %d other sessions: %d of %d images (%d presentations)",
        len(used),
        int(has.sum()),
        images.size,
        int(counts[has].sum()),
    )
    return out, images[has], planted, truth, hrf[keep], in_roi[keep], record


def _other_runs(
    betas: np.ndarray,
    labels: np.ndarray,
    runs: np.ndarray,
    images: np.ndarray,
    half_b: np.ndarray,
) -> tuple[Any, ...] | None:
    """The planted responses from the session's other runs: each image's mean over its
    odd-numbered presentations from the third on that lie in another run than its first
    (:func:`echoprep.kernels.planted.later_presentations`), for the images that have one;
    None where fewer than :data:`MIN_IMAGES` do. Returns the images, planted responses, truth
    (half B), centred over the images kept, and the record."""
    means, counts = later_presentations(betas, labels, runs, images)
    has = counts > 0
    if int(has.sum()) < MIN_IMAGES:
        log.warning(
            "planted responses: %d of the session's %d repeated images are shown a third time "
            "in another run than their first (at least %d are needed); half A of this session "
            "is planted instead",
            int(has.sum()),
            images.size,
            MIN_IMAGES,
        )
        return None
    planted = means[:, has]
    truth = half_b[:, has]
    for m in (planted, truth):
        m -= m.mean(axis=1, keepdims=True)
    record = {
        "Source": "other_runs",
        "Images": int(has.sum()),
        "ImagesWithoutALaterPresentation": int((~has).sum()),
        "Presentations": int(counts[has].sum()),
        "ReadAt": "each image's first presentation",
    }
    log.info(
        "planted responses from the session's other runs: %d of %d images (%d presentations), "
        "read at their first presentations",
        int(has.sum()),
        images.size,
        int(counts[has].sum()),
    )
    return images[has], planted, truth, record


def _series_timing(
    path: Path, img: Any, slice_timing: Sequence[float] | None, axis: int, ijk: np.ndarray
) -> tuple[float, np.ndarray]:
    """Sampling interval (s) of a series (as the GLM reads it: :func:`echoprep.io.images.
    series_tr`) and the time of each voxel's sample within it (s): the slice-timing
    correction's start time where the sidecar says it was corrected, else
    the voxel's slice time (SliceTiming along ``axis``; their mean on a grid with another
    number of slices, e.g. resampled without correction)."""
    tr = series_tr(path, img, fix="Fix: rerun the echo-handling rule of this run.")
    side = sidecar_path(path)
    meta = json.loads(side.read_text()) if side.exists() else {}
    if meta.get("SliceTimingCorrected"):
        return tr, np.full(len(ijk), float(meta.get("StartTime", 0.0)))
    if not slice_timing:
        return tr, np.zeros(len(ijk))
    st = np.asarray(slice_timing, np.float64)
    if st.size == img.shape[axis]:
        return tr, st[ijk[:, axis]]
    return tr, np.full(len(ijk), float(st.mean()))


def _read_voxels(img: Any, ijk: np.ndarray) -> np.ndarray:
    """``(V, T)`` float64 samples of the voxels ``ijk``, read :data:`CHUNK_VOLUMES` at a time."""
    n = img.shape[3]
    out = np.empty((len(ijk), n))
    index = tuple(ijk.T)
    for t0 in range(0, n, CHUNK_VOLUMES):
        block = np.asarray(img.dataobj[..., t0 : t0 + CHUNK_VOLUMES], np.float32)
        out[:, t0 : t0 + block.shape[3]] = block[index]
    return out


def _estimated_curves(
    series: Sequence[str | Path],
    run_labels: Sequence[str],
    slices: tuple[Sequence[float] | None, int],
    table: Any,
    ref: Any,
    ref_path: Path,
    ijk: np.ndarray,
    halves: tuple[np.ndarray, np.ndarray, np.ndarray],
    library: np.ndarray,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The response curves ``(n, H)``: every column the session's response curve, estimated
    from the reference fit's series over the ROI voxels ``ijk``
    (:mod:`echoprep.kernels.planted_shape`; ``library`` where it cannot be), and its
    record. ``slices``: the runs' SliceTiming (s) and the slices' axis."""
    labels = table["label"].astype(str).to_numpy()
    images, half_a, half_b = halves
    amplitudes = cross_amplitudes(labels, presentation_halves(labels), images, half_a, half_b)
    runs = table["run"].astype(str).to_numpy()
    onsets = table["onset"].to_numpy(np.float64)
    _, basis = spline_basis()
    k = basis.shape[1]
    moments, cross = np.zeros((len(ijk), k, k)), np.zeros((len(ijk), k))
    fix = "Fix: every series of a session must share its functional grid (rerun the GLM rules)."
    for path, label in zip(map(Path, series), run_labels, strict=True):
        rows = runs == str(label)
        if not rows.any():
            raise StageInputError(
                f"{path}: expected trials of run {label} in the trials table; found runs "
                f"{sorted(set(runs))}. Fix: pass --run-labels in the order of --series."
            )
        img = load_image(path, "reference series (x, y, z, t)", ndim=4)
        check_same_grid(
            img,
            ref,
            path=path,
            ref_path=ref_path,
            what="reference series",
            fix=fix,
            atol=_GRID_ATOL,
        )
        tr, offsets = _series_timing(path, img, *slices, ijk)
        m, c = shape_moments(
            _read_voxels(img, ijk), offsets, tr, onsets[rows], amplitudes[:, rows], basis
        )
        moments += m
        cross += c
    curve, record = fit_shape(moments, cross, basis, library)
    if curve is None:
        log.warning(
            "planted response shape: not estimated (%s); the library curves are planted",
            record["Reason"],
        )
        return library, {"Shape": "library", "Fit": record}
    log.info(
        "planted response shape: estimated from %d ROI voxels, peak at %.1f s",
        record["Voxels"],
        record["PeakSeconds"],
    )
    # curve is as long as the longer of the splines and the library (fit_shape)
    curves = np.repeat(curve[:, None], library.shape[1], axis=1)
    return curves, {"Shape": "estimated", "Fit": record}


__all__ = [
    "COMPANION_MAP",
    "DESIGN_KEYS",
    "MIN_IMAGES",
    "SHAPES",
    "SOURCES",
    "make_design",
    "read_design",
]
