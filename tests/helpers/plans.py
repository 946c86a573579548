"""A :class:`echoprep.plan.Plan` for a config and a BIDS tree, without Snakemake (as
``workflow/rules/common.smk`` builds it)."""

from __future__ import annotations

from pathlib import Path

from echoprep.config import validate_config
from echoprep.io.bids import discover
from echoprep.plan import Plan, discovery_options


def plan_config(bids: Path, tmp: Path, **config) -> dict:
    """The config :func:`make_plan` validates (before defaults): also what a Snakemake run
    given it as ``--configfile`` plans with, so that its jobs are the plan's."""
    return {
        "bids_dir": str(bids),
        "output_dir": str(tmp / "out"),
        "work_dir": str(tmp / "w"),
        **config,
    }


def make_plan(bids: Path, tmp: Path, **config) -> Plan:
    """The plan of ``config`` (defaults for the rest) on the dataset ``bids``; outputs, work
    and the BIDS index cache below ``tmp``."""
    cfg = validate_config(plan_config(bids, tmp, **config))
    dataset = discover(cfg["bids_dir"], **discovery_options(cfg), cache_dir=tmp / "w" / "idx")
    return Plan(cfg, dataset)
