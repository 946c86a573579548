"""What discovery of the input dataset needs to know from the config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from echoprep.io.bids_events import EventsRules


def discovery_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`echoprep.io.bids.discover` that a validated config
    decides: the selection (subjects, sessions, task, runs left out), what spatial
    preprocessing needs (a T1w per subject in T1w space, the fieldmaps) and how the GLM will
    read the events (checked at plan time with the same rules)."""
    spatial = config["spatial"]
    glm = config["glm"]
    return {
        "participant_label": config["participant_label"] or None,
        "exclude": config["exclude"],
        "sessions": config["sessions"] or None,
        "task": config["task"],
        "exclude_runs": config["exclude_runs"],
        "t1w_entities": config["anatomy"]["t1w"],
        "t2w_entities": config["anatomy"]["t2w"],
        "require_t1w": spatial["enabled"] and spatial["output_space"] == "T1w",
        "use_fieldmaps": spatial["enabled"]
        and spatial["fieldmap"]
        and spatial["sdc"] not in ("none", "phase-framewise"),
        "prefer_fieldmap": "epi" if spatial["sdc"] == "pepolar" else "gre",
        "fieldmap_time": spatial["fieldmap_time"],
        # the reference images (docs/registration.md): SBRefs and T2w looked for only if used
        "sbref_echo": spatial["reference_echo"]
        if spatial["enabled"] and spatial["motion_reference"] != "bold"
        else None,
        "require_sbref": spatial["enabled"] and spatial["motion_reference"] == "sbref",
        "registration_target": spatial["registration_target"]
        if spatial["enabled"] and spatial["output_space"] == "T1w"
        else "T1w",
        "events_rules": EventsRules(
            label_column=glm["label_column"],
            blank_trial_types=tuple(glm["blank_trial_types"]),
            onset_tolerance=glm["onset_tolerance"],
            dropped_volumes=int(config["nordic"]["noise_volumes"]),
            series_tr=spatial["tr_out"]
            if spatial["enabled"] and spatial["slice_timing"] and spatial["tr_out"]
            else None,
        ),
    }


__all__ = ["discovery_options"]
