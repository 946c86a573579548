"""Options of the GLMsingle engine: names (as GLMsingle's) and validation.

The options the workflow configures (:data:`REQUIRED_OPTIONS`, the engine options of the
config's ``glm`` section) have no default here: the config schema holds their defaults and every
call gives them all (``None`` where allowed means the engine's own choice, e.g. the default
ridge fractions). The other options (masks, HRFs, extra regressors, ...) are not configurable in
the workflow and keep their GLMsingle defaults below. See
:func:`echoprep.kernels.glm.fit_glmsingle` for what each option does and docs/glm.md (options).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from echoprep.kernels.glm.design import default_maxpolydeg
from echoprep.kernels.glm.hrf import canonical_hrf, hrf_library

log = logging.getLogger(__name__)

#: Options every call gives explicitly (the engine options of the config's ``glm`` section;
#: their defaults live in the config schema). ``fracs``, ``brainR2``, ``pcR2cutoff``,
#: ``maxpolydeg`` and ``xvalscheme`` may be None: the engine's default.
REQUIRED_OPTIONS = (
    "wantlibrary",
    "wantglmdenoise",
    "wantfracridge",
    "wantlss",
    "wantpercentbold",
    "wantautoscale",
    "n_pcs",
    "pcstop",
    "fracs",
    "brainthresh",
    "brainR2",
    "pcR2cutoff",
    "maxpolydeg",
    "xvalscheme",
    "chunklen",
)
#: Options that change what is computed.
ACTIVE_OPTIONS = (
    "wantlibrary",
    "wantglmdenoise",
    "wantfracridge",
    "wantlss",
    "wantmemoryoutputs",
    "wantpercentbold",
    "wantautoscale",
    "wantfithrfr2run",
    "n_pcs",
    "pcstop",
    "fracs",
    "brainthresh",
    "brainR2",
    "brainexclude",
    "pcR2cutoff",
    "pcR2cutoffmask",
    "xvalscheme",
    "sessionindicator",
    "extra_regressors",
    "maxpolydeg",
    "hrflibrary",
    "hrftoassume",
    "chunklen",
    "seed",
    "n_threads",
    "device",
)
#: GLMsingle options accepted for compatibility that have no effect here: file outputs and
#: figures belong to the stage; the run-wise FIR is a figure diagnostic; the rest are unused by
#: GLMsingle's own fit too.
IGNORED_OPTIONS = (
    "wantfileoutputs",
    "wanthdf5",
    "suppressoutput",
    "firdelay",
    "firpct",
    "numforhrf",
    "hrfthresh",
    "hrffitmask",
    "R2thresh",
    "hrfmodel",
    "n_jobs",
    "n_boots",
    "wantparametric",
    "lambda",
)
#: Ridge fractions used when ``fracs`` is None (the engine's default).
DEFAULT_FRACS = tuple(float(f) for f in np.linspace(1.0, 0.05, 20))


@dataclass(frozen=True)
class EngineOptions:
    """Validated engine options (see :func:`resolve_options`)."""

    wantlibrary: bool
    wantglmdenoise: bool
    wantfracridge: bool
    wantlss: bool
    wantmemoryoutputs: tuple[bool, bool, bool, bool]
    wantpercentbold: bool
    wantautoscale: bool
    wantfithrfr2run: bool
    n_pcs: int
    pcstop: float
    fracs: np.ndarray
    fracs_scalar: bool
    brainthresh: tuple[float, float]
    brainR2: float | None
    brainexclude: np.ndarray
    pcR2cutoff: float | None
    pcR2cutoffmask: np.ndarray
    xvalscheme: tuple[np.ndarray, ...]
    sessionindicator: np.ndarray
    extra_regressors: tuple[np.ndarray, ...] | None
    maxpolydeg: tuple[int, ...]
    hrflibrary: np.ndarray
    hrftoassume: np.ndarray
    chunklen: int
    seed: int
    n_threads: int | None
    device: str


def _device(value: Any) -> str:
    """``device``: ``"cpu"`` (NumPy), ``"torch-cpu"`` (the torch code on torch's CPU kernels)
    or a CUDA device (``"cuda"``, ``"cuda:N"``)."""
    text = str(value)
    kind, _, index = text.partition(":")
    if text in ("cpu", "torch-cpu", "cuda") or (kind == "cuda" and index.isdigit()):
        return text
    raise ValueError(
        f"option device: unknown device {value!r}; use 'cpu' (NumPy) or 'cuda' (a GPU through "
        "torch; 'cuda:N' for the N-th visible GPU; 'torch-cpu' runs the torch code on the CPU)"
    )


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer | float | np.floating) and value in (0, 1):
        return bool(value)
    raise ValueError(f"option {name} must be 0/1 or False/True; got {value!r}")


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | np.integer | float | np.floating
    ):
        raise ValueError(f"option {name} must be an integer >= {minimum}; got {value!r}")
    if float(value) != int(value) or int(value) < minimum:
        raise ValueError(f"option {name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _number(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name} must be a number; got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"option {name} must be finite; got {value!r}")
    return out


def _mask(name: str, value: Any, spatial_shape: tuple[int, ...], default: bool) -> np.ndarray:
    """A scalar or a spatial mask as ``(V,)`` bool."""
    n_vox = math.prod(spatial_shape)
    if value is None:
        return np.full(n_vox, default)
    a = np.asarray(value)
    if a.ndim == 0:
        return np.full(n_vox, _flag(name, a.item()))
    if a.shape != spatial_shape and a.size != n_vox:
        raise ValueError(
            f"option {name} has shape {a.shape}; expected a scalar or a mask of the data's "
            f"spatial shape {spatial_shape}"
        )
    if a.dtype != bool and not np.isin(a, (0, 1)).all():
        raise ValueError(f"option {name} must be a boolean (0/1) mask")
    return a.reshape(-1).astype(bool)


def _fracs(value: Any) -> tuple[np.ndarray, bool]:
    a = np.asarray(value, dtype=np.float64)
    scalar = a.ndim == 0 or a.size == 1
    a = a.reshape(-1)
    if a.size == 0 or not np.isfinite(a).all() or (a <= 0).any() or (a > 1).any():
        raise ValueError(
            f"option fracs must be one or more fractions in (0, 1]; got {np.asarray(value)!r}"
        )
    return np.unique(a)[::-1].copy(), scalar


def _folds(value: Any, n_runs: int) -> tuple[np.ndarray, ...]:
    if value is None:  # leave one run out (nothing to cross-validate with a single run)
        return tuple(np.array([r]) for r in range(n_runs)) if n_runs > 1 else ()
    if isinstance(value, np.ndarray) and value.ndim == 1:
        groups = [np.atleast_1d(v) for v in value]
    elif isinstance(value, Sequence | np.ndarray) and not isinstance(value, str):
        groups = [np.atleast_1d(np.asarray(v)) for v in value]
    else:
        raise ValueError(f"option xvalscheme must be a list of lists of run indices; got {value!r}")
    if not groups:
        raise ValueError("option xvalscheme is empty: give at least one fold (test runs)")
    out = []
    for k, g in enumerate(groups):
        if g.size == 0 or not np.issubdtype(g.dtype, np.integer):
            raise ValueError(
                f"option xvalscheme fold {k} must list 0-based integer run indices; got {g!r}"
            )
        if g.min() < 0 or g.max() >= n_runs:
            raise ValueError(
                f"option xvalscheme fold {k} lists runs {g.tolist()}, but runs are numbered "
                f"0..{n_runs - 1} (0-based)"
            )
        if np.unique(g).size == n_runs:
            raise ValueError(
                f"option xvalscheme fold {k} tests every run, leaving none for training"
            )
        out.append(np.unique(g).astype(np.int64))
    return tuple(out)


def _extra(value: Any, run_lengths: Sequence[int]) -> tuple[np.ndarray, ...] | None:
    if value is None or value is False or (isinstance(value, int | np.integer) and value == 0):
        return None
    if isinstance(value, np.ndarray):
        value = [value]
    if not isinstance(value, Sequence) or len(value) != len(run_lengths):
        raise ValueError(
            f"option extra_regressors must be a list with one T_r x k array per run "
            f"({len(run_lengths)} runs)"
        )
    out = []
    for r, a in enumerate(value):
        a = np.asarray(a, dtype=np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2 or a.shape[0] != run_lengths[r]:
            raise ValueError(
                f"extra_regressors run {r} has shape {a.shape}; expected ({run_lengths[r]}, k)"
            )
        if not np.isfinite(a).all():
            raise ValueError(f"extra_regressors run {r} contains NaN or Inf")
        out.append(a)
    return tuple(out)


def resolve_options(
    options: Mapping[str, Any],
    *,
    run_lengths: Sequence[int],
    tr: float,
    stimdur: float,
    spatial_shape: tuple[int, ...],
) -> EngineOptions:
    """Validate ``options`` and resolve the engine's defaults (None values, unset options
    outside :data:`REQUIRED_OPTIONS`).

    Parameters
    ----------
    options
        Option name -> value; every name of :data:`REQUIRED_OPTIONS` must be present.
    run_lengths
        Volumes per run.
    tr, stimdur
        Sampling interval and stimulus duration, s (for the default HRFs and drift degrees).
    spatial_shape
        The data's spatial shape (for mask options).

    Raises
    ------
    ValueError
        Missing required options, unknown option names (the message lists the allowed ones)
        or invalid values.
    """
    unknown = sorted(set(options) - set(ACTIVE_OPTIONS) - set(IGNORED_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown}; allowed: {', '.join(ACTIVE_OPTIONS)} (and, accepted "
            f"for GLMsingle compatibility but without effect: {', '.join(IGNORED_OPTIONS)})"
        )
    missing = [k for k in REQUIRED_OPTIONS if k not in options]
    if missing:
        raise ValueError(
            f"missing option(s) {missing}: the engine takes every one of "
            f"{list(REQUIRED_OPTIONS)} explicitly (None where allowed: the engine's default). "
            "Fix: start from the config defaults, echoprep.options.section_defaults('glm') "
            "restricted to these names"
        )
    ignored = sorted(set(options) & set(IGNORED_OPTIONS))
    if ignored:
        log.info("GLMsingle options without effect in this engine: %s", ", ".join(ignored))
    n_runs = len(run_lengths)
    get = options.get

    memout = get("wantmemoryoutputs", (1, 1, 1, 1))
    memout_t = tuple(_flag("wantmemoryoutputs", v) for v in np.asarray(memout).reshape(-1))
    if len(memout_t) != 4:
        raise ValueError("option wantmemoryoutputs must have 4 flags (types A, B, C, D)")

    n_pcs = _int("n_pcs", options["n_pcs"], 0)
    fracs, fracs_scalar = _fracs(DEFAULT_FRACS if options["fracs"] is None else options["fracs"])

    bt = np.asarray(options["brainthresh"], dtype=np.float64).reshape(-1)
    if bt.size != 2 or not (0 <= bt[0] <= 100) or not np.isfinite(bt).all():
        raise ValueError(
            f"option brainthresh must be [percentile (0-100), fraction]; got {get('brainthresh')!r}"
        )

    def _thresh(name: str) -> float | None:
        v = get(name)
        if v is None or (isinstance(v, Sequence) and len(v) == 0):
            return None
        return _number(name, v)

    sess = get("sessionindicator")
    if sess is None:
        sess_a = np.ones(n_runs, dtype=np.int64)
    else:
        sess_a = np.asarray(sess).reshape(-1)
        if sess_a.size != n_runs or not np.issubdtype(sess_a.dtype, np.integer):
            raise ValueError(
                f"option sessionindicator must give one integer session label per run "
                f"({n_runs} runs); got {sess!r}"
            )

    mpd = get("maxpolydeg")
    if mpd is None:
        maxpolydeg = tuple(default_maxpolydeg(t, tr) for t in run_lengths)
    else:
        m = np.asarray(mpd).reshape(-1)
        if m.size == 1:
            m = np.repeat(m, n_runs)
        if m.size != n_runs:
            raise ValueError(f"option maxpolydeg must be one integer or one per run ({n_runs})")
        maxpolydeg = tuple(_int("maxpolydeg", v, 0) for v in m)
    for r, (d, t) in enumerate(zip(maxpolydeg, run_lengths, strict=True)):
        if d + 1 >= t:
            raise ValueError(
                f"maxpolydeg {d} leaves no degrees of freedom in run {r} ({t} volumes)"
            )

    wantlibrary = _flag("wantlibrary", options["wantlibrary"])
    hrftoassume = get("hrftoassume")
    hta = (
        canonical_hrf(stimdur, tr)
        if hrftoassume is None
        else np.asarray(hrftoassume, dtype=np.float64).reshape(-1)
    )
    if hta.size == 0 or not np.isfinite(hta).all() or not (hta != 0).any():
        raise ValueError("option hrftoassume must be a finite, non-zero HRF sampled at TR")
    lib = get("hrflibrary")
    if lib is None:
        hlib = hrf_library(stimdur, tr)
    else:
        hlib = np.asarray(lib, dtype=np.float64)
        if hlib.ndim == 1:
            hlib = hlib[:, None]
        if hlib.ndim != 2 or not np.isfinite(hlib).all() or not (hlib != 0).any(axis=0).all():
            raise ValueError(
                "option hrflibrary must be a finite time x H matrix of non-zero HRFs sampled at TR"
            )
    if not wantlibrary:
        hlib = hta[:, None]

    return EngineOptions(
        wantlibrary=wantlibrary,
        wantglmdenoise=_flag("wantglmdenoise", options["wantglmdenoise"]),
        wantfracridge=_flag("wantfracridge", options["wantfracridge"]),
        wantlss=_flag("wantlss", options["wantlss"]),
        wantmemoryoutputs=memout_t,  # type: ignore[arg-type]
        wantpercentbold=_flag("wantpercentbold", options["wantpercentbold"]),
        wantautoscale=_flag("wantautoscale", options["wantautoscale"]),
        wantfithrfr2run=_flag("wantfithrfr2run", get("wantfithrfr2run", 1)),
        n_pcs=n_pcs,
        pcstop=_number("pcstop", options["pcstop"]),
        fracs=fracs,
        fracs_scalar=fracs_scalar,
        brainthresh=(float(bt[0]), float(bt[1])),
        brainR2=_thresh("brainR2"),
        brainexclude=_mask("brainexclude", get("brainexclude"), spatial_shape, False),
        pcR2cutoff=_thresh("pcR2cutoff"),
        pcR2cutoffmask=_mask("pcR2cutoffmask", get("pcR2cutoffmask"), spatial_shape, True),
        xvalscheme=_folds(get("xvalscheme"), n_runs),
        sessionindicator=sess_a.astype(np.int64),
        extra_regressors=_extra(get("extra_regressors"), run_lengths),
        maxpolydeg=maxpolydeg,
        hrflibrary=hlib,
        hrftoassume=hta,
        chunklen=_int("chunklen", options["chunklen"], 1),
        seed=_int("seed", get("seed", 0), 0),
        n_threads=None if get("n_threads") is None else _int("n_threads", get("n_threads"), 1),
        device=_device(get("device", "cpu")),
    )
