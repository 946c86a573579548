"""JSON sidecars and ``dataset_description.json`` with provenance."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from echoprep import CODE_URL, __version__
from echoprep.io.atomic import atomic_path
from echoprep.io.bids_uri import localize, portable
from echoprep.io.paths import sidecar_path

BIDS_VERSION = "1.10.0"

#: Packages whose versions are recorded in every sidecar when they are installed.
_TRACKED = ("echoprep", "numpy", "scipy", "nibabel", "nilearn", "tedana", "pandas")


def software_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Installed versions of the packages echoprep's outputs depend on."""
    out: dict[str, str] = {}
    for name in (*_TRACKED, *extra):
        if name == "echoprep":
            out[name] = __version__
            continue
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def format_versions(versions: Mapping[str, str]) -> str:
    """BIDS ``SoftwareVersions`` is a string: ``"echoprep 0.1.0, numpy 2.3.5, ..."``."""
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def write_json(path: str | Path, content: Mapping[str, Any]) -> Path:
    """Write JSON atomically (temporary file + rename), sorted keys, 2-space indent.

    Every file path in ``content`` is recorded as a BIDS URI relative to the dataset of
    ``path`` (:func:`echoprep.io.bids_uri.portable`; the configuration snapshot is kept).
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(portable(_jsonable(content), path), fh, indent=2, sort_keys=True)
        fh.write("\n")
    return path


_SPACE = re.compile(r"(?:^|_)space-([A-Za-z0-9]+)_")


def space_label(path: str | Path) -> str | None:
    """The ``space-<label>`` entity of a BIDS file name (``"T1w"``), or None."""
    found = _SPACE.search(Path(path).name)
    return found.group(1) if found else None


def spatial_reference(image: str | Path, sources: Iterable[str | Path]) -> Any:
    """The BIDS ``SpatialReference`` of an output in a named space, from its sources.

    A derivative whose name carries ``space-<label>`` needs one (required when the label is
    not a standard template, e.g. ``T1w``). The output lies on the grid of its sources in the
    same space, so it takes the ``SpatialReference`` of the first such source whose sidecar
    records one (the resampled echoes record the functional grid image; every later output
    inherits it, read as a path: :func:`echoprep.io.bids_uri.localize`), else that source's
    own path.

    Parameters
    ----------
    image
        The output file.
    sources
        Its input files, in the order recorded in its sidecar.

    Returns
    -------
    str, dict or None
        The reference, or None: ``image`` has no space entity, or no source in that space.
    """
    label = space_label(image)
    if label is None:
        return None
    same_space = [Path(s) for s in sources if space_label(s) == label]
    for source in same_space:
        side = sidecar_path(source)
        try:
            recorded = json.loads(side.read_text()).get("SpatialReference")
        except (OSError, ValueError, AttributeError):
            continue
        if recorded:
            return localize(recorded, side)
    return str(same_space[0]) if same_space else None


def write_sidecar(
    image: str | Path,
    *,
    sources: Iterable[str | Path],
    parameters: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    software: Iterable[str] = (),
) -> Path:
    """Write the JSON sidecar of an output image.

    Parameters
    ----------
    image
        The output file the sidecar describes (``.nii.gz``, ``.tsv``, ...).
    sources
        Input files the output was computed from (recorded as BIDS URIs, see
        :func:`write_json`).
    parameters
        The options of the stage that produced it.
    extra
        Further BIDS fields (e.g. ``RepetitionTime``, ``Units``, ``EchoTime``). Without a
        ``SpatialReference`` there, an output in a named space takes its sources' reference
        (:func:`spatial_reference`).
    software
        Extra package names whose versions should be recorded.
    """
    content: dict[str, Any] = dict(extra or {})
    sources = [str(s) for s in sources]
    if "SpatialReference" not in content:
        reference = spatial_reference(image, sources)
        if reference is not None:
            content["SpatialReference"] = reference
    content["Sources"] = sources
    content["Parameters"] = dict(parameters or {})
    content["SoftwareVersions"] = format_versions(software_versions(software))
    return write_json(sidecar_path(image), content)


def write_dataset_description(
    root: str | Path,
    name: str,
    *,
    dataset_type: str = "derivative",
    description: str | None = None,
    config: Mapping[str, Any] | None = None,
    source_datasets: Iterable[str] = (),
    links: Mapping[str, str] | None = None,
) -> Path:
    """Write ``dataset_description.json`` at a derivative (or raw) dataset root.

    Derivatives carry ``GeneratedBy`` (name, version, code URL), ``SourceDatasets``
    (``source_datasets``: URLs or BIDS URIs), ``DatasetLinks`` (``links``: dataset name ->
    location, see :func:`echoprep.io.bids_uri.dataset_links`) and, when given, the workflow
    configuration that produced them. The folders' ``.bidsignore`` and ``README.md`` are
    written with it by :func:`echoprep.io.describe.describe_folder`.
    """
    content: dict[str, Any] = {
        "Name": name,
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": dataset_type,
    }
    if dataset_type == "derivative":
        generated: dict[str, Any] = {
            "Name": "echoprep",
            "Version": __version__,
            "CodeURL": CODE_URL,
        }
        if description:
            generated["Description"] = description
        content["GeneratedBy"] = [generated]
        sources = list(source_datasets)
        if sources:
            content["SourceDatasets"] = [{"URL": s} for s in sources]
        if links:
            content["DatasetLinks"] = dict(links)
        if config is not None:
            content["echoprepConfig"] = dict(config)
    elif description:
        content["Description"] = description
    return write_json(Path(root) / "dataset_description.json", content)
