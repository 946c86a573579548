"""The simulator's LAION-like anatomy: an MP2RAGE UNI T1w with its noise background, a T2w,
an anatomy-only session (``ses-PrismaAnat``), and discovery and planning of such a dataset.

One tiny dataset per module (1 run; about 4 s): its T1w grid is 4 mm, enough for the image
statistics checked here (the anatomy stage on a 2 mm UNI is in test_anatomy_background.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from echoprep.io.bids import discover
from echoprep.io.paths import sidecar_path
from echoprep.simulate import PRESETS, simulate_dataset, truth_paths
from echoprep.simulate.acquisition import t1w_sidecar
from echoprep.simulate.anatomy import t1w_image
from echoprep.simulate.anatomy_contrasts import UNI_MAX, uni_from_inversions, uni_ratio
from echoprep.simulate.anatomy_files import anat_image_path, write_anatomy
from helpers.plans import make_plan

SESSION = "PrismaAnat"


@pytest.fixture(scope="module")
def laion_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("anat") / "bids"
    return simulate_dataset(
        root, "tiny", runs=1, t1w_kind="mp2rage", t2w=True, anat_session=SESSION
    )


def _load(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    img = nib.load(path)
    return np.asarray(img.dataobj), img


def test_uni_background_is_uniform_noise_over_the_whole_range(laion_like: Path) -> None:
    uni, img = _load(anat_image_path(laion_like, "01", SESSION))
    assert img.get_data_dtype() == np.uint16 and uni.max() <= UNI_MAX
    truth = truth_paths(laion_like, "01")
    brain = np.asarray(nib.load(truth["T1w_brain_mask"]).dataobj) > 0
    # air: more than 25 mm from the brain (the head ends 11 mm out; 4 mm voxels)
    air = ndimage.distance_transform_edt(~brain, sampling=4.0) > 25
    values = uni[air].astype(float)
    assert values.size > 20_000
    # uniform over 0..4095: mean 2047.5, SD 4095/sqrt(12) = 1182, equal octiles
    assert abs(values.mean() - 2047.5) < 40, values.mean()
    assert abs(values.std() - 1182) < 30, values.std()
    octiles = np.histogram(values, bins=8, range=(0, UNI_MAX + 1))[0] / values.size
    assert np.all(np.abs(octiles - 0.125) < 0.012), octiles
    # salt and pepper: neighbours unrelated
    pairs = air[:-1] & air[1:]
    r = np.corrcoef(uni[:-1][pairs].astype(float), uni[1:][pairs].astype(float))[0, 1]
    assert abs(r) < 0.05, r


def test_uni_contrast_inside_the_head_is_mp2rage_like_and_flat(laion_like: Path) -> None:
    uni, _ = _load(anat_image_path(laion_like, "01", SESSION))
    dseg = np.asarray(nib.load(truth_paths(laion_like, "01")["T1w_dseg"]).dataobj)
    gm, wm, csf = (float(np.median(uni[dseg == lab])) for lab in (1, 2, 3))
    assert wm > gm + 400 and gm > csf + 600, (wm, gm, csf)
    assert 2400 < wm < 3100 and 1700 < gm < 2300 and csf < 1200, (wm, gm, csf)
    # no receive bias: white matter as bright at the top of the brain as at the bottom
    z = np.nonzero(dseg == 2)[2]
    white = uni[dseg == 2].astype(float)
    low, high = white[z < np.median(z)], white[z >= np.median(z)]
    assert abs(np.median(high) / np.median(low) - 1) < 0.03


def test_uni_combination_known_answers() -> None:
    """u = r / (1 + r^2) inverted; noise-free inversions give their UNI; pure noise is uniform."""
    u = np.array([-0.45, -0.2, 0.0, 0.1, 0.3, 0.5])
    r = uni_ratio(u)
    np.testing.assert_allclose(r / (1 + r**2), u, atol=1e-12)
    assert np.all(np.abs(r) <= 1)
    np.testing.assert_allclose(uni_from_inversions(r * 2.0 + 0j, np.full(6, 2.0 + 0j)), u)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((4, 200_000))
    pure = uni_from_inversions(noise[0] + 1j * noise[1], noise[2] + 1j * noise[3])
    assert abs(pure.std() - 1 / np.sqrt(12)) < 0.003 and abs(pure.mean()) < 0.003


def test_t2w_is_aligned_to_the_t1w_with_t2_contrast(laion_like: Path) -> None:
    t1w, t1_img = _load(anat_image_path(laion_like, "01", SESSION))
    t2w, t2_img = _load(anat_image_path(laion_like, "01", SESSION, "T2w"))
    assert t2w.shape == t1w.shape and t2_img.get_data_dtype() == np.int16
    np.testing.assert_array_equal(t2_img.affine, t1_img.affine)
    dseg = np.asarray(nib.load(truth_paths(laion_like, "01")["T1w_dseg"]).dataobj)
    gm, wm, csf = (float(np.median(t2w[dseg == lab])) for lab in (1, 2, 3))
    assert csf > gm > wm, (csf, gm, wm)
    side = json.loads(sidecar_path(anat_image_path(laion_like, "01", SESSION, "T2w")).read_text())
    assert side["PulseSequenceType"] == "SPACE" and side["ManufacturersModelName"] == "Prisma"
    assert side["MagneticFieldStrength"] == 3 and "InversionTime" not in side
    truth = json.loads(sidecar_path(truth_paths(laion_like, "01")["T1w_dseg"]).read_text())
    assert "ses-PrismaAnat/anat/sub-01_ses-PrismaAnat_T2w.nii.gz" in truth["AlsoDescribes"]


def test_anatomy_only_session_layout_sidecar_and_truth(laion_like: Path) -> None:
    sub = laion_like / "sub-01"
    assert sorted(p.name for p in sub.iterdir()) == ["ses-01", f"ses-{SESSION}"]
    assert sorted(p.name for p in (sub / f"ses-{SESSION}").iterdir()) == ["anat"]
    assert sorted(p.name for p in (sub / "ses-01").iterdir()) == ["func"]
    side = json.loads(sidecar_path(anat_image_path(laion_like, "01", SESSION)).read_text())
    assert side["ManufacturersModelName"] == "Prisma" and side["MagneticFieldStrength"] == 3
    assert side["PulseSequenceType"] == "MP2RAGE" and "UNI" in side["ImageType"]
    assert side["InversionTime"] == [0.7, 2.5] and side["FlipAngle"] == [4, 5]
    assert side["RepetitionTimeExcitation"] == 0.0072
    assert side["RepetitionTimePreparation"] == 5.0
    # the T1w truth is per subject: it resolves wherever the anatomy session is
    truth = truth_paths(laion_like, "01")
    t1w = nib.load(anat_image_path(laion_like, "01", SESSION))
    for key in ("T1w_brain_mask", "T1w_dseg", "bold_to_T1w", "bold_to_T1w_itk"):
        assert truth[key].is_file(), key
    mask = nib.load(truth["T1w_brain_mask"])
    assert mask.shape == t1w.shape
    np.testing.assert_array_equal(mask.affine, t1w.affine)
    assert truth["T2star"].is_file()  # the BOLD session's truth: ses-01 only
    params = json.loads((laion_like / "dataset_description.json").read_text())
    sim = params["echoprepSimulation"]
    assert (sim["t1w_kind"], sim["t2w"], sim["anat_session"]) == ("mp2rage", True, SESSION)


def test_default_anatomy_is_the_historical_t1w(tmp_path: Path) -> None:
    """Default options: the MPRAGE-like T1w in ses-01/anat, its historical sidecar, no T2w,
    no random draw of the new models (the files of the simulator before these options)."""
    p = PRESETS["tiny"]
    (written,) = write_anatomy(tmp_path, p, 0, 1)
    assert written == anat_image_path(tmp_path, "01", "01")
    data, img = _load(written)
    _grid, image, brain, dseg = t1w_image(p, 0, 1)
    assert img.get_data_dtype() == np.int16
    np.testing.assert_array_equal(data, image)
    assert json.loads(sidecar_path(written).read_text()) == json.loads(json.dumps(t1w_sidecar(p)))
    truth = truth_paths(tmp_path, "01")
    np.testing.assert_array_equal(np.asarray(nib.load(truth["T1w_brain_mask"]).dataobj), brain)
    np.testing.assert_array_equal(np.asarray(nib.load(truth["T1w_dseg"]).dataobj), dseg)
    assert "AlsoDescribes" not in json.loads(sidecar_path(truth["T1w_dseg"]).read_text())
    assert not list(tmp_path.rglob("*_T2w.nii.gz"))


def test_bad_anatomy_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--t1w-kind \(t1w_kind=\): expected one of mprage"):
        simulate_dataset(tmp_path / "a", "tiny", t1w_kind="mp3rage")
    with pytest.raises(ValueError, match=r"--anat-session .* other than the BOLD sessions"):
        simulate_dataset(tmp_path / "b", "tiny", anat_session="01")
    with pytest.raises(ValueError, match=r"expected an alphanumeric session label"):
        simulate_dataset(tmp_path / "c", "tiny", anat_session="Prisma-Anat")
    assert not (tmp_path / "a").exists()


def test_discovery_and_plan_take_the_anatomy_only_session(laion_like: Path, tmp_path) -> None:
    """The T1w comes from ses-PrismaAnat; that session has no BOLD and is no BOLD session of
    the plan (the T2w is not read: nothing uses it)."""
    ds = discover(laion_like, require_t1w=True, cache_dir=tmp_path / "idx")
    assert ds.t1w == {"01": anat_image_path(laion_like, "01", SESSION)}
    assert {r.session for r in ds.runs} == {"01"} and ds.sessions("01") == ["01"]
    assert ds.warnings == ()
    plan = make_plan(laion_like, tmp_path)
    assert plan.anatomy.t1w(type("W", (), {"subject": "01"})()) == str(ds.t1w["01"])
    targets = plan.targets()
    assert targets and not [t for t in targets if SESSION in t]


def test_command_line_options(monkeypatch, tmp_path: Path, capsys) -> None:
    """``echoprep simulate --t1w-kind --t2w --anat-session`` reach simulate_dataset; a bad
    label is refused in command-line terms, before anything is written."""
    import echoprep.simulate
    from echoprep.cli import main as cli_main

    calls: dict = {}
    monkeypatch.setattr(echoprep.simulate, "simulate_dataset", lambda *a, **k: calls.update(k))
    args = ["simulate", str(tmp_path / "a"), "--t1w-kind", "mp2rage", "--t2w"]
    assert cli_main([*args, "--anat-session", SESSION]) == 0
    assert (calls["t1w_kind"], calls["t2w"], calls["anat_session"]) == ("mp2rage", True, SESSION)
    assert cli_main(["simulate", str(tmp_path / "b")]) == 0
    assert (calls["t1w_kind"], calls["t2w"], calls["anat_session"]) == ("mprage", False, None)
    monkeypatch.undo()
    capsys.readouterr()
    assert cli_main(["simulate", str(tmp_path / "c"), "--anat-session", "01"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("echoprep simulate: --anat-session (anat_session=): expected an ")
    assert "Traceback" not in err and not (tmp_path / "c").exists()
