"""Run the echoprep Snakefile in a subprocess and read what it scheduled."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def snakemake(
    *args: str,
    config: dict[str, object] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``python -m snakemake -s ROOT/Snakefile ARGS --config K=V ...`` (text output captured)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), *args]
    if config:
        cmd += ["--config", *[f"{k}={v}" for k, v in config.items()]]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        cmd, cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout, env=full_env
    )


def dry_run(config: dict[str, object], *extra: str, cwd: Path | None = None) -> str:
    """Dry run; returns stdout+stderr and fails with that text if Snakemake failed."""
    res = snakemake("-n", *extra, config=config, cwd=cwd)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    return out


def job_counts(output: str) -> Counter:
    """Jobs per rule from a dry run's 'Job stats' table."""
    counts: Counter = Counter()
    table = output.split("Job stats:", 1)
    if len(table) < 2:
        return counts
    for line in table[1].splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)\s*$", line)
        if not m:
            if line.strip() == "":
                break
            continue
        if m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def scheduled_wildcards(output: str) -> list[str]:
    """The ``wildcards:`` line of every scheduled job of a dry run."""
    return [m.group(1) for m in re.finditer(r"^\s*wildcards: (.*)$", output, flags=re.M)]
