"""Options of the spatial stage: one frozen object built from the config's ``spatial`` section."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from echoprep.options import parse_options

#: The options the stage's steps use, recorded in the sidecars' ``Parameters`` and in the run
#: geometry file (``enabled`` and ``keep_echoes`` steer the workflow only).
STAGE_KEYS: tuple[str, ...] = (
    "reference_echo",
    "motion_reference",
    "slice_timing",
    "slice_timing_method",
    "tr_out",
    "fieldmap",
    "sdc",
    "fieldmap_time",
    "fieldmap_fwhm",
    "jacobian",
    "output_space",
    "voxel_size",
    "grid_margin",
    "interpolation_order",
    "gradient_coefficients",
    "registration",
    "registration_target",
)

#: Packages whose versions the registration outputs' sidecars record.
SOFTWARE = ("antspyx", "SimpleITK")


@dataclass(frozen=True)
class SpatialOptions:
    """Options of the spatial stage: the config's ``spatial`` section.

    Built by :func:`parse_spatial_options`; every default and allowed value is the config
    schema's (``workflow/schemas/config.schema.yaml``, which describes each option; see
    docs/architecture.md, "One source of options"). ``enabled`` and ``keep_echoes`` are read by
    the workflow, the others (:data:`STAGE_KEYS`) by the steps (``fieldmap_time`` by input
    discovery, which chooses the fieldmaps the steps get, ``motion_reference`` and
    ``registration_target`` by the plan, which gives the steps an SBRef or a T2w only when
    used; recorded with the steps' options; ``gradient_coefficients`` by the plan, which
    gives a run's geometry step its scanner's coefficient file).
    """

    enabled: bool
    output_space: str
    reference_echo: int
    motion_reference: str
    slice_timing: bool
    slice_timing_method: str
    tr_out: float | None
    fieldmap: bool
    sdc: str
    fieldmap_time: str
    fieldmap_fwhm: float
    jacobian: bool
    voxel_size: float | None
    grid_margin: float
    interpolation_order: int
    gradient_coefficients: dict[str, str]
    registration: str
    registration_target: str
    keep_echoes: bool


def parse_spatial_options(
    options: SpatialOptions | Mapping[str, Any] | None, source: str = "spatial options"
) -> SpatialOptions:
    """:class:`SpatialOptions` from (part of) the ``spatial`` section; missing keys: defaults.

    Raises
    ------
    echoprep.options.OptionsError
        (a ``ValueError``) for unknown keys or values the config schema does not allow.
    """
    return parse_options(SpatialOptions, "spatial", options, source=source)


def recorded_options(options: SpatialOptions) -> dict[str, Any]:
    """The :data:`STAGE_KEYS` options as a dict: what the sidecars and geometry file record."""
    return {key: getattr(options, key) for key in STAGE_KEYS}


def stage_options(config_section: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`STAGE_KEYS` entries of a config ``spatial`` section (other keys left out)."""
    return {k: config_section[k] for k in STAGE_KEYS if k in config_section}


__all__ = [
    "SOFTWARE",
    "STAGE_KEYS",
    "SpatialOptions",
    "parse_spatial_options",
    "recorded_options",
    "stage_options",
]
