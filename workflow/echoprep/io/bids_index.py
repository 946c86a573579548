"""The pybids index of a raw BIDS dataset, cached per file-tree fingerprint, with header facts.

:meth:`BidsIndex.open` indexes the dataset (or reuses the cached index in
``cache_dir/<key>/`` whose ``key`` is a fingerprint of the file tree: relative paths, sizes,
modification times), so adding, removing or editing a file rebuilds the index; stale index
folders are removed. JSON files that do not parse are reported and left out. NIfTI header facts
are cached next to the index. Nothing is written into the dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from echoprep.io.atomic import write_text
from echoprep.io.bids_checks import ImageHeader, ProblemLog, check_json_files, read_header

logger = logging.getLogger("echoprep.io.bids")

#: Bumped whenever the cached content changes meaning.
_CACHE_VERSION = "2"
_DB_FILE = "layout_index.sqlite"
_HEADERS_FILE = "headers.json"
_KEY_RE = re.compile(r"^[0-9a-f]{16}$")
#: Top-level folders that are not part of the raw input (pybids ignores them too).
_SKIP_TOP = frozenset({"derivatives", "sourcedata", "code", "models", "stimuli"})


def _fingerprint(root: Path, skip: Iterable[Path] = ()) -> tuple[str, list[Path]]:
    """SHA-1 of the file tree (relative paths, sizes, mtimes) and the JSON files in it.

    Dot-entries, the top-level ``derivatives/``, ``sourcedata/``, ``code/``, ``models/``,
    ``stimuli/`` and the paths in ``skip`` are left out (pybids does not index them either).
    Symbolic links are followed (DataLad / git-annex datasets).
    """
    import bids

    skip_set = {str(p) for p in skip}
    digest = hashlib.sha1()
    digest.update(f"echoprep-bids-index {_CACHE_VERSION}\0{root}\0{bids.__version__}\n".encode())
    jsons: list[Path] = []
    seen_dirs: set[tuple[int, int]] = set()
    stack: list[tuple[str, str]] = [(str(root), "")]
    while stack:
        folder, rel = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen_dirs:
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            digest.update(f"{rel}\0unreadable {exc.errno}\n".encode())
            continue
        subdirs = []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or (not rel and name in _SKIP_TOP):
                continue
            if entry.path in skip_set:
                continue
            relpath = f"{rel}{name}"
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                subdirs.append((entry.path, f"{relpath}/"))
                continue
            try:
                st = entry.stat()
                digest.update(f"{relpath}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{relpath}\0missing\n".encode())
            if name.endswith(".json"):
                jsons.append(Path(entry.path))
        stack.extend(reversed(subdirs))
    return digest.hexdigest(), jsons


def _close_layout(layout: Any) -> None:
    """Release pybids' SQLite connections (before the database folder is renamed)."""
    manager = getattr(layout, "connection_manager", None)
    if manager is None:
        return
    session = getattr(manager, "_session", None)
    if session is not None:
        session.close()
    engine = getattr(manager, "engine", None)
    if engine is not None:
        engine.dispose()


def _remove_stale(cache: Path, key: str) -> None:
    """Remove index folders of other fingerprints and abandoned temporary folders."""
    try:
        entries = list(os.scandir(cache))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        stale = _KEY_RE.match(entry.name) and entry.name != key
        try:
            abandoned = entry.name.startswith(".tmp-") and now - entry.stat().st_mtime > 3600
        except OSError:
            abandoned = False
        if stale or abandoned:
            shutil.rmtree(entry.path, ignore_errors=True)


class BidsIndex:
    """The pybids layout of a dataset plus a cache of NIfTI header facts."""

    def __init__(self, layout: Any, folder: Path | None, broken: Iterable[Path] = ()) -> None:
        self.layout = layout
        self.folder = folder
        #: JSON files that do not parse (left out of the index, reported as problems).
        self.broken = set(broken)
        self.headers: dict[str, ImageHeader] = {}
        self._dirty = False
        if folder is not None:
            try:
                raw = json.loads((folder / _HEADERS_FILE).read_text())
                self.headers = {k: ImageHeader.from_json(v) for k, v in raw.items()}
            except (OSError, ValueError, KeyError, TypeError):
                self.headers = {}

    @classmethod
    def open(cls, root: Path, cache_dir: str | Path | None, log: ProblemLog) -> BidsIndex:
        """Index ``root`` (or load the cached index that matches its current file tree)."""
        from bids.layout import BIDSLayout, BIDSLayoutIndexer
        from bids.layout.validation import DEFAULT_LOCATIONS_TO_IGNORE

        cache = Path(cache_dir).expanduser().absolute() if cache_dir is not None else None
        digest, jsons = _fingerprint(root, [cache] if cache is not None else [])
        key = digest[:16]
        folder = cache / key if cache is not None else None

        if folder is not None and (folder / _DB_FILE).is_file():
            try:
                layout = BIDSLayout(root, validate=False, derivatives=False, database_path=folder)
                logger.debug("reusing the BIDS index in %s", folder)
                _remove_stale(folder.parent, key)
                return cls(layout, folder)
            except Exception as exc:  # a damaged cache is rebuilt, never trusted
                logger.warning("rebuilding the BIDS index in %s (%s)", folder, exc)
                shutil.rmtree(folder, ignore_errors=True)

        broken = check_json_files(jsons)
        for path, error in broken.items():
            log.add(
                path,
                "valid JSON (UTF-8 text)",
                f"a file that does not parse ({error})",
                f"correct the syntax (`python -m json.tool {log.rel(path)}` points at the "
                "error) or re-create the file",
            )
        ignore: list[Any] = list(DEFAULT_LOCATIONS_TO_IGNORE)
        ignore += [re.compile("^/" + re.escape(log.rel(p)) + "$") for p in broken]
        if cache is not None and cache.is_relative_to(root):
            ignore.append(re.compile("^/" + re.escape(log.rel(cache)) + "(/|$)"))
        indexer = BIDSLayoutIndexer(validate=False, ignore=ignore)

        if folder is not None and not broken:
            if folder.exists():  # a key folder without its database is not trusted
                shutil.rmtree(folder, ignore_errors=True)
            try:
                return cls(cls._build_cached(root, folder, key, indexer), folder)
            except OSError as exc:
                logger.warning(
                    "cannot cache the BIDS index in %s (%s); indexing in memory", folder, exc
                )
        layout = BIDSLayout(root, validate=False, derivatives=False, indexer=indexer)
        return cls(layout, None, broken)

    @staticmethod
    def _build_cached(root: Path, folder: Path, key: str, indexer: Any) -> Any:
        """Index into a temporary folder, then rename it to ``folder`` (atomic; race-safe)."""
        from bids.layout import BIDSLayout

        cache = folder.parent
        cache.mkdir(parents=True, exist_ok=True)
        _remove_stale(cache, key)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=cache))
        try:
            layout = BIDSLayout(
                root, validate=False, derivatives=False, database_path=tmp, indexer=indexer
            )
            _close_layout(layout)
            info = {"root": str(root), "key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            (tmp / "index.json").write_text(json.dumps(info, indent=2) + "\n")
            try:
                os.rename(tmp, folder)
                logger.info("indexed the BIDS dataset %s into %s", root, folder)
            except OSError:  # another process finished the same index first
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return BIDSLayout(root, validate=False, derivatives=False, database_path=folder)

    def header(self, path: Path, root: Path) -> ImageHeader:
        """Header facts of an image (read once per index version)."""
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        if rel not in self.headers:
            self.headers[rel] = read_header(path)
            self._dirty = True
        return self.headers[rel]

    def metadata(self, path: Path) -> dict[str, Any]:
        """Sidecar metadata with BIDS inheritance, as pybids resolves it."""
        try:
            return dict(self.layout.get_metadata(str(path)))
        except Exception:  # a file pybids does not know has no metadata
            return {}

    def save(self) -> None:
        """Write the header cache (atomically) when something new was read."""
        if self.folder is None or not self._dirty or not self.folder.is_dir():
            return
        try:
            content = json.dumps({k: v.to_json() for k, v in self.headers.items()})
            write_text(self.folder / _HEADERS_FILE, content)
            self._dirty = False
        except OSError as exc:
            logger.debug("could not write the header cache (%s)", exc)

    def close(self) -> None:
        """Release pybids' SQLite connections."""
        _close_layout(self.layout)


__all__ = ["BidsIndex"]
