"""Sessions that show the same images (``simulate_dataset(shared_images=True)``)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from echoprep.io.paths import bids_path
from echoprep.simulate import PRESETS, simulate_dataset, truth_paths
from echoprep.simulate.design import session_design

RUN = {"sub": "01", "task": "images", "run": "01"}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """Two sessions of one run each, with and without shared images (same seed)."""
    base = tmp_path_factory.mktemp("shared")
    return {
        shared: simulate_dataset(
            base / f"shared{int(shared)}",
            "tiny",
            seed=0,
            sessions=2,
            runs=1,
            shared_images=shared,
        )
        for shared in (False, True)
    }


def _shown(root: Path, ses: str) -> list[str]:
    """The image labels of a session's run 01, in the order shown."""
    events = bids_path(root, RUN | {"ses": ses}, "events", ".tsv")
    names = pd.read_csv(events, sep="\t", keep_default_na=False)["stim_name"]
    return [n for n in names if n != "n/a"]


def _image_means(root: Path, ses: str) -> dict[str, np.ndarray]:
    """label -> the true image mean (3D) of a session's truth."""
    paths = truth_paths(root, "01", ses)
    means = np.asarray(nib.load(paths["image_means"]).dataobj)
    images = pd.read_csv(paths["images"], sep="\t", dtype={"label": str})
    return {
        lab: means[..., i] for lab, i in zip(images["label"], images["volume_index"], strict=True)
    }


def test_session_design_shares_images_in_its_own_order() -> None:
    p = PRESETS["tiny"]
    first = session_design(p, 2, 0, 1, 1, shared_images=True)
    second = session_design(p, 2, 0, 1, 2, shared_images=True)
    own = session_design(p, 2, 0, 1, 2)
    n_img = p.images_for_runs(2)
    shown = [d.loc[d["image"] >= 0, "image"].to_numpy() for d in (first, second, own)]
    assert set(shown[0]) == set(shown[1]) == set(range(1, n_img + 1))
    assert not np.array_equal(shown[0], shown[1])
    assert set(shown[2]) == set(range(n_img + 1, 2 * n_img + 1))
    # session 1 is the same either way
    pd.testing.assert_frame_equal(first, session_design(p, 2, 0, 1, 1))


def test_shared_images_are_the_same_set_in_another_order(datasets: dict[bool, Path]) -> None:
    root = datasets[True]
    one, two = _shown(root, "01"), _shown(root, "02")
    assert set(one) == set(two) and len(set(one)) > 1
    assert one != two
    desc = json.loads((root / "dataset_description.json").read_text())
    assert desc["echoprepSimulation"]["shared_images"] is True


def test_without_shared_images_the_sessions_show_disjoint_images(
    datasets: dict[bool, Path],
) -> None:
    root = datasets[False]
    one, two = set(_shown(root, "01")), set(_shown(root, "02"))
    assert one and two and not one & two
    desc = json.loads((root / "dataset_description.json").read_text())
    assert "shared_images" not in desc["echoprepSimulation"]


def test_shared_image_has_the_same_true_mean_in_every_session(
    datasets: dict[bool, Path],
) -> None:
    """The image means are the subject's (bit for bit); the single-trial betas and the noise
    are each session's own; session 1 is the dataset without shared images' session 1."""
    root = datasets[True]
    one, two = _image_means(root, "01"), _image_means(root, "02")
    assert sorted(one) == sorted(two)
    active = nib.load(truth_paths(root, "01", "01")["active_mask"]).get_fdata() > 0
    for label in one:
        assert np.array_equal(one[label], two[label]), label
        assert np.any(one[label][active] != 0)
    betas = [
        np.asarray(nib.load(truth_paths(root, "01", s)["betas"]).dataobj) for s in ("01", "02")
    ]
    assert not np.array_equal(betas[0], betas[1])
    bold = [
        bids_path(root, RUN | {"ses": s, "echo": "2", "part": "mag"}, "bold", ".nii.gz")
        for s in ("01", "02")
    ]
    assert bold[0].read_bytes() != bold[1].read_bytes()
    own = datasets[False]
    for name in ("image_means", "betas", "images", "trials"):
        assert (
            truth_paths(root, "01", "01")[name].read_bytes()
            == truth_paths(own, "01", "01")[name].read_bytes()
        ), name
    same = bids_path(own, RUN | {"ses": "01", "echo": "2", "part": "mag"}, "bold", ".nii.gz")
    assert bold[0].read_bytes() == same.read_bytes()


def test_adding_subjects_needs_the_same_choice_and_the_flag_parses(
    datasets: dict[bool, Path],
) -> None:
    from echoprep.cli import build_parser

    with pytest.raises(ValueError, match="shared_images"):
        simulate_dataset(datasets[True], "tiny", seed=0, sessions=2, runs=1, subject_offset=1)
    with pytest.raises(ValueError, match="shared_images"):
        simulate_dataset(
            datasets[False],
            "tiny",
            seed=0,
            sessions=2,
            runs=1,
            subject_offset=1,
            shared_images=True,
        )
    parser = build_parser("simulate")
    assert parser.parse_args(["simulate", "out", "--shared-images"]).shared_images is True
    assert parser.parse_args(["simulate", "out"]).shared_images is False
