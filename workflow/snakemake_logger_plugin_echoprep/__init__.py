"""Snakemake logger plugin ``echoprep``: one console line per job, problems in full.

Snakemake finds logger plugins by module name (``snakemake_logger_plugin_<name>``); this one is
selected with ``--logger echoprep`` (``logger:`` in ``profiles/default/config.yaml``, the
workflow profile every ``snakemake`` run of this workflow loads). It replaces Snakemake's own
console handler (it writes to the stream, so Snakemake adds no default stream handler); the
complete log (``.snakemake/log/*.snakemake.log``, named at the end of a run) is unchanged.

What a run prints:

- each job once, when it starts, as ``[ 12/79] <the rule's message>``: the job's position among
  the jobs this run executes and the rule's ``message:`` (stage, subject, session, run, echo,
  variant), or the rule name and wildcards where a rule has no message;
- the job statistics table, resource and environment notes, the end of the run (``79 of 79
  steps (100%) done``) and where the complete log is;
- every warning and error in full; a failed job as ``ERROR in <message>`` with its rule, job id,
  error message, shell command, log file(s) and the last :data:`TAIL_LINES` lines of each log.

Snakemake's per-job blocks (rule, input, output, reason, resources, ...) and progress lines
are left to the complete log. A dry run (``-n``) prints the job statistics table once, the
reasons and the closing line, with a hint for more. Full console detail: ``--verbose``, or a
dry run with ``--printshellcmds``/``-p``, prints Snakemake's blocks as usual (plus each job's
message and, with ``-p``, its command); in a real run ``-p`` adds each job's shell command
below its line; ``--logger`` without a name (or ``--workflow-profile none``) restores
Snakemake's own console. Runs inside a job (cluster executors) never load logger plugins, so
their logs are Snakemake's own.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent

#: Lines of a failed job's log shown on the console (the file has everything).
TAIL_LINES = 40
#: Informational messages without an event that are routine (the complete log keeps them).
CHATTER = re.compile(
    r"^(Using shell: |Select jobs to execute\.\.\."
    r"|Execute \d+ jobs\.\.\.|Removing temporary output |Rules claiming more threads"
    r"|Assuming unrestricted shared filesystem usage|Write-protecting output file "
    r"|host: |Processed \d+ potential jobs)"
)
#: Printed below a concise dry run's closing line.
DRY_RUN_HINT = (
    "Every job's inputs, outputs, message and command: snakemake -n -p (Snakemake's debug "
    "detail too: --verbose)."
)
#: Events that are routine on the console in compact mode (each job has its start line).
QUIET_EVENTS = frozenset(
    {
        LogEvent.JOB_STARTED,
        LogEvent.JOB_FINISHED,
        LogEvent.GROUP_INFO,
        LogEvent.WORKFLOW_STARTED,
        LogEvent.RULEGRAPH,
        LogEvent.DEBUG_DAG,
    }
)


def job_label(rule: str, message: str | None, wildcards: Mapping[str, Any] | None) -> str:
    """What a job does, in one line.

    Parameters
    ----------
    rule : str
        The rule's name.
    message : str or None
        The rule's formatted ``message:`` (None or empty when the rule has none).
    wildcards : mapping or None
        The job's wildcards (name -> value), used when there is no message.

    Returns
    -------
    str
        The message with its whitespace collapsed to single spaces, else ``rule k=v ...``.
    """
    if message and message.strip():
        return " ".join(message.split())
    values = " ".join(f"{k}={v}" for k, v in (wildcards or {}).items())
    return f"{rule} {values}".strip()


def progress_prefix(index: int, total: int | None) -> str:
    """``[ 12/79]``: a job's position among the run's jobs, right-aligned to the total's width
    (``[12]`` while the total is unknown)."""
    if not total:
        return f"[{index}]"
    width = len(str(total))
    return f"[{index:>{width}}/{total}]"


def log_tail(path: str | Path, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a job's log, headed by the path (and how many lines come
    before them); a note instead when the file is missing, empty or not text."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return [f"log {path}: not written (the job failed before its command ran?)"]
    except (UnicodeDecodeError, OSError) as exc:
        return [f"log {path}: not readable as text ({exc.__class__.__name__})"]
    content = text.splitlines()
    if not content:
        return [f"log {path}: empty"]
    shown = content[-lines:]
    skipped = len(content) - len(shown)
    head = f"log {path}" + (f" (last {len(shown)} of {len(content)} lines)" if skipped else "")
    return [f"{head}:", *(f"    | {line}" for line in shown)]


def format_job_error(
    record: Mapping[str, Any], label: str | None, *, tail_lines: int = TAIL_LINES
) -> str:
    """A failed job, in full: what it did, rule and job id, the error message, the shell
    command, each log file with its last lines, the conda env.

    Parameters
    ----------
    record : mapping
        The attributes of Snakemake's ``JOB_ERROR`` record (``rule_name``, ``jobid``,
        ``rule_msg`` (the error message), ``log``, ``shellcmd``, ``conda_env``, ``aux``).
    label : str or None
        The job's line (:func:`job_label`) if the job was announced in this run.
    tail_lines : int
        Lines of each log to show.
    """
    rule = record.get("rule_name", "?")
    jobid = record.get("jobid")
    head = f"ERROR in {label or rule} (rule {rule}, job {jobid})"
    out = [head]
    if record.get("rule_msg"):
        out.append(f"    error: {record['rule_msg']}")
    for key, value in (record.get("aux") or {}).items():
        out.append(f"    {key}: {value}")
    if record.get("shellcmd"):
        out.append(f"    shell: {' '.join(str(record['shellcmd']).split())}")
    if record.get("conda_env"):
        out.append(f"    conda env: {record['conda_env']}")
    logs = list(record.get("log") or [])
    if not logs:
        out.append("    (the rule keeps no log; the error is above or in the complete log)")
    for path in logs:
        out += [f"    {line}" for line in log_tail(path, tail_lines)]
    return "\n".join(out)


def format_group_error(record: Mapping[str, Any], *, tail_lines: int = TAIL_LINES) -> str:
    """A failed group job (several jobs in one submission): its message and the group's own
    logs (e.g. the cluster job's log); each member's error follows as its own record."""
    out = [f"ERROR in group job {record.get('groupid', '?')}"]
    if record.get("msg"):
        out.append(f"    error: {record['msg']}")
    for path in record.get("aux_logs") or []:
        out += [f"    {line}" for line in log_tail(path, tail_lines)]
    return "\n".join(out)


class Console:
    """Turns Snakemake's log records into console text (state: the jobs seen so far).

    Parameters
    ----------
    detail : bool
        Snakemake's own formatting for everything (``--verbose``, dry runs with ``-p``),
        except that a job with a message is still printed as its full block (plus a
        ``message:`` line).
    dryrun : bool
        A dry run without ``detail``: no line per job, the job statistics table once, the
        closing line followed by :data:`DRY_RUN_HINT`.
    printshellcmds : bool
        Print each job's shell command under its line.
    quiet : collection of str
        Snakemake's ``--quiet`` values (``rules``, ``progress``, ``all``, ...): what the
        default filter lets through is decided there; kept for the blocks of ``detail`` mode.
    show_failed_logs : bool
        Passed on to Snakemake's formatter in ``detail`` mode.
    tail_lines : int
        Lines of a failed job's log shown in compact mode.
    """

    def __init__(
        self,
        *,
        detail: bool,
        dryrun: bool = False,
        printshellcmds: bool = False,
        quiet: Collection[Any] | None = None,
        show_failed_logs: bool = False,
        tail_lines: int = TAIL_LINES,
    ) -> None:
        self.detail = detail
        self.dryrun = dryrun and not detail
        self.stats_shown = False
        self.printshellcmds = printshellcmds
        self.quiet = set(quiet or ())
        self.show_failed_logs = show_failed_logs
        self.tail_lines = tail_lines
        self.total: int | None = None
        self.started = 0
        self.labels: dict[int, str] = {}
        self._default: logging.Formatter | None = None
        self._last_was_job = False

    # ------------------------------------------------------------------------------------
    def format(self, record: logging.LogRecord) -> str | None:
        """The text for one record, or None to print nothing."""
        event = getattr(record, "event", None)
        fields = record.__dict__
        if event == LogEvent.RUN_INFO and isinstance(fields.get("stats"), Mapping):
            self.total = int(fields["stats"].get("total", 0)) or self.total
        elif event == LogEvent.PROGRESS and fields.get("total"):
            self.total = int(fields["total"])
        if self.detail:
            return self._format_detail(record, event)
        return self._format_compact(record, event)

    def _format_compact(self, record: logging.LogRecord, event: Any) -> str | None:
        fields = record.__dict__
        if self.dryrun:
            if event in (LogEvent.JOB_INFO, LogEvent.SHELLCMD):
                return None
            if event == LogEvent.RUN_INFO:
                if self.stats_shown:  # Snakemake repeats the table at the end of a dry run
                    return None
                self.stats_shown = True
            text = _message(record)
            if text.startswith("Reasons:"):  # no job blocks above to check
                return text.replace("\n    (check individual jobs above for details)", "")
            if text.startswith("This was a dry-run"):
                return f"{text}\n{DRY_RUN_HINT}"
        if event == LogEvent.JOB_INFO:
            self.started += 1
            label = job_label(
                fields.get("rule_name", "?"), fields.get("rule_msg"), fields.get("wildcards")
            )
            self.labels[fields.get("jobid")] = label
            return f"{progress_prefix(self.started, self.total)} {label}"
        if event == LogEvent.SHELLCMD:
            cmd = fields.get("shellcmd") or fields.get("cmd")
            return f"    $ {' '.join(str(cmd).split())}" if cmd and self.printshellcmds else None
        if event == LogEvent.JOB_ERROR:
            return format_job_error(
                fields, self.labels.get(fields.get("jobid")), tail_lines=self.tail_lines
            )
        if event == LogEvent.GROUP_ERROR:
            return format_group_error(fields, tail_lines=self.tail_lines)
        if event == LogEvent.PROGRESS:
            done, total = fields.get("done"), fields.get("total")
            return f"{done} of {total} steps (100%) done" if done == total else None
        if event in QUIET_EVENTS:
            return None
        text = _message(record)
        if record.levelno < logging.WARNING and (not text or CHATTER.match(text)):
            return None
        return text or None

    def _format_detail(self, record: logging.LogRecord, event: Any) -> str | None:
        from snakemake.logging import DefaultFormatter

        if self._default is None:
            self._default = DefaultFormatter(self.quiet, self.show_failed_logs)
        fields = record.__dict__
        if event == LogEvent.JOB_INFO and fields.get("rule_msg"):
            # the block (the form tests and users read from dry runs), plus the message
            plain = logging.makeLogRecord({**fields, "rule_msg": None})
            message = job_label("", fields["rule_msg"], None)
            text = f"{self._default.format(plain)}\n    message: {message}"
        else:
            text = self._default.format(record)
        if event == LogEvent.JOB_INFO and not self._last_was_job:
            text = "\n" + text  # Snakemake's blank line before a run of job blocks
        self._last_was_job = event == LogEvent.JOB_INFO
        return None if text in ("", "None") else text


def _message(record: logging.LogRecord) -> str:
    msg = record.msg
    if msg is None:
        return ""
    return str(msg) if not record.args else record.getMessage()


class LogHandler(LogHandlerBase):
    """The plugin's handler: one stream handler (Snakemake then adds no default one)."""

    def __post_init__(self) -> None:
        settings = self.common_settings
        self.stream: TextIO = sys.stdout if getattr(settings, "stdout", False) else sys.stderr
        self.console = Console(
            detail=bool(settings.verbose or (settings.dryrun and settings.printshellcmds)),
            dryrun=bool(settings.dryrun),
            printshellcmds=bool(settings.printshellcmds),
            quiet=settings.quiet,
            show_failed_logs=bool(settings.show_failed_logs),
        )
        isatty = getattr(self.stream, "isatty", None)
        self.colour = bool(isatty and isatty()) and not settings.nocolor

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.console.format(record)
            if text:
                if self.colour and record.levelno >= logging.WARNING:
                    code = 31 if record.levelno >= logging.ERROR else 33  # red, yellow
                    text = f"\033[{code}m{text}\033[0m"
                self.stream.write(text + "\n")
                self.stream.flush()
        except Exception:
            self.handleError(record)

    @property
    def writes_to_stream(self) -> bool:
        return True

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        # Snakemake's default filter: --quiet, --printshellcmds, --debug-dag and log levels
        return False

    @property
    def has_formatter(self) -> bool:
        return True

    @property
    def needs_rulegraph(self) -> bool:
        return False


def count_job_lines(lines: Iterable[str]) -> int:
    """Console lines that announce a job (``[ 12/79] ...``): for tests and measurements."""
    return sum(1 for line in lines if JOB_LINE.match(line))


#: A job's console line.
JOB_LINE = re.compile(r"^\[\s*\d+(/\d+)?\] \S")

__all__ = [
    "CHATTER",
    "DRY_RUN_HINT",
    "JOB_LINE",
    "TAIL_LINES",
    "Console",
    "LogHandler",
    "count_job_lines",
    "format_group_error",
    "format_job_error",
    "job_label",
    "log_tail",
    "progress_prefix",
]
