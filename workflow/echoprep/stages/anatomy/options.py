"""Options of the anatomy stage: one frozen object built from the config's ``anatomy`` section."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from echoprep.options import parse_options


@dataclass(frozen=True)
class AnatomyOptions:
    """Options of :func:`~echoprep.stages.anatomy.run_anatomy`: the config's ``anatomy`` section.

    Built by :func:`parse_anatomy_options`; defaults and allowed values are the config schema's
    (``workflow/schemas/config.schema.yaml``; see docs/architecture.md, "One source of
    options").

    Attributes
    ----------
    n4_shrink_factor
        N4 shrink factor (None: shrunk voxels of about 8 mm: the bias field is smooth and N4's
        time grows with the shrunk voxel count).
    n4_iterations
        N4 iterations per level (three levels: the finest control-point spacing is then 50 mm;
        a fourth level starts fitting anatomy).
    n4_spline_distance
        B-spline control-point spacing of N4's first level, mm (fMRIPrep's 200 mm).
    brain_threshold
        deepbet probability threshold.
    segmentation
        ``"priors"``: Atropos initialised and constrained by the template's tissue maps;
        ``"kmeans"``: Atropos with k-means initialisation, no template information.
    prior_weight, mrf_weight, atropos_iterations
        Atropos's prior weight (``priors``), Markov random field weight and iterations.
    registration
        ``"precise"`` | ``"quick"`` | ``"fast"``
        (:data:`echoprep.adapters.ants.REGISTRATION_PRESETS`).
    template_resolution
        Template grid of the registration in mm (1-4); None: the T1w voxel size rounded, in
        1..4.
    uni_background
        MP2RAGE UNI noise background before N4 and brain extraction
        (:mod:`echoprep.stages.anatomy.background`, docs/anatomy.md): ``"auto"`` (set to 0
        when the T1w's border looks like one), ``"suppress"`` (always keep only the voxels
        with signal) or ``"keep"`` (never; a warning when it looks like one).
    t1w, t2w
        Entities that chose the subject's T1w (T2w) among several at discovery
        (:func:`echoprep.io.bids_anat.pick_anat`; the stages are given the files): recorded,
        not read.
    """

    n4_shrink_factor: int | None
    n4_iterations: tuple[int, ...]
    n4_spline_distance: float
    brain_threshold: float
    segmentation: str
    prior_weight: float
    mrf_weight: float
    atropos_iterations: int
    registration: str
    template_resolution: int | None
    uni_background: str
    t1w: Mapping[str, Any]
    t2w: Mapping[str, Any]


def parse_anatomy_options(
    options: AnatomyOptions | Mapping[str, Any] | None, source: str = "anatomy options"
) -> AnatomyOptions:
    """:class:`AnatomyOptions` from (part of) the ``anatomy`` section; missing keys: defaults.

    Raises
    ------
    echoprep.options.OptionsError
        (a ``ValueError``) for unknown keys or values the config schema does not allow.
    """
    return parse_options(AnatomyOptions, "anatomy", options, source=source)


__all__ = ["AnatomyOptions", "parse_anatomy_options"]
