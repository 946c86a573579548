"""A lock shared by the pytest-xdist workers of one run, for steps that use a machine-wide
resource: ``apt-get`` (the SLURM test installs slurmctld, the report test Chromium, where they
are missing; two apt-get at once fail on dpkg's lock, and the test would be skipped), or that
builds something once for every worker (the ``demo`` run, ``tests/conftest.py``)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def run_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base temporary folder of this pytest run, shared by its xdist workers (each
    worker's own basetemp is a ``popen-gw<N>`` folder inside it; without xdist, the basetemp)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def run_lock(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[None]:
    """Hold the lock ``name`` of this pytest run (one holder at a time across its workers).

    The lock file lies in the run's base temporary folder (:func:`run_base`)."""
    with open(run_base(tmp_path_factory) / f"{name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
