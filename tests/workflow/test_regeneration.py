"""What a rerun recomputes after the dataset or the configuration changed (dry runs).

A generated header-only BIDS tree stands in for a finished run: every output of the DAG is
created empty and ``snakemake --touch --forceall`` records Snakemake's metadata for it (code,
input, params, software-env: what ``--rerun-triggers`` compares), in DAG order, so that a dry
run of the unchanged workflow has "Nothing to be done". Then the dataset or the config changes
and the dry run must schedule exactly what depends on the change. Expected sets are computed
from the job graph (inputs/outputs of a ``--forceall`` dry run), so that new stages are covered
without editing these tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from helpers.bidstree import make_bids_tree
from helpers.demo import preserved
from helpers.snake import ROOT, Job, parse_jobs, rule_blocks, snakemake

#: Rules whose params hold the whole validated config (``ctx.config_json()`` in their family's
#: method: config_snapshot, which writes it to a file), so any config change reruns them
#: ("Params have changed").
CONFIG_PARAM_RULES = frozenset(
    name for name, block in rule_blocks().items() if "self.ctx.config_json()" in block
)
#: ... and the rules that read that file (``ctx.config_file()``: dataset_description.json and
#: the reports record the config), rerun because it was rewritten; cheap jobs.
CONFIG_RECORDING_RULES = CONFIG_PARAM_RULES | frozenset(
    name for name, block in rule_blocks().items() if "self.ctx.config_file()" in block
)
#: Reasons that mean a job's own definition changed (Snakemake 9 wording).
PROVENANCE_CHANGE = r"(Params have|Code has|Software environment definition has) changed"
#: Jobs without outputs that every rerun schedules.
TARGET_RULES = frozenset({"all"})


class Tree:
    """A finished (touched) workflow on a generated BIDS tree, run from its own folder."""

    def __init__(self, root: Path, bids: Path) -> None:
        self.root = root
        self.bids = bids
        self.cwd = root / "run"
        self.cwd.mkdir(exist_ok=True)
        self.config = {"bids_dir": bids, "output_dir": root / "out", "work_dir": root / "work"}

    def snakemake(self, *args: str, configfiles: Sequence[Path] = ()):
        # the Snakefile's `configfile: "config/config.yaml"` is relative to the working folder
        files = [str(ROOT / "config" / "config.yaml"), *[str(f) for f in configfiles]]
        return snakemake("--configfile", *files, *args, config=self.config, cwd=self.cwd)

    def dry_run(self, *args: str, configfiles: Sequence[Path] = ()) -> str:
        res = self.snakemake("-n", *args, configfiles=configfiles)
        out = res.stdout + res.stderr
        assert res.returncode == 0, out
        return out

    def finish(self) -> None:
        """Pretend every job ran: empty outputs, then Snakemake's own metadata and mtimes."""
        summary = self.snakemake("--detailed-summary")
        assert summary.returncode == 0, summary.stderr
        outputs = [line.split("\t")[0] for line in summary.stdout.splitlines()[1:] if line]
        assert outputs
        for f in outputs:
            Path(f).parent.mkdir(parents=True, exist_ok=True)
            Path(f).touch()
        touched = self.snakemake("--touch", "--forceall", "--cores", "1")
        assert touched.returncode == 0, touched.stdout + touched.stderr
        out = self.dry_run()
        assert "Nothing to be done" in out and "missing provenance" not in out, out


def _key(job: Job) -> tuple[str, tuple[str, ...]]:
    return job.rule, tuple(sorted(job.output))


def _keys(jobs: Iterable[Job]) -> set[tuple[str, tuple[str, ...]]]:
    return {_key(j) for j in jobs}


def _descendants(graph: list[Job], seeds: list[Job]) -> list[Job]:
    """Jobs that (transitively) read an output of a seed job."""
    found: dict[tuple[str, tuple[str, ...]], Job] = {}
    frontier = {f for job in seeds for f in job.output}
    while frontier:
        nxt: set[str] = set()
        for job in graph:
            if _key(job) not in found and frontier & set(job.input):
                found[_key(job)] = job
                nxt |= set(job.output)
        frontier = nxt
    return list(found.values())


def _config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "change.yaml"
    path.write_text(text)
    return path


def _mentions(job: Job, pattern: str) -> bool:
    return any(re.search(pattern, f) for f in job.output)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tree, list[Job]]:
    """Two subjects x one session x two runs, finished; and the full job graph. Tests that
    change the dataset restore it (``preserved``), so that the others see it unchanged."""
    root = tmp_path_factory.mktemp("regen")
    bids = make_bids_tree(
        root / "bids", subjects=("01", "02"), sessions=("01",), runs=("01", "02"), data=False
    )
    tree = Tree(root, bids)
    tree.finish()
    return tree, parse_jobs(tree.dry_run("--forceall"))


# --------------------------------------------------------------------------------------
# new subjects and sessions
# --------------------------------------------------------------------------------------


def _check_only_new_unit_scheduled(tree: Tree, new: str, others: Sequence[str]) -> None:
    """``new``/``others``: regexes on output paths of a unit (subject or session)."""
    out = tree.dry_run()
    scheduled = parse_jobs(out)
    graph = parse_jobs(tree.dry_run("--forceall"))
    new_jobs = [j for j in graph if _mentions(j, new)]
    assert new_jobs, f"no job in the DAG writes outputs matching {new}"
    missing = _keys(new_jobs) - _keys(scheduled)
    assert not missing, f"jobs of the new data not scheduled: {sorted(missing)}"
    scheduled_outputs = {f for job in scheduled for f in job.output}
    for job in scheduled:
        if job.rule in TARGET_RULES or _mentions(job, new):
            continue
        # anything else must aggregate the new data (a subject-level summary of that subject,
        # a group-level one), never be another unit's own job
        assert not any(_mentions(job, o) for o in others), (job.rule, job.output, job.reason)
        assert re.search(r"updated by another job|Set of input files has changed", job.reason), (
            job.rule,
            job.reason,
        )
        # ... and it reads the new data, directly or through another rescheduled job
        reads_new = any(re.search(new, f) for f in job.input)
        assert reads_new or set(job.input) & scheduled_outputs, (job.rule, job.output)
    for job in scheduled:  # nothing reruns because its params, code or environment changed
        assert not re.search(PROVENANCE_CHANGE, job.reason), (job.rule, job.output, job.reason)


def test_new_subject_schedules_only_its_jobs(finished):
    """Outputs of sub-01/sub-02 exist; adding sub-03 schedules sub-03's jobs only."""
    tree, _ = finished
    with preserved(tree.bids):
        make_bids_tree(tree.bids, subjects=("03",), sessions=("01",), runs=("01", "02"), data=False)
        _check_only_new_unit_scheduled(tree, r"sub-03[/_]", [r"sub-01[/_]", r"sub-02[/_]"])


def test_new_session_schedules_only_its_jobs(finished):
    """A ses-02 of sub-01 (functional runs only: the T1w stays in ses-01) schedules that
    session's jobs, plus subject-level aggregates of sub-01 if the workflow has any, and
    nothing of ses-01 or of sub-02."""
    tree, _ = finished
    with preserved(tree.bids):
        make_bids_tree(
            tree.bids, subjects=("01",), sessions=("02",), runs=("01",), t1w=False, data=False
        )
        _check_only_new_unit_scheduled(
            tree, r"sub-01[/_]ses-02[/_]", [r"ses-01[/_]", r"sub-02[/_]"]
        )


# --------------------------------------------------------------------------------------
# parameter changes
# --------------------------------------------------------------------------------------


CHANGES = {
    # yaml -> rules whose own params change. A per-run chain (echoprep.plan.chains) reruns as
    # a whole: with the default config both chains (nordic, spatial_resample) fold optcom,
    # and the raw side's folds the single echo, which the NORDIC side runs on its own.
    "tedana:\n  tedpca: kic\n": {"tedana", "tedana_nordic"},
    "nordic:\n  factor_error: 1.5\n": {"nordic"},
    "optcom:\n  fittype: curvefit\n": {"nordic", "spatial_resample"},
    "single_echo:\n  echo: 1\n": {"single_echo", "spatial_resample"},
    # every rule that passes the seed on (NORDIC, tedana, anatomy, GLM, ... as stages come)
    "seed: 7\n": {n for n, b in rule_blocks().items() if "self.ctx.seed()" in b},
}


@pytest.mark.parametrize("change", CHANGES, ids=[c.split(":")[0] for c in CHANGES])
def test_parameter_change_reruns_the_stage_and_its_descendants_only(finished, tmp_path, change):
    tree, graph = finished
    out = tree.dry_run(configfiles=[_config_file(tmp_path, change)])
    scheduled = parse_jobs(out)
    seeds = [j for j in graph if j.rule in CHANGES[change]]
    assert seeds
    expected = (
        _keys(seeds)
        | _keys(_descendants(graph, seeds))
        | _keys(j for j in graph if j.rule in CONFIG_RECORDING_RULES | TARGET_RULES)
    )
    got = _keys(scheduled)
    # unexpected jobs by rule, with Snakemake's reason (e.g. "Missing output files" of a
    # temp() intermediate that has to be made again, whose other readers then rerun too)
    unexpected = sorted(
        {(j.rule, j.reason.split(":")[0]) for j in scheduled if _key(j) not in expected}
    )
    assert got == expected, {"unexpected": unexpected, "missing": sorted(expected - got)}
    downstream = _keys(_descendants(graph, seeds))
    for job in scheduled:  # (a job that is also downstream of a changed one may say so instead)
        if job.rule in CHANGES[change] | CONFIG_PARAM_RULES and _key(job) not in downstream:
            assert "Params have changed" in job.reason, (job.rule, job.reason)


def test_nordic_change_reaches_the_nordic_off_variant_only_through_the_geometry(finished, tmp_path):
    """The raw (NORDIC off) jobs never read NORDIC's outputs: a NORDIC option reruns them only
    because the NORDIC chain, whose first step is each run's geometry, rewrites the geometry
    the raw chain reads (echoprep.plan.chains; the price of one job per ordinary run)."""
    tree, graph = finished
    out = tree.dry_run(configfiles=[_config_file(tmp_path, "nordic:\n  factor_error: 1.5\n")])
    scheduled = parse_jobs(out)
    assert any("combine-nordic" in f for j in scheduled for f in j.output)
    raw_chains = [j for j in scheduled if j.rule == "spatial_resample"]
    assert raw_chains
    for job in raw_chains:
        assert not any("/nordic/" in f or "/preproc-nordic/" in f for f in job.input), job.input
        assert "Params have changed" not in job.reason
        # the only NORDIC-chain output it reads: its run's geometry
        nordic_outputs = {f for j in graph if j.rule == "nordic" for f in j.output}
        assert {f for f in job.input if f in nordic_outputs} == {
            f for f in job.input if f.endswith("_desc-geometry_xfm.npz")
        }


def test_nordic_tedpca_change_reruns_only_the_nordic_ica(finished, tmp_path):
    """tedana.nordic_tedpca is a parameter of the NORDIC runs' ICA-denoised jobs only."""
    tree, _ = finished
    out = tree.dry_run(configfiles=[_config_file(tmp_path, "tedana:\n  nordic_tedpca: same\n")])
    ica = [j for j in parse_jobs(out) if j.rule in ("tedana", "tedana_nordic")]
    assert ica and all("/combine-nordic/" in j.output[0] for j in ica)
    # "same" also gives them the optcom input the capped aic estimate needs
    assert all("Params have changed" in j.reason or "input files" in j.reason for j in ica)
    # no job of the NORDIC-off side; the planted runs, which read the NORDIC runs' ICA too,
    # write both sides' planted series into the work folder (their own job)
    jobs = parse_jobs(out)
    raw = [j for j in jobs if any("/out/combine-raw/sub-" in f for f in j.output)]
    assert not raw and any(j.rule == "planted_run" for j in jobs)


def test_unchanged_config_in_another_key_order_reruns_nothing(finished, tmp_path):
    """The same values written differently (another order, defaults spelled out) are no change."""
    tree, _ = finished
    same = _config_file(tmp_path, "tedana:\n  tree: tedana_orig\n  tedpca: aic\nseed: 0\n")
    assert "Nothing to be done" in tree.dry_run(configfiles=[same])
