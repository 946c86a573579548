"""Adapter to upstream GLMsingle (``glm.engine: glmsingle``), used instead of our engine.

For users who must cite or reproduce upstream GLMsingle (cvnlab/GLMsingle 1.2, BSD-3). The
package is not on the package index and not a core dependency of echoprep: with conda the
fitting rules of ``glm.engine: glmsingle`` run in ``envs/glmsingle.yaml``, which installs it from
its repository at a pinned commit (:data:`echoprep.adapters.sources.GLMSINGLE_SOURCE`); without
conda, install that into the venv (``make setup`` does where its wheel is at hand: docs/cluster.md,
"Optional packages"). The stage gives it the same designs and masked data as our engine and maps
its results onto our layout, so every output file is the same (``tests/unit/test_glm_upstream.py``
compares the two engines' betas). Upstream side effects are contained (``docs/glm.md`` §15): it
runs in a private temporary working folder (its figure folder is created in the working
directory even when figures are off) with file outputs switched off, its ``outputdir`` (which it
wipes) is a private folder too, its progress text goes to stderr (the job's log), and its BLAS
threads are the job's (``n_threads``).

Differences that remain upstream's (``docs/glm.md`` §15): the GMM tail threshold is not seeded
(fix ``brainR2``/``pcR2cutoff`` for reproducible runs), ``brainexclude`` masks are not passed (the
Python package treats them wrongly), and user extra regressors are not used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.adapters.sources import GLMSINGLE_REQUIREMENT
from echoprep.kernels.glm.options import REQUIRED_OPTIONS
from echoprep.kernels.threads import blas_limits

log = logging.getLogger(__name__)

#: Option names passed to upstream as they are (docs/glm.md §9, Python names): the engine options
#: of the config's ``glm`` section, the same as our engine's.
PASSED_OPTIONS = REQUIRED_OPTIONS


class UpstreamUnavailableError(ImportError):
    """The upstream ``glmsingle`` package cannot be imported."""


def import_upstream() -> Any:
    """The upstream ``GLM_single`` class.

    Raises
    ------
    UpstreamUnavailableError
        Naming the fix (install the package, or use echoprep's engine).
    """
    try:
        from glmsingle.glmsingle import GLM_single
    except ImportError as exc:
        raise UpstreamUnavailableError(
            "glm.engine is 'glmsingle', which needs the upstream GLMsingle package; found it not "
            f"importable ({exc}). It is not on the package index. Fix: run with conda (the glm "
            "rules then use envs/glmsingle.yaml, which installs it), or install it into the venv "
            f"that runs the jobs: `.venv/bin/pip install '{GLMSINGLE_REQUIREMENT}'` "
            '(docs/cluster.md, "Optional packages"); or set glm.engine: echoprep (the default, '
            "same outputs)."
        ) from exc
    return GLM_single


def upstream_params(options: Mapping[str, Any]) -> dict[str, Any]:
    """Translate our engine options into upstream's ``params`` dict.

    Options left at None are not passed (upstream's default applies); ``fracs`` and every
    ``xvalscheme`` fold become numpy arrays (upstream crashes on plain lists, docs/glm.md §15); file
    outputs are off and all four model types are returned in memory.
    """
    params: dict[str, Any] = {}
    for key in PASSED_OPTIONS:
        value = options.get(key)
        if value is None:
            continue
        if key == "fracs":
            value = np.atleast_1d(np.asarray(value, dtype=np.float64))
        elif key == "xvalscheme":
            value = [np.atleast_1d(np.asarray(v, dtype=np.int64)) for v in value]
        elif key == "brainthresh":
            value = [float(v) for v in value]
        params[key] = value
    ignored = sorted(set(options) - set(PASSED_OPTIONS))
    if ignored:
        log.info("options not passed to upstream GLMsingle: %s", ", ".join(ignored))
    params["wantfileoutputs"] = [0, 0, 0, 0]
    params["wantmemoryoutputs"] = [1, 1, 1, 1]
    return params


@contextlib.contextmanager
def _in_folder(folder: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def _voxels_first(value: Any, n_voxels: int) -> Any:
    """Upstream returns ``(V, 1, 1, ...)`` arrays for ``V x T`` input: make them ``(V, ...)``."""
    if isinstance(value, np.ndarray) and value.ndim >= 3 and value.shape[:3] == (n_voxels, 1, 1):
        return value.reshape((n_voxels, *value.shape[3:]))
    return value


def map_results(results: Mapping[str, Any], n_voxels: int) -> dict[str, Any]:
    """Upstream's result dict in our engine's layout (``typea``..``typed``, voxels first)."""
    out: dict[str, Any] = {}
    for name in ("typea", "typeb", "typec", "typed"):
        model = results.get(name)
        if not model:
            continue
        out[name] = {k: _voxels_first(v, n_voxels) for k, v in dict(model).items()}
    return out


def fit_upstream(
    designs: Sequence[np.ndarray],
    data: Sequence[np.ndarray],
    stimdur: float,
    tr: float,
    options: Mapping[str, Any],
    *,
    n_threads: int | None = None,
) -> dict[str, Any]:
    """Fit with upstream ``GLM_single`` and return its results in our layout.

    Parameters
    ----------
    designs
        ``R`` designs ``(T_r, C)`` 0/1.
    data
        ``R`` arrays ``(V, T_r)`` float32 (the mask voxels).
    stimdur, tr
        Seconds.
    options
        Our engine options (:data:`PASSED_OPTIONS` names; None = upstream's default).
    n_threads
        BLAS threads while upstream fits (threadpoolctl; None: as the process has them). More
        threads than the job's cores slow it down many times over (its cross-validation and
        ridge are many small BLAS calls).

    Returns
    -------
    dict
        ``typea``..``typed`` as returned (arrays ``(V, ...)``), plus ``params`` (the options
        passed).
    """
    glm_single = import_upstream()
    params = upstream_params(options)
    n_voxels = int(np.asarray(data[0]).shape[0])
    with tempfile.TemporaryDirectory(prefix="glmsingle-") as tmp:
        folder = Path(tmp)
        # its progress text goes to stderr (the job's log), not the workflow's console
        with _in_folder(folder), blas_limits(n_threads), contextlib.redirect_stdout(sys.stderr):
            model = glm_single(params)
            results = model.fit(
                [np.asarray(d, dtype=np.float32) for d in designs],
                [np.asarray(d, dtype=np.float32) for d in data],
                float(stimdur),
                float(tr),
                outputdir=str(folder / "outputs"),
                figuredir=None,
            )
    out = map_results(results, n_voxels)
    out["params"] = {k: v for k, v in params.items() if k not in ("wantfileoutputs",)}
    return out


__all__ = [
    "PASSED_OPTIONS",
    "UpstreamUnavailableError",
    "fit_upstream",
    "import_upstream",
    "map_results",
    "upstream_params",
]
