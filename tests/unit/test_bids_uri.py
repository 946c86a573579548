"""BIDS URIs of recorded paths (echoprep.io.bids_uri): the URI of a file inside the raw dataset,
inside a derivative folder, inside the recording file's own folder and outside every dataset;
sidecars written with them; resolution through ``DatasetLinks`` after the folder moved."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from echoprep.io.bids_uri import (
    bids_uri,
    content_reference,
    dataset_links,
    dataset_of,
    file_label,
    localize,
    portable,
    relative_paths,
    resolve_uri,
    uri_for,
)
from echoprep.io.describe import describe_folder
from echoprep.io.sidecars import write_json, write_sidecar

RUN = "sub-01/ses-01/func/sub-01_ses-01_task-x_run-01"


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """A raw dataset, an output_dir with two derivative folders and an outside file."""
    bids = tmp_path / "data" / "bids"
    raw = bids / f"{RUN}_echo-1_part-mag_bold.nii.gz"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(b"raw")
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    out = tmp_path / "results"
    nordic = out / "nordic" / f"{RUN}_echo-1_part-mag_desc-nordic_bold.nii.gz"
    combine = out / "combine-nordic" / f"{RUN}_desc-optcom_bold.nii.gz"
    for f in (nordic, combine):
        f.parent.mkdir(parents=True)
        f.write_bytes(b"derived")
    coil = tmp_path / "site" / "coil.grad"
    coil.parent.mkdir()
    coil.write_bytes(b"coefficients")
    return dict(bids=bids, raw=raw, out=out, nordic=nordic, combine=combine, coil=coil)


def test_uri_of_a_file_inside_the_raw_dataset(tree):
    roots = {"raw": tree["bids"], "nordic": tree["out"] / "nordic"}
    uri = bids_uri(tree["raw"], roots, current="nordic")
    assert uri == f"bids:raw:{RUN}_echo-1_part-mag_bold.nii.gz"


def test_uri_of_a_file_inside_another_derivative_folder(tree):
    roots = {"raw": tree["bids"], "nordic": tree["out"] / "nordic"}
    uri = bids_uri(tree["nordic"], roots, current="combine-nordic")
    assert uri == f"bids:nordic:{RUN}_echo-1_part-mag_desc-nordic_bold.nii.gz"


def test_uri_of_a_file_of_the_same_dataset_has_the_empty_name(tree):
    roots = {"raw": tree["bids"], "nordic": tree["out"] / "nordic"}
    uri = bids_uri(tree["nordic"], roots, current="nordic")
    assert uri == f"bids::{RUN}_echo-1_part-mag_desc-nordic_bold.nii.gz"


def test_uri_of_a_file_outside_every_dataset_is_its_name_and_digest(tree):
    uri = bids_uri(tree["coil"], {"raw": tree["bids"]}, current="nordic")
    assert uri == f"sha256:{hashlib.sha256(b'coefficients').hexdigest()}:coil.grad"
    assert content_reference(tree["coil"].parent / "gone.grad") == "sha256:unavailable:gone.grad"


def test_innermost_root_wins(tmp_path):
    """An output_dir inside the raw dataset's derivatives/: its files are the folder's."""
    bids = tmp_path / "bids"
    inner = bids / "derivatives" / "echoprep" / "nordic"
    f = inner / "sub-01" / "x.nii.gz"
    assert bids_uri(f, {"raw": bids, "nordic": inner}) == "bids:nordic:sub-01/x.nii.gz"


def test_uri_for_infers_the_roots_from_the_recording_file(tree):
    holder = tree["combine"].with_suffix("").with_suffix(".json")
    assert uri_for(tree["raw"], holder).startswith("bids:raw:sub-01/")
    assert uri_for(tree["nordic"], holder).startswith("bids:nordic:sub-01/")
    assert uri_for(tree["combine"], holder).startswith("bids::sub-01/")
    assert uri_for(tree["coil"], holder).startswith("sha256:")
    # a file outside every dataset (a unit test's folder) records paths as given
    assert uri_for(tree["raw"], tree["coil"]) == str(tree["raw"])


def test_dataset_of_tells_a_datatype_folder_from_a_derivative_folder(tmp_path):
    out = tmp_path / "out"
    anat = out / "anat" / "sub-01" / "anat" / "sub-01_desc-preproc_T1w.nii.gz"
    assert dataset_of(anat).path == out / "anat"
    roi = out / "atlases" / "sub-01" / "rois" / "V1.nii.gz"
    assert dataset_of(roi).name == "atlases"
    group = out / "comparison" / "recommended_variant.json"
    assert dataset_of(group).path == out / "comparison"
    assert dataset_of(tmp_path / "anywhere" / "x.json") is None


def test_sidecar_records_uris_and_keeps_labels_and_the_config(tree):
    image = tree["combine"]
    describe_folder(tree["out"] / "combine-nordic", source=str(tree["bids"]), folders=["nordic"])
    side = write_sidecar(
        image,
        sources=[tree["raw"], tree["nordic"], tree["coil"]],
        extra={
            "MaskSource": "brainthresh [99, 0.1] of each variant's mean image",
            "Registration": {"Moving": str(tree["nordic"])},
            "Warnings": [f"{tree['raw']}: a message naming a file", f"/x{'y' * 300}: long"],
            "echoprepConfig": {"bids_dir": str(tree["bids"])},
        },
    )
    content = json.loads(side.read_text())
    assert [s.split(":")[:2] for s in content["Sources"]] == [
        ["bids", "raw"],
        ["bids", "nordic"],
        ["sha256", hashlib.sha256(b"coefficients").hexdigest()],
    ]
    assert content["Registration"]["Moving"].startswith("bids:nordic:sub-01/")
    assert content["MaskSource"].startswith("brainthresh")
    # messages that start with a path (one too long for a file name) are kept
    assert content["Warnings"] == [
        f"{tree['raw']}: a message naming a file",
        f"/x{'y' * 300}: long",
    ]
    assert content["echoprepConfig"] == {"bids_dir": str(tree["bids"])}
    # read back as paths
    back = localize(content, side)
    assert back["Sources"][:2] == [str(tree["raw"]), str(tree["nordic"])]
    assert back["Registration"]["Moving"] == str(tree["nordic"])


def test_uris_resolve_through_dataset_links_after_the_folders_moved(tree, tmp_path):
    folders = ["nordic", "combine-nordic"]
    for name in folders:
        describe_folder(tree["out"] / name, source=str(tree["bids"]), folders=folders)
    desc = json.loads((tree["out"] / "combine-nordic" / "dataset_description.json").read_text())
    assert desc["DatasetLinks"] == {"raw": "../../data/bids", "nordic": "../nordic"}
    assert desc["SourceDatasets"] == [{"URL": "bids:raw:"}]
    side = write_sidecar(tree["combine"], sources=[tree["raw"], tree["nordic"], tree["combine"]])
    rel = side.relative_to(tmp_path)
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(tree["out"], moved / "results")
    shutil.copytree(tree["bids"], moved / "data" / "bids")
    new_side = moved / rel
    uris = json.loads(new_side.read_text())["Sources"]
    found = [resolve_uri(u, new_side) for u in uris]
    assert found == [
        moved / tree["raw"].relative_to(tmp_path),
        moved / tree["nordic"].relative_to(tmp_path),
        moved / tree["combine"].relative_to(tmp_path),
    ]
    assert all(p.is_file() for p in found)


def test_raw_uri_resolves_without_the_folders_description(tree):
    """A job may read a sidecar before its folder's description exists: a sibling's links
    (or the folder beside it, for a derivative folder) stand in."""
    describe_folder(tree["out"] / "nordic", source=str(tree["bids"]), folders=["combine-nordic"])
    side = tree["combine"].with_name("x.json")
    assert resolve_uri("bids:raw:sub-01/a.nii.gz", side) == tree["bids"] / "sub-01/a.nii.gz"
    nordic = tree["out"] / "nordic" / "sub-01" / "b.nii.gz"
    assert resolve_uri("bids:nordic:sub-01/b.nii.gz", side) == nordic
    assert resolve_uri("sha256:abc:coil.grad", side) is None
    assert resolve_uri("/some/old/path.nii.gz", side) == Path("/some/old/path.nii.gz")


def test_a_raw_dataset_other_than_the_linked_one_is_outside(tree, tmp_path):
    describe_folder(tree["out"] / "combine-nordic", source=str(tree["bids"]), folders=[])
    other = tmp_path / "other"
    (other / "sub-01").mkdir(parents=True)
    (other / "dataset_description.json").write_text("{}")
    (other / "sub-01" / "m.nii.gz").write_bytes(b"m")
    holder = tree["combine"].with_name("x.json")
    assert uri_for(other / "sub-01" / "m.nii.gz", holder).startswith("sha256:")


def test_links_are_relative_and_portable_keeps_non_paths(tree):
    links = dataset_links(tree["out"] / "rois", tree["bids"], ["rois", "nordic", "raw"])
    assert links == {"raw": "../../data/bids", "nordic": "../nordic"}
    holder = tree["out"] / "nordic" / "x.json"
    assert portable({"Units": "1", "N": 3, "Sources": ["betas"]}, holder) == {
        "Units": "1",
        "N": 3,
        "Sources": ["betas"],
    }
    written = write_json(holder, {"SpatialReference": tree["nordic"]})
    assert json.loads(written.read_text())["SpatialReference"].startswith("bids::sub-01/")


def test_relative_paths_and_file_label(tree):
    config = {"bids_dir": str(tree["bids"]), "output_dir": str(tree["out"]), "seed": 0}
    shown = relative_paths(config, tree["out"] / "reports")
    assert shown == {"bids_dir": "../../data/bids", "output_dir": "..", "seed": 0}
    assert file_label(str(tree["raw"])) == tree["raw"].name
    assert file_label("brainthresh [99, 0.1]") == "brainthresh [99, 0.1]"
