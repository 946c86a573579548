"""Provenance of every output of the shared tiny run (fixture ``demo``), generic over folders.

Every derivative folder under output_dir (whatever stages exist) carries a
``dataset_description.json`` with ``GeneratedBy`` (Name, Version, CodeURL) and the complete,
validated configuration of the run; every data file (NIfTI, TSV, HDF5) has a JSON sidecar with
its ``Sources`` and the ``Parameters`` it was made with. A source must exist, unless Snakemake
itself reports it as a temporary output it removed (``--detailed-summary``: "removed temp
file", e.g. the resampled echoes); then the summary's inputs of that file stand in for it when
following Sources back to the raw dataset.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from echoprep import CODE_URL, __version__
from echoprep.config import validate_config
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
        if str(demo["bids"]) not in sources:
            problems.append(f"{folder.name}: SourceDatasets {sources}")
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
            gone = [s for s in sources if not Path(s).is_file() and not _removed_temp(s, summary)]
            if gone:
                problems.append(f"{rel}: Sources that are not files: {gone}")
            if str(f) in sources:
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
                    frontier += [Path(s) for s in json.loads(car.read_text()).get("Sources", [])]
                elif _removed_temp(str(cur), summary):
                    frontier += [Path(s) for s in summary[str(cur)][1]]
            assert reached_raw, f"{f.relative_to(results)} does not lead back to {bids}"
