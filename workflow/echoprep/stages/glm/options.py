"""Options of the GLM stage family: the config's ``glm`` section as one frozen object.

The config schema holds every default and allowed value (docs/architecture.md §4); the GLM
stage and the analysis-mask stage build :class:`GlmOptions` with :func:`parse_glm_options`,
which refuses unknown keys. The engine options (:data:`ENGINE_OPTIONS`) go to the engine as
they are (:func:`engine_options`); the others are stage settings (:data:`STAGE_SETTINGS`) or
used by the workflow only (``all_sessions_variants``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from echoprep.kernels.glm.options import REQUIRED_OPTIONS
from echoprep.options import options_dict, parse_options

#: GLMsingle options the ``glm`` config section passes to the engine (docs/glm.md §9 names);
#: None (fracs, brainR2, ...) means the engine's default.
ENGINE_OPTIONS: tuple[str, ...] = REQUIRED_OPTIONS

#: Stage settings of the ``glm`` config section (not engine options), as the sidecars record
#: them.
STAGE_SETTINGS = (
    "engine",
    "label_column",
    "blank_trial_types",
    "onset_tolerance",
    "stimdur",
    "nan_policy",
    "hdf5",
    "device",
)


@dataclass(frozen=True)
class GlmOptions:
    """The ``glm`` config section (fields = the schema's keys; defaults: the schema).

    See ``workflow/schemas/config.schema.yaml`` and docs/glm.md §9 for each option. Lists are
    tuples here.
    """

    engine: str
    all_sessions_variants: tuple[str, ...]
    label_column: str | None
    blank_trial_types: tuple[str, ...]
    onset_tolerance: float | None
    stimdur: float | None
    nan_policy: str
    hdf5: bool
    wantlibrary: int
    wantglmdenoise: int
    wantfracridge: int
    wantlss: int
    wantpercentbold: int
    wantautoscale: int
    n_pcs: int
    pcstop: float
    fracs: tuple[float, ...] | float | None
    brainthresh: tuple[float, float]
    brainR2: float | None
    pcR2cutoff: float | None
    maxpolydeg: int | None
    xvalscheme: tuple[tuple[int, ...], ...] | None
    chunklen: int
    device: str


def parse_glm_options(
    given: Mapping[str, Any] | GlmOptions | None, *, source: str = "--options-json"
) -> GlmOptions:
    """:class:`GlmOptions` from (part of) the ``glm`` section; missing keys take the schema
    default.

    Raises
    ------
    echoprep.options.OptionsError
        Unknown keys or values the schema does not allow (all listed at once).
    """
    return parse_options(GlmOptions, "glm", given, source=source)


def engine_options(options: GlmOptions, *, stop_at: str = "typed") -> dict[str, Any]:
    """The engine options (every name of :data:`ENGINE_OPTIONS`, lists as lists).

    ``stop_at="typeb"`` switches GLMdenoise and the ridge off (a type-B fit).
    """
    values = options_dict(options)
    engine = {k: values[k] for k in ENGINE_OPTIONS}
    if stop_at == "typeb":
        engine.update(wantglmdenoise=0, wantfracridge=0)
    return engine


def stage_settings(options: GlmOptions) -> dict[str, Any]:
    """The stage settings (:data:`STAGE_SETTINGS`), lists as lists."""
    values = options_dict(options)
    return {k: values[k] for k in STAGE_SETTINGS}


__all__ = [
    "ENGINE_OPTIONS",
    "STAGE_SETTINGS",
    "GlmOptions",
    "engine_options",
    "parse_glm_options",
    "stage_settings",
]
