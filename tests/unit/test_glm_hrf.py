"""GLMsingle engine HRFs: known answers from ``docs/glm.md`` §5."""

from __future__ import annotations

import numpy as np
import pytest

from echoprep.kernels.glm.hrf import (
    LIBRARY_PARAMS,
    boxcar_samples,
    canonical_curve,
    canonical_hrf,
    convolve_boxcar,
    hrf_library,
    library_curves,
    prepare_hrf,
    resample_at_tr,
    spm_double_gamma,
)

#: Peak times (s) of the library for a 0.1-s event (docs/glm.md §5).
TABLE_PEAKS = [2.7, 2.8, 3.0, 3.0, 3.1, 3.3, 3.4, 3.6, 3.9, 4.1, 4.3, 4.5, 4.7, 4.9, 5.1, 5.3,
               5.4, 5.6, 5.6, 5.7]  # fmt: skip


def _peak_s(curves: np.ndarray) -> np.ndarray:
    return np.round(np.argmax(curves, axis=0) * 0.1, 1)


def test_library_curves_are_unit_sum_double_gammas_with_the_table_peaks() -> None:
    lib = library_curves()
    assert lib.shape == (501, 20)
    np.testing.assert_allclose(lib.sum(axis=0), 1.0, rtol=1e-12)
    assert _peak_s(lib).tolist() == TABLE_PEAKS
    assert lib[0].max() < 1e-6  # a response starts at 0


def test_library_peaks_for_a_3s_event_run_from_4_2_to_7_7_s() -> None:
    peaks = _peak_s(convolve_boxcar(library_curves(), 3.0))
    assert peaks[0] == 4.2 and peaks[-1] == 7.7
    assert np.all(np.diff(peaks) >= 0)  # ordered from early to late


def test_canonical_hrf_peaks_at_6_4_s_for_3s_events_later_than_the_library_median() -> None:
    c = canonical_curve()
    assert c.shape == (490,)
    peak = _peak_s(convolve_boxcar(c[:, None], 3.0))[0]
    lib_median = np.median(_peak_s(convolve_boxcar(library_curves(), 3.0)))
    assert peak == 6.4
    assert peak > lib_median


def test_library_at_tr_1_9_and_3s_has_28_samples_peak_1_and_starts_at_0() -> None:
    lib = hrf_library(3.0, 1.9)
    assert lib.shape == (28, 20)
    np.testing.assert_allclose(lib.max(axis=0), 1.0)
    np.testing.assert_allclose(lib[0], 0.0, atol=1e-6)
    can = canonical_hrf(3.0, 1.9)
    assert can.shape == (28,) and can.max() == pytest.approx(1.0)
    # one more sample at TR 1.0: (530 - 1) * 0.1 / 1.0 -> 53 samples
    assert hrf_library(3.0, 1.0).shape == (53, 20)


def test_boxcar_length_rounds_half_up_and_treats_zero_as_one_sample() -> None:
    assert boxcar_samples(3.0) == 30
    assert boxcar_samples(0.0) == 1
    assert boxcar_samples(0.05) == 1
    assert boxcar_samples(0.25) == 3  # MATLAB round, not banker's rounding
    x = np.zeros(10)
    x[0] = 1.0
    np.testing.assert_array_equal(convolve_boxcar(x, 0.3)[:4], [1, 1, 1, 0])


def test_pchip_resampling_reproduces_samples_on_the_fine_grid() -> None:
    c = library_curves()[:, 5]
    out = resample_at_tr(c, 0.2)
    np.testing.assert_allclose(out, c[::2][: out.size], atol=1e-15)
    # monotone cubic: no overshoot between samples of a monotone stretch
    peak = int(np.argmax(c))
    rising = c[int(np.argmin(c[:peak])) : peak + 1]
    fine = resample_at_tr(rising, 0.05)
    assert np.all(np.diff(fine) >= -1e-15)


def test_spm_double_gamma_matches_the_closed_form() -> None:
    from scipy.stats import gamma

    p = LIBRARY_PARAMS[8]
    h = spm_double_gamma(p, 501)
    t = np.arange(501) * 0.1 - p[5]
    ref = gamma.pdf(t, p[0] / p[2], scale=p[2]) - gamma.pdf(t, p[1] / p[3], scale=p[3]) / p[4]
    np.testing.assert_allclose(h, ref / ref.sum(), rtol=1e-12, atol=1e-15)
    # a custom curve through prepare_hrf keeps its own peak normalisation
    two = prepare_hrf(np.stack([h, 2 * h], axis=1), 1.0, 2.0)
    np.testing.assert_allclose(two[:, 0], two[:, 1])
