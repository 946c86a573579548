"""The plan of the LAION-fMRI layout (echoprep.plan.families.publish): which files are
published for which config, the inputs of the publish jobs, and the refusal of a variant the
config does not produce on every session."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from echoprep.plan import Plan, PlanError
from helpers.bidstree import make_bids_tree
from helpers.plans import make_plan as _plan


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("publish_plan") / "bids"
    make_bids_tree(root, subjects=("01",), sessions=("01", "02"), runs=("01", "02"), data=False)
    return root


def _published(plan: Plan) -> set[str]:
    """The published files ``rule all`` asks for (each image's sidecar is written by its job
    without being a target: tests/e2e/test_laion_layout.py reads them)."""
    out = plan.ctx.out
    return {
        str(Path(t).relative_to(out))
        for t in plan.targets()
        if Path(t).relative_to(out).parts[0] in ("glmsingle-tedana", "atlases")
    }


def test_the_default_publishes_nordic_optcom_under_the_loader_names(bids, tmp_path):
    plan = _plan(bids, tmp_path)
    published = _published(plan)
    ses = "glmsingle-tedana/sub-01/ses-0{s}/func/sub-01_ses-0{s}_task-images_"
    expected = set()
    for s in (1, 2):
        for name in (
            "space-T1w_stat-effect_desc-SingletrialBetas_statmap",
            "space-T1w_desc-Noiseceiling_statmap",
        ):
            expected.add(ses.format(s=s) + name + ".nii.gz")
        expected.add(ses.format(s=s) + "desc-SingletrialBetas_trials.tsv")
    # every N-repeat ceiling the subject has (the tree mixes repeat counts)
    repeats = plan.nc.subject_repeat_counts("01")
    assert repeats
    nreps = [f"desc-Noiseceiling{n}rep_statmap" for n in repeats]
    for name in ("desc-meanR2gt15mask_mask", "desc-NoiseceilingAllrep_statmap", *nreps):
        stem = f"glmsingle-tedana/sub-01/sub-01_task-images_space-T1w_{name}"
        expected.add(stem + ".nii.gz")
    expected |= {
        "glmsingle-tedana/dataset_description.json",
        "atlases/dataset_description.json",
        "atlases/sub-01/rois/visuallyResponsive.nii.gz",
    }
    assert published == expected


def test_session_inputs_are_the_chosen_variants_originals(bids, tmp_path):
    plan = _plan(bids, tmp_path, publish={"variant": "raw-single"},
                 glm={"all_sessions_variants": ["raw-single"]})  # fmt: skip
    wc = SimpleNamespace(ses_prefix="sub-01_ses-02_task-images")
    inputs = plan.spec("publish_session").input_function(wc)
    assert set(inputs) == {"betas", "nc", "trials"}  # (each standing for its sidecar too)
    for path in inputs.values():
        assert Path(path).relative_to(plan.ctx.out).parts[:3] == (
            "glmsingle-raw-single", "sub-01", "ses-02"
        )  # fmt: skip
    sub = plan.spec("publish_subject").input_function(SimpleNamespace(subject="01"))
    assert Path(sub["r2mean"]).name.endswith("_stat-rsquare_desc-R2mean_statmap.nii.gz")
    assert Path(sub["allrep"]).parts[-4] == "glmsingle-raw-single"
    wc = SimpleNamespace(subject="01", laion_roi="visuallyResponsive")
    roi = plan.spec("publish_roi").input_function(wc)
    assert Path(roi["roi"]).parts[-4:-1] == ("rois", "sub-01", "visual")


def test_publish_args_name_sources_and_outputs_without_sidecars(bids, tmp_path):
    plan = _plan(bids, tmp_path)
    wc = SimpleNamespace(ses_prefix="sub-01_ses-01_task-images")
    inputs = plan.spec("publish_session").input_function(wc)
    outputs = plan.publish.publish_session_outputs("01", "01")
    args = plan.spec("publish_session").params["args"](wc, inputs, outputs).split()
    at = args.index("--out")
    assert args[0] == "--source" and len(args[1:at]) == 3 and len(args[at + 1 :]) == 3
    assert f"betas={inputs['betas']}" in args and f"trials={outputs['trials']}" in args
    assert not any(a.endswith(".json") for a in args)
    # the subject job writes the mask from the mean R² and publishes the all-repeats map
    wc = SimpleNamespace(subject="01")
    publish_subject = plan.spec("publish_subject")
    args = publish_subject.params["args"](
        wc, publish_subject.input_function(wc), plan.publish.publish_subject_outputs("01")
    ).split()
    assert args[args.index("--r2mean") + 1].endswith("_desc-R2mean_statmap.nii.gz")
    assert [a.split("=")[0] for a in args[args.index("--out") + 1 :]] == ["mask", "allrep"]


def test_laion_off_publishes_nothing(bids, tmp_path):
    plan = _plan(bids, tmp_path, publish={"laion": False})
    assert _published(plan) == set()
    # and a variant that is not produced is then no problem
    plan = _plan(bids, tmp_path, publish={"laion": False}, nordic={"enabled": False})
    assert _published(plan) == set()


def test_the_default_variant_not_produced_publishes_nothing_and_says_why(bids, tmp_path):
    """NORDIC off (or no optcom) with the default publish.variant is a legal config: nothing is
    published, with a warning naming the fix; the rest of the workflow is planned."""
    plan = _plan(bids, tmp_path, nordic={"enabled": False})
    assert _published(plan) == set()
    assert any("glmsingle-raw-optcom" in t for t in plan.targets())
    text = plan.publish_warning()
    assert text.startswith(
        "publish.laion: nothing is published: publish.variant: expected a variant this config "
        "produces (raw-single, raw-optcom, raw-denoised); found 'nordic-optcom' (NORDIC side off"
    )
    assert "Fix: set publish.variant to one of the produced variants" in text
    assert text.endswith("or publish.laion: false.")
    plan = _plan(bids, tmp_path, variants={"combine": ["single", "denoised"]})
    assert _published(plan) == set()
    assert "variants.combine ['single', 'denoised']" in plan.publish_warning()
    assert _plan(bids, tmp_path).publish_warning() is None


def test_an_explicit_variant_the_config_does_not_produce_is_refused_with_the_fix(bids, tmp_path):
    plan = _plan(bids, tmp_path, nordic={"enabled": False}, publish={"variant": "nordic-single"})
    assert plan.publish_warning() is None
    with pytest.raises(PlanError) as err:
        plan.targets()
    text = str(err.value)
    assert text.startswith(
        "publish.variant: expected a variant this config produces (raw-single, raw-optcom, "
        "raw-denoised); found 'nordic-single' (NORDIC side off"
    )
    assert text.endswith("or publish.laion: false.")


def test_a_variant_fitted_on_the_comparison_session_only_is_refused(bids, tmp_path):
    plan = _plan(bids, tmp_path, publish={"variant": "raw-single"})
    with pytest.raises(PlanError) as err:
        plan.targets()
    assert str(err.value) == (
        "publish.variant: 'raw-single' is fitted only for the comparison sessions; the LAION "
        "layout needs it on every session (its mean R² mask and subject noise ceilings). Fix: "
        "add 'raw-single' to glm.all_sessions_variants, set publish.variant to one of "
        "['nordic-optcom'], or publish.laion: false."
    )


def test_two_rois_with_one_label_are_refused(tmp_path):
    bids = tmp_path / "bids"
    make_bids_tree(bids, subjects=("01",), sessions=("01",), runs=("01", "02"), data=False)
    rois = tmp_path / "rois"
    for category in ("visual", "retino"):
        (rois / category).mkdir(parents=True)
        (rois / category / "sub-01_space-T1w_label-V1_mask.nii.gz").write_bytes(b"")
    plan = _plan(bids, tmp_path, rois={"dir": str(rois)})
    with pytest.raises(PlanError, match=r"sub-01 has two ROIs labelled 'V1' .*Fix: rename one"):
        plan.targets()
    (rois / "retino" / "sub-01_space-T1w_label-V1_mask.nii.gz").rename(
        rois / "retino" / "sub-01_space-T1w_label-V2_mask.nii.gz"
    )
    plan = _plan(bids, tmp_path, rois={"dir": str(rois)})
    rois_published = {p for p in _published(plan) if p.startswith("atlases/sub-01/rois/")}
    assert rois_published == {
        f"atlases/sub-01/rois/{label}.{ext}"
        for label in ("visuallyResponsive", "V1", "V2")
        for ext in ("nii.gz",)
    }
