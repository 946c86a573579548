"""Held-out fidelity (kernels/fidelity.py): known answers on synthetic betas with a known truth.

The central case: a per-run low-rank projection of the betas (what a patch-wise hard threshold
does) that raises repeat agreement (noise ceiling, split-half reliability) while lowering the
betas' correlation with the true image means. The held-out fidelity must fall with the truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from echoprep.kernels.fidelity import (
    heldout_fidelity,
    image_means,
    split_half_reliability,
    split_halves,
    truth_fidelity,
)
from echoprep.kernels.noiseceiling import noise_ceiling


def _session(seed, smooth_var, specific_var, noise, n_vox=300, n_img=80, rank=2):
    """True image means mu = low-rank part + voxel-specific part; 4 runs, every image once in
    runs 1/3 (half A) and once in runs 2/4 (half B); betas = mu + white noise."""
    r = np.random.default_rng(seed)
    low = r.standard_normal((n_vox, rank)) @ r.standard_normal((rank, n_img))
    mu = low * np.sqrt(smooth_var / rank) + r.standard_normal((n_vox, n_img)) * np.sqrt(
        specific_var
    )
    runs, labels = [], []
    for first, second in ((0, 2), (1, 3)):
        perm = r.permutation(n_img)
        for run, imgs in ((first, perm[: n_img // 2]), (second, perm[n_img // 2 :])):
            runs += [run] * len(imgs)
            labels += imgs.tolist()
    order = np.argsort(runs, kind="stable")
    runs, labels = np.asarray(runs)[order], np.asarray(labels)[order]
    betas = mu[:, labels] + noise * r.standard_normal((n_vox, len(labels)))
    return mu, betas, labels, runs


def _project(betas, runs, rank):
    """Per run, the best rank-``rank`` approximation of the (voxels x trials) betas."""
    out = np.empty_like(betas)
    for g in np.unique(runs):
        u, s, vt = np.linalg.svd(betas[:, runs == g], full_matrices=False)
        out[:, runs == g] = (u[:, :rank] * s[:rank]) @ vt[:rank]
    return out


def _measures(betas, raw, mu, labels, runs):
    images = np.arange(mu.shape[1])
    return {
        "nc": float(np.median(noise_ceiling(betas, labels, runs).nc)),
        "split_half": float(np.nanmedian(split_half_reliability(betas, labels, runs))),
        "truth": float(np.nanmedian(truth_fidelity(betas, labels, runs, mu, images))),
        "heldout": heldout_fidelity(betas, raw, labels, runs).median,
    }


def test_projection_raises_repeat_agreement_but_not_fidelity() -> None:
    mu, raw, labels, runs = _session(0, smooth_var=0.3, specific_var=0.7, noise=1.0)
    before = _measures(raw, raw, mu, labels, runs)
    after = _measures(_project(raw, runs, 2), raw, mu, labels, runs)
    # the projection makes the repeats agree more ...
    assert after["nc"] > before["nc"] + 10
    assert after["split_half"] > before["split_half"] + 0.2
    # ... while the betas follow the truth less, and the held-out fidelity sees it
    assert after["truth"] < before["truth"] - 0.2
    assert after["heldout"] < before["heldout"] - 0.1


def test_projection_that_truly_helps_is_recognised() -> None:
    """Strong low-rank responses, weak voxel-specific part, heavy noise: the projection
    removes mostly noise; truth and held-out fidelity rise together."""
    mu, raw, labels, runs = _session(1, smooth_var=1.0, specific_var=0.02, noise=3.0)
    before = _measures(raw, raw, mu, labels, runs)
    after = _measures(_project(raw, runs, 2), raw, mu, labels, runs)
    assert after["truth"] > before["truth"] + 0.3
    assert after["heldout"] > before["heldout"] + 0.05


def test_heldout_ranks_variants_like_truth_fidelity() -> None:
    """Variants that differ only in their own noise, against one common reference: the
    held-out correlation falls with the truth correlation and stays below it (the reference's
    own noise attenuates it by a factor common to all variants)."""
    mu, ref, labels, runs = _session(2, smooth_var=0.5, specific_var=0.5, noise=1.0)
    r = np.random.default_rng(3)
    truth, held = [], []
    for noise in (0.3, 1.0, 2.0):
        betas = mu[:, labels] + noise * r.standard_normal(ref.shape)
        truth.append(np.nanmedian(truth_fidelity(betas, labels, runs, mu, np.arange(80))))
        held.append(heldout_fidelity(betas, ref, labels, runs).median)
    assert np.all(np.diff(truth) < 0) and np.all(np.diff(held) < 0)
    assert np.all(np.asarray(held) < np.asarray(truth))


def test_noise_only_reference_gives_zero() -> None:
    _mu, betas, labels, runs = _session(4, smooth_var=0.5, specific_var=0.5, noise=0.5)
    noise_ref = np.random.default_rng(5).standard_normal(betas.shape)
    out = heldout_fidelity(betas, noise_ref, labels, runs, n_boot=40, seed=1)
    assert abs(out.median) < 0.05
    assert out.n_images == 80
    assert out.bootstrap.shape == (40,)
    assert 0.0 < out.bootstrap.std() < 0.05


def test_bootstrap_is_seeded_and_paired() -> None:
    mu, betas, labels, runs = _session(6, smooth_var=0.5, specific_var=0.5, noise=1.0)
    a = heldout_fidelity(betas, betas, labels, runs, n_boot=30, seed=7)
    b = heldout_fidelity(betas, betas, labels, runs, n_boot=30, seed=7)
    np.testing.assert_array_equal(a.bootstrap, b.bootstrap)
    # the same replicates for a better variant: paired differences vary less than either
    better = mu[:, labels] + 0.3 * np.random.default_rng(8).standard_normal(betas.shape)
    c = heldout_fidelity(better, betas, labels, runs, n_boot=30, seed=7)
    assert np.std(c.bootstrap - a.bootstrap) < max(np.std(a.bootstrap), np.std(c.bootstrap))


def test_split_halves_alternate_in_order_of_appearance() -> None:
    runs = np.array(["03", "03", "01", "01", "07", "02"])
    np.testing.assert_array_equal(split_halves(runs), [True, True, False, False, True, False])
    with pytest.raises(ValueError, match="at least 2 runs"):
        split_halves(["1", "1"])


def test_image_means_known_answer() -> None:
    betas = np.array([[1.0, 3.0, 5.0, 7.0]])
    means = image_means(betas, ["a", "b", "a", "c"], ["a", "b", "d"])
    np.testing.assert_allclose(means[0, :2], [3.0, 3.0])
    assert np.isnan(means[0, 2])


def test_errors_are_pinned() -> None:
    _mu, betas, labels, runs = _session(9, smooth_var=0.5, specific_var=0.5, noise=1.0)
    with pytest.raises(ValueError, match="one shape"):
        heldout_fidelity(betas, betas[:10], labels, runs)
    few = np.where(np.isin(labels, [0, 1]), labels, -1)
    few_runs = np.where(few >= 0, runs, runs)
    uniq = np.where(few >= 0, few, 1000 + np.arange(len(few)))
    with pytest.raises(ValueError, match="at least 3 images shown in both halves"):
        heldout_fidelity(betas, betas, uniq, few_runs)
