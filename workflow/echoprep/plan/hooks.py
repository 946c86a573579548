"""What the plan takes from the running Snakemake."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


def _no_groups() -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class RuleHooks:
    """What the plan needs from the running Snakemake to fill a spec.

    Attributes
    ----------
    temp
        Snakemake's ``temp`` (marks an output removed once its consumers ran); None marks
        nothing (unit tests).
    groups
        Returns the cluster profile's rule -> group table when called (Snakemake's
        ``workflow.group_settings.overwrite_groups``, not yet set while rules are parsed).
    in_report
        Snakemake's ``report`` (marks an output for ``snakemake --report`` with a caption
        file and a category); None marks nothing.
    captions
        The folder of the report captions (``workflow/report``).
    """

    temp: Callable[[str], Any] | None = None
    groups: Callable[[], Mapping[str, str]] = _no_groups
    in_report: Callable[..., Any] | None = None
    captions: str = ""


__all__ = ["RuleHooks"]
