"""Adapter to tedana: its two workflows, the files they write and what its log tells.

- :func:`run_t2smap` (``t2smap_workflow``: T2*/S0 fit and optimal combination) and
  :func:`run_tedana` (``tedana_workflow``: ICA-denoised optimal combination) run tedana on the
  echoes of one run in a folder the caller owns, and return the files it wrote by output key
  (:data:`TEDANA_FILES`);
- both run tedana *lean* by default (:func:`lean_outputs`): what echoprep keeps is computed and
  written exactly as stock tedana does, and what it discards is neither computed nor written
  (docs/performance.md);
- :func:`trimmed_echoes` copies the echoes without their trailing noise volumes, for tedana;
- :func:`count_ica_attempts` / :func:`read_ica_attempts` count FastICA attempts in tedana's
  log, :func:`robustica_failures` reads robustica's count of unconverged fits;
- :func:`read_components` reads tedana's mixing matrix and component table (the rejected
  regressors and the planted runs' frozen ICA both start from it).

tedana is imported only when a workflow runs (the rules without tedana run in an environment
without it). Which options reach tedana and what is recorded is the echo-handling stage's
business (:mod:`echoprep.stages.combine`).
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import nibabel as nib
import pandas as pd

from echoprep.io.images import StageInputError
from echoprep.io.outputs import stage_outputs

#: Per echo-handling variant: output key -> the file tedana writes into its output folder
#: (its ``bidsv1.5.0`` names).
TEDANA_FILES: dict[str, dict[str, str]] = {
    variant: {n: o.tool_name for n, o in stage_outputs("combine", variant).items() if o.tool_name}
    for variant in ("optcom", "denoised")
}
#: tedana's description (its ``OutputGenerator`` key) of each file echoprep keeps, by variant
#: and output key; by file name in :data:`TEDANA_DESCRIPTIONS` (tests/unit/test_tedana_lean.py
#: checks them against the names tedana registers).
_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "optcom": {
        "bold": "combined img",
        "t2star": "t2star img",
        "s0": "s0 img",
        "mask": "adaptive mask img",
    },
    "denoised": {
        "bold": "denoised ts img",
        "metrics": "ICA metrics tsv",
        "mixing": "ICA mixing tsv",
    },
}
#: tool file name -> tedana's description of it, for the files echoprep keeps.
TEDANA_DESCRIPTIONS: dict[str, str] = {
    TEDANA_FILES[variant][key]: description
    for variant, by_key in _DESCRIPTIONS.items()
    for key, description in by_key.items()
}
#: tedpca criteria tedana estimates with its Moving Average PCA (mapca), from the most liberal
#: to the most conservative.
MAPCA_CRITERIA = ("aic", "kic", "mdl")
#: tedpca criteria whose component choice reads the PCA metrics (not skipped for them).
METRIC_TEDPCA = ("kundu", "kundu-stabilize")
#: robustica's summary, with ``fastica_convergence_warning_count``.
ROBUSTICA_METRICS = "desc-ICACrossComponent_metrics.json"
#: How :func:`count_ica_attempts` counts (recorded next to the counts).
COUNTED_FROM = (
    "tedana's log: one 'failed to converge' warning per unconverged FastICA fit, 'Random seed "
    "updated' per restart, 'Re-attempting ICA' per re-run without BOLD components"
)


def _written(variant: str, folder: Path, lean: bool) -> dict[str, Path]:
    """Output key -> path in ``folder`` of what tedana writes for ``variant`` (images without
    compression, ``.nii``, when it ran lean)."""
    out = {}
    for key, name in TEDANA_FILES[variant].items():
        if lean and name.endswith(".nii.gz"):
            name = name[: -len(".gz")]
        out[key] = folder / name
    return out


def _pca_metrics_stub(original: Any) -> Any:
    """tedana's ``generate_metrics`` without the PCA components' metrics.

    With a dimensionality criterion other than Kundu's, tedana computes kappa, rho and the
    other metrics of the PCA components only to write them (``desc-PCA_metrics.tsv``); its
    choice of components does not read them. What it reads is the sign each component is
    flipped by, and it flips both the components' time series and their voxel weights, whose
    product (the reduced data the ICA sees) is the same to the bit either way (a sign change is
    exact in floating point). So the stub returns the components unflipped with signs of +1.
    """
    import numpy as np

    def generate_metrics(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("label") != "PCA":
            return original(*args, **kwargs)
        mixing = np.array(kwargs["mixing"], copy=True)
        n = mixing.shape[1]
        table = pd.DataFrame(
            {
                "Component": [f"PCA_{i:02d}" for i in range(n)],
                "optimal sign": np.ones(n, dtype=int),
                "normalized variance explained": np.full(n, np.nan),
            }
        )
        return table, mixing

    return generate_metrics


def _skipped(result: Any) -> Callable[..., Any]:
    """A stand-in for a tedana function whose result is only written: returns ``result``."""

    def skipped(*_args: Any, **_kwargs: Any) -> Any:
        return result

    return skipped


@contextlib.contextmanager
def lean_outputs(keep: Iterable[str], *, tedpca: Any = None) -> Iterator[None]:
    """Run tedana inside this block computing and writing only the files named ``keep``.

    Kept files are computed and written by tedana's own code, images without compression
    (``.nii`` next to the ``.nii.gz`` name; echoprep compresses them when it moves them into
    place). Skipped, because echoprep discards what they produce: writing any other image
    (T2*/S0 maps of the ICA run, its optimal combination, RMSE, component maps), the
    component maps of the ICA (``writeresults`` beyond the denoised series) and of the PCA,
    the T2* fit's RMSE, and, unless ``tedpca`` is a Kundu criterion, the PCA components'
    metrics (see :func:`_pca_metrics_stub`). tests/unit/test_tedana_lean.py checks that the
    kept files equal those of stock tedana.

    Parameters
    ----------
    keep
        File names as tedana writes them (keys of :data:`TEDANA_DESCRIPTIONS`).
    tedpca
        The ``tedpca`` tedana runs with (None: tedana's ``t2smap_workflow``, no PCA).
    """
    import tedana.decay
    import tedana.decomposition.pca
    import tedana.io
    import tedana.metrics.collect

    kept = {TEDANA_DESCRIPTIONS[name] for name in keep}
    stub_pca_metrics = str(tedpca) not in METRIC_TEDPCA
    generator = tedana.io.OutputGenerator
    save_file, add_df = generator.save_file, generator.add_df_to_file

    def lean_save_file(self: Any, data: Any, description: str, **kwargs: Any) -> str:
        name = str(self.get_name(description, **kwargs))
        if description.endswith("img"):
            if description not in kept:
                return name
            name = name.removesuffix(".gz")
            self.save_img(data, name, mask=kwargs.get("mask"))
            self.registry[description] = Path(name).name
            return name
        if data is None or (stub_pca_metrics and description.startswith("PCA metrics")):
            return name  # the skipped RMSE table, the stubbed PCA metrics
        return str(save_file(self, data, description, **kwargs))

    def lean_add_df(self: Any, data: Any, description: str, **kwargs: Any) -> Any:
        return None if data is None else add_df(self, data, description, **kwargs)

    def lean_writeresults(
        data_optcom: Any, mask: Any, component_table: Any, mixing: Any, io_generator: Any
    ) -> None:
        tedana.io.write_split_ts(data_optcom, mixing, mask, component_table, io_generator)

    with contextlib.ExitStack() as stack:
        patch = stack.enter_context
        patch(mock.patch.object(generator, "save_file", lean_save_file))
        patch(mock.patch.object(generator, "add_df_to_file", lean_add_df))
        patch(mock.patch.object(tedana.io, "writeresults", lean_writeresults))
        patch(mock.patch.object(tedana.decay, "rmse_of_fit_decay_ts", _skipped((None, None))))
        patch(mock.patch.object(tedana.decomposition.pca, "get_coeffs", _skipped(None)))
        if stub_pca_metrics:
            stub = _pca_metrics_stub(tedana.metrics.collect.generate_metrics)
            patch(mock.patch.object(tedana.metrics.collect, "generate_metrics", stub))
        yield


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Run the block with the objects alive before it left out of garbage collection.

    nilearn calls ``gc.collect()`` each time it reads an image's data (``safe_get_data``, to
    free memory before a copy), about 20 times in a lean tedana run and 45 in a stock one.
    Each full collection walks every object the process holds: 0.16-0.19 s in a tedana job,
    far more in a long-lived process (a test worker), 4-8 s a run for nothing, since the
    objects alive before tedana starts (modules, the caller's state) are not garbage it made.
    ``gc.freeze`` moves them out of the collector's sight for the block (what tedana allocates
    is still collected), ``gc.unfreeze`` puts them back, unless the caller had frozen objects
    of its own (they stay frozen, with those of this block). Results do not change:
    collection only frees memory.
    """
    frozen_before = gc.get_freeze_count()
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        if not frozen_before:
            gc.unfreeze()


def run_t2smap(
    echo_files: Sequence[str | Path],
    echo_times: Sequence[float],
    out_dir: str | Path,
    *,
    fittype: str,
    masktype: Sequence[str],
    n_threads: int,
    lean: bool = True,
) -> dict[str, Path]:
    """tedana's ``t2smap_workflow`` (T2*-weighted combination) on one run's echoes.

    Parameters
    ----------
    echo_files
        4D magnitude image per echo (x, y, z, t), in echo-time order.
    echo_times
        Echo times in s.
    out_dir
        tedana's output folder (the caller's, e.g. a temporary folder).
    fittype, masktype
        tedana's T2*/S0 fit and adaptive-mask methods.
    n_threads
        Threads tedana may use.
    lean
        Compute and write only the files echoprep keeps (:func:`lean_outputs`); False: stock
        tedana.

    Returns
    -------
    dict
        Keys of ``TEDANA_FILES["optcom"]`` -> their paths in ``out_dir`` (not checked).
    """
    from tedana.workflows import t2smap_workflow

    args, common = _common(echo_files, echo_times, out_dir, fittype, masktype, n_threads)
    scope = lean_outputs(TEDANA_FILES["optcom"].values()) if lean else contextlib.nullcontext()
    with scope, frozen_heap():
        t2smap_workflow(*args, **common)
    return _written("optcom", Path(out_dir), lean)


def _common(
    echo_files: Sequence[str | Path],
    echo_times: Sequence[float],
    out_dir: str | Path,
    fittype: str,
    masktype: Sequence[str],
    n_threads: int,
) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments both of tedana's workflows get from echoprep."""
    args = [[str(f) for f in echo_files], [float(t) for t in echo_times]]
    common = {
        "out_dir": str(out_dir),
        "combmode": "t2s",
        "overwrite": True,
        "quiet": True,
        "fittype": fittype,
        "masktype": list(masktype),
        "n_threads": n_threads,
    }
    return args, common


def run_tedana(
    echo_files: Sequence[str | Path],
    echo_times: Sequence[float],
    out_dir: str | Path,
    *,
    tedpca: str | int | float,
    fittype: str,
    masktype: Sequence[str],
    tree: str,
    ica_method: str,
    n_robust_runs: int,
    maxit: int,
    maxrestart: int,
    seed: int,
    n_threads: int,
    lean: bool = True,
    rechoose: Callable[[dict[str, int]], int | None] | None = None,
) -> dict[str, Path]:
    """tedana's ``tedana_workflow`` (ICA-denoised T2*-weighted combination, no reports).

    Parameters
    ----------
    echo_files, echo_times, out_dir, n_threads
        As for :func:`run_t2smap`.
    tedpca
        tedana's ``tedpca``: a criterion name, a component count or a variance fraction.
    fittype, masktype, tree, ica_method, n_robust_runs, maxit, maxrestart
        Passed to tedana under these names.
    seed
        tedana's ``fixed_seed``.
    lean
        As for :func:`run_t2smap`.
    rechoose
        With a ``tedpca`` of :data:`MAPCA_CRITERIA`: called with tedana's own estimates of
        every criterion (name -> components) as soon as its PCA has made them; returns None
        (tedana goes on with ``tedpca``) or a component count, with which tedana's PCA is
        then made again (:func:`_estimates_seen`; the estimate is made once, by tedana, on
        the data it decomposes). What tedana computed before its PCA does not depend on
        ``tedpca`` and is not computed again: the outputs are those of tedana run with that
        count from the start (``tests/unit/test_tedana_dimensionality.py``).

    Returns
    -------
    dict
        Keys of ``TEDANA_FILES["denoised"]`` -> their paths in ``out_dir`` (not checked).
    """
    from tedana.workflows import tedana_workflow

    args, common = _common(echo_files, echo_times, out_dir, fittype, masktype, n_threads)

    keep = TEDANA_FILES["denoised"].values()
    with contextlib.ExitStack() as stack:
        if lean:
            stack.enter_context(lean_outputs(keep, tedpca=tedpca))
        if rechoose is not None and str(tedpca) in MAPCA_CRITERIA:
            stack.enter_context(_estimates_seen(rechoose))
        stack.enter_context(frozen_heap())
        tedana_workflow(
            *args,
            **common,
            tedpca=tedpca,
            no_reports=True,
            tree=tree,
            ica_method=ica_method,
            n_robust_runs=n_robust_runs,
            maxit=maxit,
            maxrestart=maxrestart,
            fixed_seed=seed,
        )
    return _written("denoised", Path(out_dir), lean)


def denoise_frozen(data: Any, mixing: Any, classification: Sequence[str], mask: Any) -> Any:
    """A run's ICA denoising applied to another series: tedana's own ``denoise_ts`` (the
    step that writes ``desc-denoised_bold``) with the run's mixing matrix and component
    classifications, frozen, so the map is linear in ``data`` (docs/comparison.md,
    "Responses planted in your data").

    Parameters
    ----------
    data
        ``(V, T)`` series (an optimally combined one, or a difference of two).
    mixing
        ``(T, C)`` the run's mixing matrix (``*_desc-ICA_mixing.tsv``).
    classification
        ``(C,)`` each component's classification (``accepted``, ``rejected``, ...).
    mask
        ``(V,)`` bool: the voxels tedana denoised (its adaptive mask, at least one good echo).

    Returns
    -------
    numpy.ndarray
        ``(V, T)``: ``data`` less what the rejected components explain of it (0 outside
        ``mask``).
    """
    from tedana.io import denoise_ts

    table = pd.DataFrame({"classification": [str(c) for c in classification]})
    denoised, _, _ = denoise_ts(data, mixing, mask, table)
    return denoised


class _Rechosen(Exception):
    """Raised out of tedana's Moving Average PCA when :func:`run_tedana`'s ``rechoose`` asks for
    another count; caught by the ``tedpca`` step's wrapper (:func:`_estimates_seen`)."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


@contextlib.contextmanager
def _estimates_seen(rechoose: Callable[[dict[str, int]], int | None]) -> Iterator[None]:
    """Inside this block, tedana's Moving Average PCA hands its estimates of every criterion
    (:data:`MAPCA_CRITERIA` -> components) to ``rechoose`` as soon as it has fitted; None lets
    tedana go on, a count returned stops that PCA (:class:`_Rechosen`) and tedana's
    ``tedpca`` step is called again with the count in place of the criterion, on the same
    inputs (the step reads them without changing them, and had saved nothing yet). The ICA and
    everything after it then run once, on the capped PCA, as in a tedana run given that count;
    a whole second tedana run (loading, T2* fit, optimal combination) cost a LAION-size run
    about 130 CPU-s and 4 GiB more."""
    import tedana.decomposition
    import tedana.decomposition.pca

    base = tedana.decomposition.pca.MovingAveragePCA
    step = tedana.decomposition.tedpca

    class Estimating(base):  # type: ignore[misc, valid-type]
        def fit_transform(self, *args: Any, **kwargs: Any) -> Any:
            out = super().fit_transform(*args, **kwargs)
            estimates = {c: int(getattr(self, f"{c}_")["n_components"]) for c in MAPCA_CRITERIA}
            count = rechoose(estimates)
            if count is not None:
                raise _Rechosen(int(count))
            return out

    def tedpca_capped(*args: Any, algorithm: Any, **kwargs: Any) -> Any:
        try:
            return step(*args, algorithm=algorithm, **kwargs)
        except _Rechosen as again:
            return step(*args, algorithm=again.count, **kwargs)

    with (
        mock.patch.object(tedana.decomposition.pca, "MovingAveragePCA", Estimating),
        mock.patch.object(tedana.decomposition, "tedpca", tedpca_capped),
    ):
        yield


def trimmed_echoes(files: Sequence[Path], drop: int, folder: Path) -> list[Path]:
    """Copies of the echo files in ``folder`` without their last ``drop`` volumes (``files``
    themselves when ``drop`` is 0).

    Raises
    ------
    StageInputError
        An echo with no more volumes than ``drop``.
    """
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


def read_ica_attempts(folder: str | Path) -> IcaAttempts | None:
    """:func:`count_ica_attempts` of the last tedana log in ``folder`` (None: no log)."""
    logs = sorted(Path(folder).glob("tedana_*.tsv"))
    if not logs:
        return None
    return count_ica_attempts(logs[-1].read_text().splitlines())


def robustica_failures(folder: str | Path) -> Any:
    """robustica's ``fastica_convergence_warning_count`` from :data:`ROBUSTICA_METRICS` in
    ``folder`` (None when the file is missing or unreadable)."""
    try:
        metrics = json.loads((Path(folder) / ROBUSTICA_METRICS).read_text())
        return metrics.get("fastica_convergence_warning_count")
    except (OSError, ValueError):
        return None


def read_components(mixing: str | Path, metrics: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """tedana's mixing matrix (volumes x components) and component table, checked to have the
    columns ``Component`` and ``classification``.

    Raises
    ------
    StageInputError
        ``metrics`` lacks its component names or classifications.
    """
    mix = pd.read_csv(mixing, sep="\t")
    table = pd.read_csv(metrics, sep="\t", keep_default_na=False)
    if not {"Component", "classification"} <= set(table.columns):
        raise StageInputError(
            f"{metrics}: expected tedana's columns Component and classification; found "
            f"{list(table.columns)}. Fix: rerun the ICA-denoised job."
        )
    return mix, table


__all__ = [
    "COUNTED_FROM",
    "MAPCA_CRITERIA",
    "METRIC_TEDPCA",
    "ROBUSTICA_METRICS",
    "TEDANA_DESCRIPTIONS",
    "TEDANA_FILES",
    "IcaAttempts",
    "count_ica_attempts",
    "denoise_frozen",
    "lean_outputs",
    "read_components",
    "read_ica_attempts",
    "robustica_failures",
    "run_t2smap",
    "run_tedana",
    "trimmed_echoes",
]
