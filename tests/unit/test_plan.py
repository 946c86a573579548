"""The plan (echoprep.plan) without Snakemake: which jobs and files a config asks for, the
inputs of a job, the errors for impossible configs, and the resources of each rule."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from echoprep.io import outputs as reg
from echoprep.plan import Plan, PlanError
from helpers.bidstree import make_bids_tree
from helpers.plans import make_plan as _plan


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plan") / "bids"
    make_bids_tree(root, subjects=("01",), sessions=("01", "02"), runs=("01", "02"), data=False)
    return root


def _rel(plan: Plan, paths) -> set[str]:
    return {str(Path(p).relative_to(plan.out)) for p in paths}


def test_targets_are_every_variant_output_of_the_comparison_session(bids, tmp_path):
    plan = _plan(bids, tmp_path)
    targets = _rel(plan, plan.targets())
    # 2 sessions x 2 runs x 2 NORDIC variants; the GLM fits only the comparison session
    assert plan.glm_variants() == [
        "raw-single", "raw-optcom", "raw-denoised",
        "nordic-single", "nordic-optcom", "nordic-denoised",
    ]  # fmt: skip
    # every variant on the comparison session (the first), LAION-fMRI's choice on every one
    assert {s for _, s in plan.glm_variant_sessions()["raw-single"]} == {"01"}
    assert {s for _, s in plan.glm_variant_sessions()["nordic-optcom"]} == {"01", "02"}
    betas = {
        t
        for t in targets
        if t.endswith("_desc-SingletrialBetas_statmap.nii.gz")
        and not t.startswith("glmsingle-tedana/")  # the LAION layout (test_publish_plan.py)
    }
    name = "sub-01_ses-0{}_task-images_space-T1w_stat-effect_desc-SingletrialBetas_statmap.nii.gz"
    assert betas == {
        *(f"glmsingle-{v}/sub-01/ses-01/func/{name.format(1)}" for v in plan.glm_variants()),
        f"glmsingle-nordic-optcom/sub-01/ses-02/func/{name.format(2)}",
    }
    optcom = {t for t in targets if t.endswith("_desc-optcom_bold.nii.gz")}
    assert len(optcom) == 2 * 2 * 2
    assert (
        "combine-raw/sub-01/ses-02/func/sub-01_ses-02_task-images_run-02_space-T1w_desc-optcom_bold.nii.gz"
        in optcom
    )
    # one dataset description per derivative folder written
    descriptions = {t.split("/")[0] for t in targets if t.endswith("dataset_description.json")}
    assert descriptions == {
        "nordic", "combine-raw", "combine-nordic", "spatial", "preproc-raw", "preproc-nordic",
        "anat", "glmsingle-analysis", "rois", "reports", "comparison",
        *(f"glmsingle-{v}" for v in plan.glm_variants()), "glmsingle-tedana", "atlases",
    }  # fmt: skip
    # every target is a name of the registry (or a dataset description)
    folders = [spec.pattern() for spec in reg.FOLDERS.values()]
    for t in targets:
        assert any(p.fullmatch(t.split("/")[0]) for p in folders), t


def test_nordic_off_and_native_space_change_the_job_set(bids, tmp_path):
    plan = _plan(
        bids,
        tmp_path,
        nordic={"enabled": False},
        spatial={"output_space": "native"},
        publish={"laion": False},  # its variant nordic-optcom is not produced
    )
    targets = _rel(plan, plan.targets())
    assert plan.nordic_variants == ["raw"] and plan.space() is None
    assert not any(t.startswith(("nordic/", "combine-nordic", "anat/")) for t in targets)
    assert not any("space-T1w" in t for t in targets)
    assert plan.diagnostics_pairs("01") == []


def test_all_sessions_variants_get_subject_noise_ceilings(bids, tmp_path):
    plan = _plan(
        bids,
        tmp_path,
        glm={"all_sessions_variants": ["raw-single"]},
        publish={"laion": False},  # its variant nordic-optcom is not on every session
    )
    pairs = plan.glm_variant_sessions()
    assert pairs["raw-single"] == [("01", "01"), ("01", "02")]
    assert pairs["nordic-optcom"] == [("01", "01")]
    targets = _rel(plan, plan.targets())
    allrep = {t for t in targets if "NoiseceilingAllrep" in t}
    assert allrep == {
        "glmsingle-raw-single/sub-01/func/"
        "sub-01_task-images_space-T1w_desc-NoiseceilingAllrep_statmap.nii.gz",
        "glmsingle-raw-single/sub-01/func/"
        "sub-01_task-images_space-T1w_desc-NoiseceilingAllrep_statmap.json",
    }


def test_a_new_subject_adds_only_its_own_files(bids, tmp_path):
    before = set(_plan(bids, tmp_path).targets())
    bigger = tmp_path / "bids2"
    make_bids_tree(
        bigger, subjects=("01", "02"), sessions=("01", "02"), runs=("01", "02"), data=False
    )
    after = set(_plan(bigger, tmp_path).targets())
    added = {Path(p).relative_to(tmp_path / "out") for p in after - before}
    assert added and before - after == set()
    # files of the group comparison are rewritten, every other new file is sub-02's
    assert {str(p) for p in added if "sub-02" not in str(p)} == set()


def test_job_inputs_follow_the_wildcards(bids, tmp_path):
    plan = _plan(bids, tmp_path)
    wc = SimpleNamespace(run_prefix="sub-01_ses-01_task-images_run-02", echo="2", nordic="nordic")
    run = plan.run_of(wc)
    assert plan.nordic_inputs(wc) == {
        "mag": str(run.echoes[1].mag),
        "phase": str(run.echoes[1].phase),
    }
    echoes = plan.echo_inputs(wc)
    assert [Path(e).name for e in echoes] == [
        f"sub-01_ses-01_task-images_run-02_echo-{k}_space-T1w_desc-preproc_bold.nii.gz"
        for k in (1, 2, 3)
    ]
    assert Path(echoes[0]).parts[-5] == "preproc-nordic"
    # NORDIC runs take the component count of the NORDIC-off run's ICA
    assert Path(plan.tedana_inputs(wc)["raw_components"]).name.endswith("_desc-ICA_mixing.json")
    assert "optcom" not in plan.tedana_inputs(wc)
    # raw runs: the criteria are estimated (and capped) on the run's optimal combination
    raw = SimpleNamespace(run_prefix=wc.run_prefix, nordic="raw")
    assert [Path(f).name for f in plan.tedana_inputs(raw)["optcom"]] == [
        "sub-01_ses-01_task-images_run-02_space-T1w_desc-optcom_bold.nii.gz",
        "sub-01_ses-01_task-images_run-02_space-T1w_desc-adaptiveGoodSignal_mask.nii.gz",
    ]
    uncapped = _plan(bids, tmp_path, tedana={"max_components": None})
    assert "optcom" not in uncapped.tedana_inputs(raw)
    session = SimpleNamespace(
        ses_prefix="sub-01_ses-01_task-images", nordic="raw", combine="optcom"
    )
    glm = plan.glm_inputs(session)
    assert len(glm["bold"]) == 2 and glm["mask"].endswith("_space-T1w_desc-analysis_mask.nii.gz")
    masks = plan.analysis_mask_inputs(session)
    assert set(masks) == {*plan.glm_variants(), "brain"}


def test_impossible_configs_are_refused_with_the_fix(bids, tmp_path):
    plan = _plan(
        bids, tmp_path, variants={"combine": ["optcom"]}, comparison={"reference": "raw-denoised"}
    )
    with pytest.raises(
        PlanError, match=r"comparison.reference: expected a variant this config produces.*Fix"
    ):
        plan.reference_variant()
    plan = _plan(bids, tmp_path, rois={"visual": {"session": "09"}})
    with pytest.raises(PlanError, match="sub-01 has no session '09'"):
        plan.visual_source("01")
    # the default reference raw-optcom falls back to another NORDIC-off variant
    plan = _plan(bids, tmp_path, variants={"combine": ["single", "denoised"]})
    assert plan.reference_variant() == "raw-single"


def test_resources_grow_with_attempt_and_with_the_data(bids, tmp_path):
    plan = _plan(bids, tmp_path)
    big = tmp_path / "big"
    make_bids_tree(big, sessions=("01", "02"), shape=(90, 110, 72), n_volumes=163, data=False)
    large = _plan(big, tmp_path)
    run = SimpleNamespace(run_prefix="sub-01_ses-01_task-images_run-01", echo="1", nordic="raw")
    session = SimpleNamespace(
        ses_prefix="sub-01_ses-01_task-images", nordic="raw", combine="optcom"
    )
    for rule, wc in [
        ("nordic", run), ("optcom", run), ("tedana", run), ("spatial_resample", run),
        ("glm", session), ("glm_analysis_mask", session), ("noiseceiling_session", session),
    ]:  # fmt: skip
        small1, small3 = plan.mem_mb(rule)(wc, 1), plan.mem_mb(rule)(wc, 3)
        assert 0 < small1 < small3, rule
        assert large.mem_mb(rule)(wc, 1) > small1, rule
        assert plan.runtime(rule)(wc, 2) > plan.runtime(rule)(wc, 1) > 0, rule
    with pytest.raises(KeyError, match="no memory model"):
        plan.mem_mb("no_such_rule")(run, 1)
