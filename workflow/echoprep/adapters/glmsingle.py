"""Adapter to upstream GLMsingle (``glm.engine: glmsingle``), used instead of our engine.

For users who must cite or reproduce upstream GLMsingle (cvnlab/GLMsingle, BSD-3). The package
is not a dependency of echoprep; install it into the environment the ``glm`` rule runs in
(``pip install glmsingle``). The stage gives it the same designs and masked data as our engine
and maps its results onto our layout, so every output file is the same. Upstream side effects
are contained (``docs/glm.md`` §15): it runs in a private temporary working folder (its
figure folder is created in the working directory even when figures are off) with file outputs
switched off, and its ``outputdir`` (which it wipes) is a private folder too.

Differences that remain upstream's (``docs/glm.md`` §15): the GMM tail threshold is not seeded
(fix ``brainR2``/``pcR2cutoff`` for reproducible runs), ``brainexclude`` masks are not passed (the
Python package treats them wrongly), and user extra regressors are not used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echoprep.kernels.glm.options import REQUIRED_OPTIONS

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
            f"importable ({exc}). Fix: `pip install glmsingle` into the environment of the glm "
            "rule (envs/echoprep.yaml, or your venv), or set glm.engine: echoprep (the default, "
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
        with _in_folder(folder):
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
