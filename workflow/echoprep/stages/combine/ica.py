"""ICA denoising of one run (tedana ``tedana_workflow``) and its dimensionality.

On NORDIC-denoised echoes tedana's dimensionality criteria fail (nearly one component per
volume); :func:`choose_components` gives such runs the count tedana kept on the same run
without NORDIC, and every ICA-denoised sidecar records the count, its source and the FastICA
attempts (``TedanaICA``). On raw runs the criteria can fail the same way (a LAION-size
simulated run: aic kept 159 of 163 components, and FastICA did not converge in 500 iterations
even at 81): as soon as tedana's own PCA has estimated the criteria, :func:`cap_components`
replaces an estimate above ``tedana.max_components`` x volumes by the next more conservative
criterion within it (kic, then mdl), or by the cap, and tedana makes its PCA again with that count
(:func:`echoprep.adapters.tedana.run_tedana`, ``rechoose``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from echoprep.adapters import tedana as tedana_adapter
from echoprep.io.atomic import atomic_path
from echoprep.io.images import StageInputError
from echoprep.io.sidecars import write_sidecar
from echoprep.stages.combine.echoes import (
    ICA_RECORD,
    TedanaOptions,
    run_tedana_tool,
    section_options,
    validate_echoes,
)
from echoprep.variants import MIN_ECHOES

log = logging.getLogger(__name__)

#: ``tedana.nordic_tedpca`` values besides a component count given as text.
NORDIC_TEDPCA_MODES = ("raw_run", "same")
#: tedana criteria estimated by the Moving Average PCA (mapca), which the cap applies to, from
#: the most liberal to the most conservative.
MAPCA_CRITERIA = tedana_adapter.MAPCA_CRITERIA
#: The fewest components tedana's ICA is given: tedana reads a count of 1 as the variance
#: fraction 1.0, and a criterion estimate of 1 (nearly one-dimensional data: strong
#: low-dimensional responses at low tSNR) made tedana 24 crash in its component naming
#: (``OverflowError`` from ``log10(0)``), stopping the whole workflow.
MIN_COMPONENTS = 2
#: Components kept on a NORDIC-denoised run, as a fraction of its volumes, when ``raw_run`` is
#: asked for but no count of the run without NORDIC is given (the stage called by itself).
FALLBACK_FRACTION = 0.2


@dataclass(frozen=True)
class ComponentChoice:
    """The dimensionality tedana is given for one run.

    Attributes
    ----------
    tedpca
        What tedana's ``tedpca`` receives: a criterion name (``"aic"``), a component count
        (``int``) or a variance fraction (``float`` < 1).
    source
        Where it came from, in words (recorded in the sidecars).
    fallback
        True when the rule for runs without a count of the run without NORDIC was used.
    """

    tedpca: str | int | float
    source: str
    fallback: bool = False


def parse_tedpca(tedpca: str | int | float) -> str | int | float:
    """tedana's ``tedpca`` from config text: ``"aic"`` stays, ``"30"`` -> 30, ``"0.9"`` -> 0.9."""
    if isinstance(tedpca, int | float) and not isinstance(tedpca, bool):
        return int(tedpca) if float(tedpca) >= 1 else float(tedpca)
    try:
        value = float(tedpca)
    except ValueError:
        return str(tedpca)
    return int(value) if value >= 1 else value


def choose_components(
    tedpca: str,
    *,
    nordic_tedpca: str | None,
    raw_components: int | None,
    n_volumes: int,
    fallback_fraction: float = FALLBACK_FRACTION,
) -> ComponentChoice:
    """Pick the dimensionality of tedana's ICA for one run.

    On NORDIC-denoised data tedana's information criteria (``aic``, ``kic``, ``mdl``) keep
    nearly as many components as volumes: NORDIC removes the flat thermal-noise floor of the
    eigenvalue spectrum these criteria look for, so FastICA then faces ~volumes components and
    fails to converge. The count estimated on the same run without NORDIC is valid for both:
    NORDIC removes thermal noise, not sources of signal.

    Parameters
    ----------
    tedpca
        ``tedana.tedpca`` of the config (a criterion or a number as text).
    nordic_tedpca
        None for a run without NORDIC (``tedpca`` is used). For a NORDIC-denoised run
        ``tedana.nordic_tedpca``: ``"raw_run"`` (the count tedana kept on the same run without
        NORDIC, ``raw_components``), ``"same"`` (``tedpca`` as for raw runs: the old
        behaviour) or a component count as text (``"20"``).
    raw_components
        Components tedana kept on the same run without NORDIC (``raw_run``); None when that run
        was not given.
    n_volumes
        Volumes tedana decomposes (after dropped noise volumes).
    fallback_fraction
        ``raw_run`` without ``raw_components``: keep ``floor(fraction * n_volumes)``
        components (at least 1). On NORDIC data the criteria would keep almost every volume, so
        a cap on them is this number; 0.2 is above what ``aic`` keeps on raw runs (14 of 120 on
        the demo, 24 of 163 at LAION geometry).

    Returns
    -------
    ComponentChoice

    Raises
    ------
    ValueError
        Unknown ``nordic_tedpca``, a count outside ``1 .. n_volumes - 1``, or a fraction outside
        (0, 1).
    """
    if nordic_tedpca is None or nordic_tedpca == "same":
        where = "tedana.tedpca" + ("" if nordic_tedpca is None else " (nordic_tedpca: same)")
        return ComponentChoice(parse_tedpca(tedpca), f"{where} = {tedpca}")
    if nordic_tedpca == "raw_run":
        if raw_components is not None:
            n = _check_count(raw_components, n_volumes, "the run without NORDIC")
            return ComponentChoice(n, f"same run without NORDIC (tedana kept {n} components)")
        if not 0 < fallback_fraction < 1:
            raise ValueError(
                f"expected a fallback fraction of the volumes in (0, 1); found "
                f"{fallback_fraction}. Fix: pass e.g. 0.2."
            )
        n = max(1, math.floor(fallback_fraction * n_volumes))
        return ComponentChoice(
            n,
            f"fallback: floor({fallback_fraction:g} x {n_volumes} volumes) = {n} (no component "
            "count of the run without NORDIC was given)",
            fallback=True,
        )
    try:
        count = int(str(nordic_tedpca))
    except ValueError:
        raise ValueError(
            f"expected tedana.nordic_tedpca to be one of {', '.join(NORDIC_TEDPCA_MODES)} or a "
            f"component count; found {nordic_tedpca!r}. Fix: set tedana.nordic_tedpca: raw_run."
        ) from None
    n = _check_count(count, n_volumes, "tedana.nordic_tedpca")
    return ComponentChoice(n, f"tedana.nordic_tedpca = {n}")


def cap_components(
    choice: ComponentChoice,
    estimates: Mapping[str, int] | None,
    cap_fraction: float | None,
    n_volumes: int,
) -> ComponentChoice:
    """``choice`` (a criterion) kept when its estimate is within ``floor(cap_fraction x
    n_volumes)``; otherwise the estimate of the next more conservative criterion
    (:data:`MAPCA_CRITERIA`) within the cap, or the cap itself. An estimate below
    :data:`MIN_COMPONENTS` (the data are nearly one-dimensional) is replaced by that floor, cap
    or not. Unchanged when no estimates were made (or no cap is set and the estimate is at
    least the floor). The cap is at least the floor: tedana reads a count of 1 as the variance
    fraction 1.0."""
    if not estimates or choice.tedpca not in estimates:
        return choice
    criterion = str(choice.tedpca)
    if estimates[criterion] < MIN_COMPONENTS:
        return ComponentChoice(
            MIN_COMPONENTS,
            f"{choice.source}: estimated {estimates[criterion]} component(s) of {n_volumes} "
            f"volumes, fewer than the {MIN_COMPONENTS} tedana's ICA needs (nearly "
            f"one-dimensional data); {MIN_COMPONENTS} used",
            choice.fallback,
        )
    if cap_fraction is None:
        return choice
    cap = max(MIN_COMPONENTS, math.floor(cap_fraction * n_volumes))
    if estimates[criterion] <= cap:
        return choice
    why = (
        f"{choice.source}: estimated {estimates[criterion]} of {n_volumes} volumes, more than "
        f"tedana.max_components = {cap_fraction} x volumes = {cap}"
    )
    for other in MAPCA_CRITERIA[MAPCA_CRITERIA.index(criterion) + 1 :]:
        if estimates[other] <= cap:
            return ComponentChoice(
                estimates[other], f"{why}; {other} estimate used", choice.fallback
            )
    return ComponentChoice(cap, f"{why}; no criterion within it, the cap used", choice.fallback)


def _check_count(n: int, n_volumes: int, what: str) -> int:
    if not MIN_COMPONENTS <= int(n) < n_volumes:
        raise ValueError(
            f"expected a component count from {what} between {MIN_COMPONENTS} and "
            f"{n_volumes - 1} (the run "
            f"has {n_volumes} volumes); found {n}. Fix: give a count below the number of "
            "volumes, or tedana.nordic_tedpca: raw_run."
        )
    return int(n)


def read_component_count(path: str | Path) -> int:
    """Components tedana kept on a run, from its ICA-denoised outputs.

    Parameters
    ----------
    path
        The JSON sidecar of an ICA-denoised output of this stage (its ``TedanaICA`` record,
        ``NComponents``), or a tedana mixing matrix (``*_mixing.tsv``: one column per
        component).

    Raises
    ------
    StageInputError
        Unreadable file or no component count in it.
    """
    path = Path(path)
    if path.suffix == ".tsv":
        try:
            header = path.read_text().splitlines()[0]
        except (OSError, IndexError) as exc:
            raise StageInputError(
                f"{path}: expected a tedana mixing matrix (one column per component); could "
                f"not read it ({exc or 'empty file'}). Fix: re-run the ICA-denoised job of the "
                "run without NORDIC."
            ) from None
        return len(header.split("\t"))
    try:
        record = json.loads(path.read_text()).get(ICA_RECORD, {})
        n = record["NComponents"]
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
        raise StageInputError(
            f"{path}: expected the sidecar of an ICA-denoised output with "
            f"{ICA_RECORD}.NComponents; found none ({type(exc).__name__}: {exc}). Fix: re-run "
            "the ICA-denoised job of the run without NORDIC with this version of echoprep, or "
            "pass its *_mixing.tsv."
        ) from None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise StageInputError(
            f"{path}: expected {ICA_RECORD}.NComponents to be a positive integer; found {n!r}. "
            "Fix: re-run the ICA-denoised job of the run without NORDIC."
        )
    return n


def run_tedana(
    echo_files: Sequence[str | Path],
    echo_times: Sequence[float],
    outputs: Mapping[str, str | Path],
    *,
    options: TedanaOptions | Mapping[str, Any] | None = None,
    nordic: bool = False,
    raw_components: str | Path | None = None,
    fallback_fraction: float = FALLBACK_FRACTION,
    seed: int = 0,
    work_dir: str | Path | None = None,
    n_threads: int = 1,
    repetition_time: float | None = None,
    drop_volumes: int = 0,
) -> dict[str, Path]:
    """ICA-denoised optimal combination with tedana's ``tedana_workflow``.

    Every output's sidecar gets a ``TedanaICA`` record: the ``tedpca`` asked for, the one
    used and where it came from (:func:`choose_components`), the components kept
    (``NComponents``), the FastICA attempts, restarts and whether the kept decomposition
    converged (:func:`echoprep.adapters.tedana.count_ica_attempts`, from tedana's log), and
    tedana's wall time.

    With aic, kic or mdl, tedana's own estimate (read as soon as its PCA has made it) is raised
    to the floor of :data:`MIN_COMPONENTS` and capped by ``max_components`` when that is set
    (:func:`cap_components`); when either changes it, tedana makes its PCA again with that count.

    Parameters
    ----------
    echo_files
        4D magnitude image per echo (x, y, z, t), in echo-time order (at least 3 echoes).
    echo_times
        Echo times in s.
    outputs
        Keys of the registry's ``combine`` outputs of ``denoised`` (``bold``, ``metrics``,
        ``mixing``, ``rejected``: :func:`write_rejected`, which needs the two before it) to
        paths.
    options
        The ``tedana:`` config section. ``fittype``, ``masktype``, ``tree``, ``ica_method``,
        ``n_robust_runs``, ``maxit`` go to tedana; ``tedpca`` may be a number given as text;
        ``maxrestart`` is the number of FastICA attempts (the first fit counts, so 1 = no
        restart): when none converges a warning names the fix and the sidecar says
        ``ICAConverged: false``.
    nordic
        The echoes are NORDIC-denoised: the dimensionality follows ``nordic_tedpca``
        (:func:`choose_components`); otherwise ``nordic_tedpca`` is ignored (recorded null).
    raw_components
        ``raw_run``: the sidecar (or ``*_mixing.tsv``) of the ICA-denoised output of the same
        run without NORDIC (:func:`read_component_count`).
    fallback_fraction
        ``raw_run`` without ``raw_components``: components as a fraction of the volumes.
    seed
        tedana's ``fixed_seed``: same seed, same components.
    work_dir
        Parent of the private tedana working folder (removed afterwards).
    n_threads
        Threads tedana may use.
    repetition_time
        TR in s, recorded in the sidecar of the denoised series.
    drop_volumes
        Trailing (noise) volumes to leave out.

    Raises
    ------
    echoprep.options.OptionsError
        Options the config schema refuses.
    StageInputError
        Invalid echoes, an unreadable ``raw_components`` or a count tedana cannot use.
    """
    opts = section_options(TedanaOptions, "tedana", options)
    tedpca = opts.tedpca
    nordic_tedpca = str(opts.nordic_tedpca) if nordic else None
    files = [Path(f) for f in echo_files]
    shape = validate_echoes(files, echo_times, min_echoes=MIN_ECHOES["denoised"])
    n_volumes = int(shape[3]) - drop_volumes
    raw_n = None
    if raw_components is not None and nordic_tedpca == "raw_run":
        raw_n = read_component_count(raw_components)
    try:
        choice = choose_components(
            tedpca,
            nordic_tedpca=nordic_tedpca,
            raw_components=raw_n,
            n_volumes=n_volumes,
            fallback_fraction=fallback_fraction,
        )
    except ValueError as exc:
        where = raw_components if raw_n is not None else files[0]
        raise StageInputError(f"{where}: {exc}") from None
    seen: dict[str, Any] = {"estimates": None, "choice": choice}

    def rechoose(estimates: dict[str, int]) -> int | None:
        """The count tedana should use instead of its criterion's estimate, or None."""
        criterion = str(choice.tedpca)
        seen["estimates"] = dict(estimates)
        capped = cap_components(choice, estimates, opts.max_components, n_volumes)
        if capped is choice:
            return None
        if estimates[criterion] < MIN_COMPONENTS:
            log.warning(
                "%s: tedana's %s estimate is %d component(s) of %d volumes (nearly "
                "one-dimensional data; tedana's ICA fails below %d); using %d.",
                files[0],
                criterion,
                estimates[criterion],
                n_volumes,
                MIN_COMPONENTS,
                MIN_COMPONENTS,
            )
        else:
            log.warning(
                "%s: tedana's %s estimate is %d components of %d volumes (more than "
                "tedana.max_components = %s of them: FastICA would be very slow and may "
                "not converge); using %d (%s).",
                files[0],
                criterion,
                estimates[criterion],
                n_volumes,
                opts.max_components,
                capped.tedpca,
                capped.source.rsplit("; ", 1)[-1],
            )
        seen["choice"] = capped
        return int(capped.tedpca)

    if choice.fallback:
        log.warning(
            "%s: NORDIC-denoised run without the component count of the same run without "
            "NORDIC; using %s. Fix: pass the sidecar of that run's ICA-denoised output "
            "(--raw-components) for the count estimated where the criteria are valid.",
            files[0],
            choice.source,
        )
    tool = {
        "fittype": opts.fittype,
        "masktype": list(opts.masktype),
        "tree": opts.tree,
        "ica_method": opts.ica_method,
        "n_robust_runs": opts.n_robust_runs,
        "maxit": opts.maxit,
        "maxrestart": opts.maxrestart,
    }

    def inspect(folder: Path, seconds: float) -> dict[str, Any]:
        return _ica_record(
            folder,
            seconds,
            files[0],
            tedpca=tedpca,
            nordic_tedpca=nordic_tedpca,
            choice=seen["choice"],
            estimates=seen["estimates"],
            max_components=opts.max_components,
            raw_components=raw_components if raw_n is not None else None,
            n_volumes=n_volumes,
            ica_method=opts.ica_method,
            n_robust_runs=opts.n_robust_runs,
            maxit=opts.maxit,
            maxrestart=opts.maxrestart,
        )

    if "rejected" in outputs and not {"mixing", "metrics"} <= set(outputs):
        raise StageInputError(
            f"{files[0]}: expected the outputs mixing and metrics beside rejected (its time "
            f"courses come from them); found {sorted(outputs)}. Fix: pass all three."
        )
    written = run_tedana_tool(
        tedana_adapter.run_tedana,
        "denoised",
        files,
        echo_times,
        outputs,
        parameters={**tool, "fixed_seed": seed, "tedpca": tedpca, "nordic_tedpca": nordic_tedpca},
        description="tedana ICA-denoised optimal combination (rejected components removed)",
        work_dir=work_dir,
        repetition_time=repetition_time,
        drop_volumes=drop_volumes,
        inspect=inspect,
        tedpca=choice.tedpca,
        seed=seed,
        n_threads=n_threads,
        rechoose=rechoose,
        **tool,
    )
    if "rejected" in outputs:
        written["rejected"] = write_rejected(
            written["mixing"], written["metrics"], Path(outputs["rejected"])
        )
    return written


def write_rejected(mixing: Path, metrics: Path, out: Path) -> Path:
    """The time courses of the components tedana rejected, as regressors (a TSV and sidecar).

    The ICA-denoised series already has them removed (fitted together with the accepted ones,
    tedana's non-aggressive denoising); regressing these columns from the optimally combined
    series instead removes them aggressively, as ICA-AROMA's regressors in an fMRIPrep
    confounds table are used.

    Parameters
    ----------
    mixing
        tedana's mixing matrix (``*_desc-ICA_mixing.tsv``: volumes x components).
    metrics
        tedana's component table (``*_desc-tedana_metrics.tsv``: ``Component``,
        ``classification``, ``classification_tags``, kappa, rho, ...).
    out
        The TSV to write: one column per rejected component, named as in ``mixing``; no
        column when tedana rejected none (the sidecar's ``RejectedComponents`` is then empty).

    Raises
    ------
    StageInputError
        ``metrics`` lacks its component names or classifications, or names a component
        ``mixing`` has no column for.
    """
    mix, table = tedana_adapter.read_components(mixing, metrics)
    rows = table[table["classification"] == "rejected"]
    names = [str(c) for c in rows["Component"]]
    if unknown := [c for c in names if c not in mix.columns]:
        raise StageInputError(
            f"{metrics}: names components {unknown} that {mixing} has no column for. Fix: "
            "rerun the ICA-denoised job (both files come from one tedana run)."
        )
    with atomic_path(out) as tmp:
        if names:
            mix[names].to_csv(tmp, sep="\t", index=False, float_format="%.8g")
        else:
            tmp.write_text("")
    columns = {}
    for _, row in rows.iterrows():
        facts = [f"{k} {float(row[k]):.4g}" for k in ("kappa", "rho") if k in row]
        tags = str(row.get("classification_tags", "")).strip()
        about = ", ".join([*facts, *([f"tags: {tags}"] if tags else [])])
        columns[str(row["Component"])] = {
            "Description": f"time course of the rejected ICA component {row['Component']}"
            + (f" ({about})" if about else ""),
            "Units": "arbitrary",
        }
    write_sidecar(
        out,
        sources=[mixing, metrics],
        parameters={"classification": "rejected"},
        extra={
            "Description": "Time courses of the ICA components tedana rejected (columns of the "
            "mixing matrix), one row per volume: regressors for the optimally combined series "
            "(desc-optcom); the ICA-denoised series already has them removed",
            "RejectedComponents": names,
            **columns,
        },
        software=["tedana"],
    )
    return out


def _ica_record(
    folder: Path,
    seconds: float,
    first_echo: Path,
    *,
    tedpca: str,
    nordic_tedpca: str | None,
    choice: ComponentChoice,
    estimates: Mapping[str, int] | None,
    max_components: float | None,
    raw_components: str | Path | None,
    n_volumes: int,
    ica_method: str,
    n_robust_runs: int,
    maxit: int,
    maxrestart: int,
) -> dict[str, Any]:
    """The ``TedanaICA`` sidecar record of a finished tedana run (warns when ICA failed)."""
    n_components = read_component_count(folder / tedana_adapter.TEDANA_FILES["denoised"]["mixing"])
    record: dict[str, Any] = {
        "TedpcaRequested": tedpca,
        "NordicTedpca": nordic_tedpca,
        "TedpcaUsed": choice.tedpca,
        "ComponentSource": choice.source,
        "ComponentSourceFile": str(raw_components) if raw_components is not None else None,
        "Fallback": choice.fallback,
        "EstimatedComponents": dict(estimates) if estimates else None,
        "MaxComponents": max_components,
        "NComponents": n_components,
        "NVolumes": n_volumes,
        "ICAMethod": ica_method,
        "MaxRestart": maxrestart,
        "MaxIterations": maxit,
    }
    if ica_method.lower() == "fastica":
        attempts = tedana_adapter.read_ica_attempts(folder)
        if attempts is None:
            record.update(ICAAttempts=None, ICARestarts=None, ICAConverged=None)
            record["ICAAttemptsCountedFrom"] = "not counted: tedana wrote no log file"
        else:
            record.update(
                ICAAttempts=attempts.attempts,
                ICARestarts=attempts.restarts,
                ICAFailedAttempts=attempts.failed,
                ICADecompositions=attempts.decompositions,
                ICAConverged=attempts.converged,
                ICAAttemptsCountedFrom=tedana_adapter.COUNTED_FROM,
            )
            if not attempts.converged:
                log.warning(
                    "%s: FastICA did not converge in %d attempts (tedana.maxrestart %d, "
                    "maxit %d) with %d components of %d volumes; tedana kept the last, "
                    "unconverged decomposition, so the ICA-denoised series is unreliable. "
                    "Fix: fewer components (tedana.nordic_tedpca: raw_run on NORDIC runs, or "
                    "a count in tedana.tedpca), or a larger tedana.maxit.",
                    first_echo,
                    attempts.attempts,
                    maxrestart,
                    maxit,
                    n_components,
                    n_volumes,
                )
    else:  # robustica: n_robust_runs fits; tedana counts those that did not converge
        failed = tedana_adapter.robustica_failures(folder)
        record.update(ICAAttempts=n_robust_runs, ICAFailedAttempts=failed, ICAConverged=None)
        record["ICAAttemptsCountedFrom"] = (
            f"{tedana_adapter.ROBUSTICA_METRICS}: fastica_convergence_warning_count"
        )
    if 2 * n_components >= n_volumes:
        log.warning(
            "%s: tedana kept %d components of %d volumes (half or more; tedana's FAQ calls "
            "nearly as many components as volumes a failure of the dimensionality estimate, "
            "common after NORDIC). Fix: tedana.nordic_tedpca: raw_run, or a count in "
            "tedana.tedpca.",
            first_echo,
            n_components,
            n_volumes,
        )
    record["TedanaSeconds"] = round(seconds, 1)
    return record
