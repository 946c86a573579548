"""The tiny demo run shared by the end-to-end and HPC tests, and tools to compare runs.

:func:`run_demo` is the body of the session fixture ``demo`` (``tests/conftest.py``): it
simulates the tiny dataset with the Makefile's command, records the state of the raw dataset,
runs ``make demo DEMO_PRESET=tiny DEMO_DIR=<base>`` (the README's command; it skips the
simulation because the dataset exists) and records the state again. Other tests run the same
dataset and configuration another way (SLURM, interrupted and resumed) and compare their
derivatives with :func:`compare_derivatives`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

import nibabel as nib
import numpy as np

from helpers.snake import ROOT

#: Preset of the shared run (seconds per stage on 2 cores).
DEMO_PRESET = "tiny"
#: Seconds before a workflow run in a test counts as hung.
RUN_TIMEOUT = 1200
#: Sidecar keys whose values change from run to run (wall-clock timings): ``Seconds``
#: (NORDIC, combine), ``Timings_s`` (GLM summary: fit_s, load_s, write_s), and any key a later
#: stage names the same way (``*Seconds``, ``Timing*``, ``Elapsed*``, ``WallTime*``).
VOLATILE_KEYS = re.compile(r"^(.*Seconds|Timings?(_s)?|Elapsed.*|WallTime.*)$", re.I)
#: Config files of the demo (``make demo``): the Snakefile's own plus config/demo.yaml.
DEMO_CONFIGFILES = (ROOT / "config" / "config.yaml", ROOT / "config" / "demo.yaml")


class DemoRun(TypedDict):
    """What the ``demo`` fixture returns (a dict, as the e2e tests index it)."""

    base: Path  # DEMO_DIR
    bids: Path  # raw dataset (simulated)
    results: Path  # output_dir
    work: Path  # work_dir
    out: Path  # results/combine-raw (the e2e tests' main folder)
    config: dict[str, object]  # bids_dir, output_dir, work_dir as given to --config
    log: str  # make's stdout + stderr: the console (tests/workflow/test_console.py)
    seconds: float  # wall time of `make demo`
    bids_before: dict[str, tuple]  # tree_state(bids) after simulating, before the run
    bids_after: dict[str, tuple]  # tree_state(bids) right after the run


# --------------------------------------------------------------------------------------
# file-tree state
# --------------------------------------------------------------------------------------


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: files as (sha1, size, mtime_ns), folders as ("dir", mtime_ns).

    Folder mtimes change when an entry is created or removed in them, so a file written and
    deleted again (a lock, a temporary index) shows up too.
    """
    state: dict[str, tuple] = {".": ("dir", root.stat().st_mtime_ns)}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in dirnames:
            p = here / name
            state[str(p.relative_to(root))] = ("dir", p.lstat().st_mtime_ns)
        for name in filenames:
            p = here / name
            st = p.lstat()
            digest = hashlib.sha1(p.read_bytes()).hexdigest()
            state[str(p.relative_to(root))] = (digest, st.st_size, st.st_mtime_ns)
    return state


def state_changes(before: Mapping[str, tuple], after: Mapping[str, tuple]) -> list[str]:
    """Human-readable differences between two :func:`tree_state` results."""
    changes = [f"new: {k}" for k in sorted(after.keys() - before.keys())]
    changes += [f"removed: {k}" for k in sorted(before.keys() - after.keys())]
    for key in sorted(before.keys() & after.keys()):
        a, b = before[key], after[key]
        if a == b:
            continue
        if a[0] == "dir":
            changes.append(f"folder mtime changed: {key}")
        elif a[0] != b[0]:
            changes.append(f"content changed: {key}")
        else:
            changes.append(f"mtime changed (same content): {key}")
    return changes


def new_paths(root: Path, before: set[str], skip: Sequence[str] = ()) -> list[str]:
    """Files and folders under ``root`` that are not in ``before`` (relative paths).

    ``skip``: relative paths (folders) whose content is not listed.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel_here = here.relative_to(root)
        dirnames[:] = [d for d in dirnames if str(rel_here / d) not in skip]
        for name in [*dirnames, *filenames]:
            rel = str(rel_here / name)
            if rel not in before:
                found.append(rel)
    return sorted(found)


def all_paths(root: Path, skip: Sequence[str] = ()) -> set[str]:
    """Relative paths of every file and folder under ``root`` (see :func:`new_paths`)."""
    return set(new_paths(root, set(), skip)) if root.exists() else set()


@contextmanager
def preserved(root: Path) -> Iterator[None]:
    """Restore a tree (content, mtimes, no extra entries) after a test changed it on purpose."""
    before = tree_state(root)
    backup = root.with_name(root.name + ".preserved")
    shutil.copytree(root, backup, copy_function=shutil.copy2, symlinks=True)
    try:
        yield
    finally:
        after = tree_state(root)
        for rel in sorted(after.keys() - before.keys(), key=len, reverse=True):
            p = root / rel
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
        for rel, entry in before.items():
            if entry[0] != "dir" and after.get(rel) != entry:
                shutil.copy2(backup / rel, root / rel)
        # folders last, deepest first: restoring a file changes its folder's mtime
        for rel in sorted((k for k, v in before.items() if v[0] == "dir"), key=len, reverse=True):
            mtime = before[rel][1]
            os.utime(root / rel, ns=(mtime, mtime))
        shutil.rmtree(backup)
        assert state_changes(before, tree_state(root)) == [], f"could not restore {root}"


# --------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------


def simulate_demo_dataset(bids: Path) -> dict[str, tuple]:
    """Simulate the demo's dataset (preset :data:`DEMO_PRESET`, its default seed) into
    ``bids`` with the Makefile's command; returns its :func:`tree_state`.

    The simulation is deterministic, byte for byte: a test that must not share the ``demo``
    fixture's raw dataset (another test adds a subject to it for a while) simulates its own
    copy, and its derivatives still equal the demo run's."""
    echoprep = Path(sys.executable).with_name("echoprep")
    sim = subprocess.run(
        [str(echoprep), "simulate", str(bids), "--preset", DEMO_PRESET],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert sim.returncode == 0, sim.stdout[-3000:] + sim.stderr[-3000:]
    return tree_state(bids)


def run_demo(base: Path) -> DemoRun:
    """Simulate the tiny dataset in ``base/bids`` and run ``make demo`` on it (see module doc)."""
    bids = base / "bids"
    bids_before = simulate_demo_dataset(bids)
    t0 = time.monotonic()
    res = subprocess.run(
        ["make", "demo", f"DEMO_PRESET={DEMO_PRESET}", f"DEMO_DIR={base}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    seconds = time.monotonic() - t0
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    config: dict[str, object] = {
        "bids_dir": bids,
        "output_dir": base / "results",
        "work_dir": base / "work",
    }
    return DemoRun(
        base=base,
        bids=bids,
        results=base / "results",
        work=base / "work",
        out=base / "results" / "combine-raw",
        config=config,
        log=res.stdout + res.stderr,
        seconds=seconds,
        bids_before=bids_before,
        bids_after=tree_state(bids),
    )


def workflow_command(
    bids: Path,
    results: Path,
    work: Path,
    *extra: str,
    configfiles: Sequence[Path] = (),
    root: Path = ROOT,
) -> list[str]:
    """``python -m snakemake`` on the echoprep Snakefile with the demo's config, from any cwd.

    The Snakefile's ``configfile: "config/config.yaml"`` is relative to the working folder, so
    runs outside the repository pass the config files explicitly (as ``make demo`` does with
    config/demo.yaml). ``root``: the checkout whose Snakefile and config/ are used (a
    :func:`copy_workflow` copy, or this repository).
    """
    demo_files = [root / p.relative_to(ROOT) for p in DEMO_CONFIGFILES]
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(root / "Snakefile"),
        *extra,
        "--configfile",
        *[str(p) for p in (*demo_files, *configfiles)],
        "--config",
        f"bids_dir={bids}",
        f"output_dir={results}",
        f"work_dir={work}",
    ]


#: What a workflow checkout needs to run (see :func:`copy_workflow`).
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", "envs", "profiles")


def copy_workflow(dest: Path) -> Path:
    """A private copy of the workflow (Snakefile, rules, package, config, envs, profiles) as
    it is in this checkout now, without bytecode caches.

    Runs that must show they write nothing into the workflow's own folder run from a copy:
    other people (and other tests) change files in the shared checkout at the same time.
    The rules put the copy's ``workflow/`` first on PYTHONPATH, so its package is the one used.
    """
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake")
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=ignore, symlinks=True)
        elif src.exists():
            shutil.copy2(src, dest / part)
    return dest


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 30) -> None:
    """Send ``sig`` to the process group of ``proc`` (started with ``start_new_session``) and
    wait until every process of the group is gone (SIGKILL after ``grace`` seconds)."""
    pgid = proc.pid
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while True:
        if proc.poll() is None:
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + grace
        time.sleep(0.1)


def run_in_group(
    cmd: Sequence[str], log: Path, *, timeout: float, cwd: Path, env: Mapping[str, str]
) -> tuple[int, str]:
    """Run ``cmd`` in its own process group, output to ``log``; on timeout stop the whole
    group and fail the test with the end of the log. Returns (exit status, output)."""
    import pytest

    with open(log, "w") as fh:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(env),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc, signal.SIGTERM, grace=20)
            pytest.fail(
                f"{' '.join(cmd[:6])} ... did not finish within {timeout:.0f} s (stopped);"
                f" end of {log}:\n{log.read_text()[-4000:]}"
            )
        kill_group(proc, signal.SIGTERM, grace=5)  # leftovers of the group, if any
    return rc, log.read_text()


# --------------------------------------------------------------------------------------
# comparing derivatives
# --------------------------------------------------------------------------------------


def _normalise(obj: Any, roots: Mapping[str, str]) -> Any:
    """JSON without volatile keys, with run-specific folders replaced by placeholders."""
    if isinstance(obj, dict):
        return {k: _normalise(v, roots) for k, v in obj.items() if not VOLATILE_KEYS.match(k)}
    if isinstance(obj, list):
        return [_normalise(v, roots) for v in obj]
    if isinstance(obj, str):
        for path, label in sorted(roots.items(), key=lambda kv: -len(kv[0])):
            obj = obj.replace(path, label)
        return obj
    return obj


def _image_difference(a: Path, b: Path) -> str | None:
    ia, ib = nib.load(a), nib.load(b)
    if ia.shape != ib.shape:
        return f"shape {ia.shape} != {ib.shape}"
    if not np.array_equal(ia.affine, ib.affine):
        return "affine differs"
    if ia.get_data_dtype() != ib.get_data_dtype():
        return f"dtype {ia.get_data_dtype()} != {ib.get_data_dtype()}"
    da, db = np.asarray(ia.dataobj), np.asarray(ib.dataobj)
    if not np.array_equal(da, db, equal_nan=True):
        diff = np.abs(da.astype(np.float64) - db.astype(np.float64))
        return (
            f"data differ in {np.count_nonzero(diff > 0)} of {diff.size} values"
            f" (max |diff| {np.nanmax(diff):.3g})"
        )
    return None


def compare_derivatives(
    a: Path,
    b: Path,
    roots_a: Mapping[str, str],
    roots_b: Mapping[str, str],
    only: Iterable[str] | None = None,
) -> tuple[list[str], dict[str, int]]:
    """Compare two output folders of the same dataset and configuration.

    Images (.nii, .nii.gz): shape, affine, dtype and data arrays exactly (NaN = NaN). HTML:
    exact text with the run-specific folders replaced. TSV and other text/binary files (SVG,
    PNG): exact content. JSON: parsed, without :data:`VOLATILE_KEYS`, with
    the run-specific folders (``roots_*``: path -> placeholder, e.g. output_dir -> "<out>")
    replaced. ``only``: compare just these relative paths (a run of part of the workflow); each
    must exist in both folders. Returns (differences, number of files compared per kind).
    """
    fa = {str(p.relative_to(a)) for p in a.rglob("*") if p.is_file()}
    fb = {str(p.relative_to(b)) for p in b.rglob("*") if p.is_file()}
    diffs = []
    if only is not None:
        wanted = set(only)
        diffs += [f"in neither folder: {f}" for f in sorted(wanted - fa - fb)]
        fa, fb = fa & wanted, fb & wanted
    diffs += [f"only in {a}: {f}" for f in sorted(fa - fb)]
    diffs += [f"only in {b}: {f}" for f in sorted(fb - fa)]
    kinds: dict[str, int] = {"image": 0, "tsv": 0, "json": 0, "other": 0}
    for rel in sorted(fa & fb):
        pa, pb = a / rel, b / rel
        if rel.endswith((".nii", ".nii.gz")):
            kinds["image"] += 1
            msg = _image_difference(pa, pb)
        elif rel.endswith(".json"):
            kinds["json"] += 1
            ja = _normalise(json.loads(pa.read_text()), roots_a)
            jb = _normalise(json.loads(pb.read_text()), roots_b)
            msg = None if ja == jb else _json_difference(ja, jb)
        elif rel.endswith((".html", ".md")):
            # the report lists the configuration used, run folders included; a README names
            # the raw dataset (relative to its folder)
            kinds["other"] += 1
            ta, tb = pa.read_text(), pb.read_text()
            for root, mark in roots_a.items():
                ta = ta.replace(root, mark)
            for root, mark in roots_b.items():
                tb = tb.replace(root, mark)
            msg = None if ta == tb else "content differs (run folders replaced)"
        else:
            kinds["tsv" if rel.endswith(".tsv") else "other"] += 1
            msg = None if pa.read_bytes() == pb.read_bytes() else "content differs"
        if msg:
            diffs.append(f"{rel}: {msg}")
    return diffs, kinds


def _json_difference(a: Any, b: Any, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys()):
            if a.get(key, "<absent>") != b.get(key, "<absent>"):
                return _json_difference(
                    a.get(key, "<absent>"), b.get(key, "<absent>"), f"{where}/{key}"
                )
    return f"JSON {where or '/'}: {json.dumps(a)[:200]} != {json.dumps(b)[:200]}"


def run_roots(bids: Path, results: Path, work: Path) -> dict[str, str]:
    """The placeholders :func:`compare_derivatives` puts in place of a run's folders: as given,
    and as a derivative folder names the raw dataset (``DatasetLinks``, README: relative)."""
    folder = (results / "folder").resolve()
    raw_link = Path(os.path.relpath(bids.resolve(), folder)).as_posix()
    return {str(bids): "<bids>", str(results): "<out>", str(work): "<work>", raw_link: "<bids>"}
