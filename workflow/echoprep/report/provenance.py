"""What the report learns from its inputs' JSON sidecars: software versions, masks, ROIs, units.

Every echoprep output has a sidecar with ``Sources`` (the files it was computed from) and
``SoftwareVersions`` (``"name version, name version"``, or a ``{name: version}`` mapping). The
report follows ``Sources`` from the files it shows back through the outputs that produced them,
so the software table lists every package that produced an output, whatever stage recorded it,
without a list of packages kept here. Raw BIDS sidecars (no ``Sources``) end the walk: their
``SoftwareVersions`` is the scanner's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echoprep.io.bids_uri import localize
from echoprep.io.paths import sidecar_path

log = logging.getLogger(__name__)

#: Most sidecars read while following ``Sources`` (a guard; a subject has a few hundred).
MAX_SIDECARS = 20000
#: Image suffixes of a mask file.
_MASK_ENDINGS = ("_mask.nii.gz", "_mask.nii")


def read_sidecar(path: str | Path) -> dict[str, Any] | None:
    """The JSON sidecar of a file (``x.nii.gz`` → ``x.json``; a ``.json`` is read itself), or
    None when it is missing or not a JSON object; the BIDS URIs it records come back as paths
    (:func:`echoprep.io.bids_uri.localize`)."""
    p = Path(path)
    side = p if p.name.endswith(".json") else sidecar_path(p)
    try:
        content = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    return localize(content, side) if isinstance(content, dict) else None


def parse_versions(value: Any) -> dict[str, str]:
    """``SoftwareVersions`` as ``{package: version}``.

    Accepts the BIDS string form ``"echoprep 0.1.0, numpy 2.3.5"`` and a mapping. A string item
    without a space (a name alone) gets the version ``"?"``.
    """
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    if isinstance(value, str):
        for item in value.split(","):
            name, _, version = item.strip().partition(" ")
            if name:
                out[name] = version.strip() or "?"
    return out


def derivative_folder(path: str | Path) -> str:
    """The derivative folder a file sits in: the folder above its first ``sub-*`` folder
    (``…/glmsingle-raw-single/sub-01/ses-01/func/x`` → ``glmsingle-raw-single``), else its
    parent folder's name."""
    parts = Path(path).parts
    for i, part in enumerate(parts[:-1]):
        if part.startswith("sub-") and i > 0:
            return parts[i - 1]
    return Path(path).parent.name


@dataclass
class Software:
    """Packages recorded in the provenance of a set of files.

    Attributes
    ----------
    versions
        Package → version → derivative folders whose sidecars recorded that version.
    sidecars
        Sidecars read.
    """

    versions: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    sidecars: int = 0

    def add(self, packages: Mapping[str, str], folder: str) -> None:
        """Record ``{package: version}`` as used by ``folder``."""
        for name, version in packages.items():
            self.versions.setdefault(name, {}).setdefault(version, set()).add(folder)

    def rows(self) -> list[list[str]]:
        """Table rows ``[package, version(s), derivative folders]``, sorted by package name
        (case-insensitive); several versions of one package are listed with their folders, and
        a package recorded in every folder (of three or more) says ``every folder``."""
        every = set().union(*(f for v in self.versions.values() for f in v.values()))
        rows = []
        for name in sorted(self.versions, key=str.lower):
            by_version = self.versions[name]
            used = set().union(*by_version.values())
            folders = sorted(used) if used != every or len(every) < 3 else ["every folder"]
            if len(by_version) == 1:
                version = next(iter(by_version))
            else:
                version = "; ".join(
                    f"{v} ({', '.join(sorted(f))})" for v, f in sorted(by_version.items())
                )
            rows.append([name, version, ", ".join(folders)])
        return rows


def collect_software(files: Iterable[str | Path | None], *, follow: bool = True) -> Software:
    """The software recorded in the sidecars of ``files`` and, with ``follow``, of every file
    in their ``Sources`` (recursively, each sidecar read once).

    Parameters
    ----------
    files
        Files the report shows (None entries are skipped). Relative ``Sources`` are taken
        relative to the working directory, as the workflow writes them.
    follow
        Follow ``Sources`` back to the raw data.
    """
    found = Software()
    queue = [Path(f) for f in files if f is not None]
    seen: set[str] = set()
    while queue and found.sidecars < MAX_SIDECARS:
        path = queue.pop()
        key = str(path)
        if key in seen:
            continue
        seen.add(key)
        side = read_sidecar(path)
        if side is None:
            continue
        found.sidecars += 1
        versions = side.get("SoftwareVersions")
        derived = "Sources" in side or isinstance(versions, Mapping)
        if versions is not None and derived:
            found.add(parse_versions(versions), derivative_folder(path))
        if follow and "Sources" in side:
            queue.extend(Path(str(s)) for s in side.get("Sources") or [])
    if queue:
        log.warning("report: stopped following Sources after %d sidecars", found.sidecars)
    return found


def source_mask(path: str | Path) -> Path | None:
    """The first existing mask among the ``Sources`` of a file's sidecar (e.g. the GLM's
    fitted mask of a noise-ceiling map), or None."""
    side = read_sidecar(path) or {}
    for s in side.get("Sources") or []:
        p = Path(str(s))
        if p.name.endswith(_MASK_ENDINGS) and p.is_file():
            return p
    return None


def table_roi_mask(table: str | Path, category: str = "visual") -> Path | None:
    """The mask of the first ROI of ``category`` that an ROI table summarised, from the
    table's sidecar ``Sources`` (the masks sit in ``rois/sub-X/<category>/``), or None."""
    side = read_sidecar(table) or {}
    for s in side.get("Sources") or []:
        p = Path(str(s))
        if p.parent.name == category and p.name.endswith(_MASK_ENDINGS) and p.is_file():
            return p
    return None


def column_units(table: str | Path) -> dict[str, str]:
    """Column → ``Units`` from a TSV's sidecar (BIDS column descriptions)."""
    side = read_sidecar(table) or {}
    return {
        k: str(v["Units"])
        for k, v in side.items()
        if isinstance(v, Mapping) and isinstance(v.get("Units"), str) and v["Units"]
    }


__all__ = [
    "MAX_SIDECARS",
    "Software",
    "collect_software",
    "column_units",
    "derivative_folder",
    "parse_versions",
    "read_sidecar",
    "source_mask",
    "table_roi_mask",
]
