"""The file index of a raw BIDS dataset: one walk, names parsed, sidecars and headers cached.

:meth:`BidsIndex.open` walks the dataset once (``os.scandir``), parses every file name and
keeps what discovery needs:

- the files of the *selected* subjects only (and, with a session filter, the selected
  sessions plus every session's ``anat/``, where a T1w may live); subjects and sessions that
  the selection leaves out cost one directory listing, not a walk;
- JSON sidecar contents, NIfTI header facts and tables (``scans.tsv``), read lazily and
  cached on disk per file, keyed by relative path, size and modification time
  (``cache_dir/facts/<sub-X>.pickle``, one shard per subject and one for the dataset's top
  level), so a new or edited file is read again and nothing else is;
- sidecar metadata with the BIDS inheritance principle (every JSON file with the same suffix
  whose entities are a subset of the data file's, in the data file's folder or an ancestor,
  applied from the top level down, the one with more entities last at each level).

The listing (relative paths, sizes, modification times) gives :attr:`BidsIndex.key`, which
:mod:`echoprep.io.bids` uses to cache the discovered dataset as a whole. Nothing is written
into the dataset. pybids served this before; at LAION-fMRI size it could not
(docs/what-it-does.md, "Input discovery").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from echoprep.io.atomic import write_bytes
from echoprep.io.bids_checks import BidsFile, ImageHeader, labels, parse_name, read_header

logger = logging.getLogger("echoprep.io.bids")

T = TypeVar("T")

#: Bumped whenever the cached content changes meaning.
CACHE_VERSION = "4"
#: Top-level folders that are not part of the raw input (BIDS tools skip them too).
_SKIP_TOP = frozenset({"derivatives", "sourcedata", "code", "models", "stimuli"})
#: Shard of the facts cache for files outside any ``sub-*`` folder.
_TOP_SHARD = "_top"


@dataclass(frozen=True)
class Listed:
    """One file of the walk: path relative to the root (POSIX), size (bytes; -1 when it
    cannot be read, e.g. a broken symbolic link) and modification time (ns)."""

    rel: str
    size: int
    mtime_ns: int


def _scan(
    folder: str, rel: str, out: list[Listed], seen: set[tuple[int, int]], skip: set[str]
) -> list[tuple[str, str]]:
    """List one folder: its files into ``out``; returns its subfolders ``(path, rel/)``."""
    try:
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:  # a symbolic link loop
            return []
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return []
    subdirs = []
    for entry in entries:
        name = entry.name
        if name.startswith(".") or entry.path in skip:
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            subdirs.append((entry.path, f"{rel}{name}/"))
            continue
        try:
            st = entry.stat()
            out.append(Listed(f"{rel}{name}", st.st_size, st.st_mtime_ns))
        except OSError:  # a broken symbolic link: listed, read as such later
            out.append(Listed(f"{rel}{name}", -1, 0))
    return subdirs


def walk(
    root: Path,
    subjects: Sequence[str] | None = None,
    sessions: Sequence[str] | None = None,
    skip: Iterable[Path] = (),
) -> tuple[list[Listed], list[str], dict[str, list[str]]]:
    """The files of the selected part of a dataset, and every subject folder's label.

    Parameters
    ----------
    root
        Dataset root.
    subjects
        Labels whose ``sub-<label>/`` folders are walked (``None``: all).
    sessions
        Labels whose ``ses-<label>/`` folders are walked in full (``None``: all); of the
        other sessions only ``anat/`` is walked.
    skip
        Folders left out (e.g. a cache inside the dataset).

    Returns
    -------
    files
        Sorted by relative path. Dot-entries and the top-level ``derivatives/``,
        ``sourcedata/``, ``code/``, ``models/`` and ``stimuli/`` are left out; symbolic links
        are followed.
    subject_labels
        Labels of every top-level ``sub-<label>/`` folder, sorted.
    session_labels
        Walked subject -> labels of its ``ses-<label>/`` folders (walked or not).
    """
    want_sub = None if subjects is None else set(labels(subjects, "sub") or [])
    want_ses = None if sessions is None else set(labels(sessions, "ses") or [])
    skip_set = {str(p) for p in skip}
    files: list[Listed] = []
    seen: set[tuple[int, int]] = set()
    top = _scan(str(root), "", files, seen, skip_set)
    found_subjects = []
    session_labels: dict[str, list[str]] = defaultdict(list)
    stack: list[tuple[str, str]] = []
    for path, rel in top:
        name = rel[:-1]
        if name in _SKIP_TOP:
            continue
        if name.startswith("sub-"):
            found_subjects.append(name[4:])
            if want_sub is not None and name[4:] not in want_sub:
                continue
        stack.append((path, rel))
    while stack:
        path, rel = stack.pop()
        for sub_path, sub_rel in reversed(_scan(path, rel, files, seen, skip_set)):
            name = sub_rel.rstrip("/").rsplit("/", 1)[-1]
            depth = sub_rel.count("/")
            if depth == 2 and name.startswith("ses-"):
                session_labels[sub_rel.split("/", 1)[0][4:]].append(name[4:])
            if want_ses is not None and depth == 2 and name.startswith("ses-"):
                if name[4:] not in want_ses:  # another session: only its anatomy
                    anat = Path(sub_path) / "anat"
                    if anat.is_dir():
                        stack.append((str(anat), f"{sub_rel}anat/"))
                    continue
            stack.append((sub_path, sub_rel))
    files.sort(key=lambda f: f.rel)
    return files, sorted(found_subjects), {k: sorted(v) for k, v in session_labels.items()}


def listing_digest(root: Path, files: Iterable[Listed], *extra: str) -> str:
    """SHA-1 of a listing (paths, sizes, modification times) and ``extra`` strings."""
    digest = hashlib.sha1()
    digest.update(f"echoprep-bids {CACHE_VERSION}\0{root}\0{chr(0).join(extra)}\n".encode())
    for f in files:
        digest.update(f"{f.rel}\0{f.size}\0{f.mtime_ns}\n".encode())
    return digest.hexdigest()


def _parsed(root: Path, rel: str) -> BidsFile | None:
    """The :class:`BidsFile` of a listed path, or None when its name is not BIDS."""
    folder, _, name = rel.rpartition("/")
    parsed = parse_name(name)
    if parsed is None:
        return None
    return BidsFile(root / rel, *parsed, folder.rsplit("/", 1)[-1])


def _shard(rel: str) -> str:
    head = rel.split("/", 1)[0]
    return head if head.startswith("sub-") and "/" in rel else _TOP_SHARD


class _Facts:
    """What was read of each file (JSON content or header facts), cached on disk per shard."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._shards: dict[str, dict[str, tuple[int, int, Any]]] = {}
        self._dirty: set[str] = set()
        self.reads = 0  # files read (not found in the cache): the work that grows with data

    def _load(self, shard: str) -> dict[str, tuple[int, int, Any]]:
        if shard not in self._shards:
            content: dict[str, tuple[int, int, Any]] = {}
            if self.folder is not None:
                try:
                    with open(self.folder / f"{shard}.pickle", "rb") as fh:
                        loaded = pickle.load(fh)
                    if isinstance(loaded, dict):
                        content = loaded
                except Exception:  # missing or damaged: read the files again
                    content = {}
            self._shards[shard] = content
        return self._shards[shard]

    def get(self, entry: Listed, read: Any) -> Any:
        """The entry's facts, read (``read()``) and stored when not cached."""
        if self.missing(entry):
            self.put(entry, read())
        return self._load(_shard(entry.rel))[entry.rel][2]

    def missing(self, entry: Listed) -> bool:
        """Whether the entry's facts are not cached (or are of another file version)."""
        cached = self._load(_shard(entry.rel)).get(entry.rel)
        return cached is None or cached[:2] != (entry.size, entry.mtime_ns)

    def put(self, entry: Listed, value: Any) -> None:
        """Store an entry's facts just read (counted in :attr:`reads`)."""
        self._load(_shard(entry.rel))[entry.rel] = (entry.size, entry.mtime_ns, value)
        self.reads += 1
        self._dirty.add(_shard(entry.rel))

    def save(self, keep: dict[str, set[str]] | None) -> None:
        """Write the changed shards, keeping only the entries of files still listed (all
        entries when ``keep`` is None: a partial walk cannot tell a removed file)."""
        if self.folder is None:
            return
        for name in sorted(self._dirty):
            shard = self._shards[name]
            listed = keep.get(name, set()) if keep is not None else shard
            content = {rel: v for rel, v in shard.items() if rel in listed}
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                write_bytes(self.folder / f"{name}.pickle", pickle.dumps(content, protocol=5))
            except OSError as exc:
                logger.debug("could not write the BIDS facts cache (%s)", exc)
        self._dirty.clear()


def _read_json(path: Path) -> tuple[bool, Any]:
    """``(True, content)`` or ``(False, the parser's error)``."""
    try:
        return True, json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return False, f"{type(exc).__name__}: {exc}"


def _read_tsv(path: Path) -> tuple[bool, Any]:
    """``(True, (columns, rows))`` of a tab-separated table (blank lines left out), or
    ``(False, the reader's error)``."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if not lines:
        return False, "an empty file"
    return True, (lines[0].split("\t"), [line.split("\t") for line in lines[1:]])


#: Threads that read the files where the file system makes the process wait
#: (:meth:`BidsIndex.prefetch`).
PREFETCH_WORKERS = 8
#: Files :meth:`BidsIndex.prefetch` reads, and times, at a time in the calling thread; also
#: the most files one task of its thread pool reads.
PREFETCH_CHUNK = 64
#: Mean seconds per file that a chunk read in the calling thread may spend waiting (off the
#: CPU) before :meth:`BidsIndex.prefetch` counts it as slow. A page-cached read hardly waits
#: (measured: a 64-file chunk's mean waiting under 0.16 ms but for rare stalls of the whole
#: process); 8 threads read 1.7 times faster than one where each file waits ~0.27 ms, 3 to 4
#: times where it waits ~0.57 ms.
PREFETCH_WAIT_S = 0.2e-3
#: Slow chunks in a row after which :meth:`BidsIndex.prefetch` reads the rest with threads
#: (one alone may be a stall of the whole machine, not the file system).
PREFETCH_SLOW_CHUNKS = 2


class BidsIndex:
    """The walked files of a dataset with their sidecars and headers.

    Attributes
    ----------
    root
        Dataset root (absolute).
    files
        Every walked file whose name parses as BIDS and names a subject, sorted by path.
    subject_labels
        Every top-level ``sub-<label>/`` folder's label (walked or not).
    walked_subjects
        The labels of the subject folders walked.
    session_labels
        Walked subject -> labels of its ``ses-<label>/`` folders (walked or not).
    partial_sessions
        Whether a session filter left sessions unwalked (but their ``anat/``).
    key
        Digest of the listing (see :func:`listing_digest`).
    """

    def __init__(
        self,
        root: Path,
        listing: list[Listed],
        subject_labels: list[str],
        facts_dir: Path | None,
        walked_subjects: Iterable[str] | None = None,
        session_labels: dict[str, list[str]] | None = None,
        partial_sessions: bool = False,
    ) -> None:
        self.root = root
        self.subject_labels = subject_labels
        self.walked_subjects = set(subject_labels if walked_subjects is None else walked_subjects)
        self.session_labels = session_labels or {}
        self.partial_sessions = partial_sessions
        self.listing = {f.rel: f for f in listing}
        self.key = listing_digest(root, listing)
        self._facts = _Facts(facts_dir)
        self.files: list[BidsFile] = []
        self._prefix = f"{root}/"
        #: (folder (relative), suffix) -> JSON files, for the inheritance principle
        self._jsons: dict[tuple[str, str], list[BidsFile]] = defaultdict(list)
        for f in listing:
            bf = _parsed(root, f.rel)
            if bf is None:
                continue
            if bf.ext == ".json":
                self._jsons[(f.rel.rpartition("/")[0], bf.suffix)].append(bf)
            if "sub" in bf.entities:
                self.files.append(bf)

    @classmethod
    def open(
        cls,
        root: Path,
        cache_dir: str | Path | None,
        subjects: Sequence[str] | None = None,
        sessions: Sequence[str] | None = None,
    ) -> BidsIndex:
        """Walk the selected part of ``root`` (see :func:`walk`); facts cached in
        ``cache_dir/facts`` (``None``: in memory)."""
        cache = Path(cache_dir).expanduser().absolute() if cache_dir is not None else None
        skip = [cache] if cache is not None else []
        listing, found_subjects, session_labels = walk(root, subjects, sessions, skip)
        facts = cache / "facts" if cache is not None else None
        walked = None if subjects is None else set(labels(subjects, "sub") or [])
        return cls(
            root,
            listing,
            found_subjects,
            facts,
            walked_subjects=None if walked is None else walked & set(found_subjects),
            session_labels=session_labels,
            partial_sessions=sessions is not None,
        )

    def subject_files(self, subject: str) -> list[BidsFile]:
        """Every file of a subject's folder, all sessions (for messages about what a session
        filter left out; not part of :attr:`key`)."""
        if not self.partial_sessions:
            return [f for f in self.files if f.entities["sub"] == subject]
        listing, _, _ = walk(self.root, [subject])
        found = [_parsed(self.root, f.rel) for f in listing]
        return [f for f in found if f is not None and f.entities.get("sub") == subject]

    @cached_property
    def broken(self) -> dict[Path, str]:
        """JSON files that do not parse, with the parser's error (every JSON file is read,
        or found in the cache, the first time this is asked)."""
        found = {}
        for folder_jsons in self._jsons.values():
            for bf in folder_jsons:
                ok, value = self._json(bf.path)
                if not ok:
                    found[bf.path] = value
        return found

    @property
    def reads(self) -> int:
        """Files read so far (sidecars and headers not found in the cache)."""
        return self._facts.reads

    def _entry(self, path: Path) -> Listed | None:
        text = str(path)
        if not text.startswith(self._prefix):
            return None
        return self.listing.get(text[len(self._prefix) :])

    def _json(self, path: Path) -> tuple[bool, Any]:
        entry = self._entry(path)
        if entry is None:
            return _read_json(path)
        return self._facts.get(entry, lambda: ("json", _read_json(path)))[1]

    def header(self, path: Path, root: Path | None = None) -> ImageHeader:
        """Header facts of an image (read once per file version)."""
        entry = self._entry(path)
        if entry is None:
            return read_header(path)
        return self._facts.get(entry, lambda: ("header", read_header(path)))[1]

    def table(self, path: Path) -> tuple[bool, Any]:
        """A tab-separated table (a session's ``scans.tsv``): ``(True, (columns, rows))``
        (cells as text) or ``(False, the reader's error)``; read once per file version and
        cached with the sidecars (read only when asked: :meth:`prefetch` leaves tables out)."""
        entry = self._entry(path)
        if entry is None:
            return _read_tsv(path)
        return self._facts.get(entry, lambda: ("tsv", _read_tsv(path)))[1]

    def prefetch(self, workers: int | None = None, *, threads: bool | None = None) -> int:
        """Read what discovery will ask of the walked files and the cache lacks: every JSON
        file and the headers of the BOLD and T1w images.

        Reading a page-cached file is Python work under the GIL (JSON parsing, nibabel's
        header), which threads only slow down; threads pay off where the process waits on
        the file system (a cold disk, a network file system). So the files are read
        :data:`PREFETCH_CHUNK` at a time in the calling thread, each chunk timed, and once
        :data:`PREFETCH_SLOW_CHUNKS` chunks in a row waited more than
        :data:`PREFETCH_WAIT_S` per file, the files left are read by ``workers`` threads, a
        chunk per task. Waiting is the wall-clock time less the thread's CPU time, so that a
        garbage collection or an import (CPU work, which threads cannot overlap) does not
        count. Measured on 2 cores, 27,700 page-cached files of a LAION-size tree: 2.3 s in
        one thread; 4.5 s with 8 threads and a task per 64 files, 5.5 s with a task per file.

        Parameters
        ----------
        workers
            Threads for a file system that makes the process wait (default
            :data:`PREFETCH_WORKERS`).
        threads
            ``None``: decide by the rule above; ``True``: read every file with the threads;
            ``False``: read every file in the calling thread.

        Returns
        -------
        int
            The number of files read. The facts, and the order they are stored in (so the
            facts cache that :meth:`save` writes, byte for byte), do not depend on how they
            were read.
        """
        from concurrent.futures import ThreadPoolExecutor

        def wanted(bf: BidsFile) -> str | None:
            if bf.ext == ".json":
                return "json"
            if bf.ext in (".nii", ".nii.gz") and bf.suffix in ("bold", "T1w"):
                return "header"
            return None

        todo: list[tuple[Listed, str, Path]] = []
        seen: set[str] = set()
        jsons = [bf for group in self._jsons.values() for bf in group]
        for bf in [*jsons, *self.files]:
            kind = wanted(bf)
            entry = self._entry(bf.path) if kind else None
            if kind and entry is not None and entry.rel not in seen and self._facts.missing(entry):
                seen.add(entry.rel)
                todo.append((entry, kind, bf.path))

        def read(chunk: list[tuple[Listed, str, Path]]) -> list[tuple[str, Any]]:
            return [
                (kind, _read_json(path) if kind == "json" else read_header(path))
                for _, kind, path in chunk
            ]

        def store(chunk: list[tuple[Listed, str, Path]], values: list[tuple[str, Any]]) -> None:
            for (entry, _, _), value in zip(chunk, values, strict=True):
                self._facts.put(entry, value)

        size = max(1, PREFETCH_CHUNK)
        done = slow = 0
        while (
            done < len(todo)
            and threads is not True
            and (threads is False or slow < PREFETCH_SLOW_CHUNKS)
        ):
            chunk = todo[done : done + size]
            wall, cpu = time.perf_counter(), time.thread_time()
            values = read(chunk)
            waited = (time.perf_counter() - wall) - (time.thread_time() - cpu)
            slow = slow + 1 if waited / len(chunk) > PREFETCH_WAIT_S else 0
            store(chunk, values)
            done += len(chunk)
        rest = todo[done:]
        if rest:
            pool_size = max(1, workers or PREFETCH_WORKERS)
            # a future per chunk, enough chunks to keep every thread busy to the end
            per_task = max(1, min(size, -(-len(rest) // (pool_size * 4))))
            chunks = [rest[i : i + per_task] for i in range(0, len(rest), per_task)]
            logger.debug("reading %d files with %d threads", len(rest), pool_size)
            with ThreadPoolExecutor(max_workers=pool_size) as pool:
                for chunk, values in zip(chunks, pool.map(read, chunks), strict=True):
                    store(chunk, values)
        return len(todo)

    def metadata(self, path: Path) -> dict[str, Any]:
        """Sidecar metadata of a data file with BIDS inheritance (see the module docstring);
        JSON files that do not parse are left out."""
        text = str(path)
        parsed = parse_name(path.name)
        if parsed is None or not text.startswith(self._prefix):
            return {}
        ents, suffix, _ = parsed
        items = ents.items()
        folders = text[len(self._prefix) :].split("/")[:-1]
        merged: dict[str, Any] = {}
        for depth in range(len(folders) + 1):
            candidates = self._jsons.get(("/".join(folders[:depth]), suffix), ())
            applicable = [bf for bf in candidates if bf.entities.items() <= items]
            for bf in sorted(applicable, key=lambda b: (len(b.entities), b.path.name)):
                ok, content = self._json(bf.path)
                if ok and isinstance(content, dict):
                    merged.update(content)
        return merged

    def save(self) -> None:
        """Write the facts read for the first time (entries of files no longer listed are
        dropped, unless a session filter left parts of the subjects unwalked)."""
        if self.partial_sessions:
            self._facts.save(None)
            return
        keep: dict[str, set[str]] = defaultdict(set)
        for rel in self.listing:
            keep[_shard(rel)].add(rel)
        self._facts.save(keep)


class DatasetCache:
    """One discovered dataset, pickled in ``cache/dataset-<digest>.pickle`` where the digest
    covers the dataset root, the discovery options and the discovery code (``code``: its
    source files), and stored with the listing key it was discovered from.

    Parameters
    ----------
    cache
        The cache folder; ``None``: nothing is loaded or saved.
    root
        Dataset root.
    options
        The discovery options (JSON-able).
    code
        Source files whose content invalidates the cache.
    """

    def __init__(
        self,
        cache: Path | None,
        root: Path,
        options: dict[str, Any],
        code: Iterable[Path] = (),
    ) -> None:
        self.path: Path | None = None
        if cache is None:
            return
        digest = hashlib.sha1()
        for source in sorted(code):
            digest.update(source.read_bytes())
        text = json.dumps(
            {"root": str(root), "version": CACHE_VERSION, "code": digest.hexdigest(), **options},
            sort_keys=True,
        )
        self.path = cache / f"dataset-{hashlib.sha1(text.encode()).hexdigest()[:16]}.pickle"

    def load(self, kind: type[T], key: str | None) -> T | None:
        """The cached object when it is a ``kind`` discovered from the listing ``key`` (any
        listing when None), else None (missing, damaged, of another key)."""
        if self.path is None:
            return None
        try:
            with open(self.path, "rb") as fh:
                stored = pickle.load(fh)
            found = stored.get("dataset") if isinstance(stored, dict) else None
            if isinstance(found, kind) and (key is None or stored.get("key") == key):
                return found
        except Exception:  # missing, damaged or of another version: discover again
            pass
        return None

    def save(self, key: str, dataset: object) -> None:
        """Store ``dataset`` with its listing key (atomically; a failure is only logged)."""
        if self.path is None:
            return
        try:
            write_bytes(self.path, pickle.dumps({"key": key, "dataset": dataset}, protocol=5))
        except OSError as exc:
            logger.debug("could not cache the discovered dataset in %s (%s)", self.path, exc)


__all__ = ["CACHE_VERSION", "BidsIndex", "DatasetCache", "Listed", "listing_digest", "walk"]
