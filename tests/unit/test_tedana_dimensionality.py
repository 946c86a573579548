"""tedana ICA after NORDIC: the dimensionality choice, the component count read back from the
run without NORDIC, FastICA attempts counted from tedana's log, and the sidecar record."""

from __future__ import annotations

import json
import logging
import re

import nibabel as nib
import numpy as np
import pytest

from echoprep.io.bids_uri import uri_for
from echoprep.io.paths import sidecar_path
from echoprep.options import OptionsError
from echoprep.stages.combine import (
    ICA_RECORD,
    StageInputError,
    choose_components,
    count_ica_attempts,
    read_component_count,
    run_tedana,
)
from echoprep.stages.combine.ica import MIN_COMPONENTS, ComponentChoice, cap_components

TES = [0.011, 0.02882, 0.04662]

# --- the choice ---------------------------------------------------------------------------


def test_runs_without_nordic_use_tedpca_as_given():
    c = choose_components("aic", nordic_tedpca=None, raw_components=14, n_volumes=120)
    assert (c.tedpca, c.source, c.fallback) == ("aic", "tedana.tedpca = aic", False)
    assert (
        choose_components("25", nordic_tedpca=None, raw_components=None, n_volumes=120).tedpca == 25
    )
    assert (
        choose_components("0.9", nordic_tedpca=None, raw_components=None, n_volumes=9).tedpca == 0.9
    )


def test_nordic_run_takes_the_raw_runs_count():
    c = choose_components("aic", nordic_tedpca="raw_run", raw_components=14, n_volumes=120)
    assert c.tedpca == 14 and not c.fallback
    assert c.source == "same run without NORDIC (tedana kept 14 components)"


def test_same_is_the_old_behaviour_and_a_number_is_a_fixed_count():
    same = choose_components("kic", nordic_tedpca="same", raw_components=14, n_volumes=120)
    assert (same.tedpca, same.source) == ("kic", "tedana.tedpca (nordic_tedpca: same) = kic")
    fixed = choose_components("aic", nordic_tedpca="20", raw_components=14, n_volumes=120)
    assert (fixed.tedpca, fixed.source) == (20, "tedana.nordic_tedpca = 20")


@pytest.mark.parametrize(
    ("n_volumes", "fraction", "expected"), [(120, 0.2, 24), (163, 0.2, 32), (4, 0.2, 1)]
)
def test_fallback_without_the_raw_run_is_a_fraction_of_the_volumes(n_volumes, fraction, expected):
    c = choose_components(
        "aic",
        nordic_tedpca="raw_run",
        raw_components=None,
        n_volumes=n_volumes,
        fallback_fraction=fraction,
    )
    assert c.tedpca == expected and c.fallback
    assert c.source.startswith(f"fallback: floor({fraction:g} x {n_volumes} volumes) = {expected}")


def test_impossible_choices_are_explained():
    with pytest.raises(ValueError, match=r"one of raw_run, same or a component count; found 'mdl'"):
        choose_components("aic", nordic_tedpca="mdl", raw_components=None, n_volumes=120)
    with pytest.raises(
        ValueError,
        match=r"without NORDIC between 2 and 119 \(the run has 120 volumes\); found 120",
    ):
        choose_components("aic", nordic_tedpca="raw_run", raw_components=120, n_volumes=120)
    with pytest.raises(ValueError, match=r"from tedana.nordic_tedpca between 2 and 89 .* found 0"):
        choose_components("aic", nordic_tedpca="0", raw_components=None, n_volumes=90)
    with pytest.raises(
        ValueError, match=r"fallback fraction of the volumes in \(0, 1\); found 1.5"
    ):
        choose_components(
            "aic", nordic_tedpca="raw_run", raw_components=None, n_volumes=90, fallback_fraction=1.5
        )


# --- the count of the run without NORDIC ------------------------------------------------------


def test_count_is_read_from_the_sidecar_or_the_mixing_matrix(tmp_path):
    side = tmp_path / "raw_mixing.json"
    side.write_text(json.dumps({ICA_RECORD: {"NComponents": 17}}))
    assert read_component_count(side) == 17
    mixing = tmp_path / "raw_mixing.tsv"
    mixing.write_text("ICA_00\tICA_01\tICA_02\n0.1\t0.2\t0.3\n")
    assert read_component_count(mixing) == 3


def test_a_sidecar_without_the_count_names_the_file_and_the_fix(tmp_path):
    side = tmp_path / "old_mixing.json"
    side.write_text(json.dumps({"Description": "tedana ICA mixing matrix"}))
    with pytest.raises(
        StageInputError,
        match=r"old_mixing.json: expected the sidecar of an ICA-denoised output with "
        r"TedanaICA.NComponents; found none .* Fix: re-run",
    ):
        read_component_count(side)
    side.write_text(json.dumps({ICA_RECORD: {"NComponents": 0}}))
    with pytest.raises(StageInputError, match=r"NComponents to be a positive integer; found 0"):
        read_component_count(side)


# --- FastICA attempts from tedana's log ---------------------------------------------------------

_T = "2026-01-01T00:00:00\t"
_FAIL = _T + "ica.f_ica\tWARNING\tICA with random seed {} failed to converge after 500 iterations"
_NEW = _T + "ica.f_ica\tWARNING\tRandom seed updated to {}"
_NOBOLD = _T + "tedana.tedana_workflow\tWARNING\tNo BOLD components found. Re-attempting ICA."


def test_converged_first_time_logs_no_ica_warning():
    a = count_ica_attempts(
        ["2026-01-01T00:00:00\tutils.dice\tWARNING\t2 of 14 components have empty maps"]
    )
    assert (a.attempts, a.restarts, a.failed, a.decompositions, a.converged) == (1, 0, 0, 1, True)


def test_restarts_then_convergence():
    lines = [_FAIL.format(0), _NEW.format(1), _FAIL.format(1), _NEW.format(2)]
    a = count_ica_attempts(lines)
    assert (a.attempts, a.restarts, a.failed, a.converged) == (3, 2, 2, True)


def test_every_attempt_failed():
    # maxrestart 3: three failures, the last one without a restart after it
    lines = [_FAIL.format(0), _NEW.format(1), _FAIL.format(1), _NEW.format(2), _FAIL.format(2)]
    a = count_ica_attempts(lines)
    assert (a.attempts, a.restarts, a.failed, a.converged) == (3, 2, 3, False)


def test_a_rerun_without_bold_components_is_a_second_decomposition():
    lines = [_FAIL.format(0), _NEW.format(1), _NOBOLD]  # converged with seed 1, no BOLD: again
    a = count_ica_attempts(lines)
    assert (a.attempts, a.failed, a.decompositions, a.converged) == (3, 1, 2, True)


# --- the sidecar record of a real tedana run ------------------------------------------------------


def _write_echoes(tmp_path, n_t=40, seed=0, extra_courses=0):
    """Three echoes of a 10x10x6 'brain' block (zero background, for tedana's EPI mask) with
    two BOLD-like time courses (R2* changes; ``extra_courses`` more) and thermal noise."""
    rng = np.random.default_rng(seed)
    shape = (14, 14, 8)
    brain = np.zeros(shape, bool)
    brain[2:12, 2:12, 1:7] = True
    t = np.arange(n_t)
    courses = np.stack(
        [np.sin(2 * np.pi * t / 13), np.sign(np.sin(2 * np.pi * t / 29))]
        + [np.cos(2 * np.pi * t / p) for p in (7, 17, 5)[:extra_courses]]
    )
    dr2 = (rng.standard_normal((*shape, len(courses))) * 0.6) @ courses  # 1/s
    files = []
    for i, te in enumerate(TES):
        sig = 1000.0 * np.exp(-te * (1 / 0.03 + dr2)) * brain[..., None]
        data = np.abs(sig + 5.0 * rng.standard_normal(sig.shape))
        img = nib.Nifti1Image(data.astype(np.float32), np.diag([3.0, 3.0, 3.0, 1.0]))
        f = tmp_path / f"echo-{i + 1}.nii.gz"
        nib.save(img, f)
        files.append(f)
    return files


def _outputs(tmp_path, name):
    return {
        "bold": tmp_path / name / "bold.nii.gz",
        "metrics": tmp_path / name / "metrics.tsv",
        "mixing": tmp_path / name / "mixing.tsv",
    }


def test_nordic_run_uses_the_raw_count_and_records_it(tmp_path):
    files = _write_echoes(tmp_path)
    raw_side = tmp_path / "raw_mixing.json"
    raw_side.write_text(json.dumps({ICA_RECORD: {"NComponents": 4}}))
    out = _outputs(tmp_path, "nordic")
    run_tedana(
        files,
        TES,
        out,
        options={"nordic_tedpca": "raw_run"},
        nordic=True,
        raw_components=raw_side,
        work_dir=tmp_path / "w",
    )
    mixing = np.loadtxt(out["mixing"], skiprows=1, ndmin=2)
    assert mixing.shape == (40, 4)
    for key in ("bold", "mixing", "metrics"):
        rec = json.loads(sidecar_path(out[key]).read_text())[ICA_RECORD]
        assert rec["TedpcaRequested"] == "aic" and rec["NordicTedpca"] == "raw_run"
        assert rec["TedpcaUsed"] == 4 and rec["NComponents"] == 4 and rec["NVolumes"] == 40
        assert rec["ComponentSource"] == "same run without NORDIC (tedana kept 4 components)"
        # (the outputs lie in a folder named like a derivative folder, "nordic"; the raw-side
        # record outside every dataset: its content reference, docs/architecture.md)
        assert rec["ComponentSourceFile"] == uri_for(raw_side, out[key])
        assert (rec["ICAAttempts"], rec["ICARestarts"], rec["ICAConverged"]) == (1, 0, True)
    # the NORDIC run's own sidecar gives the count back
    assert read_component_count(out["mixing"].with_suffix(".json")) == 4


def test_unconverged_ica_is_bounded_warned_and_recorded(tmp_path, caplog):
    files = _write_echoes(tmp_path)
    out = _outputs(tmp_path, "raw")
    with caplog.at_level(logging.WARNING, logger="echoprep.stages.combine"):
        run_tedana(
            files,
            TES,
            out,
            options={"tedpca": "6", "maxit": 1, "maxrestart": 2},
            work_dir=tmp_path / "w",
        )
    rec = json.loads(out["mixing"].with_suffix(".json").read_text())[ICA_RECORD]
    assert (rec["ICAAttempts"], rec["ICARestarts"], rec["ICAFailedAttempts"]) == (2, 1, 2)
    assert rec["ICAConverged"] is False and rec["MaxRestart"] == 2 and rec["NComponents"] == 6
    assert (
        "FastICA did not converge in 2 attempts (tedana.maxrestart 2, maxit 1) with 6 "
        "components of 40 volumes" in caplog.text
    )
    assert "Fix: fewer components" in caplog.text


def test_above_the_cap_the_next_conservative_criterion_within_it_is_used():
    aic = ComponentChoice("aic", "tedana.tedpca = aic")
    laion = {"aic": 159, "kic": 151, "mdl": 25}  # a simulated LAION-size run, 163 volumes
    assert cap_components(aic, {**laion, "aic": 40}, 0.5, 163) is aic  # within 81
    assert cap_components(aic, laion, None, 163) is aic  # no cap set
    assert cap_components(aic, None, 0.5, 163) is aic  # no estimates made
    used = cap_components(aic, laion, 0.5, 163)
    assert used.tedpca == 25 and not used.fallback
    assert used.source == (
        "tedana.tedpca = aic: estimated 159 of 163 volumes, more than "
        "tedana.max_components = 0.5 x volumes = 81; mdl estimate used"
    )
    assert cap_components(aic, {**laion, "kic": 70}, 0.5, 163).tedpca == 70
    capped = cap_components(aic, {**laion, "mdl": 90}, 0.5, 163)
    assert capped.tedpca == 81 and capped.source.endswith("no criterion within it, the cap used")
    mdl = ComponentChoice("mdl", "tedana.tedpca = mdl")
    assert cap_components(mdl, {**laion, "mdl": 90}, 0.5, 163).tedpca == 81


def test_the_estimate_is_tedanas_own_count_and_a_capped_run_records_both(tmp_path, caplog):
    """tedana's own aic estimate is what it keeps when within the cap; with a cap below it,
    tedana starts again with the cap, and the sidecar says so (one ICA, the capped one)."""
    files = _write_echoes(tmp_path, extra_courses=3)
    out = _outputs(tmp_path, "free")
    run_tedana(files, TES, out, options={"max_components": 1}, work_dir=tmp_path)
    rec = json.loads(out["mixing"].with_suffix(".json").read_text())[ICA_RECORD]
    assert rec["TedpcaUsed"] == "aic" and rec["MaxComponents"] == 1
    assert rec["EstimatedComponents"]["aic"] == rec["NComponents"] >= 3
    n = rec["NComponents"]
    out = _outputs(tmp_path, "capped")
    with caplog.at_level(logging.WARNING, logger="echoprep.stages.combine"):
        run_tedana(files, TES, out, options={"max_components": 2.5 / 40}, work_dir=tmp_path)
    rec = json.loads(out["mixing"].with_suffix(".json").read_text())[ICA_RECORD]
    assert (rec["EstimatedComponents"]["aic"], rec["TedpcaUsed"], rec["NComponents"]) == (n, 2, 2)
    assert "more than tedana.max_components = 0.0625 x volumes = 2" in rec["ComponentSource"]
    assert f"tedana's aic estimate is {n} components of 40 volumes" in caplog.text
    # the capped run is tedana run with that count from the start: the same components, and
    # the same ICA attempts read from its log (nothing of the stopped first run is left)
    fixed = _outputs(tmp_path, "fixed")
    run_tedana(files, TES, fixed, options={"tedpca": "2"}, work_dir=tmp_path)
    assert out["mixing"].read_bytes() == fixed["mixing"].read_bytes()
    ica = ("ICAAttempts", "ICAFailedAttempts", "ICADecompositions", "ICAConverged")
    again = json.loads(fixed["mixing"].with_suffix(".json").read_text())[ICA_RECORD]
    assert [rec[k] for k in ica] == [again[k] for k in ica]


def test_zero_attempts_are_refused(tmp_path):
    files = _write_echoes(tmp_path, n_t=10)
    with pytest.raises(OptionsError, match=r"tedana.maxrestart: 0 is less than the minimum of 1"):
        run_tedana(files, TES, _outputs(tmp_path, "x"), options={"maxrestart": 0})


# --- the config keys ----------------------------------------------------------------------------


def test_config_defaults_and_refusals():
    from echoprep.config import ConfigError, validate_config

    cfg = validate_config({"bids_dir": "/d"})
    assert cfg["tedana"]["nordic_tedpca"] == "raw_run" and cfg["tedana"]["maxrestart"] == 3
    assert cfg["tedana"]["max_components"] == 0.5
    assert validate_config({"bids_dir": "/d", "tedana": {"max_components": None}})
    for ok in ("same", "20", 20):
        assert validate_config({"bids_dir": "/d", "tedana": {"nordic_tedpca": ok}})
    for bad, msg in (
        ({"nordic_tedpca": "mdl"}, "tedana.nordic_tedpca: 'mdl' does not match"),
        ({"nordic_tedpca": 0}, "tedana.nordic_tedpca: 0 is less than the minimum of 1"),
        ({"maxrestart": 0}, "tedana.maxrestart: 0 is less than the minimum of 1"),
        ({"max_components": 0}, "tedana.max_components: 0 is less than or equal to the minimum"),
        ({"max_components": 2}, "tedana.max_components: 2 is greater than the maximum of 1"),
    ):
        with pytest.raises(ConfigError, match=re.escape(msg)):
            validate_config({"bids_dir": "/d", "tedana": bad})


def test_an_estimate_below_two_components_is_raised_to_the_floor():
    """Nearly one-dimensional data (strong low-dimensional responses at tSNR 8): the criterion
    estimated 1 component and tedana crashed, stopping the workflow. The floor replaces such an
    estimate, with or without a cap, and says why."""
    aic = ComponentChoice("aic", "tedana.tedpca = aic")
    one = {"aic": 1, "kic": 1, "mdl": 1}
    for cap in (0.5, None):
        used = cap_components(aic, one, cap, 163)
        assert used.tedpca == MIN_COMPONENTS == 2
        assert used.source == (
            "tedana.tedpca = aic: estimated 1 component(s) of 163 volumes, fewer than the 2 "
            "tedana's ICA needs (nearly one-dimensional data); 2 used"
        )
    assert cap_components(aic, {"aic": 2, "kic": 2, "mdl": 1}, 0.5, 163) is aic


def test_without_a_cap_the_estimate_is_still_made_so_the_floor_applies(tmp_path):
    """tedana.max_components: null switches the cap off, not the floor: tedana's estimate is
    still read (and an estimate of 1 would be raised to 2, as above), recorded as with a cap."""
    files = _write_echoes(tmp_path, extra_courses=3)
    out = _outputs(tmp_path, "nocap")
    run_tedana(files, TES, out, options={"max_components": None}, work_dir=tmp_path)
    rec = json.loads(out["mixing"].with_suffix(".json").read_text())[ICA_RECORD]
    assert rec["MaxComponents"] is None and rec["TedpcaUsed"] == "aic"
    assert rec["EstimatedComponents"]["aic"] == rec["NComponents"] >= MIN_COMPONENTS
