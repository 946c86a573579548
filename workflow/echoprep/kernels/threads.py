"""Thread counts for the kernels: worker threads and BLAS threads."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any


def n_workers(n_threads: int | None) -> int:
    """Worker threads to use: ``n_threads``, or the CPUs this process may run on (None)."""
    if n_threads is not None:
        return int(n_threads)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def blas_limits(n: int | None) -> AbstractContextManager[Any]:
    """Limit BLAS threads to ``n`` while the context is open (no-op for None or without
    threadpoolctl)."""
    if n is None:
        return nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return nullcontext()
    return threadpool_limits(limits=n, user_api="blas")
