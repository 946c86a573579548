"""Dry runs: the NORDIC run's ICA-denoised job takes its component count from the same run's
NORDIC-off job (tedana.nordic_tedpca: raw_run), and only then."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers.bidstree import make_bids_tree
from helpers.snake import dry_run, parse_jobs


@pytest.fixture
def one_run(tmp_path):
    return make_bids_tree(tmp_path / "bids", runs=("01",), data=False)


def _tedana(tmp_path: Path, bids: Path, tedana_yaml: str | None = None):
    """(jobs, shell command) of every tedana job, by NORDIC variant."""
    extra = []
    if tedana_yaml is not None:
        cfg = tmp_path / "tedana.yaml"
        cfg.write_text(tedana_yaml)
        extra = ["--configfile", str(cfg)]
    out = dry_run(
        {"bids_dir": bids, "output_dir": tmp_path / "out", "work_dir": tmp_path / "work"},
        "--printshellcmds",
        *extra,
    )
    jobs = {j.wildcards: j for j in parse_jobs(out) if j.rule in ("tedana", "tedana_nordic")}
    commands = re.findall(
        r"^(?:Shell command: )?(python -m echoprep combine denoised .*)$", out, re.M
    )
    found = {}
    for wildcards, job in jobs.items():
        nordic = re.search(r"nordic=(\w+)", wildcards).group(1)
        out_dir = str(tmp_path / "out" / f"combine-{nordic}")
        (cmd,) = [c for c in commands if f"--out bold={out_dir}/" in c]
        found[nordic] = (job, cmd)
    return found


def test_nordic_run_reads_the_component_count_of_the_raw_run(tmp_path, one_run):
    found = _tedana(tmp_path, one_run)
    raw_job, raw_cmd = found["raw"]
    nordic_job, nordic_cmd = found["nordic"]
    raw_sidecar = next(f for f in raw_job.output if f.endswith("_desc-ICA_mixing.json"))
    assert raw_sidecar in nordic_job.input  # the dependency on the raw ICA-denoised job
    assert f"--tedpca aic --nordic-tedpca raw_run --raw-components {raw_sidecar}" in nordic_cmd
    assert "--tedpca aic --tree" in raw_cmd and "--nordic-tedpca" not in raw_cmd
    assert not any("/combine-" in f for f in raw_job.input)
    assert "--maxrestart 3" in raw_cmd and "--maxrestart 3" in nordic_cmd


@pytest.mark.parametrize(("value", "flag"), [("same", "same"), ("20", "20")])
def test_other_choices_leave_the_jobs_independent(tmp_path, one_run, value, flag):
    found = _tedana(tmp_path, one_run, f"tedana:\n  nordic_tedpca: {value}\n")
    nordic_job, nordic_cmd = found["nordic"]
    assert not any("/combine-raw/" in f for f in nordic_job.input)
    assert f"--nordic-tedpca {flag} --tree" in nordic_cmd
    assert "--raw-components" not in nordic_cmd
