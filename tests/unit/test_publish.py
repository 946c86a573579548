"""The publish stage (echoprep.stages.publish) on small synthetic images: links and copies
that read back as their originals, sidecars that name the original, the meanR2gt15mask with a
known answer, and the refusals."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest

from echoprep.cli import main
from echoprep.io.bids_uri import localize
from echoprep.io.images import StageInputError
from echoprep.options import OptionsError, section_defaults
from echoprep.stages.publish import (
    MEAN_R2_THRESHOLD,
    mean_r2_mask,
    publish_file,
    run_publish,
    stage_options,
    write_mean_r2_mask,
)

AFFINE = np.diag([1.8, 1.8, 1.8, 1.0])


def _image(path, data, sidecar=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), AFFINE), path)
    if sidecar is not None:
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))
    return path


@pytest.fixture
def originals(tmp_path):
    """A variant's session files (4D betas, NC in percent, trials) and subject maps."""
    rng = np.random.default_rng(0)
    ses = tmp_path / "out" / "glmsingle-nordic-optcom" / "sub-01" / "ses-01" / "func"
    betas = _image(ses / "b_statmap.nii.gz", rng.normal(size=(3, 4, 2, 5)), {"Units": "%"})
    nc = _image(ses / "nc_statmap.nii.gz", rng.uniform(0, 100, (3, 4, 2)),
                {"Units": "%", "Sources": ["betas"], "K": 0.5})  # fmt: skip
    trials = ses / "t_trials.tsv"
    trials.write_text(
        "beta_index\trun\tlabel\n" + "".join(f"{i}\t1\tim{i % 2}\n" for i in range(5))
    )
    trials.with_suffix(".json").write_text(json.dumps({"label": {"Description": "stimulus"}}))
    return {"betas": betas, "nc": nc, "trials": trials}


def _published(tmp_path, keys):
    folder = tmp_path / "out" / "glmsingle-tedana" / "sub-01" / "ses-01" / "func"
    names = {"betas": "B_statmap.nii.gz", "nc": "NC_statmap.nii.gz", "trials": "T_trials.tsv"}
    return {k: folder / names[k] for k in keys}


@pytest.mark.parametrize("method", ["symlink", "copy"])
def test_published_files_read_back_as_their_originals(tmp_path, originals, method):
    outs = _published(tmp_path, originals)
    written = run_publish(originals, outs, {"method": method, "variant": "nordic-optcom"})
    assert set(written) == set(originals)
    for key, out in outs.items():
        assert out.read_bytes() == originals[key].read_bytes()
        assert out.is_symlink() == (method == "symlink")
        if method == "symlink":
            # relative: the layout survives moving output_dir as a whole
            assert not os.path.isabs(os.readlink(out))
            assert out.resolve() == originals[key].resolve()
        car = out.with_name(out.name.split(".")[0] + ".json")
        side = localize(json.loads(car.read_text()), car)  # BIDS URIs as paths
        assert side["Sources"] == [str(originals[key])]
        assert side["Published"] == {
            "Layout": "LAION-fMRI loader (laion_fmri)",
            "Variant": "nordic-optcom",
            "Method": method,
        }
    nc_side = json.loads(outs["nc"].with_name("NC_statmap.json").read_text())
    assert nc_side["Units"] == "%" and nc_side["K"] == 0.5  # the original's content stays
    trials_side = json.loads(outs["trials"].with_name("T_trials.json").read_text())
    assert trials_side["label"] == {"Description": "stimulus"}
    # the NC is still in percent through the published path
    values = nib.load(outs["nc"]).get_fdata()
    assert 0 <= values.min() and values.max() <= 100


def test_publishing_again_replaces_the_link(tmp_path, originals):
    out = tmp_path / "pub" / "B_statmap.nii.gz"
    publish_file(originals["betas"], out, "symlink")
    other = _image(tmp_path / "other_statmap.nii.gz", np.ones((2, 2, 2)))
    publish_file(other, out, "symlink")
    assert out.resolve() == other.resolve()
    publish_file(originals["betas"], out, "copy")
    assert not out.is_symlink() and out.read_bytes() == originals["betas"].read_bytes()


def test_mean_r2_mask_keeps_voxels_strictly_above_15_percent():
    r2 = np.array([[[-5.0, 0.0], [14.99, 15.0]], [[15.01, 40.0], [np.nan, 100.0]]])
    mask = mean_r2_mask(r2)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, [[[0, 0], [0, 0]], [[1, 1], [0, 1]]])
    assert MEAN_R2_THRESHOLD == 15.0


def test_the_mask_file_is_uint8_on_the_r2_grid_with_its_sidecar(tmp_path):
    r2 = np.zeros((4, 3, 2), np.float32)
    r2[0, 0, 0], r2[1, 2, 1], r2[3, 1, 0] = 15.5, 80.0, 15.0  # two above, one at the threshold
    src = _image(tmp_path / "r2mean_statmap.nii.gz", r2, {"Units": "%", "Space": "T1w"})
    out = tmp_path / "pub" / "sub-01_task-images_space-T1w_desc-meanR2gt15mask_mask.nii.gz"
    opts = stage_options({"variant": "nordic-optcom"})
    write_mean_r2_mask(src, out, opts)
    img = nib.load(out)
    assert img.get_data_dtype() == np.uint8 and img.shape == (4, 3, 2)
    np.testing.assert_array_equal(img.affine, nib.load(src).affine)  # the same grid
    data = np.asarray(img.dataobj)
    assert sorted(zip(*np.nonzero(data), strict=True)) == [(0, 0, 0), (1, 2, 1)]
    car = out.with_name(out.name.replace(".nii.gz", ".json"))
    side = localize(json.loads(car.read_text()), car)
    assert side["Threshold"] == 15.0 and side["ThresholdUnits"] == "%"
    assert "R2mean" in side["ThresholdOn"] and side["Voxels"] == 2
    assert side["Sources"] == [str(src)] and side["Space"] == "T1w" and side["Type"] == "ROI"


def test_refusals_name_the_file_and_the_fix(tmp_path, originals):
    missing = tmp_path / "nope_statmap.nii.gz"
    with pytest.raises(StageInputError) as err:
        publish_file(missing, tmp_path / "pub.nii.gz", "symlink")
    assert str(err.value) == (
        f"{missing}: expected the file to publish as pub.nii.gz; found nothing there. Fix: run "
        "the workflow to produce it (the publish rules depend on it)."
    )
    with pytest.raises(StageInputError, match="found the original itself"):
        publish_file(originals["betas"], originals["betas"], "copy")

    # the mask needs a 3D map in percent
    frac = _image(tmp_path / "frac_statmap.nii.gz", np.zeros((2, 2, 2)), {"Units": "1"})
    with pytest.raises(StageInputError) as err:
        write_mean_r2_mask(frac, tmp_path / "m.nii.gz", stage_options(None))
    assert str(err.value) == (
        f"{tmp_path / 'frac_statmap.json'}: expected Units '%' (the mask keeps mean R² > 15 %); "
        "found '1'. Fix: pass the R2mean map echoprep's noise-ceiling stage writes (percent)."
    )
    four = _image(tmp_path / "four_statmap.nii.gz", np.zeros((2, 2, 2, 3)))
    with pytest.raises(
        StageInputError, match=r"expected a 3D mean R² map; found shape \(2, 2, 2, 3\)"
    ):
        write_mean_r2_mask(four, tmp_path / "m.nii.gz", stage_options(None))

    # every --out needs its --source (and the mask its --r2mean)
    outs = _published(tmp_path, ["betas", "nc"])
    with pytest.raises(StageInputError) as err:
        run_publish({"betas": originals["betas"], "trials": originals["trials"]},
                    {**outs, "mask": tmp_path / "m.nii.gz"})  # fmt: skip
    assert str(err.value) == (
        "publish: expected one --source KEY=PATH per --out KEY=PATH (mask: --r2mean); found "
        "outputs without a --source: ['nc']; sources without an --out: ['trials']; --out "
        "mask=PATH without --r2mean. Fix: give both for every key."
    )
    with pytest.raises(OptionsError, match=r"publish.method"):
        stage_options({"method": "hardlink"})


def test_the_command_line_publishes_and_writes_the_mask(tmp_path, originals):
    r2 = _image(tmp_path / "r2_statmap.nii.gz", np.full((3, 4, 2), 20.0), {"Units": "%"})
    mask = tmp_path / "pub" / "M_mask.nii.gz"
    outs = _published(tmp_path, ["nc"])
    options = json.dumps({**section_defaults("publish"), "method": "copy"})
    rc = main(["publish", "--source", f"nc={originals['nc']}", "--r2mean", str(r2),
               "--options-json", options, "--out", f"mask={mask}", f"nc={outs['nc']}"])  # fmt: skip
    assert rc == 0
    assert np.asarray(nib.load(mask).dataobj).all()
    assert not outs["nc"].is_symlink() and outs["nc"].read_bytes() == originals["nc"].read_bytes()
