"""The output registry: every derivative echoprep writes, declared once.

Each :class:`Output` names one file kind: the derivative folder it lives in, its level (one per
run, session, subject or for the group), its BIDS entities, suffix and extension, whether it has
a JSON sidecar, and a one-line description. Rules (through :mod:`echoprep.plan`), stages, the
report and the tests ask this registry for paths; no other module spells an output name or a
folder name. See ``docs/architecture.md`` ("One output registry").

The registry is split by job, and this module is its front (import from here):

- :mod:`echoprep.io.output_model`: the :class:`Output` type and the keys that place a file
  (:func:`run_key`, :func:`session_key`, :func:`subject_key`, :func:`group_key`);
- :mod:`echoprep.io.output_files`: the file table, every output by family (:data:`OUTPUTS`);
- :mod:`echoprep.io.output_folders`: the folder table, each derivative folder's name, dataset
  description and ``.bidsignore`` (:data:`FOLDERS`, :func:`folder_name`, :func:`folder_kind`);
- here: the look-ups (:func:`get`, :func:`stage_outputs`, :func:`stage_table`) and the paths a
  stage run by hand writes (:func:`paths_in`, :func:`path_in`, :func:`with_sidecars`).

Paths are built from a ``key``: the ``(folder, stem)`` pair that identifies the run, session,
subject or group inside the derivative folder, then ``<stem>_<entities>_<suffix><extension>``.
Any value may be a Snakemake wildcard (``"{echo}"``), which gives the rule's output pattern.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from echoprep.io.output_files import OUTPUTS, TRIALS_NAME
from echoprep.io.output_folders import (
    FOLDERS,
    LAION_ATLASES,
    LAION_GLM,
    Folder,
    folder_kind,
    folder_name,
)
from echoprep.io.output_model import (
    LEVELS,
    TEMPLATE,
    Output,
    group_key,
    run_key,
    session_key,
    subject_key,
)
from echoprep.io.paths import sidecar_path


def get(key: str) -> Output:
    """The output registered under ``key`` (``"glm.betas"``, ``"combine.optcom.t2star"``)."""
    try:
        return OUTPUTS[key]
    except KeyError:
        raise KeyError(f"no output {key!r}; registered: {sorted(OUTPUTS)}") from None


def stage_outputs(stage: str, variant: str | None = None) -> dict[str, Output]:
    """A stage's outputs by name (for ``combine``: of one variant)."""
    found = {o.name: o for o in OUTPUTS.values() if o.stage == stage and (o.variant == variant)}
    if not found:
        raise KeyError(f"no outputs registered for stage {stage!r} variant {variant!r}")
    return found


def paths_in(
    root: str | Path,
    stage: str,
    key: tuple[str, str],
    *,
    keys: Sequence[str] | None = None,
    space: str | None = None,
    variant: str | None = None,
    **values: object,
) -> dict[str, Path]:
    """Name -> path of the files a stage run by hand writes (tests, benchmarks, notebooks).

    Parameters
    ----------
    root
        The stage's own derivative folder (``<output_dir>/glmsingle-nordic-optcom``,
        ``<output_dir>/anat``), not ``output_dir``: paths are ``root/<key folder>/<name>``.
    stage, variant
        As in :func:`stage_outputs` (``variant`` only for ``combine``).
    key
        ``(folder, stem)`` of the run, session, subject or group (:func:`session_key`, etc.).
    keys
        Output names of the stage, in the order wanted; None: every output of the stage.
    space, **values
        As in :meth:`Output.file_name`.
    """
    outputs = stage_outputs(stage, variant)
    if unknown := [k for k in keys or () if k not in outputs]:
        raise KeyError(f"stage {stage!r} has no outputs {unknown}; it has {list(outputs)}")
    return {
        k: Path(root) / key[0] / outputs[k].file_name(key[1], space=space, **values)
        for k in (outputs if keys is None else keys)
    }


def path_in(
    root: str | Path,
    output: str,
    key: tuple[str, str],
    *,
    space: str | None = None,
    **values: object,
) -> Path:
    """:func:`paths_in` for one output.

    Parameters
    ----------
    root, key, space, **values
        As in :func:`paths_in` (``root``: the output's own folder, e.g. ``<output_dir>/anat``).
    output
        Its registry key (:func:`get`): ``"noiseceiling.nc"``, ``"preproc.bold"`` (``echo=2``).
    """
    return Path(root) / key[0] / get(output).file_name(key[1], space=space, **values)


def stage_table(
    stage: str, variant: str | None = None, level: str | None = None
) -> dict[str, tuple[str, dict[str, str], str]]:
    """``name -> (suffix, entities, extension)`` of a stage's outputs (fixed entities only:
    placeholders such as ``{echo}`` are left out)."""
    return {
        name: (
            o.suffix,
            {k: v for k, v in o.entities.items() if "{" not in v},
            o.extension,
        )
        for name, o in stage_outputs(stage, variant).items()
        if level is None or o.level == level
    }


def with_sidecars(paths: Mapping[str, str | Path], outputs: Mapping[str, Output]) -> dict[str, str]:
    """``name -> path`` plus ``name_json -> sidecar`` for the outputs that have one."""
    files: dict[str, str] = {}
    for name, path in paths.items():
        files[name] = str(path)
        if outputs[name].sidecar:
            files[f"{name}_json"] = str(sidecar_path(path))
    return files


__all__ = [
    "FOLDERS",
    "LAION_ATLASES",
    "LAION_GLM",
    "LEVELS",
    "OUTPUTS",
    "TEMPLATE",
    "TRIALS_NAME",
    "Folder",
    "Output",
    "folder_kind",
    "folder_name",
    "get",
    "group_key",
    "path_in",
    "paths_in",
    "run_key",
    "session_key",
    "stage_outputs",
    "stage_table",
    "subject_key",
    "with_sidecars",
]
