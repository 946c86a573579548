"""The cold read of the BIDS index (:meth:`BidsIndex.prefetch`): in the calling thread while
the file system answers at once, with threads once it makes the process wait, and the same
facts either way."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from echoprep.io import bids_index
from echoprep.io.bids_index import BidsIndex
from helpers.bidstree import bold_path, corrupt, edit_sidecar, make_bids_tree

#: Seconds a read waits where a test makes the file system slow: far above PREFETCH_WAIT_S.
SLOW_S = 0.003


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Headers only, 4 subjects x 4 runs: 201 files to read (several chunks of 64), with a
    sidecar and a header that do not parse (their errors are facts too)."""
    ds = make_bids_tree(
        tmp_path / "ds",
        subjects=("01", "02", "03", "04"),
        runs=("01", "02", "03", "04"),
        data=False,
    )
    corrupt(bold_path(ds, sub="02", run="03", echo=2))
    corrupt(bold_path(ds, sub="03", run="01", echo=1, ext=".json"), b"{not json")
    return ds


class SimulatedClock:
    """The clocks :meth:`BidsIndex.prefetch` times its chunks with, as the simulated reads
    make them: the wall clock advances by each read's simulated wait and by nothing else, the
    thread's CPU clock stands still. The rule then sees exactly the waits a test gives,
    whatever else the machine runs (a preempted thread would otherwise look like one waiting
    on the file system)."""

    def __init__(self) -> None:
        self.wall = 0.0

    def perf_counter(self) -> float:
        return self.wall

    def thread_time(self) -> float:
        return 0.0


class Reads:
    """The index's readers, wrapped: each read is logged as (path, reading thread) after
    waiting ``delay(k)`` seconds (``k``: the read's number since the last :meth:`clear`):
    sleeping, or with ``simulated``, only on a :class:`SimulatedClock` that replaces the
    index's clocks."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        delay: Callable[[int], float] = lambda k: 0.0,
        simulated: bool = False,
    ) -> None:
        self.log: list[tuple[Path, int]] = []
        self.delay = delay
        self.clock = SimulatedClock() if simulated else None
        self._count = itertools.count()  # next() is atomic under the GIL
        monkeypatch.setattr(bids_index, "_read_json", self._wrap(bids_index._read_json))
        monkeypatch.setattr(bids_index, "read_header", self._wrap(bids_index.read_header))
        if self.clock is not None:
            monkeypatch.setattr(bids_index, "time", self.clock)

    def _wrap(self, reader: Callable[[Path], object]) -> Callable[[Path], object]:
        def read(path: Path) -> object:
            wait = self.delay(next(self._count))
            if self.clock is not None:
                self.clock.wall += wait
            elif wait:
                time.sleep(wait)
            self.log.append((path, threading.get_ident()))
            return reader(path)

        return read

    def clear(self) -> None:
        self.log.clear()
        self._count = itertools.count()

    def threads(self, start: int = 0, stop: int | None = None) -> set[int]:
        """The threads that did reads ``start`` to ``stop`` (in the order they were done)."""
        return {ident for _, ident in self.log[start:stop]}


def test_the_facts_do_not_depend_on_how_they_are_read(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the calling thread, with threads, or both (the rule, the first two chunks made
    slow): the same answers and the same facts cache, byte for byte; each file read once,
    and nothing read again afterwards."""
    monkeypatch.setattr(bids_index, "PREFETCH_CHUNK", 8)  # several chunks, several tasks
    monkeypatch.setattr(bids_index, "PREFETCH_SLOW_CHUNKS", 2)
    reads = Reads(monkeypatch)
    main = threading.get_ident()
    lazy = BidsIndex.open(root, None)  # no prefetch: every file read when asked
    images = [f.path for f in lazy.files if f.suffix in ("bold", "T1w") and f.ext != ".json"]
    expected = [(p, lazy.header(p), lazy.metadata(p)) for p in images], lazy.broken
    assert len(expected[1]) == 1 and any(h.error for _, h, _ in expected[0])

    stored = {}
    for threads in (False, True, None):
        cache = tmp_path / f"cache-{threads}"
        index = BidsIndex.open(root, cache)
        reads.clear()
        reads.delay = (lambda k: SLOW_S if k < 16 else 0.0) if threads is None else (lambda k: 0)
        assert index.prefetch(threads=threads) == len(reads.log) == index.reads == 201
        assert len({path for path, _ in reads.log}) == 201
        split = {False: 201, True: 0, None: 16}[threads]  # reads done in the calling thread
        assert reads.threads(0, split) == ({main} if split else set())
        assert main not in reads.threads(split)
        answers = [(p, index.header(p), index.metadata(p)) for p in images], index.broken
        assert answers == expected
        assert len(reads.log) == 201  # the answers came from what the prefetch read
        index.save()
        stored[threads] = {f.name: f.read_bytes() for f in sorted((cache / "facts").iterdir())}
    assert len(stored[False]) == 5  # a shard per subject and one for the top level
    assert stored[False] == stored[True] == stored[None]


def test_slow_reads_go_to_threads(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read waits: after PREFETCH_SLOW_CHUNKS chunks in the calling thread, the rest
    is read by the ``workers`` threads."""
    monkeypatch.setattr(bids_index, "PREFETCH_CHUNK", 8)
    reads = Reads(monkeypatch, delay=lambda k: SLOW_S)
    main = threading.get_ident()
    assert BidsIndex.open(root, None).prefetch(workers=4) == len(reads.log) == 201
    first = 8 * bids_index.PREFETCH_SLOW_CHUNKS
    assert reads.threads(0, first) == {main}
    others = reads.threads(first)
    assert main not in others and 1 <= len(others) <= 4


def test_fast_reads_stay_in_the_calling_thread(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads that do not wait (a page-cached tree; simulated clocks, so that the test
    machine's load cannot look like waiting), the module's own chunk and threshold: no thread
    is started, though the rule had chunks enough to switch. (That page-cached reads hardly
    wait on a real machine is a measurement: the docstring of ``prefetch``.)"""
    reads = Reads(monkeypatch, simulated=True)
    assert 201 > bids_index.PREFETCH_SLOW_CHUNKS * bids_index.PREFETCH_CHUNK
    before = threading.active_count()
    assert BidsIndex.open(root, None).prefetch() == len(reads.log) == 201
    assert reads.threads() == {threading.get_ident()}
    assert threading.active_count() == before


@pytest.mark.parametrize(
    ("slow_chunks", "switched_after"),
    [((1, 3), None), ((2, 3), 4)],
    ids=["apart", "in-a-row"],
)
def test_only_slow_chunks_in_a_row_switch(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    slow_chunks: tuple[int, ...],
    switched_after: int | None,
) -> None:
    """A chunk that waited once (a stall of the machine) keeps the calling thread; two in a
    row hand the rest to threads (simulated clocks: the waits are exactly the test's)."""
    monkeypatch.setattr(bids_index, "PREFETCH_CHUNK", 4)
    monkeypatch.setattr(bids_index, "PREFETCH_SLOW_CHUNKS", 2)
    wait = 2 * bids_index.PREFETCH_WAIT_S
    reads = Reads(
        monkeypatch, delay=lambda k: wait if k // 4 in slow_chunks else 0.0, simulated=True
    )
    main = threading.get_ident()
    assert BidsIndex.open(root, None).prefetch() == len(reads.log) == 201
    split = 201 if switched_after is None else 4 * switched_after
    assert reads.threads(0, split) == {main}
    assert main not in reads.threads(split)


def test_prefetch_counts_the_files_it_reads(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The return value is the number of files read: all of a cold cache, none of a warm
    one, the edited one after an edit."""
    reads = Reads(monkeypatch)
    cache = tmp_path / "cache"
    index = BidsIndex.open(root, cache)
    assert index.prefetch() == len(reads.log) == 201
    index.save()
    assert index.prefetch() == 0 and BidsIndex.open(root, cache).prefetch() == 0
    assert len(reads.log) == 201
    edited = edit_sidecar(bold_path(root, sub="04", run="02", echo=3), EchoTime=0.05)
    reads.clear()
    assert BidsIndex.open(root, cache).prefetch(threads=True) == 1
    assert [path for path, _ in reads.log] == [edited]
