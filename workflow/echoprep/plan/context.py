"""What every rule family shares: the config, the dataset, paths, options, sizes, sessions.

:class:`PlanContext` is handed to each family (:mod:`echoprep.plan.families`) by
composition; it holds no rule of its own. Paths of a stage's outputs come from the output
registry (:mod:`echoprep.io.outputs`) through :meth:`PlanContext.files` (memoised: input
functions ask for the same files many times). See ``docs/architecture.md``.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from echoprep import resources as res
from echoprep.io import outputs as reg
from echoprep.io.bids import Dataset, EchoFiles, Run
from echoprep.io.paths import run_prefix
from echoprep.options import options_json
from echoprep.plan.hooks import RuleHooks

Files = dict[str, str]


class PlanError(ValueError):
    """The config asks for something the dataset cannot give (message says what and the fix)."""


def strip_label(label: object, prefix: str) -> str:
    """``label`` without its ``<prefix>-`` (``ses-01`` -> ``01``)."""
    text = str(label)
    return text[len(prefix) + 1 :] if text.startswith(f"{prefix}-") else text


def words(args: Iterable[Any]) -> str:
    """Shell words: each argument quoted for the shell (``shlex.quote``), joined by spaces.
    The one quoting helper of every command-line argument the plan builds; a rule's own
    ``{input.x}``, ``{output.x}`` and ``{log}`` are quoted by Snakemake's ``:q``."""
    return " ".join(shlex.quote(str(a)) for a in args)


def events_rows(path: Path | None) -> int:
    """Rows (trials) of an events file (0 for None), counted once per file version."""
    if not path:
        return 0
    st = path.stat()
    return _count_rows(path, st.st_size, st.st_mtime_ns)


@functools.cache
def _count_rows(path: Path, size: int, mtime_ns: int) -> int:
    with open(path) as fh:
        return max(0, sum(1 for line in fh if line.strip()) - 1)


class PlanContext:
    """The config, the dataset and the helpers every family uses.

    Parameters
    ----------
    config
        The validated config (:func:`echoprep.config.validate_config`: every default filled);
        ``variants.combine`` limited to what every run's echo count allows
        (:mod:`echoprep.plan.echo_counts`).
    dataset
        The discovered dataset (:func:`echoprep.io.bids.discover`).
    hooks
        What the specs need from the running Snakemake; None in unit tests.
    """

    def __init__(
        self, config: Mapping[str, Any], dataset: Dataset, hooks: RuleHooks | None = None
    ) -> None:
        from echoprep.plan.echo_counts import allowed_combines  # (they raise PlanError)
        from echoprep.plan.native_grids import check_native_grids

        check_native_grids(config, dataset)
        #: the config with the echo handlings the runs' echoes allow, and why others are not
        #: made (printed when the workflow is planned), or None
        self.config, self.echo_note = allowed_combines(config, dataset)
        self.dataset = dataset
        self.hooks = hooks or RuleHooks()
        self.out = Path(config["output_dir"])
        self.runs: dict[str, Run] = {run_prefix(r.entities): r for r in dataset.runs}
        # memos of run_key (by the id of a run of self.dataset, which outlives the plan's use),
        # files and file
        self._run_keys: dict[int, tuple[str, str]] = {}
        self._files_memo: dict[tuple[Any, ...], Files] = {}
        self._paths_memo: dict[tuple[Any, ...], Files] = {}
        self._file_memo: dict[tuple[Any, ...], str] = {}
        #: NORDIC variants: "raw" = NORDIC off, "nordic" = on (config nordic.enabled).
        self.nordic_variants = ["raw", "nordic"] if config["nordic"]["enabled"] else ["raw"]

    # -----------------------------------------------------------------------------------------
    # runs, sessions, subjects

    def run_of(self, wc: Any) -> Run:
        """The discovered run a job's wildcards refer to."""
        return self.runs[wc.run_prefix]

    def run_key(self, run: Run | None) -> tuple[str, str]:
        """``(run_dir, run_prefix)`` of a run (built once per run), or the wildcard pattern."""
        if run is None:
            return reg.run_key(None)
        key = self._run_keys.get(id(run))
        if key is None:
            key = self._run_keys[id(run)] = reg.run_key(run.entities)
        return key

    def task(self) -> str:
        return self.dataset.runs[0].task

    def reference_run(self, subject: str) -> Run:
        """The subject's reference run (first run of its first session): runs and sessions are
        aligned to it."""
        return self.dataset.first_run(subject)

    def job_run(self, wc: Any) -> Run:
        """The run a run-level step of a job works on: its run, or for a job of a subject
        (``spatial_reference``) the subject's reference run."""
        if getattr(wc, "run_prefix", None):
            return self.run_of(wc)
        return self.reference_run(wc.subject)

    @cached_property
    def _sessions_by_stem(self) -> dict[str, tuple[str, str | None]]:
        return {
            reg.session_key(sub, ses, self.task())[1]: (sub, ses)
            for sub in self.dataset.subjects()
            for ses in self.dataset.sessions(sub)
        }

    def session_of(self, wc: Any) -> tuple[str, str | None]:
        """(subject, session) of a session-level job."""
        return self._sessions_by_stem[wc.ses_prefix]

    def session_runs_of(self, subject: str, session: str | None) -> list[Run]:
        """The runs a session's GLM fits: every run with a trial to model (discovery warned
        about the others, which are preprocessed all the same)."""
        return [r for r in self.dataset.runs_of(subject, session) if r.n_trials != 0]

    def session_runs(self, wc: Any) -> list[Run]:
        """:meth:`session_runs_of` the session of a session-level job."""
        return self.session_runs_of(*self.session_of(wc))

    def session_key(self, subject: str | None, session: str | None) -> tuple[str, str]:
        return reg.session_key(subject, session, self.task())

    def subject_of(self, wc: Any) -> str:
        """Subject of a subject-level GLM job (from ``sub_prefix``)."""
        return strip_label(wc.sub_prefix.split("_")[0], "sub")

    def space(self) -> str | None:
        """Space label of the resampled echoes and everything fitted on them: "T1w", or None
        (spatial preprocessing off, or native grid)."""
        spatial = self.config["spatial"]
        return "T1w" if spatial["enabled"] and spatial["output_space"] == "T1w" else None

    def seed(self) -> int:
        return int(self.config["seed"])

    # -----------------------------------------------------------------------------------------
    # echo counts: one rule of a per-run chain per count (echoprep.plan.chains)

    def echo_counts(self) -> list[int]:
        """The numbers of echoes of the dataset's runs, ascending (usually just one).

        ``nordic`` and ``spatial_resample`` run one job per run (and NORDIC variant) for all
        its echoes and list their outputs per echo; as Snakemake outputs cannot depend on
        wildcards, there is one such rule per echo count (:meth:`echo_rule`,
        :meth:`echo_constraints`). Discovery (``check_echo_counts``) numbers every run's
        echoes 1..n; runs may differ in n (a warning when they do within a subject).

        Raises
        ------
        PlanError
            A run whose echoes are not numbered 1..n (discovery refuses such runs).
        """
        return list(self._echo_counts)

    @cached_property
    def _echo_counts(self) -> tuple[int, ...]:
        counts = set()
        for run in self.dataset.runs:
            labels = sorted(int(e.echo) for e in run.echoes)
            if labels != list(range(1, len(labels) + 1)):
                raise PlanError(
                    f"{run_prefix(run.entities)}: expected echoes numbered 1 to {len(labels)}; "
                    f"found echo(es) {labels}. Fix: name the run's echo files echo-1, echo-2, "
                    "... in the order of their echo times"
                )
            counts.add(len(labels))
        return tuple(sorted(counts))

    def echo_rule(self, rule: str, echoes: int) -> str:
        """Name of the ``rule`` (``nordic``, ``spatial_resample``) for runs with ``echoes``
        echoes: ``rule`` itself when every run has the same number of echoes, else
        ``<rule>_<echoes>echoes``."""
        return rule if len(self.echo_counts()) <= 1 else f"{rule}_{echoes}echoes"

    def echo_constraints(self, echoes: int, run_prefix_pattern: str) -> dict[str, str]:
        """Wildcard constraints of the rule for runs with ``echoes`` echoes.

        ``run_prefix`` matches ``run_prefix_pattern``; when runs differ in their number of
        echoes, only the runs with ``echoes`` of them: those of the subjects whose runs all
        have that many (a look-ahead on ``sub-<label>_``) and, by their exact prefix, such
        runs of other subjects (which discovery does not let happen).
        """
        if len(self.echo_counts()) <= 1:
            return {"run_prefix": run_prefix_pattern}
        by_subject: dict[str, set[int]] = {}
        for run in self.dataset.runs:
            by_subject.setdefault(run.subject, set()).add(len(run.echoes))
        whole = sorted(s for s, counts in by_subject.items() if counts == {echoes})
        alternatives = []
        if whole:
            labels = "|".join(re.escape(s) for s in whole)
            alternatives.append(f"(?=sub-(?:{labels})_){run_prefix_pattern}")
        alternatives += [
            re.escape(run_prefix(r.entities))
            for r in self.dataset.runs
            if len(r.echoes) == echoes and len(by_subject[r.subject]) > 1
        ]
        return {"run_prefix": "|".join(f"(?:{a})" for a in alternatives)}

    def reference_echo(self, run: Run) -> EchoFiles:
        """The run's echo that head motion and distortion are estimated on
        (``spatial.reference_echo``)."""
        n = self.config["spatial"]["reference_echo"]
        if n > len(run.echoes):
            raise PlanError(
                f"{run_prefix(run.entities)}: spatial.reference_echo is {n} but the run has "
                f"{len(run.echoes)} echoes; set spatial.reference_echo to 1..{len(run.echoes)}"
            )
        return run.echoes[n - 1]

    # -----------------------------------------------------------------------------------------
    # paths (the output registry)

    def files(
        self, stage: str, key: tuple[str, str], variant: str | None = None, **values: Any
    ) -> Files:
        """Every output of a stage (variant) at ``key``, with sidecars (built once per
        argument set)."""
        memo = (stage, key, variant, tuple(sorted(values.items())))
        found = self._files_memo.get(memo)
        if found is None:
            found = self._files_memo[memo] = self.paths(
                reg.stage_outputs(stage, variant), key, **values
            )
        return dict(found)

    def subject_files(self, stage: str, subject: str, skip: tuple[str, ...] = ()) -> Files:
        """Every output of a subject-level stage with no space entity (anatomy, the
        functional grid) but ``skip``, with sidecars, for a subject or as patterns."""
        memo = (stage, subject, skip)
        found = self._files_memo.get(memo)
        if found is None:
            outs = {n: o for n, o in reg.stage_outputs(stage).items() if n not in skip}
            paths = {n: o.path(self.out, o.subject_key(subject)) for n, o in outs.items()}
            found = self._files_memo[memo] = reg.with_sidecars(paths, outs)
        return dict(found)

    def paths(
        self, outputs: Mapping[str, reg.Output], key: tuple[str, str], **values: Any
    ) -> Files:
        """``name -> path`` of the given outputs at ``key`` (in this config's space), plus
        ``name_json -> sidecar`` for those that have one (built once per argument set)."""
        # (the registry's outputs are module constants: their ids name them)
        memo = (tuple((n, id(o)) for n, o in outputs.items()), key, tuple(sorted(values.items())))
        found = self._paths_memo.get(memo)
        if found is None:
            space = self.space()
            paths = {n: o.path(self.out, key, space=space, **values) for n, o in outputs.items()}
            found = self._paths_memo[memo] = reg.with_sidecars(paths, outputs)
        return dict(found)

    def file(self, output: str, key: tuple[str, str], **values: Any) -> str:
        """One output's path (no sidecar) at ``key``."""
        memo = (output, key, tuple(sorted(values.items())))
        found = self._file_memo.get(memo)
        if found is None:
            found = str(reg.get(output).path(self.out, key, space=self.space(), **values))
            self._file_memo[memo] = found
        return found

    def description(self, folder: str = "{folder}") -> str:
        """A derivative folder's ``dataset_description.json``."""
        return str(self.out / folder / "dataset_description.json")

    def options(self, section: str, **overrides: Any) -> str:
        """A config section (with overrides) as the JSON a rule passes to ``--options-json``.
        The GLM's condition column is the one discovery chose for the whole dataset when the
        config leaves it open (``glm.label_column: null``)."""
        values = {**self.config[section], **overrides}
        if section == "glm" and values.get("label_column") is None:
            values["label_column"] = self.dataset.label_column
        return options_json(values)

    def config_json(self) -> str:
        """The validated config as sorted JSON (recorded in ``dataset_description.json``)."""
        return json.dumps(self.config, sort_keys=True)

    def config_file(self) -> str:
        """``<work_dir>/config/config.json``: :meth:`config_json` as a file (rule
        ``config_snapshot``, rewritten when the config changes). Description and report jobs
        read it (``--config-file``): the JSON stays off their command lines, ``ps`` and logs."""
        return str(Path(self.config["work_dir"]) / "config" / "config.json")

    def source(self) -> str:
        """The raw dataset, as an absolute path."""
        return str(Path(self.config["bids_dir"]).resolve())

    # -----------------------------------------------------------------------------------------
    # sizes (the resource models of echoprep.resources)

    def sdc_method(self, run: Run) -> str:
        """The distortion correction of a run under ``spatial.sdc`` (docs/distortion.md):
        ``"fieldmap"`` (GRE phasediff or Hz map), ``"pepolar"`` (reversed phase-encoding
        pair), ``"phase-framewise"`` (a field per volume from the multi-echo phase) or
        ``"none"`` (off, or the run lacks what the method needs)."""
        spatial = self.config["spatial"]
        choice = spatial["sdc"]
        if not spatial["enabled"] or choice == "none":
            return "none"
        if choice == "phase-framewise":
            with_phase = [e for e in run.echoes if e.phase is not None]
            usable = len(with_phase) >= 2 and run.pe_direction and run.total_readout_time
            return "phase-framewise" if usable else "none"
        if run.fieldmap is None or not spatial["fieldmap"]:
            return "none"
        kind = "pepolar" if run.fieldmap.kind == "epi" else "fieldmap"
        return kind if choice in ("auto", kind) else "none"

    @staticmethod
    def run_size(run: Run) -> res.RunSize:
        nvox = run.shape[0] * run.shape[1] * run.shape[2]
        return res.RunSize(voxels=nvox, volumes=run.n_volumes, echoes=len(run.echoes))

    @staticmethod
    def runs_size(runs: list[Run]) -> res.SessionSize:
        nvox = runs[0].shape[0] * runs[0].shape[1] * runs[0].shape[2]
        return res.SessionSize(
            voxels=nvox,
            volumes=tuple(r.n_volumes for r in runs),
            trials=sum(events_rows(r.events) for r in runs if r.events),
        )

    def job_run_size(self, wc: Any) -> res.RunSize:
        return self.run_size(self.job_run(wc))

    def work_scale(self, scale: str | None, wc: Any) -> float:
        """Voxel-volumes a job reads relative to the LAION-fMRI run (``scale="run"``) or
        session (``"session"``, ``"subject"``: every session of the subject) of
        :mod:`echoprep.resources`; 1 for rules whose work does not grow with the data."""
        if scale == "run":
            size = self.job_run_size(wc)
            return size.voxels * size.volumes / res.LAION_RUN.voxel_volumes
        if scale in ("session", "subject"):
            runs = (
                self.session_runs(wc)
                if scale == "session"
                else self.dataset.subject_runs(self.subject_of(wc))
            )
            ses = self.runs_size(runs)
            return ses.voxels * ses.total_volumes / res.LAION_SESSION_VOXEL_VOLUMES
        return 1.0


__all__ = [
    "Files",
    "PlanContext",
    "PlanError",
    "RuleHooks",
    "events_rows",
    "strip_label",
    "words",
]
