"""The workflow's per-rule ``mem_mb`` and ``runtime`` against what the rules were measured to
need on a LAION-fMRI-size session (``benchmarks/laion_session.json``, written by
``benchmarks/laion_session.py --json``).

For every measured rule, the request the plan makes at the first attempt on a header-only
dataset of the measured geometry must cover the measurement with headroom, and not waste a
cluster allocation: ``MEM_HEADROOM x peak <= mem_mb <= MEM_WASTE x peak + 1 GB`` and
``TIME_HEADROOM x wall <= runtime <= TIME_WASTE x wall + 15 min``; both grow with ``attempt``.

``nordic`` and ``spatial_resample`` were measured one job per echo (the table of 2026-11-24);
they now run one job per run (and NORDIC variant) that treats the run's echoes one after
another. Such a job's peak memory is one echo's, the measured per-echo peak; its wall time is
the measured per-echo wall times the echoes (:data:`JOBS_PER_RUN`, :func:`_measured_jobs_per_job`:
a table measured with the per-run jobs gives a factor of 1).

They are also per-run chains now (:mod:`echoprep.plan.chains`): one job runs several steps
that the table measured as rules of their own (``nordic`` = NORDIC, resampling, optcom). A
row without ``steps`` is one step: a chain is checked against its steps' rows (the most
memory of one, the sum of their wall times); a row with ``steps`` was measured as the chain.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers.bidstree import EVENTS_COLUMNS, events_path, make_bids_tree
from helpers.plans import make_plan

TABLE = Path(__file__).resolve().parents[2] / "benchmarks" / "laion_session.json"
MEM_HEADROOM = 1.2
MEM_WASTE = 2.5
TIME_HEADROOM = 2.0
TIME_WASTE = 4.0
#: Rules measured by the benchmark that take the profile's default resources (no model).
DEFAULT_RESOURCES = {"dataset_description"}
#: Jobs per run of the rules whose jobs treat every echo of a run (the default config: one
#: per run, one per run and NORDIC variant); the table may hold them measured per echo.
JOBS_PER_RUN = {"nordic": 1, "spatial_resample": 2}


@pytest.fixture(scope="module")
def measured() -> dict:
    return json.loads(TABLE.read_text())


@pytest.fixture(scope="module")
def plan(measured, tmp_path_factory):
    geo = measured["geometry"]
    tmp = tmp_path_factory.mktemp("laion")
    runs = [f"{r:02d}" for r in range(1, geo["runs_per_session"] + 1)]
    bids = make_bids_tree(
        tmp / "bids",
        runs=runs,
        shape=geo["shape"],
        n_volumes=geo["volumes_per_run"],
        data=False,
        fieldmap=True,
    )
    for i, run in enumerate(runs):
        rows = [
            f"{k * 3.0 + 9:.1f}\t2.5\t{'new' if i == 0 else 'old'}\timg{k % 100:04d}"
            for k in range(geo["trials_per_run"])
        ]
        events_path(bids, run=run).write_text(
            "\t".join(EVENTS_COLUMNS) + "\n" + "\n".join(rows) + "\n"
        )
    return make_plan(bids, tmp)


WC = SimpleNamespace(
    run_prefix="sub-01_ses-01_task-images_run-01",
    run_dir="sub-01/ses-01/func",
    nordic="nordic",
    combine="denoised",
    ses_prefix="sub-01_ses-01_task-images",
    subject="01",
    session="01",
    sub_prefix="sub-01",
    nrep="2",
)


def _rows(measured: dict) -> list[dict]:
    return [r for r in measured["rules"] if r["rule"] not in DEFAULT_RESOURCES]


def _measured_jobs_per_job(measured: dict, row: dict, plan) -> int:
    """How many measured jobs one job of the rule now is: the echoes of a run for the rules
    measured per echo (``nordic``, ``spatial_resample`` in the table of 2026-11-24), else 1."""
    if row["rule"] not in JOBS_PER_RUN:
        return 1
    per_run = row["jobs_per_session"] / measured["geometry"]["runs_per_session"]
    factor = per_run / JOBS_PER_RUN[row["rule"]]
    echoes = len(plan.ctx.run_of(WC).echoes)
    assert factor in (1, echoes), (row["rule"], factor)
    return int(factor)


def test_the_table_is_a_laion_size_session(measured):
    geo = measured["geometry"]
    assert geo["preset"] == "laion"
    assert geo["shape"] == [90, 110, 72] and geo["volumes_per_run"] == 163
    assert geo["runs_per_session"] == 12
    rules = {r["rule"] for r in measured["rules"]}
    for rule in ("nordic", "spatial_run", "spatial_resample", "single_echo", "optcom"):
        assert rule in rules
    assert {"tedana", "tedana_nordic", "glm", "anatomy"} <= rules


def _steps(measured: dict, row: dict, plan) -> list[dict]:
    """The measured rows one job of the row's rule runs: its chain's steps (module docstring),
    or the row itself."""
    if "steps" in row:
        return [row]
    by_rule = {r["rule"]: r for r in measured["rules"]}
    return [by_rule[s] for s in plan.rule_steps(row["rule"])]


def test_memory_requests_cover_the_measured_peaks_without_waste(measured, plan):
    problems = []
    for row in _rows(measured):
        # a job per run of a rule measured per echo holds one echo at a time: the same peak;
        # a chain's steps run one after another: the largest step's peak
        peak_mb = max(r["peak_gib_max"] for r in _steps(measured, row, plan)) * 2**30 / 1e6
        mem_mb = plan.mem_mb(row["rule"])
        mem1 = mem_mb(WC, 1)
        if not MEM_HEADROOM * peak_mb <= mem1 <= MEM_WASTE * peak_mb + 1000:
            problems.append(f"{row['rule']}: measured {peak_mb:.0f} MB, requests {mem1} MB")
        assert mem_mb(WC, 2) > mem1, row["rule"]
    assert not problems, "\n".join(problems)


def test_runtime_requests_cover_the_measured_wall_time_without_waste(measured, plan):
    problems = []
    for row in _rows(measured):
        # a job per run of a rule measured per echo: its echoes' wall times one after another;
        # a chain: its steps' one after another
        wall_min = sum(
            r["wall_s_max"] / 60 * _measured_jobs_per_job(measured, r, plan)
            for r in _steps(measured, row, plan)
        )
        runtime = plan.runtime(row["rule"])
        run1 = runtime(WC, 1)
        if not TIME_HEADROOM * wall_min <= run1 <= TIME_WASTE * wall_min + 15:
            problems.append(f"{row['rule']}: measured {wall_min:.1f} min, requests {run1} min")
        assert runtime(WC, 2) > run1, row["rule"]
    assert not problems, "\n".join(problems)


#: Rules with a resource model that the benchmark cannot run, and why.
NOT_MEASURED = {
    "rois_mask": "needs user ROI masks (rois.dir); the benchmark's config has none",
    # the laion_session benchmark's dataset has no FreeSurfer folder; benchmarks/surface.py
    # measures the surface step at LAION size (README cost table, docs/surface.md)
    "surface_anatomy": "needs a FreeSurfer folder; measured by benchmarks/surface.py",
    "surface_session": "needs a FreeSurfer folder; measured by benchmarks/surface.py",
    "surface_subject": "needs a FreeSurfer folder; measured by benchmarks/surface.py",
    "surface_bold": "needs a FreeSurfer folder and surface.bold; as surface_session per volume",
    "publish_surface": "needs a FreeSurfer folder; links, as publish_session",
    # added by issue 50 after the last laion_session run: benchmarks/planted_cost.py measures
    # their new steps at LAION size and benchmarks/laion_dataset.py prices them from it
    "planted_design": "newer than laion_session.json; priced as rois_visual (reads one fit)",
    "planted_run": "newer than laion_session.json; measured by benchmarks/planted_cost.py",
    "planted_glm": "newer than laion_session.json; measured by benchmarks/planted_cost.py",
}


def _modelled(plan) -> set[str]:
    """The rules with a resource model: every rule whose definition has a memory model (an
    in-process rule has none, and no resources)."""
    return {r for r in plan.rule_names() if plan.definition(r).memory is not None}


def test_every_rule_with_a_resource_model_was_measured(measured, plan):
    """A rule added (or renamed) without re-running the benchmark fails here instead of
    passing the two checks above unchecked."""
    modelled = _modelled(plan)
    assert not modelled & DEFAULT_RESOURCES  # they take the profile's defaults
    rows = {r["rule"] for r in measured["rules"]}
    missing = sorted(modelled - rows - set(NOT_MEASURED))
    assert missing == [], (
        f"no row in {TABLE.name} for {missing}: re-run benchmarks/laion_session.py --runs 1 "
        f"--json {TABLE.relative_to(TABLE.parents[1])}, or name the rule in NOT_MEASURED with "
        "the reason"
    )
    assert set(NOT_MEASURED) <= modelled  # no stale entries


def test_the_measured_session_meets_the_targets(measured):
    totals = measured["totals"]
    assert totals["max_job_peak_gib"] <= 16
    assert totals["max_run_rule_minutes"] <= 10
