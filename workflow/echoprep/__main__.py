"""``python -m echoprep``: the same command line as ``echoprep``.

A stage's ``--threads N`` also sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``MKL_NUM_THREADS`` to N before numpy is first imported. OpenBLAS sizes its thread pool from
them at start-up, and the environment Snakemake gives a job holds the job's thread count scaled
down to ``--cores`` (1 with ``--cores 1``), which changed tedana's ICA in the last digits; the
count a job computes with is its rule's fixed one (``threads`` of its definition,
:mod:`echoprep.plan.families`), whatever the machine.
"""

import os
import sys


def _threads(argv: list[str]) -> str | None:
    """The value of ``--threads`` in ``argv`` (``--threads N`` or ``--threads=N``), or None."""
    for i, word in enumerate(argv):
        if word == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith("--threads="):
            return word.split("=", 1)[1]
    return None


_n = _threads(sys.argv[1:])
if _n is not None and _n.isdigit() and int(_n) > 0:
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_name] = _n

from echoprep.cli import main  # noqa: E402  (after the thread variables, before numpy)

raise SystemExit(main())
