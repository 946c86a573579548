"""The console formatting of the Snakemake logger plugin ``echoprep`` on fake log records."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from snakemake_interface_logger_plugins.common import LogEvent

from helpers.snake import parse_jobs
from snakemake_logger_plugin_echoprep import (
    DRY_RUN_HINT,
    TAIL_LINES,
    Console,
    count_job_lines,
    format_job_error,
    job_label,
    log_tail,
    progress_prefix,
)


def _record(msg: str | None = None, level: int = logging.INFO, **extra) -> logging.LogRecord:
    return logging.makeLogRecord({"msg": msg, "levelno": level, **extra})


def _job_info(jobid: int, rule: str, message: str | None, **extra) -> logging.LogRecord:
    fields = {
        "event": LogEvent.JOB_INFO,
        "jobid": jobid,
        "rule_msg": message,
        "rule_name": rule,
        "local": False,
        "is_checkpoint": False,
        "input": ["in.nii.gz"],
        "output": [f"out{jobid}.nii.gz"],
        "log": [f"job{jobid}.log"],
        "benchmark": None,
        "wildcards": {"subject": "01", "echo": "2"},
        "reason": "Missing output files",
        "resources": {"mem_mb": 1000, "_cores": 1},
        "priority": 0,
        "threads": 2,
        "indent": False,
        "shellcmd": "python -m echoprep nordic --options-json '{\"a\": 1}'",
    }
    return _record(f" Rule: {rule}, Jobid: {jobid}", **{**fields, **extra})


def _run_info(total: int) -> logging.LogRecord:
    text = f"Job stats:\njob      count\n-----  -------\nnordic  {total}\ntotal  {total}\n"
    return _record(text, event=LogEvent.RUN_INFO, stats={"nordic": total, "total": total})


def test_job_label_uses_the_message_else_rule_and_wildcards():
    assert job_label("nordic", "NORDIC  sub-01\n echo-2 ", None) == "NORDIC sub-01 echo-2"
    assert job_label("nordic", None, {"subject": "01", "echo": "2"}) == "nordic subject=01 echo=2"
    assert job_label("all", "", {}) == "all"


@pytest.mark.parametrize(("index", "total", "text"), [(3, 79, "[ 3/79]"), (79, 79, "[79/79]")])
def test_progress_prefix_is_right_aligned_to_the_total(index, total, text):
    assert progress_prefix(index, total) == text
    assert progress_prefix(index, None) == f"[{index}]"


def test_compact_console_prints_one_line_per_job_with_a_progress_count():
    console = Console(detail=False)
    lines = []
    records = [
        _record("Building DAG of jobs..."),
        _record("Using shell: /usr/bin/bash"),
        _run_info(3),
        _record("Select jobs to execute..."),
        _record("Execute 1 jobs...", event=LogEvent.JOB_STARTED, jobs=[1]),
        _job_info(1, "nordic", "NORDIC sub-01 echo-1"),
        _record("Shell command: x", event=LogEvent.SHELLCMD, shellcmd="x"),
        _record("Finished jobid: 1", event=LogEvent.JOB_FINISHED, job_id=1),
        _record(None, event=LogEvent.PROGRESS, done=1, total=3),
        _job_info(2, "nordic", "NORDIC sub-01 echo-2"),
        _job_info(3, "all", None, wildcards={}),
        _record(None, event=LogEvent.PROGRESS, done=3, total=3),
        _record("Complete log(s): /x/.snakemake/log/a.snakemake.log"),
    ]
    for record in records:
        text = console.format(record)
        if text is not None:
            lines += text.splitlines()
    job_lines = [line for line in lines if line.startswith("[")]
    assert job_lines == ["[1/3] NORDIC sub-01 echo-1", "[2/3] NORDIC sub-01 echo-2", "[3/3] all"]
    assert count_job_lines(lines) == 3
    assert "3 of 3 steps (100%) done" in lines
    assert lines[0] == "Building DAG of jobs..."  # the start (long on large datasets)
    assert lines[-1].startswith("Complete log(s):")
    # routine chatter, shell commands and per-job progress stay in the complete log
    for hidden in ("Select jobs", "Execute 1", "Finished", "1 of 3", "x"):
        assert not any(line.startswith(hidden) for line in lines), hidden
    assert not any('{"' in line for line in lines)


def test_shell_commands_only_with_printshellcmds():
    console = Console(detail=False, printshellcmds=True)
    shell = _record("Shell command: a  b", event=LogEvent.SHELLCMD, shellcmd="a  b")
    assert console.format(shell) == "    $ a b"
    # a rule without a shell command (run:) has none to print
    assert console.format(_record("Shell command: None", event=LogEvent.SHELLCMD)) is None


def test_warnings_and_unknown_messages_are_printed_in_full():
    console = Console(detail=False)
    warning = _record("Warning: something\n  second line", level=logging.WARNING)
    assert console.format(warning) == "Warning: something\n  second line"
    # a routine-looking message at warning level is not chatter
    assert console.format(_record("Select jobs to execute...", level=logging.WARNING))
    assert console.format(_record("Job 5 has been submitted with SLURM jobid 17 (log: x).")) == (
        "Job 5 has been submitted with SLURM jobid 17 (log: x)."
    )


def _error(jobid: int, log: list[str], **extra) -> logging.LogRecord:
    fields = {
        "event": LogEvent.JOB_ERROR,
        "rule_name": "nordic",
        "rule_msg": "exit status 3",
        "jobid": jobid,
        "log": log,
        "shellcmd": "python -m echoprep nordic",
        "conda_env": None,
        "aux": {},
    }
    return _record("Error in rule nordic", level=logging.ERROR, **{**fields, **extra})


def test_failed_job_shows_what_it_did_its_log_path_and_the_logs_last_lines(tmp_path):
    log = tmp_path / "nordic" / "sub-01_echo-2.log"
    log.parent.mkdir()
    log.write_text("".join(f"line {i}\n" for i in range(1, 101)) + "ValueError: bad echo\n")
    console = Console(detail=False)
    console.format(_run_info(2))
    console.format(_job_info(7, "nordic", "NORDIC sub-01 echo-2"))
    text = console.format(_error(7, [str(log)]))
    assert text is not None
    lines = text.splitlines()
    assert lines[0] == "ERROR in NORDIC sub-01 echo-2 (rule nordic, job 7)"
    assert "    error: exit status 3" in lines
    assert "    shell: python -m echoprep nordic" in lines
    assert f"    log {log} (last {TAIL_LINES} of 101 lines):" in lines
    assert lines[-1] == "        | ValueError: bad echo"
    shown = [line for line in lines if line.startswith("        | ")]
    assert len(shown) == TAIL_LINES and shown[0] == f"        | line {101 - TAIL_LINES + 1}"


def test_failed_job_without_its_log_says_so(tmp_path):
    missing = tmp_path / "never.log"
    text = format_job_error(_error(3, [str(missing)]).__dict__, None)
    assert text.splitlines()[0] == "ERROR in nordic (rule nordic, job 3)"
    assert f"log {missing}: not written" in text
    assert "keeps no log" in format_job_error(_error(3, []).__dict__, None)


def test_log_tail_of_a_short_and_an_empty_log(tmp_path: Path):
    short = tmp_path / "short.log"
    short.write_text("only\n")
    assert log_tail(short) == [f"log {short}:", "    | only"]
    empty = tmp_path / "empty.log"
    empty.write_text("")
    assert log_tail(empty) == [f"log {empty}: empty"]


def test_detail_mode_prints_snakemakes_job_blocks_with_the_message():
    """Dry runs with -p and --verbose: the full block (what users and the dry-run tests read),
    plus the job's message, even though the rule has one (Snakemake alone would print only
    that)."""
    console = Console(detail=True, quiet=set())
    text = console.format(_job_info(4, "nordic", "NORDIC sub-01 echo-2"))
    assert text is not None
    assert "rule nordic:" in text and "    message: NORDIC sub-01 echo-2" in text
    (job,) = parse_jobs(text)
    assert (job.rule, job.jobid, job.threads) == ("nordic", 4, 2)
    assert job.wildcards == "subject=01, echo=2" and job.output == ("out4.nii.gz",)
    assert console.format(_record("Building DAG of jobs...")) == "Building DAG of jobs..."


def test_a_dry_run_prints_the_job_table_once_and_no_job_blocks():
    """A dry run of 4 runs printed ~1,450 lines: every job's block and the table twice. Now:
    the table once, the reasons (without the pointer to blocks that are not shown), the
    closing line and how to see more; -p (or --verbose) brings the blocks back."""
    console = Console(detail=False, dryrun=True)
    records = [
        _record("Building DAG of jobs..."),
        _run_info(2),
        _job_info(1, "nordic", "NORDIC sub-01 echo-1"),
        _record("python -m echoprep nordic", event=LogEvent.SHELLCMD, shellcmd="python -m x"),
        _job_info(2, "nordic", "NORDIC sub-01 echo-2"),
        _run_info(2),
        _record(
            "Reasons:\n    (check individual jobs above for details)\n    output files have "
            "to be generated:\n        nordic"
        ),
        _record("This was a dry-run (flag -n). The order of jobs does not reflect the order."),
    ]
    text = "\n".join(t for t in map(console.format, records) if t)
    assert text.count("Job stats:") == 1 and "NORDIC" not in text and "rule nordic" not in text
    assert "check individual jobs above" not in text and "nordic\nThis was a dry-run" in text
    assert text.endswith(DRY_RUN_HINT) and "snakemake -n -p" in DRY_RUN_HINT
    assert len(text.splitlines()) == 12
    assert Console(detail=True, dryrun=True).format(records[2]).count("rule nordic:") == 1


def test_handler_replaces_snakemakes_console_and_writes_the_lines(monkeypatch):
    """The handler writes to the stream (so Snakemake adds no console handler of its own),
    to stderr in a run, and keeps Snakemake's filter (--quiet, --printshellcmds)."""
    import io
    from types import SimpleNamespace

    from snakemake_logger_plugin_echoprep import LogHandler

    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    settings = SimpleNamespace(
        dryrun=False,
        verbose=False,
        printshellcmds=False,
        quiet=set(),
        show_failed_logs=True,
        stdout=False,
        nocolor=True,
    )
    handler = LogHandler(settings, None)
    assert handler.writes_to_stream and not handler.writes_to_file
    assert not handler.has_filter and handler.has_formatter
    handler.emit(_run_info(1))
    handler.emit(_job_info(1, "nordic", "NORDIC sub-01 echo-1"))
    assert stream.getvalue().splitlines()[-1] == "[1/1] NORDIC sub-01 echo-1"
