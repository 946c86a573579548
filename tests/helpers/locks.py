"""A lock shared by the pytest-xdist workers of one run, for steps that use a machine-wide
resource: ``apt-get`` (the SLURM test installs slurmctld, the report test Chromium, where they
are missing; two apt-get at once fail on dpkg's lock, and the test would be skipped)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def run_lock(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[None]:
    """Hold the lock ``name`` of this pytest run (one holder at a time across its workers).

    The lock file lies in the run's base temporary folder, which the workers share (each
    worker's own basetemp is a ``popen-gw<N>`` folder inside it)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    with open(base / f"{name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
