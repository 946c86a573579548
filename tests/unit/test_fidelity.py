"""Held-out fidelity (kernels/fidelity.py): known answers on synthetic betas with a known truth.

The central case: a per-run low-rank projection of the betas (what a patch-wise hard threshold
does) that raises repeat agreement (noise ceiling, split-half reliability) while lowering the
betas' correlation with the true image means. The held-out fidelity must fall with the truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from echoprep.kernels.fidelity import (
    SplitMeans,
    heldout_fidelity,
    heldout_from_betas,
    image_means,
    rowwise_correlation,
    run_splits,
    shared_images,
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
        "heldout": heldout_from_betas(betas, raw, labels, runs).median,
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
        held.append(heldout_from_betas(betas, ref, labels, runs).median)
    assert np.all(np.diff(truth) < 0) and np.all(np.diff(held) < 0)
    assert np.all(np.asarray(held) < np.asarray(truth))


def test_noise_only_reference_gives_zero() -> None:
    _mu, betas, labels, runs = _session(4, smooth_var=0.5, specific_var=0.5, noise=0.5)
    noise_ref = np.random.default_rng(5).standard_normal(betas.shape)
    out = heldout_from_betas(betas, noise_ref, labels, runs, n_boot=40, seed=1)
    assert abs(out.median) < 0.05
    assert out.n_splits == 2 and out.n_images > 80  # images in both halves, over 2 splits
    assert out.bootstrap.shape == (40,)
    assert 0.0 < out.bootstrap.std() < 0.05


def test_bootstrap_is_seeded_and_paired() -> None:
    mu, betas, labels, runs = _session(6, smooth_var=0.5, specific_var=0.5, noise=1.0)
    a = heldout_from_betas(betas, betas, labels, runs, n_boot=30, seed=7)
    b = heldout_from_betas(betas, betas, labels, runs, n_boot=30, seed=7)
    np.testing.assert_array_equal(a.bootstrap, b.bootstrap)
    # the same replicates for a better variant: paired differences vary less than either
    better = mu[:, labels] + 0.3 * np.random.default_rng(8).standard_normal(betas.shape)
    c = heldout_from_betas(better, betas, labels, runs, n_boot=30, seed=7)
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
        heldout_from_betas(betas, betas[:10], labels, runs)
    few = np.where(np.isin(labels, [0, 1]), labels, -1)
    few_runs = np.where(few >= 0, runs, runs)
    uniq = np.where(few >= 0, few, 1000 + np.arange(len(few)))
    with pytest.raises(ValueError, match="at least 3 images shown in both halves"):
        heldout_from_betas(betas, betas, uniq, few_runs)
    m = SplitMeans(np.zeros((2, 4)), np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="the same splits"):
        heldout_fidelity([m], [])
    with pytest.raises(ValueError, match="split 1: expected image means of one shape"):
        heldout_fidelity([m], [SplitMeans(m.a, m.b, np.zeros((2, 5)))])
    with pytest.raises(ValueError, match="at least 2 runs"):
        run_splits(1)


def test_run_splits_are_balanced_distinct_and_start_in_half_a() -> None:
    as_text = [lambda n, k: ["".join("A" if x else "B" for x in s) for s in run_splits(n, k)]][0]
    assert as_text(2, 3) == ["AB"]
    assert as_text(3, 3) == ["ABA", "ABB", "AAB"]
    assert as_text(4, 2) == ["ABAB", "ABBA"]
    assert as_text(4, 3) == ["ABAB", "ABBA", "AABB"]
    # AABBAA is 4 against 2 runs: not balanced, left out
    assert as_text(6, 3) == ["ABABAB", "ABBAAB"]
    assert as_text(12, 1) == ["ABABABABABAB"]


def _session_reps(seed, smooth_var, specific_var, noise, *, rank, n_runs, reps, n_vox, n_img):
    """True image means (low-rank + voxel-specific, amplitude varying over voxels); every image
    shown ``reps`` times in random order over ``n_runs`` runs; betas = means + white noise."""
    r = np.random.default_rng(seed)
    low = r.standard_normal((n_vox, rank)) @ r.standard_normal((rank, n_img))
    mu = low * np.sqrt(smooth_var / rank)
    mu = mu + r.standard_normal((n_vox, n_img)) * np.sqrt(specific_var)
    mu *= r.uniform(0.3, 1.5, (n_vox, 1))
    labels = np.concatenate([r.permutation(n_img) for _ in range(reps)])
    runs = np.repeat(np.arange(n_runs), int(np.ceil(len(labels) / n_runs)))[: len(labels)]
    betas = mu[:, labels] + noise * r.standard_normal((n_vox, len(labels)))
    return mu, betas, labels, runs


def test_projection_ahead_at_half_the_repeats_but_behind_at_all_is_not_preferred() -> None:
    """8 runs, every image 4 times. A per-run rank-4 projection reduces noise enough that its
    image means from HALF the repeats correlate better with independent data (the former
    held-out measure: +0.05), while its ALL-repeat image means follow the truth less (-0.013):
    what users average and publish is worse. The held-out fidelity, normalised by the spread
    of the all-repeat image means, ranks the projection lower by more than 2 standard errors."""
    mu, raw, labels, runs = _session_reps(
        209, 1.0, 0.3, 1.0, rank=2, n_runs=8, reps=4, n_vox=400, n_img=100
    )
    proj = _project(raw, runs, 4)
    images = np.arange(100)
    truth = [np.nanmedian(truth_fidelity(b, labels, runs, mu, images)) for b in (raw, proj)]
    assert truth[1] < truth[0] - 0.01

    def half_repeat_r(b):
        half = split_halves(runs)
        shown = shared_images(labels, half)
        zb, zr = (noise_ceiling_z(x) for x in (b, raw))
        rs = [
            rowwise_correlation(
                image_means(zb[:, mine], labels[mine], shown),
                image_means(zr[:, other], labels[other], shown),
            )
            for mine, other in ((half, ~half), (~half, half))
        ]
        return np.nanmedian(np.nanmean(rs, axis=0))

    def noise_ceiling_z(b):
        from echoprep.kernels.noiseceiling import zscore_within

        return zscore_within(b, runs)

    assert half_repeat_r(proj) > half_repeat_r(raw) + 0.03
    a = heldout_from_betas(raw, raw, labels, runs, n_boot=100, seed=1)
    b = heldout_from_betas(proj, raw, labels, runs, n_boot=100, seed=1)
    se = np.std(b.bootstrap - a.bootstrap, ddof=1)
    assert b.median < a.median - 2 * se


def test_truth_scale_estimates_the_correlation_with_the_truth() -> None:
    """heldout_r / the reference's reliability is on the scale of r with the true image means
    (measured over 192 simulated sessions: correlation 0.99, mean bias +0.01)."""
    for seed, noise in ((11, 1.0), (12, 2.0), (13, 3.0)):
        mu, raw, labels, runs = _session_reps(
            seed, 0.5, 0.3, noise, rank=2, n_runs=6, reps=3, n_vox=300, n_img=80
        )
        truth = np.nanmedian(truth_fidelity(raw, labels, runs, mu, np.arange(80)))
        res = heldout_from_betas(raw, raw, labels, runs)
        assert abs(res.truth_scale - truth) < 0.06, (noise, res.truth_scale, truth)
        assert res.median < res.truth_scale


def test_single_trials_and_repeat_averages_can_prefer_different_variants() -> None:
    """The same per-run rank-4 projection: its single trials follow the image responses better
    than raw's (less noise per trial), its all-repeat image means worse (a biased pattern).
    Both held-out estimates see it, each within 0.02 of its truth."""
    from echoprep.kernels.noiseceiling import zscore_within

    mu, raw, labels, runs = _session_reps(
        209, 1.0, 0.3, 1.0, rank=2, n_runs=8, reps=4, n_vox=400, n_img=100
    )
    proj = _project(raw, runs, 4)
    truth_all, truth_trial, est = [], [], []
    for b in (raw, proj):
        truth_all.append(np.nanmedian(truth_fidelity(b, labels, runs, mu, np.arange(100))))
        trial = rowwise_correlation(zscore_within(b, runs), mu[:, labels])
        truth_trial.append(np.nanmedian(trial))
        est.append(heldout_from_betas(b, raw, labels, runs, n_boot=100, seed=1))
    # measured: all repeats 0.865 (raw) vs 0.852; single trials 0.651 vs 0.787
    assert truth_all[1] < truth_all[0] and truth_trial[1] > truth_trial[0] + 0.1
    assert est[1].median < est[0].median
    assert est[1].trial_median > est[0].trial_median + 2 * np.std(
        est[1].trial_bootstrap - est[0].trial_bootstrap, ddof=1
    )
    for res, t_all, t_trial in zip(est, truth_all, truth_trial, strict=True):
        assert abs(res.truth_scale - t_all) < 0.02
        assert abs(res.trial_truth_scale - t_trial) < 0.02


def test_every_pair_is_the_pairwise_measure_and_the_scores_agree_with_the_margins() -> None:
    """heldout_pairs gives, for every pair, exactly heldout_fidelity of the variant against
    that reference (estimate and bootstrap), whatever the chunk of replicates (up to float
    rounding: BLAS picks its kernel by the product's shape, so a chunk of 7 and one of 100
    round differently on some CPUs, 1e-16 measured on an AMD EPYC); it is
    symmetric, its diagonal is each variant's reliability squared, and the difference of two
    scores is (n - 2) / (n - 1) times their mean difference under the references that are
    neither of them."""
    from echoprep.kernels.fidelity import split_means
    from echoprep.kernels.fidelity_pairs import heldout_pairs, pair_references

    mu, _, labels, runs = _session_reps(
        21, 0.5, 0.5, 1.0, rank=2, n_runs=6, reps=3, n_vox=120, n_img=40
    )
    r = np.random.default_rng(22)
    names = ["raw-single", "raw-optcom", "nordic-single", "nordic-optcom"]
    splits = {
        v: split_means(mu[:, labels] + noise * r.standard_normal((120, labels.size)), labels, runs)
        for v, noise in zip(names, (2.0, 1.0, 1.5, 0.7), strict=True)
    }
    pairs = heldout_pairs(splits, n_boot=25, seed=4, chunk=7)
    again = heldout_pairs(splits, n_boot=25, seed=4, chunk=100)
    np.testing.assert_allclose(pairs.bootstrap, again.bootstrap, rtol=0, atol=1e-12)
    for i, v in enumerate(names):
        for j, w in enumerate(names):
            one = heldout_fidelity(splits[v], splits[w], n_boot=25, seed=4)
            assert pairs.r[i, j] == pytest.approx(one.median, abs=1e-12)
            assert pairs.trial_r[i, j] == pytest.approx(one.trial_median, abs=1e-12)
            np.testing.assert_allclose(pairs.bootstrap[:, i, j], one.bootstrap, atol=1e-12)
            np.testing.assert_allclose(
                pairs.trial_bootstrap[:, i, j], one.trial_bootstrap, atol=1e-12
            )
        assert pairs.reliability[i] == pytest.approx(
            heldout_fidelity(splits[v], splits[v]).reliability
        )
    np.testing.assert_allclose(pairs.r, pairs.r.T, atol=1e-12)
    # never against itself: the references of a variant are the others
    assert pairs.references("raw-optcom") == ["raw-single", "nordic-single", "nordic-optcom"]
    a, b = "raw-optcom", "nordic-single"
    common = pair_references(names, a, b)
    assert common == ["raw-single", "nordic-optcom"]
    margin = np.mean(
        [
            pairs.r[names.index(a), names.index(w)] - pairs.r[names.index(b), names.index(w)]
            for w in common
        ]
    )
    assert pairs.score(a) - pairs.score(b) == pytest.approx(2 / 3 * margin, abs=1e-12)
    # the truth scale: the score over the mean reliability of the references
    refs = [names.index(w) for w in pairs.references(a)]
    assert pairs.score(a, truth=True) == pytest.approx(
        pairs.score(a) / np.mean(pairs.reliability[refs])
    )
    # two variants: each is also judged against itself, so a lead must survive the other's
    assert pair_references(["raw-optcom", "nordic-optcom"], "raw-optcom") == [
        "raw-optcom",
        "nordic-optcom",
    ]
    assert pair_references(["raw-optcom", "nordic-optcom"], "raw-optcom", "nordic-optcom") == [
        "raw-optcom",
        "nordic-optcom",
    ]
    assert pair_references(["raw-optcom"], "raw-optcom") == []
    # a copy of a variant (ICA that rejected nothing) is the variant: never its reference
    four = ["raw-optcom", "raw-denoised", "nordic-single", "nordic-optcom"]
    twins = [("raw-optcom", "raw-denoised")]
    assert pair_references(four, "raw-optcom", same=twins) == ["nordic-single", "nordic-optcom"]
    assert pair_references(four, "raw-optcom", "nordic-optcom", same=twins) == ["nordic-single"]
    assert pair_references(four[:3], "raw-optcom", same=twins) == ["raw-optcom", "nordic-single"]
    copied = dict(splits, **{"raw-copy": splits["raw-optcom"]})
    found = heldout_pairs(copied)
    assert found.same == (("raw-optcom", "raw-copy"),)
    assert "raw-copy" not in found.references("raw-optcom")
    assert found.references("nordic-single") == [
        "raw-single",
        "raw-optcom",
        "nordic-optcom",
        "raw-copy",
    ]
    with pytest.raises(ValueError, match="same splits"):
        heldout_pairs({"a": splits[names[0]], "b": splits[names[1]][:1]})
