"""A GLMsingle fit with its choices frozen (:mod:`echoprep.kernels.glm.frozen`): rebuilt from
the data and the recorded choices it gives the fit's betas back, and it is linear."""

from __future__ import annotations

import warnings
from functools import cache, partial

import numpy as np
import pytest

from echoprep.kernels.glm import REQUIRED_OPTIONS
from echoprep.kernels.glm import fit_glmsingle as _fit_glmsingle
from echoprep.kernels.glm.frozen import Choices, apply, freeze, relative_difference
from echoprep.options import section_defaults
from echoprep.simulate.glm_session import SyntheticSession, make_session

ENGINE_DEFAULTS = {k: v for k, v in section_defaults("glm").items() if k in REQUIRED_OPTIONS}
fit_glmsingle = partial(_fit_glmsingle, n_threads=1)
SHAPE = (10, 8, 4)
RUNS = [140, 150, 150]

#: option overrides -> (model whose betas are compared, its key in the results)
CASES = {
    "typed": ({}, "typed"),
    "typec": ({"wantfracridge": 0}, "typec"),
    "typeb": ({"wantglmdenoise": 0, "wantfracridge": 0}, "typeb"),
    "fixed_pcs": ({"pcstop": -3}, "typed"),
}


@cache
def _session() -> SyntheticSession:
    return make_session(SHAPE, RUNS, 30, 3, seed=4, noise_pct=2.0)


@cache
def _fit(case: str) -> tuple[dict, dict]:
    s = _session()
    opts = {**ENGINE_DEFAULTS, **CASES[case][0]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_glmsingle(s.design, s.data, s.stimdur, s.tr, **opts), opts


def _choices(case: str) -> Choices:
    results, opts = _fit(case)
    model = CASES[case][1]
    out = results[model]
    pcnum = int(out.get("pcnum", 0))
    return Choices(
        model=model,
        hrfindex=out["HRFindex"].reshape(-1),
        fracvalue=out["FRACvalue"].reshape(-1) if model == "typed" else None,
        pcnum=pcnum,
        brain_r2=results["params"]["brainR2"] if pcnum else None,
        percent=bool(opts["wantpercentbold"]),
    )


@pytest.mark.parametrize("case", list(CASES))
def test_frozen_fit_gives_the_betas_back(case: str) -> None:
    s = _session()
    results, opts = _fit(case)
    frozen = freeze(s.design, s.data, s.stimdur, s.tr, _choices(case), opts)
    betas = results[CASES[case][1]]["betasmd"].reshape(-1, frozen.betas.shape[1])
    assert relative_difference(frozen.betas, betas) < 1e-4


def test_frozen_fit_is_linear_and_carries_the_fit_without_its_offset() -> None:
    s = _session()
    results, opts = _fit("typed")
    frozen = freeze(s.design, s.data, s.stimdur, s.tr, _choices("typed"), opts)
    rng = np.random.default_rng(0)
    a = [rng.standard_normal(d.shape).astype(np.float32) for d in s.data]
    b = [rng.standard_normal(d.shape).astype(np.float32) for d in s.data]
    both = [x + 2 * y for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(
        apply(frozen, both), apply(frozen, a) + 2 * apply(frozen, b), rtol=1e-4, atol=1e-5
    )
    # the fit's own data: the betas up to the autoscale's offset (constant over trials)
    own = apply(frozen, s.data)
    betas = results["typed"]["betasmd"].reshape(own.shape)
    offset = (betas - own).astype(np.float64)
    finite = np.isfinite(offset).all(axis=1)
    spread = offset[finite].std(axis=1)
    assert np.all(spread <= 1e-3 * np.abs(betas[finite]).max(axis=1) + 1e-6)


def test_frozen_fit_refuses_choices_of_another_size() -> None:
    s = _session()
    _, opts = _fit("typed")
    bad = Choices("typed", np.zeros(5, int), np.ones(5), 0, None)
    with pytest.raises(ValueError, match="voxels"):
        freeze(s.design, s.data, s.stimdur, s.tr, bad, opts)
    with pytest.raises(ValueError, match="fracvalue"):
        Choices("typed", np.zeros(5, int), None, 0, None)
