"""Responses planted into a comparison session's own echoes (``echoprep planted``).

Four steps; between them the run's own chains run on the planted echoes, as the
same stage commands with the same options as the run's real chains (the plan joins them into
one ``planted_run`` job per run, docs/comparison.md, "Responses planted in your data"):

- ``design`` (:mod:`.planted_design`): the session's planted responses;
- ``echoes``: a run's raw magnitude echoes with the planted responses added (``+``) and
  subtracted (``-``) as an R2* change, or half their difference (``diff``), written to a
  folder of the work folder (never to the input dataset). The responses are defined on the
  functional grid: each trial's planted amplitude times its voxel's HRF at the voxel's
  acquisition times
  (:func:`echoprep.kernels.planted.delta_r2star`), brought into the run's own grid volume by
  volume through the run's transform chain (:func:`echoprep.kernels.planted.splat`; without
  spatial preprocessing the grids are one). The phase is left alone;
- ``half``: half the difference of NORDIC's two outputs (``echoprep nordic --companions``:
  the decisions it made on the run's raw echoes applied to both plantings); every later step
  is linear in the echoes, so each side's half difference is what is resampled;
- ``difference``: after the resampling, each variant's planted series from its side's half
  difference: the single echo's; the optimal combination's
  with the weights of the run's own T2* map and adaptive mask; the ICA-denoised series' with
  the run's own mixing matrix and component classifications (tedana's ``denoise_ts``). Every
  map is then the run's own, frozen: the planted responses go through it as the data's own
  responses do, and no decision differs between the two plantings.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.adapters.tedana import read_components
from echoprep.io.arguments import key_paths
from echoprep.io.events import read_trials
from echoprep.io.geometry import build_chain, load_geometry
from echoprep.io.images import StageInputError, atomic_save, float_image, load_image, read_array
from echoprep.io.sidecars import write_sidecar
from echoprep.kernels.planted import delta_r2star, optcom_weights, planted_magnitude, splat
from echoprep.stages.comparison.planted_design import COMPANION_MAP, make_design, read_design

log = logging.getLogger(__name__)

#: The slice axis of a raw series (discovery checks SliceTiming along it).
SLICE_AXIS = 2
#: The two plantings.
SIGNS = {"+": 1.0, "-": -1.0}


def _run_trials(trials: Path, run_label: str) -> tuple[np.ndarray, np.ndarray]:
    """Onsets (s) and image labels of the run's trials."""
    table = read_trials(trials, required=("run", "label", "onset"), fix="Fix: rerun the GLM stage.")
    rows = table[table["run"].astype(str) == str(run_label)]
    if rows.empty:
        raise StageInputError(
            f"{trials}: expected trials of run {run_label}; found none (runs "
            f"{sorted(set(table['run'].astype(str)))}). Fix: pass the trials table of the "
            "session this run belongs to."
        )
    return rows["onset"].to_numpy(float), rows["label"].astype(str).to_numpy()


def native_delta(
    design: Mapping[str, Any],
    onsets: np.ndarray,
    labels: np.ndarray,
    native_shape: Sequence[int],
    native_affine: np.ndarray,
    n_volumes: int,
    tr: float,
    slice_times: np.ndarray,
    slice_axis: int = SLICE_AXIS,
    chain: Any = None,
) -> np.ndarray:
    """The planted R2* change of a run on its own grid, ``(x, y, z, t)`` float32, s^-1.

    Parameters
    ----------
    design
        :func:`.planted_design.read_design`.
    onsets, labels
        The run's trials (s, image labels); trials of images without a planted response carry
        none.
    native_shape, native_affine
        The run's own grid.
    n_volumes, tr
        Volumes that receive the responses (noise volumes excluded) and the repetition time.
    slice_times, slice_axis
        Acquisition time of each slice within the TR (s) and the slices' axis.
    chain
        The run's transform chain into the functional grid (:func:`echoprep.io.geometry.
        build_chain`); None: the functional grid is the run's own grid.
    """
    voxels = np.asarray(design["voxels"], np.int64)
    shape = tuple(int(s) for s in design["shape"])
    column = {str(lab): i for i, lab in enumerate(design["images"])}
    cols = np.array([column.get(str(lab), -1) for lab in labels], dtype=np.int64)
    keep = cols >= 0
    amplitudes = np.asarray(design["planted"], np.float64)[:, cols[keep]]
    amplitudes *= float(design["factor"])
    flat = np.ravel_multi_index(tuple(voxels.T), shape)
    if chain is None:
        same = tuple(native_shape) == shape
        if not same or not np.allclose(native_affine, design["affine"], atol=1e-3):
            raise StageInputError(
                f"the run's grid {tuple(native_shape)} is not the planted design's functional "
                f"grid {shape}. Fix: rerun planted_design after the GLM of this session."
            )
        coords0 = voxels.T.astype(np.float64)
    else:
        coords0 = chain.volume_coordinates(0)[:, flat]
    slices = np.clip(np.rint(coords0[slice_axis]).astype(np.int64), 0, len(slice_times) - 1)
    dr2 = delta_r2star(
        amplitudes,
        onsets[keep],
        np.asarray(design["hrf"]),
        np.asarray(slice_times, np.float64)[slices],
        n_volumes,
        tr,
        float(design["stimdur"]),
        float(design["te_ref"]),
        curves=np.asarray(design["curves"]),
    )
    out = np.zeros((*tuple(native_shape), n_volumes), dtype=np.float32)
    if chain is None:
        out[tuple(voxels.T)] = dr2
        return out
    for t in range(n_volumes):
        out[..., t] = splat(dr2[:, t], chain.volume_coordinates(t)[:, flat].T, native_shape)
    return out


def plant_echoes(
    magnitude: Sequence[str | Path],
    echo_times: Sequence[float],
    repetition_time: float,
    design_file: str | Path,
    trials: str | Path,
    run_label: str,
    outputs: Mapping[str, Sequence[str | Path]],
    *,
    slice_timing: Sequence[float] | None = None,
    slice_axis: int = SLICE_AXIS,
    noise_volumes: int = 0,
    geometry: str | Path | None = None,
    grid: str | Path | None = None,
    ref_xfm: str | Path | None = None,
) -> dict[str, list[Path]]:
    """Write a run's echoes with the planted responses added (``+``) and subtracted (``-``),
    and half their difference (``diff``: what a linear chain carries of the planted responses).

    Parameters
    ----------
    magnitude
        The run's raw magnitude per echo (echo-time order); read only.
    echo_times, repetition_time
        s.
    design_file, trials, run_label
        The session's planted design, the trials table of its fits and this run's label there.
    outputs
        Any of ``"+"``, ``"-"`` and ``"diff"`` -> one path per echo (float32).
    slice_timing, slice_axis
        The run's SliceTiming (s, in slice-index order) and the slices' image axis; None: all
        at the volume start. With ``geometry`` the geometry's own slice timing and axis are
        used.
    noise_volumes
        Trailing noise volumes (no planted response in them).
    geometry, grid, ref_xfm
        The run's geometry, the functional grid image and its ``from-boldref_to-T1w`` matrix
        (spatial preprocessing); None: the echoes are on the functional grid already.
    """
    mags = [Path(m) for m in magnitude]
    design = read_design(design_file)
    first = load_image(mags[0], "magnitude series", ndim=4)
    onsets, labels = _run_trials(Path(trials), run_label)
    chain = None
    axis = int(slice_axis)
    if geometry is not None:
        geo = load_geometry(geometry)
        grid_img = load_image(grid, "output grid image")
        ref_from_out = np.eye(4) if ref_xfm is None else np.loadtxt(ref_xfm).reshape(4, 4)
        chain = build_chain(geo, grid_img.shape, grid_img.affine, ref_from_out)
        axis = int(geo["slice_axis"])
        slice_timing = list(np.asarray(geo["slice_timing"], np.float64))
    nz = first.shape[axis]
    st = np.zeros(nz) if not slice_timing else np.asarray(slice_timing, np.float64)
    if st.size != nz:
        raise StageInputError(
            f"{mags[0]}: SliceTiming has {st.size} entries; the series has {nz} slices. Fix: "
            "correct the sidecar's SliceTiming."
        )
    n_signal = first.shape[3] - int(noise_volumes)
    delta = native_delta(
        design,
        onsets,
        labels,
        first.shape[:3],
        first.affine,
        n_signal,
        repetition_time,
        st,
        axis,
        chain,
    )
    if noise_volumes:
        pad = np.zeros((*delta.shape[:3], int(noise_volumes)), np.float32)
        delta = np.concatenate([delta, pad], axis=3)
    for key, paths in outputs.items():
        if len(paths) != len(mags):
            raise StageInputError(f"{key}: expected {len(mags)} output paths; got {len(paths)}")
    written: dict[str, list[Path]] = {key: [] for key in outputs}
    for e, (mag_path, te) in enumerate(zip(mags, echo_times, strict=True)):
        img = load_image(mag_path, "magnitude series", ndim=4)
        mag = read_array(img)
        # each signing once per echo, whichever outputs need it
        signed = {
            sign: planted_magnitude(mag, delta, te, value)
            for sign, value in SIGNS.items()
            if sign in outputs or "diff" in outputs
        }
        for key, paths in outputs.items():
            if key == "diff":
                series = (signed["+"].astype(np.float64) - signed["-"]) / 2
            else:
                series = signed[key]
            atomic_save(float_image(series, img), paths[e])
            written[key].append(Path(paths[e]))
    log.info(
        "planted %d images into run %s (factor %.3f)",
        len(design["images"]),
        run_label,
        float(design["factor"]),
    )
    return written


def _load(path: str | Path) -> np.ndarray:
    return np.asarray(np.asanyarray(load_image(path, "planted series", ndim=4).dataobj), np.float64)


def _optcom(
    echoes: Sequence[str | Path],
    t2star: str | Path,
    good_echoes: str | Path,
    echo_times: Sequence[float],
    drop_volumes: int,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """The echoes optimally combined with the run's frozen weights: ``(V, T)``, the ``(V,)``
    adaptive mask and the grid's shape."""
    t2 = np.asarray(load_image(t2star, "T2* map").dataobj, np.float64)
    good = np.asarray(load_image(good_echoes, "adaptive mask").dataobj).ravel()
    weights = optcom_weights(t2.ravel(), good, echo_times)
    total: np.ndarray | None = None
    for e in range(len(echo_times)):
        d = _load(echoes[e])
        if drop_volumes:
            d = d[..., : d.shape[3] - int(drop_volumes)]
        part = d.reshape(-1, d.shape[3]) * weights[:, e : e + 1]
        total = part if total is None else total + part
    assert total is not None
    return total, good, tuple(t2.shape[:3])


def half_difference(
    plus: Sequence[str | Path], minus: Sequence[str | Path], outputs: Sequence[str | Path]
) -> list[Path]:
    """Half the difference of two signed series per echo (float32 NIfTI, work-folder files)."""
    if not len(plus) == len(minus) == len(outputs):
        raise StageInputError(
            f"expected as many --plus, --minus and --out paths; got {len(plus)}, {len(minus)}, "
            f"{len(outputs)}"
        )
    written = []
    for p, m, out in zip(plus, minus, outputs, strict=True):
        img = load_image(p, "planted series", ndim=4)
        written.append(atomic_save(float_image((_load(p) - _load(m)) / 2, img), out))
    return written


def _component_table(mixing: str | Path, metrics: str | Path) -> tuple[np.ndarray, list[str]]:
    """The run's mixing matrix ``(T, C)`` and each component's classification, in its order."""
    mix, table = read_components(mixing, metrics)
    names = [str(c) for c in table["Component"]]
    if names != [str(c) for c in mix.columns]:
        raise StageInputError(
            f"{metrics}: expected the components of {mixing} in its order; found {names[:5]}... "
            "Fix: rerun the ICA-denoised job of the run (both files come from one tedana run)."
        )
    return mix.to_numpy(np.float64), [str(c) for c in table["classification"]]


#: The echo handlings whose planted series a side's half difference gives, in the order they
#: are written (the optimal combination once for ``optcom`` and ``denoised``).
COMBINES = ("single", "optcom", "denoised")


def planted_differences(
    side: str,
    echoes: Sequence[str | Path],
    outputs: Mapping[str, str | Path],
    *,
    echo_times: Sequence[float],
    single_echo: int = 2,
    drop_volumes: int = 0,
    t2star: str | Path | None = None,
    good_echoes: str | Path | None = None,
    mixing: str | Path | None = None,
    metrics: str | Path | None = None,
    factor: float | None = None,
) -> dict[str, Path]:
    """What each variant's series of one side carries of the planted responses, from the
    side's echoes, in one pass (one process per side instead of one per variant; the echoes
    are read and optimally combined once for ``optcom`` and ``denoised``).

    Parameters
    ----------
    side
        ``raw`` or ``nordic`` (the variants are ``<side>-<combine>``).
    echoes
        Half the difference of the side's two signed echo sets, per echo, on the functional
        grid (the chain's steps before the echo handling are linear in it once NORDIC's
        decisions are frozen).
    outputs
        Echo handling (``single``, ``optcom``, ``denoised``) -> the series to write (each with
        a sidecar).
    echo_times, single_echo
        Echo times (s) and the single echo (1-based).
    drop_volumes
        Trailing noise volumes to leave out of the echoes (the real chain's combine step's).
    t2star, good_echoes
        The run's T2* map and adaptive mask of this side (``optcom``, ``denoised``): the
        optimal combination's weights, frozen.
    mixing, metrics
        The run's ICA mixing matrix and component table of this side (``denoised``): its
        denoising, frozen (:func:`echoprep.adapters.tedana.denoise_frozen`).
    factor
        The planting factor (recorded).

    Returns
    -------
    dict
        Echo handling -> the series written.
    """
    problems = [f"{side}-{c}: unknown echo handling {c!r}" for c in outputs if c not in COMBINES]
    needs: dict[str, Any] = {}
    if {"optcom", "denoised"} & set(outputs):
        needs.update({"--t2star": t2star, "--good-echoes": good_echoes})
    if "denoised" in outputs:
        needs.update({"--mixing": mixing, "--metrics": metrics})
    if missing := [k for k, v in needs.items() if v is None]:
        problems.append(
            f"{side}: the planted series of its {'/'.join(c for c in outputs if c != 'single')} "
            f"variant(s) needs the run's {' '.join(missing)} (its frozen optimal combination "
            "and ICA denoising). Fix: pass them."
        )
    if problems:
        raise StageInputError("; ".join(problems))
    ref = load_image(echoes[0], "planted series", ndim=4)
    sources = [*map(Path, echoes)]
    written: dict[str, Path] = {}

    def save(combine: str, diff: np.ndarray, used: list[Path]) -> None:
        out = atomic_save(float_image(diff, ref), outputs[combine])
        write_sidecar(
            out,
            sources=used,
            parameters={"single_echo": single_echo, "drop_volumes": drop_volumes},
            extra={
                "Description": f"what the {side}-{combine} series of the run carries of the "
                "planted responses: half the difference of its chain, with the run's own "
                "decisions, on the echoes with them added and subtracted",
                "PlantingFactor": factor,
            },
        )
        written[combine] = out

    if "single" in outputs:
        diff = _load(echoes[single_echo - 1])
        if drop_volumes:
            diff = diff[..., : diff.shape[3] - int(drop_volumes)]
        save("single", diff, sources)
        del diff
    if {"optcom", "denoised"} & set(outputs):
        assert t2star is not None and good_echoes is not None
        total, good, shape = _optcom(echoes, t2star, good_echoes, echo_times, drop_volumes)
        sources += [Path(t2star), Path(good_echoes)]
        if "optcom" in outputs:
            save("optcom", total.reshape(*shape, -1), sources)
        if "denoised" in outputs:
            assert mixing is not None and metrics is not None
            from echoprep.adapters.tedana import denoise_frozen

            mix, classes = _component_table(mixing, metrics)
            if mix.shape[0] != total.shape[1]:
                raise StageInputError(
                    f"{mixing}: expected one row per volume of the planted series "
                    f"({total.shape[1]}); found {mix.shape[0]}. Fix: rerun the ICA-denoised "
                    "job of the run."
                )
            denoised = denoise_frozen(total, mix, classes, good > 0)
            save("denoised", denoised.reshape(*shape, -1), [*sources, Path(mixing), Path(metrics)])
    return written


def planted_difference(
    variant: str, echoes: Sequence[str | Path], output: str | Path, **options: Any
) -> Path:
    """One variant's planted series (``<side>-<combine>``): :func:`planted_differences` with
    one output."""
    side, _, combine = variant.partition("-")
    return planted_differences(side, echoes, {combine: output}, **options)[combine]


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep planted`` sub-commands to a parser."""
    sub = parser.add_subparsers(dest="planted_step", required=True)
    d = sub.add_parser("design", help="the planted responses of one comparison session")
    d.add_argument("--reference", type=Path, required=True, help="type-B betas (4D)")
    d.add_argument("--trials", type=Path, required=True, help="their trials table")
    d.add_argument("--summary", type=Path, required=True, help="their fit's summary")
    d.add_argument("--hrf", type=Path, nargs="+", required=True, help="HRF map per variant")
    d.add_argument("--fit-mask", type=Path, nargs="+", required=True, help="fit mask per variant")
    d.add_argument("--mask", type=Path, required=True, help="the session's analysis mask")
    d.add_argument("--roi", type=Path, required=True, help="the visual ROI")
    d.add_argument("--te-ref", type=float, required=True, help="echo time of the reference, s")
    d.add_argument(
        "--series", type=Path, nargs="*", default=[], help="the reference's series per run"
    )
    d.add_argument("--run-labels", nargs="*", default=[], help="their runs' labels in --trials")
    d.add_argument("--slice-timing", type=float, nargs="+", default=None, help="SliceTiming, s")
    d.add_argument("--slice-axis", type=int, default=SLICE_AXIS, help="the slices' image axis")
    d.add_argument("--options-json", default=None, help="the comparison: section as JSON")
    d.add_argument(
        "--source-betas",
        type=Path,
        nargs="*",
        default=[],
        help="type-B betas of the subject's other comparison sessions (comparison.planted.source)",
    )
    d.add_argument("--source-trials", type=Path, nargs="*", default=[], help="their trials tables")
    d.add_argument("--out", nargs="+", required=True, metavar="design=PATH")

    m = sub.add_parser(
        "map", help="print how NORDIC passes a design's planted echoes (frozen or tangent)"
    )
    m.add_argument("--design", type=Path, required=True)

    e = sub.add_parser("echoes", help="a run's echoes with the planted responses (+ and -)")
    e.add_argument("--mag", type=Path, nargs="+", required=True, help="raw magnitude per echo")
    e.add_argument("--te", type=float, nargs="+", required=True, help="echo times, s")
    e.add_argument("--tr", type=float, required=True, help="repetition time, s")
    e.add_argument("--slice-timing", type=float, nargs="+", default=None, help="SliceTiming, s")
    e.add_argument("--slice-axis", type=int, default=SLICE_AXIS, help="the slices' image axis")
    e.add_argument("--noise-volumes", type=int, default=0)
    e.add_argument("--design", type=Path, required=True)
    e.add_argument("--trials", type=Path, required=True)
    e.add_argument("--run-label", required=True)
    e.add_argument("--geometry", type=Path, default=None)
    e.add_argument("--grid", type=Path, default=None)
    e.add_argument("--ref-xfm", type=Path, default=None)
    e.add_argument("--plus", type=Path, nargs="+", default=None, help="output per echo, +")
    e.add_argument("--minus", type=Path, nargs="+", default=None, help="output per echo, -")
    e.add_argument(
        "--difference", type=Path, nargs="+", default=None, help="output per echo, (+ - -) / 2"
    )

    h = sub.add_parser("half", help="half the difference of two signed echo sets")
    h.add_argument("--plus", type=Path, nargs="+", required=True)
    h.add_argument("--minus", type=Path, nargs="+", required=True)
    h.add_argument("--out", type=Path, nargs="+", required=True)

    f = sub.add_parser(
        "difference", help="half the difference of each variant's two series, one side"
    )
    f.add_argument("--side", required=True, help="raw or nordic")
    f.add_argument(
        "--echoes", type=Path, nargs="+", required=True, help="the side's half-difference echoes"
    )
    f.add_argument("--te", type=float, nargs="+", required=True)
    f.add_argument("--single-echo", type=int, default=2)
    f.add_argument("--drop-volumes", type=int, default=0)
    f.add_argument("--t2star", type=Path, default=None)
    f.add_argument("--good-echoes", type=Path, default=None)
    f.add_argument("--mixing", type=Path, default=None, help="the run's ICA mixing matrix")
    f.add_argument("--metrics", type=Path, default=None, help="the run's ICA component table")
    f.add_argument("--design", type=Path, default=None, help="the design (its factor, recorded)")
    f.add_argument(
        "--out", nargs="+", required=True, metavar="COMBINE=PATH", help="single/optcom/denoised"
    )
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run the chosen ``echoprep planted`` step; exit status 0."""
    if args.planted_step == "design":
        from echoprep.stages.comparison import planted_options, stage_options

        opts = planted_options(stage_options(json.loads(args.options_json or "{}")))
        make_design(
            args.reference,
            args.trials,
            args.hrf,
            args.fit_mask,
            args.mask,
            args.roi,
            key_paths(args.out, keys=("design",))["design"],
            te_ref=args.te_ref,
            stimdur=float(json.loads(args.summary.read_text())["StimulusDuration_s"]),
            amplitude=opts["amplitude"],
            series=args.series,
            run_labels=args.run_labels,
            slice_timing=args.slice_timing,
            slice_axis=args.slice_axis,
            shape=opts["shape"],
            source=opts["source"],
            source_betas=args.source_betas,
            source_trials=args.source_trials,
        )
    elif args.planted_step == "map":
        print(COMPANION_MAP[str(read_design(args.design)["source"])])
    elif args.planted_step == "echoes":
        given = {"+": args.plus, "-": args.minus, "diff": args.difference}
        outputs = {k: v for k, v in given.items() if v}
        if not outputs:
            raise SystemExit("give at least one of --plus, --minus, --difference")
        plant_echoes(
            args.mag,
            args.te,
            args.tr,
            args.design,
            args.trials,
            args.run_label,
            outputs,
            slice_timing=args.slice_timing,
            slice_axis=args.slice_axis,
            noise_volumes=args.noise_volumes,
            geometry=args.geometry,
            grid=args.grid,
            ref_xfm=args.ref_xfm,
        )
    elif args.planted_step == "half":
        half_difference(args.plus, args.minus, args.out)
    else:
        factor = float(read_design(args.design)["factor"]) if args.design else None
        planted_differences(
            args.side,
            args.echoes,
            key_paths(args.out, form="COMBINE=PATH", keys=COMBINES),
            echo_times=args.te,
            single_echo=args.single_echo,
            drop_volumes=args.drop_volumes,
            t2star=args.t2star,
            good_echoes=args.good_echoes,
            mixing=args.mixing,
            metrics=args.metrics,
            factor=factor,
        )
    return 0


__all__ = [
    "COMBINES",
    "SIGNS",
    "SLICE_AXIS",
    "add_arguments",
    "half_difference",
    "native_delta",
    "plant_echoes",
    "planted_difference",
    "planted_differences",
    "run_from_args",
]
