"""Stopping the workflow when the plan refuses a config or an input: the message alone.

Snakemake prints an exception raised while the Snakefile is read (or in an input function)
with its own header and a frame of the rule file (``WorkflowError in file .../common.smk, line
39``); a user needs only the message, which lists every problem and its fix. The Snakefile
and ``workflow/rules/common.smk`` call :func:`refuse` instead.
"""

from __future__ import annotations

import sys
from typing import NoReturn


def refuse(message: str) -> NoReturn:
    """Print ``message`` to stderr and stop with exit status 1 (``SystemExit``, which
    Snakemake passes through, from the Snakefile or from an input function alike)."""
    print(message, file=sys.stderr)
    raise SystemExit(1)
