"""Options of the ROI stage: one frozen object built from the config's ``rois`` section."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from echoprep.options import parse_options, section_schema


@dataclass(frozen=True)
class VisualRoiOptions:
    """The ``rois.visual`` options (the visually responsive ROI); see :class:`RoiOptions`."""

    variant: str | None
    session: str | None
    method: str
    alpha: float
    correction: str
    threshold: float
    onoff_threshold: float
    min_voxels: int


@dataclass(frozen=True)
class RoiOptions:
    """Options of the ROI stage: the config's ``rois`` section.

    Built by :func:`parse_roi_options`; every default and allowed value is the config schema's
    (``workflow/schemas/config.schema.yaml``, which describes each option; see
    docs/architecture.md, "One source of options"). ``dir``, ``res`` and ``visual.variant`` /
    ``visual.session`` are read by the workflow (which files, which source), the other
    ``visual`` options by :func:`~echoprep.stages.rois.run_visual_roi`.
    """

    dir: str | None
    res: str | None
    visual: VisualRoiOptions


def _visual_schema() -> dict[str, Any]:
    return section_schema("rois")["properties"]["visual"].get("properties", {})


def parse_roi_options(
    options: RoiOptions | Mapping[str, Any] | None, source: str = "rois options"
) -> RoiOptions:
    """:class:`RoiOptions` from (part of) the ``rois`` section; missing keys: the defaults.

    Raises
    ------
    echoprep.options.OptionsError
        (a ``ValueError``) for unknown keys (also inside ``visual``) or values the config
        schema does not allow.
    """
    if isinstance(options, RoiOptions):
        return options  # visual already filled in
    # parse_options refuses unknown keys inside ``visual`` too; its defaults are filled here
    parsed = parse_options(RoiOptions, "rois", options, source=source)
    given = dict(parsed.visual or {})  # type: ignore[call-overload]
    schema = _visual_schema()
    values = {k: copy.deepcopy(v["default"]) for k, v in schema.items() if "default" in v}
    values.update(given)
    return dataclasses.replace(parsed, visual=VisualRoiOptions(**values))


__all__ = ["RoiOptions", "VisualRoiOptions", "parse_roi_options"]
