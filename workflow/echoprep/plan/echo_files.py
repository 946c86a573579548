"""The files of a job that treats every echo of a run (a per-run chain's steps)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from echoprep.io import outputs as reg
from echoprep.io.bids import Run
from echoprep.plan.context import Files, PlanContext, words


def nordic_outputs(ctx: PlanContext, run: Run | None = None, echo: Any = "{echo}") -> Files:
    """NORDIC's outputs (and sidecars) of one echo, as patterns or for a run: what the
    NORDIC side's chain writes, its resampling (or, without spatial preprocessing, the echo
    handling) reads and the diagnostics read."""
    return ctx.files("nordic", ctx.run_key(run), echo=echo)


def source_echoes(ctx: PlanContext, run: Run, nordic: str) -> list[str]:
    """The echoes of a run as a NORDIC variant has them before any resampling (echo-time
    order): the raw magnitudes, or NORDIC's outputs."""
    if nordic == "raw":
        return [str(e.mag) for e in run.echoes]
    return [nordic_outputs(ctx, run, e.echo)["bold"] for e in run.echoes]


def per_echo(files: Mapping[int, Files]) -> Files:
    """One job's files of several echoes: ``{echo: {key: path}}`` as ``echo<E>_<key>``."""
    return {f"echo{e}_{k}": path for e, per in files.items() for k, path in per.items()}


def echo_out_words(
    output: Any, run: Run, outputs: Mapping[str, reg.Output], prefix: str = ""
) -> str:
    """``KEY=PATH`` words for ``--out``: every output key (sidecars are written with their
    image) of every echo of ``run`` in its order, from a job's ``output`` (keys
    ``<prefix>echo<E>_<key>``)."""
    return words(f"{k}={output[f'{prefix}echo{e.echo}_{k}']}" for e in run.echoes for k in outputs)


__all__ = ["echo_out_words", "nordic_outputs", "per_echo", "source_echoes"]
