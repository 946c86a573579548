"""Responses planted into the data: the kernels (patterns, time courses, frozen combination,
splatting, the fidelity estimate) on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from echoprep.kernels.fidelity import image_means, rowwise_correlation, split_half_reliability
from echoprep.kernels.noiseceiling import zscore_within
from echoprep.kernels.planted import (
    consensus_hrf,
    delta_r2star,
    half_means,
    image_columns,
    later_presentations,
    optcom_weights,
    planted_magnitude,
    planting_amplitude,
    presentation_halves,
    read_presentations,
    response_curves,
    run_centred,
    splat,
)
from echoprep.kernels.planted_fidelity import (
    PlantedTruth,
    Smoother,
    bootstrap_weights,
    variant_fidelity,
)


def test_presentation_halves_and_half_means() -> None:
    labels = np.array(["a", "b", "a", "c", "b", "a"])
    # odd-numbered presentations (1st, 3rd) are half A, even-numbered ones (2nd) half B
    assert presentation_halves(labels).tolist() == [True, True, False, True, False, True]
    betas = np.array([[1.0, 2.0, 3.0, 9.0, 4.0, 5.0]])
    images, a, b = half_means(betas, labels)
    assert images.tolist() == ["a", "b"]  # c is shown once
    # a: A (1 + 5) / 2 = 3, B 3; b: A 2, B 4; centred over images
    np.testing.assert_allclose(a, [[0.5, -0.5]])
    np.testing.assert_allclose(b, [[-0.5, 0.5]])


def test_later_presentations_leave_out_the_first_presentations_run_and_the_truth() -> None:
    """The planted responses from the session's other runs: an image's odd-numbered
    presentations from the third on, in another run than its first; read at the first."""
    labels = np.array(["a", "b", "a", "c", "b", "a", "c", "a", "c", "b"])
    runs = np.array(["1", "1", "2", "2", "3", "1", "3", "3", "1", "2"])
    betas = np.arange(20, dtype=float).reshape(2, 10)
    means, counts = later_presentations(betas, labels, runs, np.array(["a", "b", "c"]))
    # a: its 3rd presentation is in its first's run 1 (left out), its 4th is half B;
    # b: 3rd in run 2 (first in run 1); c: 3rd in run 1 (first in run 2)
    assert counts.tolist() == [0, 1, 1]
    centred = run_centred(betas, runs)
    np.testing.assert_allclose(means[:, 1], centred[:, 9])
    np.testing.assert_allclose(means[:, 2], centred[:, 8])
    np.testing.assert_allclose(means[:, 0], 0.0)
    first = read_presentations(labels, np.array(["b", "c"]), "other_runs")
    assert np.flatnonzero(first).tolist() == [1, 3]
    odd = read_presentations(labels, np.array(["b", "c"]), "session")
    assert np.flatnonzero(odd).tolist() == [1, 3, 8, 9]


def test_run_offsets_would_bias_the_halves_covariance_and_centring_per_run_removes_them() -> None:
    """Each image shown in two neighbouring runs (as a design that spreads repeats over runs
    does); betas = the image's response + an offset per run, alternating in sign. The offsets
    enter the two halves with opposite signs: their covariance over images, the session's
    response variance, comes out negative; with each run's mean removed it is the response's."""
    rng = np.random.default_rng(0)
    n_runs, per_run = 4, 50
    n_img = n_runs * per_run // 2
    runs_of = [[] for _ in range(n_runs)]
    for i in range(n_img):  # image i in runs k and k + 1 (cyclic)
        runs_of[i % n_runs].append(i)
        runs_of[(i + 1) % n_runs].append(i)
    labels, runs = [], []
    for r, imgs in enumerate(runs_of):
        order = rng.permutation(imgs)
        labels += [f"img{i:03d}" for i in order]
        runs += [r] * len(order)
    labels_a, runs_a = np.array(labels), np.array(runs)
    response = rng.normal(0, 1, (30, n_img))  # (V, I)
    idx = np.array([int(lab[3:]) for lab in labels_a])
    offsets = np.array([5.0, -5.0, 5.0, -5.0])[runs_a]
    betas = response[:, idx] + offsets
    var = np.mean(response.var(axis=1))
    _, a, b = half_means(betas, labels_a)
    assert np.mean((a * b).mean(axis=1)) < -10 * var  # the offsets' shared part dominates
    _, a, b = half_means(betas, labels_a, runs_a)
    np.testing.assert_allclose(np.mean((a * b).mean(axis=1)), var, rtol=0.05)
    centred = run_centred(betas, runs_a)
    for r in range(n_runs):  # each run's mean is 0, what is left of a trial is its response
        np.testing.assert_allclose(centred[:, runs_a == r].mean(axis=1), 0, atol=1e-9)
        part = response[:, idx[runs_a == r]]
        np.testing.assert_allclose(centred[:, runs_a == r], part - part.mean(1, keepdims=True))
    with pytest.raises(ValueError, match="runs: expected 200 labels"):
        run_centred(betas, runs_a[:-1])


def test_planting_amplitude_is_the_root_of_the_shared_share() -> None:
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((200, 400))
    a = signal + 3 * rng.standard_normal(signal.shape)
    b = signal + 3 * rng.standard_normal(signal.shape)
    # share of the variance of a that b shares: 1 / (1 + 9)
    assert planting_amplitude(a, b) == pytest.approx(np.sqrt(0.1), abs=0.02)
    assert planting_amplitude(a, -b) == 0.1  # clipped


def test_consensus_hrf_is_the_median_choice() -> None:
    choices = np.array([[3, 5, 0], [4, 5, 19], [9, 6, 1]])
    assert consensus_hrf(choices).tolist() == [4, 5, 1]


def test_delta_r2star_peaks_at_the_planted_amplitude() -> None:
    times, curves = response_curves(3.0)
    peak = times[np.argmax(curves[:, 10])]
    # one trial at 20 s; volumes every 0.1 s so the peak is sampled
    dr2 = delta_r2star(
        np.array([[2.0], [-1.0]]),
        np.array([20.0]),
        np.array([10, 10]),
        np.array([0.0, 0.05]),
        600,
        0.1,
        3.0,
        0.03,
    )
    assert dr2.shape == (2, 600)
    # a beta of 2 % at TE 30 ms: dR2* = -2 / (100 * 0.03) at the peak
    assert dr2[0].min() == pytest.approx(-2.0 / 3.0, rel=1e-3)
    assert np.argmin(dr2[0]) * 0.1 == pytest.approx(20.0 + peak, abs=0.11)
    assert dr2[1].max() == pytest.approx(1.0 / 3.0, rel=1e-2)
    assert np.all(dr2[:, : int(20.0 / 0.1)] == 0)  # nothing before the onset
    # the echo scaling: a small dR2* changes echo e by -TE_e dR2*
    mag = np.full((1, 3), 100.0)
    out = planted_magnitude(mag, np.array([[0.0, 0.5, -0.5]]), 0.03, 1.0)
    np.testing.assert_allclose(out, [[100.0, 100 * np.exp(-0.015), 100 * np.exp(0.015)]], rtol=1e-6)


def test_optcom_weights_match_tedana() -> None:
    from tedana.combine import make_optcom

    rng = np.random.default_rng(1)
    tes = np.array([11.0, 28.82, 46.62])  # tedana works in ms; the weights are scale-free
    n_vox, n_t = 40, 12
    t2s = rng.uniform(15, 60, n_vox)
    good = rng.choice([0, 1, 2, 3], n_vox)
    data = rng.standard_normal((n_vox, 3, n_t)) + 100
    expected = make_optcom(data, tes, good, t2s=t2s, combmode="t2s")
    w = optcom_weights(t2s, good, tes)
    got = np.einsum("ve,vet->vt", w, data)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(w.sum(axis=1), (good > 0).astype(float))


def test_splat_is_the_identity_on_the_grid_and_follows_a_shift() -> None:
    shape = (6, 5, 4)
    idx = np.argwhere(np.ones(shape, bool))
    values = np.arange(len(idx), dtype=float)
    out = splat(values, idx.astype(float), shape)
    np.testing.assert_allclose(out[tuple(idx.T)], values)
    # every point one voxel further along x: the value lands one voxel on
    shifted = splat(values, idx + np.array([1.0, 0, 0]), shape)
    inside = idx[:, 0] < shape[0] - 1
    np.testing.assert_allclose(shifted[tuple((idx[inside] + [1, 0, 0]).T)], values[inside])
    assert np.all(shifted[0] == 0)  # nothing lands on the first slab


# ---------------------------------------------------------------------------------------------
# the fidelity estimate against a known truth: a variant that smears each planted pattern into
# its neighbours, and one that leaks each trial into the next, against a truly better variant

_SHAPE = (12, 12, 6)


class _Session:
    """A synthetic session: true image responses (half smooth, half voxel-specific), 6 runs,
    every image 3 times, a reference fit (identity plus noise) whose presentations give the
    planted design."""

    def __init__(
        self,
        seed: int = 0,
        n_images: int = 60,
        noise: float = 1.5,
        source: str = "session",
        twice: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.voxels = np.argwhere(np.ones(_SHAPE, bool))
        fields = ndimage.gaussian_filter(rng.standard_normal((*_SHAPE, n_images)), (1, 1, 1, 0))
        s = fields.reshape(-1, n_images)
        s = (s - s.mean(axis=1, keepdims=True)) / s.std(axis=1, keepdims=True)
        s = s + rng.standard_normal(s.shape)
        s = (s - s.mean(axis=1, keepdims=True)) / s.std(axis=1, keepdims=True)
        self.truth = s  # (V, I)
        self.images = np.array([f"img{i:03d}" for i in range(n_images)])
        third = rng.permutation(n_images)
        third = third[third >= twice]  # images 0 .. twice-1 are shown twice only
        order = np.concatenate([rng.permutation(n_images), rng.permutation(n_images), third])
        self.cols = order
        self.labels = self.images[order]
        n = order.size
        self.runs = np.array([f"{1 + 6 * k // n:02d}" for k in range(n)])  # 6 runs
        self.noise = noise
        self.rng = rng
        # the reference fit: the true responses plus noise; its presentations give the design
        reference = s[:, order] + noise * rng.standard_normal((s.shape[0], n))
        images, half_a, half_b = half_means(reference, self.labels)
        assert np.array_equal(images, self.images)
        self.source = source
        if source == "other_runs":
            # each image planted with its third presentation (another run than its first)
            later, counts = later_presentations(reference, self.labels, self.runs, images)
            shown = counts == 1
            assert shown.sum() == n_images - twice
            later, half_b = later[:, shown], half_b[:, shown]
            half_a = later - later.mean(axis=1, keepdims=True)
            half_b = half_b - half_b.mean(axis=1, keepdims=True)
            self.planted_images = images[shown]
        else:
            # each image is planted with the mean of its first and third presentations
            self.planted_images = images
        self.planted = half_a
        self.planted_truth = half_b

    def trials(self, responses: np.ndarray) -> np.ndarray:
        """``(V, N)`` trial responses of image responses ``(V, I)``."""
        return responses[:, self.cols]

    def truth_r(self, betas: np.ndarray) -> tuple[float, float]:
        """True r of the repeat-averaged betas and of the single trials."""
        z = zscore_within(betas, self.runs)
        means = image_means(z, self.labels, self.images)
        return (
            float(np.median(rowwise_correlation(means, self.truth))),
            float(np.median(rowwise_correlation(z, self.trials(self.truth)))),
        )


def _smear(x: np.ndarray) -> np.ndarray:
    vol = x.reshape(*_SHAPE, -1)
    return ndimage.gaussian_filter(vol, (1.5, 1.5, 1.5, 0)).reshape(x.shape)


def _leak(x: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Each trial takes half of the next trial of its run."""
    out = x.copy()
    same = np.r_[runs[1:] == runs[:-1], False]
    out[:, same] = 0.5 * x[:, same] + 0.5 * x[:, np.flatnonzero(same) + 1]
    return out


def _fidelity(session: _Session, chain, noise: np.ndarray, weights: np.ndarray):
    betas = chain(session.trials(session.truth) + noise)
    where = image_columns(session.labels, session.planted_images)
    given = np.where(where >= 0, session.planted[:, where], 0.0)  # unplanted images: nothing
    recovered = chain(given)
    smoother = Smoother(session.voxels, _SHAPE, (2.0, 2.0, 2.0))  # 4 mm at 2 mm voxels
    truth = PlantedTruth(
        session.planted_images,
        session.planted,
        session.planted_truth,
        1.0,
        smoother,
        1.0,
        session.source,
    )
    fid = variant_fidelity(betas, recovered, session.labels, session.runs, truth, weights)
    return fid, session.truth_r(betas), betas


@pytest.mark.parametrize("source", ["session", "other_runs"])
@pytest.mark.parametrize("kind", ["smear", "leak"])
def test_image_locked_errors_rank_below_a_truly_better_variant(kind: str, source: str) -> None:
    """Planted half A, or (other_runs) each image's third presentation, read at its first."""
    session = _Session(source=source)
    noise = session.noise * session.rng.standard_normal((session.truth.shape[0], session.cols.size))
    weights = bootstrap_weights(session.images.size, 100, 0)
    good, (good_truth, good_trial), good_betas = _fidelity(session, lambda x: x, noise, weights)
    chain = _smear if kind == "smear" else (lambda x: _leak(x, session.runs))
    bad, (bad_truth, bad_trial), bad_betas = _fidelity(session, chain, noise, weights)
    # the premise: the image-locked error makes this variant truly worse ...
    assert good_truth > bad_truth + 0.1
    # ... and the smear makes its repeats agree more: repeat agreement would prefer it
    if kind == "smear":
        own = np.median(split_half_reliability(bad_betas, session.labels, session.runs))
        assert own > np.median(split_half_reliability(good_betas, session.labels, session.runs))
    # the planted estimate ranks it below, beyond two standard errors of the difference
    diff = good.r - bad.r
    assert diff[0] > 2 * np.std(diff[1:], ddof=1)
    # and follows the truth closely
    assert abs(good.r[0] - good_truth) < 0.03
    assert abs(bad.r[0] - bad_truth) < 0.03
    # single trials: on the truth's scale too (smoothing helps single trials more than image
    # means, so the order may differ from the repeat averages')
    assert abs(good.trial_r[0] - good_trial) < 0.03
    assert abs(bad.trial_r[0] - bad_trial) < 0.03


def test_planted_images_shown_more_often_than_the_rest_do_not_read_high() -> None:
    """Planted from the session's other runs, only the images shown three times are planted;
    the estimate is about every repeated image's repeat average (the truth's), most of which
    here are shown twice: the betas' spread is taken over all of them. Over the planted images
    alone the true r is higher (their means average more presentations)."""
    session = _Session(source="other_runs", twice=30, noise=2.0)
    noise = session.noise * session.rng.standard_normal((session.truth.shape[0], session.cols.size))
    weights = bootstrap_weights(session.images.size, 100, 0)
    fid, (truth_r, _), betas = _fidelity(session, lambda x: x, noise, weights)
    z = zscore_within(betas, session.runs)
    planted = np.isin(session.images, session.planted_images)
    means = image_means(z, session.labels, session.images[planted])
    subset_r = float(np.median(rowwise_correlation(means, session.truth[:, planted])))
    assert subset_r > truth_r + 0.04  # the premise: the planted images alone read higher
    assert abs(fid.r[0] - truth_r) < 0.03  # (over the planted images alone: +0.06 here)
    with pytest.raises(ValueError, match="one column per repeated image"):
        _fidelity(session, lambda x: x, noise, weights[:, :30])
