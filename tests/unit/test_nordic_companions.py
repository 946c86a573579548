"""NORDIC's decisions applied to companion series (the planted echoes, docs/comparison.md):
a companion equal to the data comes out as the data does; the map is linear in what a
companion adds; what it adds in the data's own signal subspace passes, what it adds as white
noise is removed as the data's noise is."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from echoprep.stages.nordic import denoise_arrays

SHAPE = (14, 14, 10)
NT = 48


@pytest.fixture(scope="module")
def run() -> dict:
    """A complex series: 1000 plus three smooth spatial patterns with their own time courses
    (the signal, well above the noise), thermal noise, a smooth phase."""
    rng = np.random.default_rng(7)
    patterns = ndimage.gaussian_filter(rng.standard_normal((*SHAPE, 3)), (2, 2, 2, 0))
    patterns /= patterns.reshape(-1, 3).std(axis=0)
    courses = rng.standard_normal((3, NT))
    signal = 30.0 * np.einsum("xyzk,kt->xyzt", patterns, courses)
    noise = 5.0 * (rng.standard_normal((*SHAPE, NT)) + 1j * rng.standard_normal((*SHAPE, NT)))
    phase0 = ndimage.gaussian_filter(rng.standard_normal(SHAPE), 3)[..., None] * 2
    series = (1000.0 + signal + noise) * np.exp(1j * phase0)
    return {
        "mag": np.abs(series).astype(np.float32),
        "phase": np.angle(series).astype(np.float32),
        "patterns": patterns,
        "courses": courses,
        "rng": rng,
    }


def _denoise(run: dict, companions: list[np.ndarray]):
    return denoise_arrays(run["mag"], run["phase"], companions=companions, n_threads=1)


def _transfer(run: dict, delta: np.ndarray, eps: float) -> float:
    """Slope of what NORDIC keeps of a planted magnitude change ``eps * delta`` (relative),
    from the half difference of the two plantings."""
    mag = run["mag"].astype(np.float64)
    plus = (mag * (1 + eps * delta)).astype(np.float32)
    minus = (mag * (1 - eps * delta)).astype(np.float32)
    res = _denoise(run, [plus, minus])
    got = (res.companions[0].astype(np.float64) - res.companions[1]) / 2
    planted = (plus.astype(np.float64) - minus) / 2
    return float((got * planted).sum() / (planted * planted).sum())


def test_a_companion_equal_to_the_data_comes_out_as_the_data(run):
    res = _denoise(run, [run["mag"].copy()])
    assert len(res.companions) == 1
    np.testing.assert_allclose(res.companions[0], res.magnitude, rtol=1e-6, atol=1e-3)
    alone = denoise_arrays(run["mag"], run["phase"], n_threads=1)
    np.testing.assert_array_equal(alone.magnitude, res.magnitude)  # companions change nothing


def test_signal_like_changes_pass_white_changes_are_removed_and_the_map_is_linear(run):
    # a change along the data's own signal (a small copy of one of its patterns and courses)
    along = np.einsum("xyz,t->xyzt", run["patterns"][..., 0], run["courses"][0]) / 1000.0
    kept = _transfer(run, along, 0.2)
    assert kept == pytest.approx(1.0, abs=0.05)
    # twice as large: twice what comes out (a linear map, no decision flips)
    assert _transfer(run, along, 0.4) == pytest.approx(kept, rel=0.01)
    # white changes lie outside the kept subspaces: most is removed, as the data's noise is
    white = run["rng"].standard_normal((*SHAPE, NT)) / 1000.0
    assert _transfer(run, white, 1.0) < 0.2


def _anew(run: dict, delta: np.ndarray, eps: float) -> float:
    """The same slope with NORDIC deciding anew on each planting (its own derivative where no
    decision flips)."""
    mag = run["mag"].astype(np.float64)
    plus = (mag * (1 + eps * delta)).astype(np.float32)
    minus = (mag * (1 - eps * delta)).astype(np.float32)
    one = denoise_arrays(plus, run["phase"], n_threads=1).magnitude.astype(np.float64)
    two = denoise_arrays(minus, run["phase"], n_threads=1).magnitude
    planted = (plus.astype(np.float64) - minus) / 2
    return float(((one - two) / 2 * planted).sum() / (planted * planted).sum())


@pytest.mark.xfail(
    strict=True,
    reason="the frozen map keeps only the kept time courses with the data's low-pass phase: "
    "0.04 of a kept pattern with a new time course, where NORDIC deciding anew keeps 0.996 "
    "(docs/comparison.md, 'The tangent space and NORDIC's own phase')",
)
def test_a_kept_pattern_with_a_new_time_course_passes_as_nordic_itself_passes_it(run):
    """A response in one of the data's kept spatial patterns but with a time course the data's
    components do not have: NORDIC deciding anew keeps all of it (the kept component turns
    towards it, and the low-pass phase follows the magnitude). The frozen map keeps it only as
    far as its time course lies in the kept ones (measured 0.04); projected on the tangent
    space of the kept rank with each companion's own low-pass phase it kept 0.974 (a
    diagnostic, not the workflow's map: docs/comparison.md)."""
    courses = run["courses"]
    new = run["rng"].standard_normal(NT)
    q = np.linalg.qr(np.column_stack([np.ones(NT), courses.T]))[0]
    new -= q @ (q.T @ new)
    new /= new.std()
    delta = np.einsum("xyz,t->xyzt", run["patterns"][..., 0], new) / 1000.0
    frozen, anew = _transfer(run, delta, 0.2), _anew(run, delta, 0.2)
    assert anew > 0.8
    assert frozen == pytest.approx(anew, abs=0.03)
