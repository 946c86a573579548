"""Provenance of every output of the shared tiny run (fixture ``demo``), generic over folders.

Every derivative folder under output_dir (whatever stages exist) carries a
``dataset_description.json`` with ``GeneratedBy`` (Name, Version, CodeURL) and the complete,
validated configuration of the run; every data file (NIfTI, TSV, HDF5) has a JSON sidecar with
its ``Sources`` and the ``Parameters`` it was made with. A source must exist, unless Snakemake
itself reports it as a temporary output it removed (``--detailed-summary``: "removed temp
file", e.g. the resampled echoes); then the summary's inputs of that file stand in for it when
following Sources back to the raw dataset.

Provenance survives moving the folder: no file under output_dir names the machine's folders
(the run's output, raw and work folders) except the configuration snapshot, and in a copy of
output_dir (with the raw dataset beside it) every BIDS URI of every sidecar resolves, through
the ``DatasetLinks`` of the folder holding it, to an existing file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from echoprep import CODE_URL, __version__
from echoprep.config import validate_config
from echoprep.io.bids_uri import resolve_uri
from echoprep.io.paths import sidecar_path
from helpers.demo import DEMO_CONFIGFILES, DemoRun, workflow_command
from helpers.snake import ROOT

pytestmark = pytest.mark.slow

DATA_SUFFIXES = (".nii", ".nii.gz", ".tsv", ".tsv.gz", ".h5")


def _merge(base: dict, extra: dict) -> dict:
    """Snakemake's way of layering config files: nested mappings are merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _expected_config(demo: DemoRun) -> dict:
    """The config `make demo` ran with: config.yaml, demo.yaml, the --config folders, validated."""
    cfg: dict = {}
    for path in DEMO_CONFIGFILES:
        cfg = _merge(cfg, yaml.safe_load(path.read_text()) or {})
    cfg |= {k: str(v) for k, v in demo["config"].items()}
    return json.loads(json.dumps(validate_config(cfg), sort_keys=True, default=str))


#: Snakemake's status of a temporary output it deleted once its consumers had run.
REMOVED_TEMP = "removed temp file"


@pytest.fixture(scope="module")
def summary(demo: DemoRun) -> dict[str, tuple[str, list[str]]]:
    """Output file -> (status, input files) from ``--detailed-summary`` of the demo run (from
    the repository, where ``make demo`` ran and keeps its metadata)."""
    cmd = workflow_command(
        demo["bids"], demo["results"], demo["work"], "--detailed-summary", "--nolock"
    )
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [line.split("\t") for line in res.stdout.splitlines() if "\t" in line]
    head = lines[0]
    col = {name: head.index(name) for name in ("output_file", "input-file(s)", "status")}
    return {
        row[col["output_file"]]: (
            row[col["status"]],
            [f for f in row[col["input-file(s)"]].split(",") if f and f != "-"],
        )
        for row in lines[1:]
    }


def _removed_temp(path: str, summary: dict[str, tuple[str, list[str]]]) -> bool:
    return summary.get(path, ("", []))[0] == REMOVED_TEMP


def _derivative_folders(results: Path) -> list[Path]:
    return sorted(p for p in results.iterdir() if p.is_dir())


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(DATA_SUFFIXES))


def test_every_derivative_folder_describes_itself(demo):
    folders = _derivative_folders(demo["results"])
    assert len(folders) >= 3, folders  # nordic, combine-raw, combine-nordic at least
    expected = _expected_config(demo)
    problems = []
    for folder in folders:
        path = folder / "dataset_description.json"
        if not path.is_file():
            problems.append(f"{folder.name}: no dataset_description.json")
            continue
        desc = json.loads(path.read_text())
        if desc.get("DatasetType") != "derivative" or not desc.get("BIDSVersion"):
            problems.append(f"{folder.name}: DatasetType/BIDSVersion {desc.get('DatasetType')}")
        generated = desc.get("GeneratedBy") or [{}]
        first = generated[0]
        if (first.get("Name"), first.get("Version"), first.get("CodeURL")) != (
            "echoprep",
            __version__,
            CODE_URL,
        ):
            problems.append(f"{folder.name}: GeneratedBy {generated}")
        if desc.get("echoprepConfig") != expected:
            problems.append(f"{folder.name}: echoprepConfig is not the run's validated config")
        sources = [s.get("URL") for s in desc.get("SourceDatasets", [])]
        raw = (desc.get("DatasetLinks") or {}).get("raw", "")
        if sources != ["bids:raw:"] or (folder / raw).resolve() != demo["bids"].resolve():
            problems.append(f"{folder.name}: SourceDatasets {sources}, raw link {raw!r}")
    assert problems == []


def test_recorded_config_is_complete_and_reproduces_itself(demo):
    """Validating the recorded config again changes nothing: every key is there (defaults
    filled in), so the file alone reruns the same workflow."""
    described = [f / "dataset_description.json" for f in _derivative_folders(demo["results"])]
    assert any(d.is_file() for d in described)
    for path in filter(Path.is_file, described):  # (folders without one: the test above)
        folder = path.parent
        recorded = json.loads(path.read_text())["echoprepConfig"]
        again = json.loads(json.dumps(validate_config(recorded), sort_keys=True, default=str))
        assert again == recorded, folder.name


def test_every_data_file_has_a_sidecar_with_sources_and_parameters(demo, summary):
    files = [f for folder in _derivative_folders(demo["results"]) for f in _data_files(folder)]
    assert files
    kinds = {f.name.rsplit(".", 2)[-2 if f.name.endswith(".gz") else -1] for f in files}
    assert {"nii", "tsv"} <= kinds, kinds
    problems = []
    for f in files:
        rel = f.relative_to(demo["results"])
        car = sidecar_path(f)
        if not car.is_file():
            problems.append(f"{rel}: no sidecar")
            continue
        meta = json.loads(car.read_text())
        sources = meta.get("Sources")
        if not (isinstance(sources, list) and sources):
            problems.append(f"{rel}: Sources {sources!r}")
        else:
            paths = [resolve_uri(s, car) for s in sources]
            gone = [
                s
                for s, p in zip(sources, paths, strict=True)
                if p is None or not (p.is_file() or _removed_temp(str(p), summary))
            ]
            if gone:
                problems.append(f"{rel}: Sources that are not files: {gone}")
            if f in paths:
                problems.append(f"{rel}: lists itself as a source")
        params = meta.get("Parameters")
        if not (isinstance(params, dict) and params):
            problems.append(f"{rel}: Parameters {params!r}")
        if "echoprep" not in str(meta.get("SoftwareVersions", "")):
            problems.append(f"{rel}: SoftwareVersions {meta.get('SoftwareVersions')!r}")
    assert problems == []


def test_sources_lead_back_to_the_raw_dataset(demo, summary):
    """Following Sources from any output ends in files of the raw dataset (through removed
    temporary files by the inputs Snakemake recorded for them)."""
    results, bids = demo["results"], demo["bids"]
    for folder in _derivative_folders(results):
        for f in _data_files(folder):
            seen: set[Path] = set()
            frontier = [f]
            reached_raw = False
            while frontier:
                cur = frontier.pop()
                if cur in seen:
                    continue
                seen.add(cur)
                if cur.is_relative_to(bids):
                    reached_raw = True
                    continue
                car = sidecar_path(cur)
                if cur.is_relative_to(results) and car.is_file():
                    uris = json.loads(car.read_text()).get("Sources", [])
                    frontier += [p for p in (resolve_uri(s, car) for s in uris) if p is not None]
                elif _removed_temp(str(cur), summary):
                    frontier += [Path(s) for s in summary[str(cur)][1]]
            assert reached_raw, f"{f.relative_to(results)} does not lead back to {bids}"


def _strings(content: object) -> Iterator[str]:
    """Every string value of a JSON document (recursively)."""
    if isinstance(content, dict):
        for value in content.values():
            yield from _strings(value)
    elif isinstance(content, list):
        for value in content:
            yield from _strings(value)
    elif isinstance(content, str):
        yield content


def _readable(path: Path) -> bytes:
    """A file's bytes as a search sees them: gzip unpacked, and a dataset description without
    its configuration snapshot (``echoprepConfig``: what the user gave, kept as given)."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        import gzip

        data = gzip.decompress(data)
    if path.name == "dataset_description.json":
        content = json.loads(data)
        content.pop("echoprepConfig", None)
        data = json.dumps(content).encode()
    return data


def test_no_output_file_names_the_machines_folders(demo):
    """No file under output_dir (sidecars, tables, READMEs, the HTML report, links) holds the
    absolute path of the run's folders (output, raw, work: all below the demo's base) or of the
    repository Snakemake ran in, except the configuration snapshot."""
    needles = {str(demo["base"]), str(demo["base"].resolve()), str(ROOT), str(ROOT.resolve())}
    found = []
    checked = 0
    for path in sorted(demo["results"].rglob("*")):
        rel = path.relative_to(demo["results"])
        if path.is_symlink():
            if os.path.isabs(os.readlink(path)):
                found.append(f"{rel}: absolute link {os.readlink(path)}")
            continue
        if not path.is_file():
            continue
        checked += 1
        data = _readable(path)
        found += [f"{rel}: {n}" for n in needles if n.encode() in data]
    assert checked > 100, checked  # sidecars, images, tables, READMEs, the report
    assert found == []


#: ``bids:<dataset-name>:<relative path>`` (BIDS specification, "BIDS URI").
BIDS_URI = re.compile(r"^bids:(?P<name>[^:]*):(?P<rel>.*)$")


def _resolve_strictly(uri: str, holder: Path, results: Path) -> Path | None:
    """A BIDS URI of a sidecar, resolved as the specification says: the empty name is the
    dataset holding the file, any other a key of that dataset's ``DatasetLinks`` (a location
    relative to the dataset). None: the name is not linked."""
    m = BIDS_URI.match(uri)
    assert m, uri
    root = results / holder.relative_to(results).parts[0]
    if m["name"] == "":
        return root / m["rel"]
    links = json.loads((root / "dataset_description.json").read_text()).get("DatasetLinks", {})
    assert "" not in links
    if m["name"] not in links:
        return None
    return Path(os.path.normpath(root / links[m["name"]] / m["rel"]))


def test_copied_output_keeps_every_bids_uri_valid(demo, summary, tmp_path):
    """output_dir copied elsewhere with the raw dataset beside it (as in the run): every BIDS
    URI of every JSON file resolves through DatasetLinks to an existing file of the copy (or to
    a temporary file Snakemake removed). Copied without the raw dataset, the URIs of derivative
    files still resolve and those of raw files point to where the raw dataset would be beside
    the copy, never to the original on this machine."""
    moved = tmp_path / "elsewhere" / "project"
    shutil.copytree(demo["results"], moved / "results", symlinks=True)
    shutil.copytree(demo["bids"], moved / demo["bids"].relative_to(demo["base"]))
    alone = tmp_path / "alone" / "results"
    shutil.copytree(demo["results"], alone, symlinks=True)

    def found(target: Path | None, copy: Path) -> bool:
        if target is None:
            return False
        if target.exists():
            return True
        inside = target.is_relative_to(copy)
        return inside and _removed_temp(str(demo["results"] / target.relative_to(copy)), summary)

    problems, uris = [], 0
    for side in sorted((moved / "results").rglob("*.json")):
        rel = side.relative_to(moved / "results")
        for value in _strings(json.loads(side.read_text())):
            if not value.startswith("bids:"):
                continue
            uris += 1
            target = _resolve_strictly(value, side, moved / "results")
            if not found(target, moved / "results"):
                problems.append(f"{rel}: {value} -> {target}")
            lone = _resolve_strictly(value, alone / rel, alone)
            if value.startswith("bids:raw:"):
                if lone is None or lone.is_relative_to(demo["base"]) or lone.exists():
                    problems.append(f"{rel}: {value} without the raw dataset -> {lone}")
            elif not found(lone, alone):
                problems.append(f"{rel}: {value} without the raw dataset -> {lone}")
    assert uris > 100, uris
    assert problems == []
