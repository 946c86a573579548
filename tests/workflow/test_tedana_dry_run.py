"""Dry runs: the NORDIC run's ICA-denoised job takes its component count from the same run's
NORDIC-off job (tedana.nordic_tedpca: raw_run), and only then."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers.bidstree import make_bids_tree
from helpers.snake import dry_run, options_of, parse_jobs, shell_commands


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
    commands = shell_commands(out, "combine denoised")
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
    # the dependency on the raw ICA-denoised job: its mixing matrix, whose sidecar (written
    # by that job, not declared) the command names
    raw_mixing = next(f for f in raw_job.output if f.endswith("_desc-ICA_mixing.tsv"))
    assert raw_mixing in nordic_job.input
    raw_sidecar = raw_mixing.removesuffix(".tsv") + ".json"
    assert raw_sidecar not in raw_job.output
    assert f" --nordic --raw-components {raw_sidecar} " in nordic_cmd
    assert " --nordic" not in raw_cmd and "--raw-components" not in raw_cmd
    # the raw run reads only its echoes (tedana's own PCA estimates aic/kic/mdl; the job caps)
    assert not [f for f in raw_job.input if "/combine-" in f]
    assert "--optcom" not in raw_cmd + nordic_cmd
    # the whole tedana section as --options-json; the NORDIC-off run's omits nordic_tedpca
    # (changing it reruns only the NORDIC runs' jobs)
    raw_opts, nordic_opts = options_of(raw_cmd), options_of(nordic_cmd)
    assert nordic_opts["nordic_tedpca"] == "raw_run" and "nordic_tedpca" not in raw_opts
    assert nordic_opts == {**raw_opts, "nordic_tedpca": "raw_run"}
    assert raw_opts["tedpca"] == "aic" and raw_opts["tree"] == "tedana_orig"
    assert raw_opts["maxrestart"] == 3


@pytest.mark.parametrize(("value", "expected"), [("same", "same"), ("20", 20)])
def test_other_choices_leave_the_jobs_independent(tmp_path, one_run, value, expected):
    found = _tedana(tmp_path, one_run, f"tedana:\n  nordic_tedpca: {value}\n")
    nordic_job, nordic_cmd = found["nordic"]
    _, raw_cmd = found["raw"]
    assert not any("/combine-raw/" in f for f in nordic_job.input)
    assert options_of(nordic_cmd)["nordic_tedpca"] == expected
    assert "nordic_tedpca" not in options_of(raw_cmd)
    assert " --nordic " in nordic_cmd and "--raw-components" not in nordic_cmd
