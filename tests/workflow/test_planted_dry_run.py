"""The planted pass in dry runs: which sessions are planted, each planted run's chain of
commands, and what the NORDIC-off configuration leaves out (docs/comparison.md, "Responses
planted in your data")."""

from __future__ import annotations

from helpers.bidstree import make_bids_tree
from helpers.snake import dry_run, job_counts, parse_jobs, shell_commands


def _tree(tmp_path):
    bids = make_bids_tree(
        tmp_path / "bids", subjects=("01",), sessions=("01", "02"), runs=("01", "02"), data=False
    )
    return {"bids_dir": bids, "output_dir": tmp_path / "out", "work_dir": tmp_path / "work"}


def _first_only(tmp_path, text: str = "") -> list[str]:
    """Arguments that compare session 01 only (the default compares the first two), with
    ``text`` (more config) in the same file."""
    extra = tmp_path / "first_only.yaml"
    extra.write_text('comparison:\n  sessions: ["01"]\n' + text)
    return ["--configfile", str(extra)]


def _planted_steps(out: str) -> list[str]:
    """The steps of the planted runs' jobs (their log is under logs/planted/)."""
    steps = []
    for command in ("planted", "nordic", "spatial"):
        steps += [c for c in shell_commands(out, command) if "/logs/planted/" in c]
    return steps


def test_only_the_comparison_session_is_planted_with_one_resampling_per_side(tmp_path):
    """Session 01 the only comparison session: one design, one planted job per run, one
    frozen fit per variant; session 02 gets none. A planted run: the planted
    echoes (half their difference, and both signs for NORDIC's companions), NORDIC with the
    raw echoes' decisions, the half difference of its two outputs, one resampling per side
    (of its half difference), one command per side for its variants' planted series, its
    folder removed."""
    out = dry_run(_tree(tmp_path), "--printshellcmds", *_first_only(tmp_path))
    counts = job_counts(out)
    assert (counts["planted_design"], counts["planted_run"], counts["planted_glm"]) == (1, 2, 6)
    jobs = [j for j in parse_jobs(out) if j.rule.startswith("planted")]
    assert all("ses-02" not in f for j in jobs for f in j.output)
    steps = _planted_steps(out)
    per_run = {
        "planted echoes": 1,
        "-m echoprep nordic ": 1,
        "planted half": 1,
        "spatial resample": 2,
        "planted difference": 2,
    }
    for what, n in per_run.items():
        assert sum(what in s for s in steps) == 2 * n, what
    echoes = [s for s in steps if "planted echoes" in s]
    assert all(" --difference " in s and " --plus " in s and " --minus " in s for s in echoes)
    nordic = [s for s in steps if "-m echoprep nordic " in s]
    assert all("--companions" in s and "--out-companions" in s for s in nordic)
    # the resampling reads each side's half difference, never a signed set
    resample = [s for s in steps if "spatial resample" in s]
    assert all("-diff/echo-" in s and "-plus/" not in s for s in resample)
    # a variant's planted series is read from its side's resampled half difference
    diffs = [s for s in steps if "planted difference" in s]
    assert all("-diff-grid/echo-" in s for s in diffs)
    # one command per side writes its three variants' series
    assert sum("--side nordic" in s and "--mixing" in s for s in diffs) == 2
    assert all(all(f" {c}=" in s for c in ("single", "optcom", "denoised")) for s in diffs)
    # the design estimates the response shape from the reference fit's series of every run
    (design,) = [c for c in shell_commands(out, "planted design")]
    series = design.split(" --series ")[1].split(" --")[0].split()
    assert len(series) == 2 and all("desc-single_bold" in s and "ses-01" in s for s in series)
    assert " --run-labels 01 02 " in design


def test_without_nordic_the_planted_runs_plant_only_the_difference(tmp_path):
    """NORDIC off: no companions, so the planted echoes are written only as their half
    difference, resampled once, and three variants read it."""
    cfg = _tree(tmp_path)
    text = "nordic:\n  enabled: false\npublish:\n  laion: false\n"
    out = dry_run(cfg, "--printshellcmds", *_first_only(tmp_path, text))
    assert job_counts(out)["planted_glm"] == 3
    steps = _planted_steps(out)
    assert not [s for s in steps if "nordic " in s.split("2>")[0] or "planted half" in s]
    echoes = [s for s in steps if "planted echoes" in s]
    assert len(echoes) == 2 and all(" --plus " not in s for s in echoes)
    assert sum("spatial resample" in s for s in steps) == 2


def _sources(design: str) -> list[str]:
    """The ``--source-betas`` words of a design command."""
    return design.split(" --source-betas ")[1].split(" --source-trials")[0].split()


def test_two_comparison_sessions_give_each_other_their_planted_responses(tmp_path):
    """comparison.sessions 01 and 02 (comparison.planted.source other_sessions, the default;
    the default sessions are the first two, so the same without naming them): each session's
    design reads the other's reference type-B betas and trials, and each planted run's NORDIC
    takes its map from the design (the tangent map for responses from another session).
    source: session or other_runs, or one comparison session: no sources."""
    cfg = _tree(tmp_path)
    extra = tmp_path / "two.yaml"
    extra.write_text('comparison:\n  sessions: ["01", "02"]\n')
    out = dry_run(cfg, "--printshellcmds", "--configfile", str(extra))
    designs = shell_commands(out, "planted design")
    assert len(designs) == 2
    for design in designs:
        own = "ses-01" if "sub-01_ses-01_task" in design.split(" --out ")[1] else "ses-02"
        other = "ses-02" if own == "ses-01" else "ses-01"
        (betas,) = _sources(design)
        assert other in betas and "desc-SingletrialBetasTypeB" in betas
        trials = design.split(" --source-trials ")[1].split(" --out")[0].split()
        assert len(trials) == 1 and other in trials[0] and trials[0].endswith("_trials.tsv")
    nordic = [s for s in _planted_steps(out) if "-m echoprep nordic " in s]
    assert len(nordic) == 4
    assert all("--companion-map $(python -m echoprep planted map --design " in s for s in nordic)
    for source in ("session", "other_runs"):
        extra.write_text(
            f'comparison:\n  sessions: ["01", "02"]\n  planted:\n    source: {source}\n'
        )
        out = dry_run(cfg, "--printshellcmds", "--configfile", str(extra))
        assert all(_sources(d) == [] for d in shell_commands(out, "planted design"))
    default = shell_commands(dry_run(cfg, "--printshellcmds"), "planted design")
    assert sorted(map(_sources, default)) == sorted(map(_sources, designs))
    (design,) = shell_commands(
        dry_run(cfg, "--printshellcmds", *_first_only(tmp_path)), "planted design"
    )
    assert _sources(design) == []
