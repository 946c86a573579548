"""JSON sidecars and ``dataset_description.json`` with provenance."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from echoprep import CODE_URL, __version__
from echoprep.io.atomic import atomic_path
from echoprep.io.paths import sidecar_path

BIDS_VERSION = "1.10.0"

#: Packages whose versions are recorded in every sidecar when they are installed.
_TRACKED = ("echoprep", "numpy", "scipy", "nibabel", "nilearn", "pybids", "tedana", "pandas")


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
    """Write JSON atomically (temporary file + rename), sorted keys, 2-space indent."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(_jsonable(content), fh, indent=2, sort_keys=True)
        fh.write("\n")
    return path


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
        Input files the output was computed from (recorded as given, as strings).
    parameters
        The options of the stage that produced it.
    extra
        Further BIDS fields (e.g. ``RepetitionTime``, ``Units``, ``EchoTime``).
    software
        Extra package names whose versions should be recorded.
    """
    content: dict[str, Any] = dict(extra or {})
    content["Sources"] = [str(s) for s in sources]
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
    bidsignore: Iterable[str] = (),
) -> Path:
    """Write ``dataset_description.json`` at a derivative (or raw) dataset root.

    Derivatives carry ``GeneratedBy`` (name, version, code URL) and, when given, the
    workflow configuration that produced them. ``bidsignore`` patterns (outputs the BIDS
    specification has no name for yet, e.g. tedana's component tables) go to ``.bidsignore``.
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
        if config is not None:
            content["echoprepConfig"] = dict(config)
    elif description:
        content["Description"] = description
    patterns = list(bidsignore)
    if patterns:
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / ".bidsignore").write_text("\n".join(patterns) + "\n")
    return write_json(Path(root) / "dataset_description.json", content)
