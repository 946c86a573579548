"""What makes every derivative folder a valid BIDS-derivative dataset: the ``describe`` command
writes its description, ``.bidsignore`` and README; sidecars of outputs in a named space carry a
``SpatialReference``; every NIfTI output has its units (issue 17, BIDS validator)."""

from __future__ import annotations

import gzip
import json
import re

import nibabel as nib
import numpy as np
import pytest

from echoprep.cli import main
from echoprep.io.describe import folder_outputs
from echoprep.io.images import atomic_save, save_tool_output
from echoprep.io.outputs import FOLDERS
from echoprep.io.sidecars import write_sidecar

_PLACEHOLDER = re.compile(r"\{[A-Za-z_]+\}")


def _folder_name(template: str) -> str:
    """An actual folder name of a template (``combine-{nordic}`` -> ``combine-x1``)."""
    return _PLACEHOLDER.sub("x1", template)


@pytest.mark.parametrize("kind", sorted(FOLDERS))
def test_describe_writes_description_bidsignore_and_readme(tmp_path, kind):
    folder = FOLDERS[kind]
    name = _folder_name(folder.template)
    out = tmp_path / name / "dataset_description.json"
    config = {"seed": 3}
    args = ["describe", str(out), "--source", "/data/bids", "--config-json", json.dumps(config)]
    assert main(args) == 0
    desc = json.loads(out.read_text())
    assert desc["Name"] == folder.name_of(name)
    assert desc["echoprepConfig"] == config

    # .bidsignore: always there, every pattern of the folder on its own line
    lines = (tmp_path / name / ".bidsignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns == list(folder.bidsignore)

    # README: what the folder is, each output kind with its description, the docs
    readme = (tmp_path / name / "README.md").read_text()
    assert readme.startswith(f"# {folder.name_of(name)}\n")
    assert folder.description in readme and "/data/bids" in readme
    for output in folder_outputs(folder):
        assert f"{output.suffix}{output.extension}`" in readme, output.key
        assert output.description in readme, output.key
    for page in folder.docs:
        assert page in readme
    for pattern in folder.bidsignore:
        assert f"`{pattern}`" in readme
    assert len(readme.encode()) > 150  # the validator's README_FILE_SMALL threshold


def test_describe_replaces_a_stale_bidsignore(tmp_path):
    out = tmp_path / "rois" / "dataset_description.json"
    out.parent.mkdir()
    (out.parent / ".bidsignore").write_text("*\n")  # an older run's: would hide everything
    assert main(["describe", str(out), "--source", "/raw"]) == 0
    lines = (out.parent / ".bidsignore").read_text().splitlines()
    assert "*" not in lines
    assert [p for p in lines if not p.startswith("#")] == list(FOLDERS["rois"].bidsignore)


# ---------------------------------------------------------------------------------------------
# SpatialReference


def _image(path, ref=None):
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), path)
    side = path.with_name(path.name.replace(".nii.gz", ".json"))
    side.write_text(json.dumps({"SpatialReference": ref} if ref else {}))
    return path


def test_an_output_in_a_named_space_inherits_its_sources_reference(tmp_path):
    grid = str(tmp_path / "sub-01_space-T1w_boldref.nii.gz")
    events = tmp_path / "sub-01_task-a_run-1_events.tsv"
    events.write_text("onset\tduration\n")
    native = _image(tmp_path / "sub-01_task-a_run-1_boldref.nii.gz", ref="elsewhere.nii.gz")
    bold = _image(tmp_path / "sub-01_task-a_run-1_space-T1w_desc-optcom_bold.nii.gz", ref=grid)
    out = tmp_path / "sub-01_task-a_space-T1w_stat-effect_desc-X_statmap.nii.gz"

    # a source in another space is skipped; the first one in the output's space gives it
    side = write_sidecar(out, sources=[events, native, bold])
    assert json.loads(side.read_text())["SpatialReference"] == grid
    # given explicitly: kept
    side = write_sidecar(out, sources=[bold], extra={"SpatialReference": "mine.nii.gz"})
    assert json.loads(side.read_text())["SpatialReference"] == "mine.nii.gz"
    # a source in the space without a reference of its own: the source itself
    plain = _image(tmp_path / "sub-01_space-T1w_desc-brain_mask.nii.gz")
    side = write_sidecar(out, sources=[plain])
    assert json.loads(side.read_text())["SpatialReference"] == str(plain)
    # no space entity: no reference
    side = write_sidecar(tmp_path / "sub-01_task-a_desc-X_statmap.nii.gz", sources=[bold])
    assert "SpatialReference" not in json.loads(side.read_text())


# ---------------------------------------------------------------------------------------------
# NIfTI units


def _unitless(shape, dtype=np.float32):
    data = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    img.header.set_xyzt_units("unknown", "unknown")
    return img


def test_atomic_save_sets_unknown_units(tmp_path):
    cases = {
        "sub-01_desc-x_mask.nii.gz": ((3, 4, 5), ("mm", "unknown")),
        "sub-01_task-a_desc-optcom_bold.nii.gz": ((3, 4, 5, 6), ("mm", "sec")),
        # 4th axis = trials, not time: no time unit invented
        "sub-01_task-a_stat-effect_desc-Betas_statmap.nii.gz": ((3, 4, 5, 6), ("mm", "unknown")),
    }
    for name, (shape, units) in cases.items():
        img = _unitless(shape)
        atomic_save(img, tmp_path / name)
        back = nib.load(tmp_path / name)
        assert back.header.get_xyzt_units() == units, name
        np.testing.assert_array_equal(np.asarray(back.dataobj), np.asarray(img.dataobj))
    # units already set are kept
    img = _unitless((3, 4, 5, 6))
    img.header.set_xyzt_units("micron", "msec")
    atomic_save(img, tmp_path / "sub-01_task-a_bold.nii.gz")
    assert nib.load(tmp_path / "sub-01_task-a_bold.nii.gz").header.get_xyzt_units() == (
        "micron",
        "msec",
    )


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_a_tool_output_gets_units_and_keeps_its_bytes(tmp_path, dtype):
    """tedana's files pass through the one writer: only the units byte of the header changes."""
    src = tmp_path / "tool_bold.nii.gz"
    img = _unitless((3, 4, 5, 6), dtype)
    if dtype is np.int16:
        img.header.set_slope_inter(0.5, 2.0)  # scaled integers stay scaled integers
    nib.save(img, src)
    values = np.asarray(nib.load(src).dataobj)
    before = gzip.decompress(src.read_bytes())
    out = tmp_path / "sub-01_task-a_desc-optcom_bold.nii.gz"
    save_tool_output(src, out)
    assert not src.exists()
    after = gzip.decompress(out.read_bytes())
    assert nib.load(out).header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), values)
    assert len(after) == len(before)
    assert [i for i in range(len(before)) if before[i] != after[i]] == [123]  # xyzt_units
    # a reproducible gzip stream: no file name (FNAME flag) and no time stamp in its header
    head = out.read_bytes()[:8]
    assert head[3] & 0x08 == 0 and head[4:8] == bytes(4)
