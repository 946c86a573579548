"""Adapter to tedana: its two workflows, the files they write and what its log tells.

- :func:`run_t2smap` (``t2smap_workflow``: T2*/S0 fit and optimal combination) and
  :func:`run_tedana` (``tedana_workflow``: ICA-denoised optimal combination) run tedana on the
  echoes of one run in a folder the caller owns, and return the files it wrote by output key
  (:data:`TEDANA_FILES`);
- :func:`trimmed_echoes` copies the echoes without their trailing noise volumes, for tedana;
- :func:`count_ica_attempts` / :func:`read_ica_attempts` count FastICA attempts in tedana's
  log, :func:`robustica_failures` reads robustica's count of unconverged fits.

tedana is imported only when a workflow runs (the rules without tedana run in an environment
without it). Which options reach tedana and what is recorded is the echo-handling stage's
business (:mod:`echoprep.stages.combine`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib

from echoprep.io.images import StageInputError
from echoprep.io.outputs import stage_outputs

#: Per echo-handling variant: output key -> the file tedana writes into its output folder
#: (its ``bidsv1.5.0`` names).
TEDANA_FILES: dict[str, dict[str, str]] = {
    variant: {name: o.tool_name for name, o in stage_outputs("combine", variant).items()}
    for variant in ("optcom", "denoised")
}
#: robustica's summary, with ``fastica_convergence_warning_count``.
ROBUSTICA_METRICS = "desc-ICACrossComponent_metrics.json"
#: How :func:`count_ica_attempts` counts (recorded next to the counts).
COUNTED_FROM = (
    "tedana's log: one 'failed to converge' warning per unconverged FastICA fit, 'Random seed "
    "updated' per restart, 'Re-attempting ICA' per re-run without BOLD components"
)


def _written(variant: str, folder: Path) -> dict[str, Path]:
    """Output key -> path in ``folder`` of what tedana writes for ``variant``."""
    return {key: folder / name for key, name in TEDANA_FILES[variant].items()}


def run_t2smap(
    echo_files: Sequence[str | Path],
    echo_times: Sequence[float],
    out_dir: str | Path,
    *,
    fittype: str,
    masktype: Sequence[str],
    n_threads: int,
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

    Returns
    -------
    dict
        Keys of ``TEDANA_FILES["optcom"]`` -> their paths in ``out_dir`` (not checked).
    """
    from tedana.workflows import t2smap_workflow

    t2smap_workflow(
        [str(f) for f in echo_files],
        [float(t) for t in echo_times],
        out_dir=str(out_dir),
        combmode="t2s",
        overwrite=True,
        quiet=True,
        fittype=fittype,
        masktype=list(masktype),
        n_threads=n_threads,
    )
    return _written("optcom", Path(out_dir))


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

    Returns
    -------
    dict
        Keys of ``TEDANA_FILES["denoised"]`` -> their paths in ``out_dir`` (not checked).
    """
    from tedana.workflows import tedana_workflow

    tedana_workflow(
        [str(f) for f in echo_files],
        [float(t) for t in echo_times],
        out_dir=str(out_dir),
        combmode="t2s",
        overwrite=True,
        quiet=True,
        tedpca=tedpca,
        no_reports=True,
        n_threads=n_threads,
        fittype=fittype,
        masktype=list(masktype),
        tree=tree,
        ica_method=ica_method,
        n_robust_runs=n_robust_runs,
        maxit=maxit,
        maxrestart=maxrestart,
        fixed_seed=seed,
    )
    return _written("denoised", Path(out_dir))


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


__all__ = [
    "COUNTED_FROM",
    "ROBUSTICA_METRICS",
    "TEDANA_FILES",
    "IcaAttempts",
    "count_ica_attempts",
    "read_ica_attempts",
    "robustica_failures",
    "run_t2smap",
    "run_tedana",
    "trimmed_echoes",
]
