"""Portable provenance: the file paths echoprep records become BIDS URIs, and back.

A sidecar names the files an output was computed from (``Sources``, ``SpatialReference``,
``MaskSource``, ``Registration.Moving``, ...). Recorded as the machine's absolute paths they
break when the output folder is moved and differ between two runs of one dataset; recorded as
BIDS URIs (``bids:<dataset-name>:<path within the dataset>``) they stay valid:

- a file of the same derivative folder as the file that names it: ``bids::<path>``;
- a file of another derivative folder of ``output_dir``: ``bids:<folder>:<path>``
  (``bids:combine-raw:sub-01/...``);
- a file of the raw BIDS dataset (``bids_dir``): ``bids:raw:<path>``;
- any other file (a template shipped with a package, a coefficient file or ROI mask from the
  configuration, a file of the work folder): ``sha256:<hex digest>:<file name>``, its content
  and name, never its location (``sha256:unavailable:<name>`` when it cannot be read).

Each derivative folder's ``dataset_description.json`` maps every dataset name to a location
relative to the folder (``DatasetLinks``: ``"raw": "../../bids"``, ``"combine-raw":
"../combine-raw"``), so a copied or moved ``output_dir`` keeps valid links between its folders,
and with the raw dataset moved along (same relative place) every link stays valid. See
docs/architecture.md ("Provenance").

:func:`write_json <echoprep.io.sidecars.write_json>` applies :func:`portable` to everything it
writes; readers that use a recorded path call :func:`localize` (or :func:`resolve_uri`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from echoprep.io.outputs import FOLDERS

#: The dataset name of the raw BIDS dataset in every URI and ``DatasetLinks``.
RAW = "raw"
#: Prefix of a BIDS URI, and of the content reference of a file outside every dataset.
BIDS_SCHEME = "bids:"
CONTENT_SCHEME = "sha256:"
#: Keys whose string values (or lists of strings) are file paths in echoprep's sidecars. A value
#: of another key is treated as a path only when it is absolute.
PATH_KEYS = frozenset(
    {
        "Sources",
        "RawSources",
        "SpatialReference",
        "MaskSource",
        "Moving",
        "T2w",
        "Image",
        "RegistrationTarget",
        "ReferenceEcho",
        "ReferenceBoldref",
        "ComponentSourceFile",
        "Coefficients",
        "bold",
        "events",
    }
)
#: Keys whose content is kept as written: the configuration snapshot records what the user gave.
KEPT_KEYS = frozenset({"echoprepConfig"})

_SUBJECT = re.compile(r"^sub-[A-Za-z0-9]+$")
_SPACE = re.compile(r"\s")
_DESCRIPTION = "dataset_description.json"
#: Digests of files outside every dataset: (path, size, mtime) -> hex digest.
_DIGESTS: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class DatasetRoot:
    """A dataset a file belongs to.

    Attributes
    ----------
    name
        ``"raw"`` or the derivative folder's name (``"combine-raw"``).
    path
        Its root folder (absolute).
    """

    name: str
    path: Path


def _absolute(path: str | Path) -> Path:
    """The absolute, normalised path (symbolic links kept: a published link is its own file)."""
    return Path(os.path.abspath(os.fspath(path)))


@cache
def _folder_patterns() -> tuple[re.Pattern[str], ...]:
    return tuple(spec.pattern() for spec in FOLDERS.values())


def is_folder_name(name: str) -> bool:
    """Whether ``name`` is the name of a derivative folder echoprep writes."""
    return any(pattern.fullmatch(name) for pattern in _folder_patterns())


def raw_root(path: str | Path) -> Path | None:
    """The nearest folder above ``path`` holding the ``dataset_description.json`` of a raw BIDS
    dataset (``DatasetType`` raw or absent), or None."""
    for folder in _absolute(path).parents:
        try:
            kind = json.loads((folder / _DESCRIPTION).read_text()).get("DatasetType", "raw")
        except (OSError, ValueError, AttributeError):
            continue  # none there (or no JSON object)
        if kind != "derivative":
            return folder
    return None


def dataset_of(path: str | Path) -> DatasetRoot | None:
    """The dataset of a file echoprep writes: the outermost folder above it that is named like a
    derivative folder (:data:`echoprep.io.outputs.FOLDERS`) and holds it in a ``sub-<label>``
    folder or directly (a group-level file, not named ``sub-*``); else the raw dataset holding it
    (:func:`raw_root`); else None (a file outside every dataset, e.g. in a test's folder)."""
    parts = _absolute(path).parts
    for i in range(1, len(parts) - 1):
        if not is_folder_name(parts[i]):
            continue
        below = parts[i + 1]
        direct = i + 1 == len(parts) - 1
        if (direct and not below.startswith("sub-")) or (not direct and _SUBJECT.match(below)):
            return DatasetRoot(parts[i], Path(*parts[: i + 1]))
    raw = raw_root(path)
    return DatasetRoot(RAW, raw) if raw is not None else None


def content_reference(path: str | Path) -> str:
    """``sha256:<hex>:<name>`` of a file outside every dataset (``sha256:unavailable:<name>``
    when it cannot be read)."""
    p = Path(path)
    try:
        st = p.stat()
        key = (str(_absolute(p)), st.st_size, st.st_mtime_ns)
        digest = _DIGESTS.get(key)
        if digest is None:
            with open(p, "rb") as fh:
                digest = _DIGESTS[key] = hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        digest = "unavailable"
    return f"{CONTENT_SCHEME}{digest}:{p.name}"


def bids_uri(path: str | Path, roots: Mapping[str, str | Path], current: str = "") -> str:
    """The BIDS URI of ``path`` given the known dataset roots.

    Parameters
    ----------
    path
        The file (relative paths are taken from the working directory).
    roots
        Dataset name -> root folder (``{"raw": bids_dir, "combine-raw": ...}``).
    current
        The name of the dataset holding the file that records the URI: its files get the empty
        dataset name (``bids::sub-01/...``).

    Returns
    -------
    str
        ``bids:<name>:<relative path>`` for the innermost root holding ``path``; for a file in
        none of them, :func:`content_reference`.
    """
    p = _absolute(path)
    best: tuple[int, str, Path] | None = None
    for name, root in roots.items():
        r = _absolute(root)
        if p.is_relative_to(r) and (best is None or len(r.parts) > best[0]):
            best = (len(r.parts), name, r)
    if best is None:
        return content_reference(p)
    _, name, root = best
    return f"{BIDS_SCHEME}{'' if name == current else name}:{p.relative_to(root).as_posix()}"


def _linked(holder: DatasetRoot, name: str) -> Path | None:
    """Where the holder's ``dataset_description.json`` links dataset ``name`` (None: no
    description, no such link, or a remote location)."""
    try:
        links = json.loads((holder.path / _DESCRIPTION).read_text()).get("DatasetLinks") or {}
    except (OSError, ValueError, AttributeError):
        return None
    target = links.get(name) if isinstance(links, Mapping) else None
    if not isinstance(target, str):
        return None
    if target.startswith("file://"):
        return Path(target.removeprefix("file://"))
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target):
        return None  # https:, doi: ... (not on this machine)
    return Path(os.path.normpath(holder.path / target))


def uri_for(path: str | Path, holder: str | Path) -> str:
    """The BIDS URI by which the file ``holder`` records ``path`` (see the module docstring).

    The roots are the holder's dataset, the derivative folders of its ``output_dir`` and the
    raw dataset above ``path`` (when the holder's description links another raw dataset, a
    file of that one is outside every dataset). A holder outside every dataset records
    ``path`` as given.
    """
    hold = dataset_of(holder)
    return os.fspath(path) if hold is None else _uri(path, hold)


def _uri(path: str | Path, hold: DatasetRoot) -> str:
    """:func:`uri_for` with the holder's dataset known."""
    p = _absolute(path)
    roots: dict[str, Path] = {hold.name: hold.path}
    if hold.name != RAW and p.is_relative_to(hold.path.parent):
        first = p.relative_to(hold.path.parent).parts[0]
        if is_folder_name(first):
            roots[first] = hold.path.parent / first
    raw = raw_root(p)
    if raw is not None and RAW not in roots:
        linked = _linked(hold, RAW)
        if linked is None or _absolute(linked.resolve()) == _absolute(raw.resolve()):
            roots[RAW] = raw
    return bids_uri(p, roots, current=hold.name)


def resolve_uri(value: str, holder: str | Path) -> Path | None:
    """The file a recorded value names, read from the file ``holder``.

    A BIDS URI is resolved through the holder's dataset (the empty name) or its
    ``DatasetLinks``; without a description (yet), a derivative folder is taken beside the
    holder's and the raw dataset from a sibling folder's links. A path (older outputs) is
    returned as given. Content references and unknown names give None.
    """
    if value.startswith(CONTENT_SCHEME):
        return None
    if not value.startswith(BIDS_SCHEME):
        return Path(value)
    name, sep, rel = value.removeprefix(BIDS_SCHEME).partition(":")
    hold = dataset_of(holder)
    if not sep or hold is None:
        return None
    if name == "":
        return hold.path / rel
    base = _linked(hold, name)
    if base is None and hold.name != RAW:
        if name != RAW and is_folder_name(name):
            base = hold.path.parent / name
        elif name == RAW:
            for desc in sorted(hold.path.parent.glob(f"*/{_DESCRIPTION}")):
                base = _linked(DatasetRoot(desc.parent.name, desc.parent), RAW)
                if base is not None:
                    break
    return base / rel if base is not None else None


def _exists(value: str) -> bool:
    """Whether ``value`` names an existing file (False for any text that cannot be a path)."""
    try:
        return Path(value).is_file()
    except (OSError, ValueError):
        return False


def _is_reference(value: str) -> bool:
    return value.startswith((BIDS_SCHEME, CONTENT_SCHEME))


def _walk(content: Any, key: str | None, convert: Any) -> Any:
    if isinstance(content, Mapping):
        return {k: v if k in KEPT_KEYS else _walk(v, str(k), convert) for k, v in content.items()}
    if isinstance(content, list | tuple):
        return [_walk(v, key, convert) for v in content]
    if isinstance(content, str):
        return convert(content, key)
    return content


def portable(content: Any, holder: str | Path) -> Any:
    """``content`` (JSON-like) with every recorded path as the holder's URI (:func:`uri_for`).

    A string is a path when its key is in :data:`PATH_KEYS` and it is absolute or names an
    existing file, or under any other key when it is absolute and names an existing file or
    holds no white space (a message that starts with a path stays as it is). Keys in
    :data:`KEPT_KEYS` (the configuration snapshot) are kept; URIs and content references are
    left as they are. A holder outside every dataset gets ``content`` unchanged.
    """
    hold = dataset_of(holder)
    if hold is None:
        return content

    def convert(value: str, key: str | None) -> str:
        if _is_reference(value) or not value:
            return value
        if key in PATH_KEYS:
            path = os.path.isabs(value) or _exists(value)
        else:  # a message that starts with a path is no path
            path = os.path.isabs(value) and (not _SPACE.search(value) or _exists(value))
        return _uri(value, hold) if path else value

    return _walk(content, None, convert)


def localize(content: Any, holder: str | Path) -> Any:
    """``content`` read from the file ``holder`` with every BIDS URI resolved to a path (a
    string; an unresolvable URI and content references stay as they are): for readers that
    use recorded paths, and for content copied into another file's sidecar."""

    def convert(value: str, key: str | None) -> str:
        if not value.startswith(BIDS_SCHEME):
            return value
        found = resolve_uri(value, holder)
        return os.fspath(found) if found is not None else value

    return _walk(content, None, convert)


def dataset_links(root: str | Path, raw: str | Path, folders: Iterable[str] = ()) -> dict[str, str]:
    """``DatasetLinks`` of the derivative folder ``root``: the raw dataset and every other
    folder of ``folders`` (derivative folders beside ``root``), as locations relative to
    ``root``."""
    here = _absolute(root)
    links = {RAW: Path(os.path.relpath(Path(raw).resolve(), here.resolve())).as_posix()}
    for name in sorted(set(folders) - {here.name, RAW, ""}):
        links[name] = f"../{name}"
    return links


def relative_location(path: str | Path, start: str | Path) -> str:
    """``path`` relative to the folder ``start`` (both resolved), for texts that name a folder
    (a README, the report's configuration)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


def file_label(value: str | Path) -> str:
    """The name of a file for a description text (``sub-01_..._mask.nii.gz``): a path to an
    existing file gives its name, anything else (a method label) is returned as it is."""
    text = os.fspath(value)
    return Path(text).name if os.sep in text and _exists(text) else text


def relative_paths(content: Any, start: str | Path) -> Any:
    """``content`` (JSON-like) with every absolute path (a string without white space) made
    relative to the folder ``start`` (:func:`relative_location`): the configuration as a page in
    the output shows it."""

    def convert(value: str, key: str | None) -> str:
        if os.path.isabs(value) and not _SPACE.search(value):
            return relative_location(value, start)
        return value

    return _walk(content, None, convert)


__all__ = [
    "BIDS_SCHEME",
    "CONTENT_SCHEME",
    "KEPT_KEYS",
    "PATH_KEYS",
    "RAW",
    "DatasetRoot",
    "bids_uri",
    "content_reference",
    "dataset_links",
    "dataset_of",
    "file_label",
    "is_folder_name",
    "localize",
    "portable",
    "raw_root",
    "relative_location",
    "relative_paths",
    "resolve_uri",
    "uri_for",
]
