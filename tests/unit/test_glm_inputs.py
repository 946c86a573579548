"""GLMsingle engine: every bad-input message is pinned (what was expected, found, how to fix)."""

from __future__ import annotations

from functools import cache, partial

import numpy as np
import pytest

from echoprep.kernels.glm import REQUIRED_OPTIONS
from echoprep.kernels.glm import fit_glmsingle as _fit_glmsingle
from echoprep.options import section_defaults
from echoprep.simulate.glm_session import make_session

#: The engine options at the config schema's defaults (the engine takes them all explicitly).
ENGINE_DEFAULTS = {k: v for k, v in section_defaults("glm").items() if k in REQUIRED_OPTIONS}
#: One BLAS thread: the products are small, and the test machine is shared.
fit_glmsingle = partial(_fit_glmsingle, n_threads=1, **ENGINE_DEFAULTS)


@cache
def _session():
    return make_session((4, 3, 2), [60, 60, 60], 6, 3, seed=11)


def _inputs() -> tuple[list[np.ndarray], list[np.ndarray]]:
    s = _session()
    return [d.copy() for d in s.design], [d.copy() for d in s.data]


def _fit(design, data, **opts):
    return fit_glmsingle(design, data, 3.0, 1.9, brainR2=5.0, pcR2cutoff=1.0, **opts)


def test_non_binary_design_values() -> None:
    design, data = _inputs()
    design[1][np.flatnonzero(design[1].any(axis=1))[0], :] *= 2
    with pytest.raises(
        ValueError,
        match=r"design run 1 contains values other than 0 and 1 "
        r"\(found \[2\.0\] in 1 entries\); code each trial onset as 1",
    ):
        _fit(design, data)


def test_run_without_trials() -> None:
    design, data = _inputs()
    design[2][:] = 0
    with pytest.raises(ValueError, match=r"design run 2 has no trials \(all zeros\).*drop runs"):
        _fit(design, data)


def test_two_conditions_on_one_volume() -> None:
    design, data = _inputs()
    t = np.flatnonzero(design[0].any(axis=1))[1]
    design[0][t, :2] = 1
    with pytest.raises(
        ValueError,
        match=rf"design run 0: more than one condition starts on the "
        rf"same volume \(volumes \[{t}\]\).*merge the conditions",
    ):
        _fit(design, data)


def test_differing_column_counts() -> None:
    design, data = _inputs()
    design[1] = np.hstack([design[1], np.zeros((60, 1))])
    with pytest.raises(ValueError, match=r"different numbers of columns \(conditions\) \[6, 7, 6"):
        _fit(design, data)


def test_design_data_length_mismatch_is_an_error_not_a_truncation() -> None:
    design, data = _inputs()
    data[1] = data[1][..., :58]
    with pytest.raises(
        ValueError,
        match=r"data run 1 has 58 volumes but design run 1 has 60 "
        r"rows; data and design must share one time grid \(trim the longer one",
    ):
        _fit(design, data)


def test_nan_and_inf_are_reported_for_every_run_with_voxel_counts() -> None:
    design, data = _inputs()
    data[0][0, 0, 0, 5] = np.nan
    data[2][1, 1, 1, 7] = np.inf
    data[2][2, 1, 0, 9] = np.nan
    data[2][2, 1, 0, 10] = np.nan  # same voxel: counted once
    with pytest.raises(
        ValueError,
        match=r"NaN or Inf values \(run 0: 1 voxels; run 2: 2 voxels\)"
        r"; NaNs are not supported: mask these voxels out",
    ):
        _fit(design, data)


def test_nan_only_in_a_later_run_is_caught() -> None:
    design, data = _inputs()
    data[2][3, 2, 1, 59] = np.nan
    with pytest.raises(ValueError, match=r"\(run 2: 1 voxels\)"):
        _fit(design, data)


def test_run_count_and_shape_checks() -> None:
    design, data = _inputs()
    with pytest.raises(ValueError, match=r"data has 2 runs but design has 3"):
        _fit(design, data[:2])
    with pytest.raises(ValueError, match=r"data run 0 is 3-D .*ambiguous.*pass X x Y x Z x T"):
        _fit(design, [d[:, :, 0] for d in data])
    bad = [data[0], data[1][:3], data[2]]
    with pytest.raises(ValueError, match=r"different spatial shapes"):
        _fit(design, bad)
    with pytest.raises(ValueError, match=r"expected a 2-D matrix volumes x conditions"):
        _fit([design[0][:, 0], design[1], design[2]], data)


def test_unknown_option_lists_the_allowed_names() -> None:
    design, data = _inputs()
    with pytest.raises(
        ValueError,
        match=r"unknown option\(s\) \['numpcstotry'\]; allowed: "
        r"wantlibrary, wantglmdenoise.*n_pcs",
    ):
        _fit(design, data, numpcstotry=3)


def test_configurable_options_must_all_be_given() -> None:
    """The engine repeats no config default: a call without them names the missing ones."""
    design, data = _inputs()
    partial_opts = {k: v for k, v in ENGINE_DEFAULTS.items() if k not in ("n_pcs", "chunklen")}
    with pytest.raises(
        ValueError,
        match=r"missing option\(s\) \['n_pcs', 'chunklen'\].*section_defaults\('glm'\)",
    ):
        _fit_glmsingle(design, data, 3.0, 1.9, n_threads=1, **partial_opts)


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"fracs": [1.0, 0.0]}, r"fracs must be one or more fractions in \(0, 1\]"),
        ({"xvalscheme": [[0], [3]]}, r"fold 1 lists runs \[3\], but runs are numbered 0\.\.2"),
        ({"xvalscheme": [[0, 1, 2]]}, r"tests every run, leaving none for training"),
        ({"pcstop": -2.5}, r"minus an integer between 0 and n_pcs \(10\)"),
        ({"pcstop": -11}, r"minus an integer between 0 and n_pcs \(10\)"),
        ({"extra_regressors": [np.zeros((60, 2))] * 2}, r"one T_r x k array per run \(3 runs\)"),
        ({"extra_regressors": [np.zeros((59, 2))] * 3}, r"run 0 has shape \(59, 2\); expected"),
        (
            {"brainexclude": np.zeros((4, 3))},
            r"brainexclude has shape \(4, 3\); expected a scalar "
            r"or a mask of the data's spatial shape \(4, 3, 2\)",
        ),
        ({"sessionindicator": [1, 2]}, r"one integer session label per run \(3 runs\)"),
        ({"maxpolydeg": 60}, r"maxpolydeg 60 leaves no degrees of freedom in run 0"),
        ({"chunklen": 0}, r"chunklen must be an integer >= 1"),
        ({"wantlss": 2}, r"wantlss must be 0/1"),
        ({"hrflibrary": np.full((5, 2), np.nan)}, r"hrflibrary must be a finite time x H"),
    ],
)
def test_invalid_option_values(opts, message) -> None:
    design, data = _inputs()
    with pytest.raises(ValueError, match=message):
        _fit(design, data, **opts)


def test_bad_tr_and_stimdur() -> None:
    design, data = _inputs()
    with pytest.raises(ValueError, match=r"tr must be a positive number of seconds; got 0"):
        fit_glmsingle(design, data, 3.0, 0.0)
    with pytest.raises(ValueError, match=r"stimdur must be a non-negative number"):
        fit_glmsingle(design, data, -1.0, 1.9)


def test_empty_noise_pool_says_how_to_fix_it() -> None:
    design, data = _inputs()
    with pytest.raises(
        ValueError,
        match=r"noise pool is empty.*relax brainthresh, raise brainR2, "
        r"change brainexclude, or set wantglmdenoise=0",
    ):
        _fit(design, data, brainexclude=True)
