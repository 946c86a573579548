"""One version, everywhere: ``echoprep.__version__`` is the package's metadata version
(pyproject.toml reads it), what ``echoprep --version`` prints, the release CHANGELOG.md names
first, and what every ``GeneratedBy`` and sidecar records (the whole workflow's outputs:
tests/e2e/test_provenance.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from echoprep import __version__
from echoprep.io.sidecars import write_dataset_description, write_sidecar

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_metadata_is_the_module_version():
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__), __version__
    assert metadata.version("echoprep") == __version__
    text = (ROOT / "pyproject.toml").read_text()
    project = text.split("[project]")[1].split("\n[")[0]
    assert 'dynamic = ["version"]' in project and "\nversion = " not in project


def test_echoprep_version_prints_it():
    done = subprocess.run(
        [sys.executable, "-m", "echoprep", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"echoprep {__version__}"


def test_the_changelog_starts_with_this_version():
    headings = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings and headings[0] == __version__, headings


def test_dataset_descriptions_and_sidecars_record_it(tmp_path):
    path = write_dataset_description(tmp_path / "d", "test")
    generated = json.loads(path.read_text())["GeneratedBy"]
    assert generated[0]["Name"] == "echoprep" and generated[0]["Version"] == __version__
    image = tmp_path / "d" / "x_bold.nii.gz"
    image.write_bytes(b"")
    sidecar = json.loads(write_sidecar(image, sources=[]).read_text())
    assert sidecar["SoftwareVersions"].startswith(f"echoprep {__version__}")
