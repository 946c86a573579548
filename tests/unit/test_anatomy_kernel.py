"""Tissue kernels: Dice, class naming by intensity, probabilities → labels, label remapping."""

from __future__ import annotations

import numpy as np
import pytest

from echoprep.kernels import tissue


def test_dice_known_values():
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 4), bool)
    a[:2] = True  # 32 voxels
    b[1:3] = True  # 32 voxels, 16 shared
    assert tissue.dice(a, b) == pytest.approx(0.5)
    assert tissue.dice(a, a) == 1.0
    assert tissue.dice(a, ~a) == 0.0
    assert tissue.dice(np.zeros(3), np.zeros(3)) == 1.0
    with pytest.raises(ValueError, match=r"shapes differ, \(3,\) vs \(4,\)"):
        tissue.dice(np.zeros(3), np.zeros(4))


def _three_classes():
    """Image with CSF (100), GM (500), WM (900) blocks and shuffled one-hot 'clusters'."""
    image = np.zeros((6, 4, 4), np.float32)
    image[0:2], image[2:4], image[4:6] = 100, 500, 900
    onehot = np.zeros((3, 6, 4, 4), np.float32)
    onehot[0, 2:4] = 1  # cluster 0 covers the 500 block: GM
    onehot[1, 4:6] = 1  # cluster 1 covers the 900 block: WM
    onehot[2, 0:2] = 1  # cluster 2 covers the 100 block: CSF
    return image, onehot


def test_class_means_and_order_by_intensity():
    image, clusters = _three_classes()
    mask = np.ones(image.shape, bool)
    np.testing.assert_allclose(tissue.class_means(image, clusters, mask), [500, 900, 100])
    ordered, perm = tissue.order_by_intensity(image, clusters, mask)
    assert perm.tolist() == [0, 1, 2]  # (GM, WM, CSF) = clusters (0, 1, 2)
    np.testing.assert_array_equal(ordered[0], clusters[0])  # GM
    np.testing.assert_array_equal(ordered[2], clusters[2])  # CSF
    swapped = clusters[[2, 1, 0]]  # CSF first, then WM, then GM
    _, perm = tissue.order_by_intensity(image, swapped, mask)
    assert perm.tolist() == [2, 1, 0]


def test_order_by_intensity_refuses_an_empty_class():
    image, clusters = _three_classes()
    clusters[1] = 0
    with pytest.raises(ValueError, match="empty class"):
        tissue.order_by_intensity(image, clusters, np.ones(image.shape, bool))


def test_normalise_probabilities_sums_to_one_inside_and_zero_outside():
    rng = np.random.default_rng(0)
    probs = rng.random((3, 5, 5, 5)).astype(np.float32) * 2 - 0.2  # out of [0, 1] on purpose
    probs[:, 0, 0, 0] = 0  # an all-zero voxel inside the mask
    mask = np.ones((5, 5, 5), bool)
    mask[4] = False
    out = tissue.normalise_probabilities(probs, mask)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=0)[mask], 1.0, rtol=1e-6)
    assert np.all(out[:, ~mask] == 0)
    np.testing.assert_allclose(out[:, 0, 0, 0], 1 / 3)
    assert out.min() >= 0 and out.max() <= 1


def test_probabilities_to_dseg_uses_bids_labels():
    probs = np.zeros((3, 2, 2, 1), np.float32)
    probs[0, 0, 0], probs[1, 0, 1], probs[2, 1, 0] = 0.9, 0.8, 0.7  # GM, WM, CSF
    probs[:, 1, 1] = 1 / 3  # tie -> GM
    mask = np.ones((2, 2, 1), bool)
    labels = tissue.probabilities_to_dseg(probs, mask)
    assert labels.dtype == np.uint8
    assert labels[..., 0].tolist() == [[1, 2], [3, 1]]
    mask[0, 0] = False
    assert tissue.probabilities_to_dseg(probs, mask)[0, 0, 0] == 0
    with pytest.raises(ValueError, match="expected 3 classes"):
        tissue.probabilities_to_dseg(probs[:2], mask)


def test_csf_prior_and_volumes():
    brain = np.array([1.0, 1.0, 0.5, 0.0])
    gm = np.array([0.6, 0.2, 0.5, 0.0])
    wm = np.array([0.3, 0.9, 0.2, 0.1])
    np.testing.assert_allclose(tissue.csf_prior(brain, gm, wm), [0.1, 0.0, 0.0, 0.0], atol=1e-6)
    labels = np.array([0, 1, 1, 2, 3, 3, 3])
    assert tissue.volumes_ml(labels, 1000.0) == {"GM": 2.0, "WM": 1.0, "CSF": 3.0}
