"""The plan (echoprep.plan) without Snakemake: which jobs and files a config asks for, the
inputs of a job, the errors for impossible configs, and the resources of each rule."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from echoprep.io import outputs as reg
from echoprep.plan import RUN_STEM_PATTERN, Plan, PlanError, RuleHooks
from echoprep.plan.families.planted import slice_timing_words
from helpers.bidstree import bold_path, default_affine, make_bids_tree, write_nifti
from helpers.plans import make_plan as _plan


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plan") / "bids"
    make_bids_tree(root, subjects=("01",), sessions=("01", "02"), runs=("01", "02"), data=False)
    return root


def _rel(plan: Plan, paths) -> set[str]:
    return {str(Path(p).relative_to(plan.ctx.out)) for p in paths}


# one comparison session, so that ses-02 is a regular session (the default compares the first two)
FIRST = {"sessions": ["01"]}


def test_default_comparison_sessions_are_each_subjects_first_two(tmp_path):
    """comparison.sessions: [] compares each subject's first two sessions (so that each gets
    its planted responses from the other), a subject's only one where it has one."""
    root = tmp_path / "bids"
    make_bids_tree(root, subjects=("01",), sessions=("01", "02", "03"), runs=("01",), data=False)
    make_bids_tree(root, subjects=("02",), sessions=("01",), runs=("01",), data=False)
    plan = _plan(root, tmp_path)
    assert plan.fitted.comparison_sessions("01") == ["01", "02"]
    assert plan.fitted.comparison_sessions("02") == ["01"]
    assert {s for _, s in plan.fitted.glm_variant_sessions()["raw-single"]} == {"01", "02"}
    assert [p for p in plan.fitted.glm_variant_sessions()["nordic-optcom"] if p[0] == "01"] == [
        ("01", "01"), ("01", "02"), ("01", "03"),
    ]  # fmt: skip
    chosen = _plan(root, tmp_path, comparison={"sessions": ["ses-03"]}).fitted
    assert chosen.comparison_sessions("01") == ["03"] and chosen.comparison_sessions("02") == []


def test_sessions_that_would_get_nothing_are_named(bids, tmp_path):
    """NORDIC off with the default glm.all_sessions_variants (nordic-optcom): the sessions
    outside the comparison would get geometry only; the plan says so and how to fix it."""
    plan = _plan(bids, tmp_path, nordic={"enabled": False}, comparison=FIRST)
    assert plan.sessions_warning() == (
        "glm.all_sessions_variants: none of ['nordic-optcom'] is produced by this config "
        "(raw-single, raw-optcom, raw-denoised), so the 1 session(s) outside the comparison "
        "(sub-01_ses-02) get head motion and distortion only: no echo handling, GLM or noise "
        "ceiling. Fix: add a produced variant to glm.all_sessions_variants (e.g. raw-optcom), "
        "or set variants.sessions: all to make every variant of every run without fitting it."
    )
    assert not {t for t in _rel(plan, plan.targets()) if "ses-02" in t and "combine-" in t}
    assert _plan(bids, tmp_path, comparison=FIRST).sessions_warning() is None
    # both sessions compared (the default): none is left outside
    assert _plan(bids, tmp_path, nordic={"enabled": False}).sessions_warning() is None
    fixed = _plan(
        bids,
        tmp_path,
        nordic={"enabled": False},
        glm={"all_sessions_variants": ["raw-optcom"]},
        comparison=FIRST,
    )
    assert fixed.sessions_warning() is None
    every = _plan(
        bids, tmp_path, nordic={"enabled": False}, variants={"sessions": "all"}, comparison=FIRST
    )
    assert every.sessions_warning() is None


def test_variants_sessions_all_produces_every_variant_of_every_run(bids, tmp_path):
    plan = _plan(bids, tmp_path, variants={"sessions": "all"})
    targets = _rel(plan, plan.targets())
    for desc in ("single", "optcom", "denoised"):
        found = {t for t in targets if t.endswith(f"_desc-{desc}_bold.nii.gz")}
        assert len(found) == 2 * 2 * 2, desc  # sessions x runs x NORDIC sides
    # what is fitted does not change
    assert plan.fitted.glm_variant_sessions() == _plan(bids, tmp_path).fitted.glm_variant_sessions()


def test_targets_are_every_variant_output_of_the_comparison_session(bids, tmp_path):
    plan = _plan(bids, tmp_path, comparison=FIRST)
    targets = _rel(plan, plan.targets())
    # 2 sessions x 2 runs x 2 NORDIC variants; the GLM fits only the comparison session
    assert plan.fitted.glm_variants() == [
        "raw-single", "raw-optcom", "raw-denoised",
        "nordic-single", "nordic-optcom", "nordic-denoised",
    ]  # fmt: skip
    # every variant on the comparison session, LAION-fMRI's choice on every one
    assert {s for _, s in plan.fitted.glm_variant_sessions()["raw-single"]} == {"01"}
    assert {s for _, s in plan.fitted.glm_variant_sessions()["nordic-optcom"]} == {"01", "02"}
    betas = {
        t
        for t in targets
        if t.endswith("_desc-SingletrialBetas_statmap.nii.gz")
        and not t.startswith("glmsingle-tedana/")  # the LAION layout (test_publish_plan.py)
    }
    name = "sub-01_ses-0{}_task-images_space-T1w_stat-effect_desc-SingletrialBetas_statmap.nii.gz"
    assert betas == {
        *(f"glmsingle-{v}/sub-01/ses-01/func/{name.format(1)}" for v in plan.fitted.glm_variants()),
        f"glmsingle-nordic-optcom/sub-01/ses-02/func/{name.format(2)}",
    }
    # each run gets the variants fitted for its session (variants.sessions: fitted): both
    # NORDIC sides in the comparison session, only nordic-optcom's in the other
    optcom = {t for t in targets if t.endswith("_desc-optcom_bold.nii.gz")}
    assert len(optcom) == 2 * 2 + 2
    ses02 = "sub-01/ses-02/func/sub-01_ses-02_task-images_run-02_space-T1w_desc-{}_bold.nii.gz"
    assert f"combine-nordic/{ses02.format('optcom')}" in optcom
    assert f"combine-raw/{ses02.format('optcom')}" not in optcom
    assert not {t for t in targets if "ses-02" in t and t.endswith("_desc-single_bold.nii.gz")}
    # one dataset description per derivative folder written
    descriptions = {t.split("/")[0] for t in targets if t.endswith("dataset_description.json")}
    assert descriptions == {
        "nordic", "combine-raw", "combine-nordic", "spatial", "preproc-raw", "preproc-nordic",
        "anat", "glmsingle-analysis", "rois", "reports", "comparison", "planted",
        *(f"glmsingle-{v}" for v in plan.fitted.glm_variants()), "glmsingle-tedana", "atlases",
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
    assert plan.ctx.nordic_variants == ["raw"] and plan.ctx.space() is None
    assert not any(t.startswith(("nordic/", "combine-nordic", "anat/")) for t in targets)
    assert not any("space-T1w" in t for t in targets)
    assert plan.report.diagnostics_pairs("01") == []


def test_all_sessions_variants_get_subject_noise_ceilings(bids, tmp_path):
    plan = _plan(
        bids,
        tmp_path,
        glm={"all_sessions_variants": ["raw-single"]},
        publish={"laion": False},  # its variant nordic-optcom is not on every session
        comparison=FIRST,
    )
    pairs = plan.fitted.glm_variant_sessions()
    assert pairs["raw-single"] == [("01", "01"), ("01", "02")]
    assert pairs["nordic-optcom"] == [("01", "01")]
    targets = _rel(plan, plan.targets())
    allrep = {t for t in targets if "NoiseceilingAllrep" in t}
    assert allrep == {  # (its sidecar written by the same job, not a target)
        "glmsingle-raw-single/sub-01/func/"
        "sub-01_task-images_space-T1w_desc-NoiseceilingAllrep_statmap.nii.gz",
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
    wc = SimpleNamespace(run_prefix="sub-01_ses-01_task-images_run-02", nordic="nordic")
    run = plan.ctx.run_of(wc)
    # one NORDIC job per run: every echo's magnitude and phase, in echo-time order
    inputs = plan.spec("nordic", 3).input_function(wc)
    assert {k: inputs[k] for k in ("mag", "phase")} == {
        "mag": [str(e.mag) for e in run.echoes],
        "phase": [str(e.phase) for e in run.echoes],
    }
    magnitude_only = _plan(bids, tmp_path, nordic={"magnitude_only": True})
    assert "phase" not in magnitude_only.spec("nordic", 3).input_function(wc)
    # one resampling per run and NORDIC variant: every echo, NORDIC's outputs for "nordic"
    resample = plan.chain_rules.resample_sources(run, "nordic")
    assert resample == [plan.chain_rules.nordic_outputs(run, e.echo)["bold"] for e in run.echoes]
    assert plan.chain_rules.resample_sources(run, "raw") == [str(e.mag) for e in run.echoes]
    raw = SimpleNamespace(run_prefix=wc.run_prefix, nordic="raw")
    tedana = plan.spec("tedana").input_function
    echoes = tedana(wc)["echoes"]
    assert [Path(e).name for e in echoes] == [
        f"sub-01_ses-01_task-images_run-02_echo-{k}_space-T1w_desc-preproc_bold.nii.gz"
        for k in (1, 2, 3)
    ]
    assert Path(echoes[0]).parts[-5] == "preproc-nordic"
    # NORDIC runs take the component count of the NORDIC-off run's ICA (from the sidecar of
    # its mixing matrix, which the command names; the job waits for the matrix)
    assert Path(tedana(wc)["raw_mixing"]).name.endswith("_desc-ICA_mixing.tsv")
    # raw runs read only their echoes (tedana's own PCA estimates the criteria, and the job
    # caps them: no wait for the optcom job)
    assert set(tedana(raw)) == {"echoes"}
    session = SimpleNamespace(
        ses_prefix="sub-01_ses-01_task-images", nordic="raw", combine="optcom"
    )
    glm = plan.spec("glm").input_function(session)
    assert len(glm["bold"]) == 2 and glm["mask"].endswith("_space-T1w_desc-analysis_mask.nii.gz")
    masks = plan.spec("analysis_mask").input_function(session)
    assert set(masks) == {*plan.fitted.glm_variants(), "brain"}


def test_impossible_configs_are_refused_with_the_fix(bids, tmp_path):
    plan = _plan(bids, tmp_path, rois={"visual": {"session": "09"}})
    with pytest.raises(PlanError, match="sub-01 has no session '09'"):
        plan.rois.visual_source("01")


def test_a_former_comparison_reference_is_noted_not_refused(bids, tmp_path):
    """comparison.reference (one reference variant) is no longer used: a config that sets it
    still plans, with a note that says so and how to fix it; the default gives no note."""
    plan = _plan(bids, tmp_path, comparison={"reference": "raw-denoised"})
    note = plan.reference_note()
    assert note is not None and note.startswith("comparison.reference: 'raw-denoised' is no")
    assert "never against itself" in note and "Fix: remove comparison.reference" in note
    assert _plan(bids, tmp_path).reference_note() is None
    # the subject comparison no longer takes a reference argument
    spec = plan.spec("comparison_subject")
    assert "reference" not in spec.params


def test_resources_grow_with_attempt_and_with_the_data(bids, tmp_path):
    plan = _plan(bids, tmp_path)
    big = tmp_path / "big"
    make_bids_tree(big, sessions=("01", "02"), shape=(90, 110, 72), n_volumes=163, data=False)
    large = _plan(big, tmp_path)
    run = SimpleNamespace(run_prefix="sub-01_ses-01_task-images_run-01", nordic="raw")
    session = SimpleNamespace(
        ses_prefix="sub-01_ses-01_task-images", nordic="raw", combine="optcom"
    )
    for rule, wc in [
        ("nordic", run), ("optcom", run), ("tedana", run), ("spatial_resample", run),
        ("glm", session), ("analysis_mask", session), ("noiseceiling_session", session),
    ]:  # fmt: skip
        small1, small3 = plan.mem_mb(rule)(wc, 1), plan.mem_mb(rule)(wc, 3)
        assert 0 < small1 < small3, rule
        assert large.mem_mb(rule)(wc, 1) > small1, rule
        assert plan.runtime(rule)(wc, 2) > plan.runtime(rule)(wc, 1) > 0, rule
    with pytest.raises(KeyError, match="no_such_rule"):
        plan.mem_mb("no_such_rule")(run, 1)


def test_nordic_and_resampling_take_every_echo_of_a_run_in_one_job(bids, tmp_path):
    """One NORDIC job per run and one resampling job per run and NORDIC variant: their outputs
    are every echo's (keys ``echo<E>_<key>``), ``--out`` lists them in the order of the inputs,
    and the run time asked for is the per-echo minutes times the echoes."""
    plan = _plan(bids, tmp_path)
    assert plan.ctx.echo_counts() == [3]
    spec = plan.spec("nordic", 3)
    assert spec.name == "nordic"
    assert spec.wildcard_constraints == {"run_prefix": RUN_STEM_PATTERN}
    outs = plan.chain_rules.nordic_run_outputs(3)
    per_echo = plan.chain_rules.nordic_outputs(None, "{echo}")
    assert set(outs) == {f"echo{e}_{k}" for e in (1, 2, 3) for k in per_echo}
    assert outs["echo2_gfactor"] == plan.chain_rules.nordic_outputs(None, 2)["gfactor"]
    preproc = plan.spatial.preproc_run_outputs(3)
    assert set(preproc) == {f"echo{e}_{k}" for e in (1, 2, 3) for k in ("bold", "bold_json")}
    wc = SimpleNamespace(run_prefix="sub-01_ses-02_task-images_run-01", nordic="raw")
    run = plan.ctx.run_of(wc)
    concrete = {k: v.format(run_dir="D", run_prefix="P", nordic="raw") for k, v in outs.items()}
    words = spec.params["nordic_out"](wc, concrete).split()
    assert [w.split("=")[0] for w in words] == ["bold", "gfactor", "removed"] * 3
    assert [Path(w.split("=")[1]).name for w in words[::3]] == [
        f"P_echo-{e.echo}_part-mag_desc-nordic_bold.nii.gz" for e in run.echoes
    ]
    inputs = SimpleNamespace(phase=["p1", "p2", "p3"], keys=lambda: ["mag", "phase"])
    params = spec.params["nordic_args"](wc, inputs).split()
    assert params[: params.index("--te")] == ["--phase", "p1", "p2", "p3"]
    assert params[params.index("--te") + 1 : params.index("--tr")] == [
        str(t) for t in run.echo_times
    ]
    concrete = {
        f"preproc_{k}": v.format(run_dir="D", run_prefix="P", nordic="raw")
        for k, v in preproc.items()
    }
    resample_out = plan.spec("spatial_resample", 3).params["resample_out"]
    assert resample_out(wc, concrete).split() == [
        f"bold={concrete[f'preproc_echo{e.echo}_bold']}" for e in run.echoes
    ]
    # small data: the per-echo minutes measured at LAION size (never scaled down) x 3 echoes,
    # summed over the steps of the chain job (geometry, NORDIC, resampling, folded combinations)
    assert plan.rule_steps("nordic") == ("spatial_run", "nordic", "spatial_resample", "optcom")
    assert plan.rule_steps("spatial_resample") == ("spatial_resample", "single_echo", "optcom")
    per_echo = {s for s in plan.rule_steps("nordic") if plan.definition(s).per_echo}
    assert per_echo == {"nordic", "spatial_resample"}
    for rule in ("nordic", "spatial_resample"):
        per_job = sum(
            plan.definition(s).minutes * (3 if plan.definition(s).per_echo else 1)
            for s in plan.rule_steps(rule)
        )
        assert plan.runtime(rule)(wc, 1) == per_job
        assert plan.runtime(rule)(wc, 2) == 2 * per_job
        assert plan.mem_mb(rule)(wc, 1) == max(plan.mem_mb(s)(wc, 1) for s in plan.rule_steps(rule))


def test_runs_with_different_echo_counts_get_one_rule_per_count(tmp_path):
    """Discovery gives all runs of a subject one echo count, not all subjects: one rule per
    count (outputs are listed per echo), each matching only its runs."""
    bids = tmp_path / "bids"
    make_bids_tree(bids, subjects=("01", "010"), runs=("01",), data=False)
    make_bids_tree(
        bids, subjects=("02",), runs=("01",), echoes=(0.01, 0.02, 0.03, 0.04), data=False
    )
    plan = _plan(bids, tmp_path)
    assert plan.ctx.echo_counts() == [3, 4]
    assert [plan.spec("nordic", n).name for n in (3, 4)] == ["nordic_3echoes", "nordic_4echoes"]
    for n, subjects in ((3, {"01", "010"}), (4, {"02"})):
        pattern = re.compile(plan.spec("nordic", n).wildcard_constraints["run_prefix"])
        matched = {r.subject for r in plan.dataset.runs if pattern.fullmatch(_prefix(r))}
        assert matched == subjects, n
        assert not pattern.fullmatch("sub-03_ses-01_task-images_run-01")
    wc = SimpleNamespace(run_prefix="sub-02_ses-01_task-images_run-01", nordic="raw")
    assert len(plan.spec("nordic", 4).input_function(wc)["mag"]) == 4
    minutes = {s: plan.definition(s).minutes for s in plan.rule_steps("nordic")}
    assert plan.runtime("nordic")(wc, 1) == (
        4 * (minutes["nordic"] + minutes["spatial_resample"])
        + minutes["optcom"]
        + minutes["spatial_run"]
    )
    # the subject's reference job: the geometry step of its first run
    ref = SimpleNamespace(subject="02")
    assert plan.runtime("spatial_reference")(ref, 1) == plan.definition("spatial_run").minutes
    assert plan.mem_mb("spatial_reference")(ref, 1) == plan.mem_mb("spatial_run")(wc, 1)


def test_cluster_groups_of_the_geometry_jobs(bids, tmp_path):
    """spatial_run jobs (when no chain runs the geometry) go with their run's resampling: every
    run's geometry reads the subject's reference boldref, a job of the subject, never another
    run's."""
    groups = {"spatial_subject": "subject", "spatial_resample": "run", "nordic": "nordic_runs"}
    bare = _plan(bids, tmp_path)
    plan = Plan(bare.config, bare.dataset, RuleHooks(groups=lambda: groups))
    group = plan.spec("spatial_run").group
    prefixes = [_prefix(r) for r in plan.dataset.runs]
    assert [group(SimpleNamespace(run_prefix=p)) for p in prefixes] == ["run"] * len(prefixes)
    assert bare.spec("spatial_run").group(SimpleNamespace(run_prefix=prefixes[1])) is None
    assert plan.spec("nordic", 3).group(SimpleNamespace()) == "nordic_runs"
    assert plan.spec("glm").group is None  # a rule no profile groups has no group:


def _prefix(run) -> str:
    return reg.run_key(run.entities)[1]


def test_runs_without_slice_times_are_named_and_refused_only_for_resampling_in_time(tmp_path):
    """SliceTiming is recommended, not required, in BIDS: a run without it is planned (its
    slice timing is not corrected) and the plan's line names it; spatial.tr_out, which
    resamples from the slice times, refuses such runs at plan time with both fixes."""
    bids = tmp_path / "bids"
    make_bids_tree(bids, sessions=("01",), runs=("01", "02", "03"), data=False)
    assert _plan(bids, tmp_path).slice_timing_summary() is None
    for side in bids.glob("sub-01/ses-01/func/*run-02_echo-*_bold.json"):
        meta = json.loads(side.read_text())
        del meta["SliceTiming"]
        side.write_text(json.dumps(meta))
    plan = _plan(bids, tmp_path)
    assert plan.slice_timing_summary() == (
        "Slice timing: 2 of 3 run(s) corrected; 1 without SliceTiming in their BOLD sidecars, "
        "not corrected: sub-01_ses-01_task-images_run-02 (add SliceTiming to correct them, or "
        "set spatial.slice_timing: false to correct none)."
    )
    assert [r.slice_timing is None for r in plan.dataset.runs] == [False, True, False]
    off = _plan(bids, tmp_path, spatial={"slice_timing": False})
    assert off.slice_timing_summary() is None
    resampled = _plan(bids, tmp_path, spatial={"tr_out": 1.0})
    with pytest.raises(PlanError) as exc:
        resampled.slice_timing_summary()
    assert str(exc.value) == (
        "spatial.tr_out: 1 s resamples every run in time from its slice times; 1 of 3 run(s) "
        "have no SliceTiming in their BOLD sidecars: sub-01_ses-01_task-images_run-02. Fix: "
        "add SliceTiming (s, one per slice) to those sidecars, or unset spatial.tr_out (then "
        "these runs are not corrected for slice timing, and the others are, at their own TR)."
    )


def test_slices_along_another_axis_reach_every_step_that_reads_slice_times(tmp_path):
    """A run whose SliceEncodingDirection is j (slices along the second axis): its geometry
    step, its planted echoes and its session's planted design get ``--slice-axis 1`` beside the
    slice times; runs along the third axis get no such argument (their commands unchanged)."""
    bids = tmp_path / "bids"
    make_bids_tree(bids, sessions=("01",), runs=("01", "02"), data=False)
    for side in bids.glob("sub-01/ses-01/func/*run-01_echo-*_bold.json"):
        meta = json.loads(side.read_text())
        meta |= {"SliceTiming": [0.1 * i for i in range(7)], "SliceEncodingDirection": "j"}
        side.write_text(json.dumps(meta))
    plan = _plan(bids, tmp_path)
    first, second = plan.dataset.runs
    assert (first.slice_axis, second.slice_axis) == (1, 2)
    assert plan.spatial.geometry_args(first, None).split("--slice-axis ")[1].startswith("1")
    assert "--slice-axis" not in plan.spatial.geometry_args(second, None)
    assert slice_timing_words(first).endswith(" --slice-axis 1")
    assert slice_timing_words(first).startswith("--slice-timing 0 0.1 0.2")
    assert "--slice-axis" not in slice_timing_words(second)


def test_runs_told_apart_by_acquisition_keep_it_in_every_name_and_label(tmp_path):
    """A session whose run-01 was acquired twice (``acq-fast`` and without): three runs,
    each with its own per-run outputs (named with ``acq`` as in the input, so that pybids and
    fMRIPrep-style readers pair them with their raw files), and labels in the session's GLM
    and planted commands that tell them apart."""
    bids = tmp_path / "bids"
    make_bids_tree(bids, sessions=("01",), runs=("01", "02"), data=False)
    func = bids / "sub-01/ses-01/func"
    for f in sorted(func.glob("*_run-01_*")):
        f.with_name(f.name.replace("_run-01", "_acq-fast_run-01")).write_bytes(f.read_bytes())
    plan = _plan(bids, tmp_path)
    runs = plan.dataset.runs
    assert [r.label for r in runs] == ["01", "acq-fast_run-01", "02"]
    bold = plan.combine.outputs("optcom", runs[1], "raw")["bold"]
    assert (
        Path(bold).name
        == "sub-01_ses-01_task-images_acq-fast_run-01_space-T1w_desc-optcom_bold.nii.gz"
    )
    assert len({plan.combine.outputs("optcom", r, "raw")["bold"] for r in runs}) == 3
    assert plan.glm._run_labels(list(runs)) == ["01", "acq-fast_run-01", "02"]
    assert [plan.planted.run_label(r) for r in runs] == ["01", "acq-fast_run-01", "02"]
    assert plan.ctx.runs["sub-01_ses-01_task-images_acq-fast_run-01"] is runs[1]


def test_two_echo_runs_leave_ica_denoising_out_of_the_plan_with_a_note(tmp_path):
    """Two-echo multi-echo BOLD (legal BIDS): tedana's ICA needs three echoes, so the
    denoised variants are left out of the whole plan (no job that would fail), with a note
    naming the runs; optimal combination (two echoes) stays. A subject with three echoes
    beside one with two is told how to keep it for the others; a config of echo handlings
    none of which the runs allow is refused."""
    bids = tmp_path / "bids"
    make_bids_tree(bids, subjects=("01",), runs=("01", "02"), echoes=(0.011, 0.028), data=False)
    plan = _plan(bids, tmp_path)
    assert plan.fitted.glm_variants() == [
        "raw-single",
        "raw-optcom",
        "nordic-single",
        "nordic-optcom",
    ]
    assert plan.config["variants"]["combine"] == ["single", "optcom"]
    assert not [t for t in plan.targets() if "denoised" in t]
    assert plan.ctx.echo_note == (
        "Echo handling: denoised left out of every variant (denoised needs 3 echoes; 2 of the 2 "
        "run(s) have fewer: sub-01_ses-01_task-images_run-01, sub-01_ses-01_task-images_run-02), "
        "so the comparison covers single, optcom. Fix: to silence this note, set "
        "variants.combine: [single, optcom]."
    )
    quiet = _plan(bids, tmp_path, variants={"combine": ["single", "optcom"]})
    assert quiet.ctx.echo_note is None
    with pytest.raises(PlanError, match=r"found denoised \(denoised needs 3 echoes\)"):
        _plan(bids, tmp_path, variants={"combine": ["denoised"]})
    make_bids_tree(bids, subjects=("02",), runs=("01",), data=False)
    mixed = _plan(bids, tmp_path)
    assert "1 of the 3 run(s) have fewer" not in mixed.ctx.echo_note
    assert "2 of the 3 run(s) have fewer" in mixed.ctx.echo_note
    assert "to keep it for the other runs, leave these out with exclude_runs" in mixed.ctx.echo_note
    full = _plan(bids, tmp_path, exclude=["01"])
    assert full.ctx.echo_note is None and "raw-denoised" in full.fitted.glm_variants()


def test_runs_of_a_subject_with_different_echo_counts_plan_each_with_its_own(tmp_path):
    """A run with four echoes and one with two beside three-echo runs (legal): one chain rule
    per count, ICA left out for all (the note names the short run); a run with one echo and
    the default single_echo.echo 2 is refused at plan time, naming the run and the fix."""
    bids = tmp_path / "bids"
    make_bids_tree(bids, runs=("01",), data=False)
    make_bids_tree(bids, runs=("02",), echoes=(0.011, 0.028), data=False)
    make_bids_tree(bids, runs=("03",), echoes=(0.011, 0.028, 0.046, 0.064), data=False)
    plan = _plan(bids, tmp_path)
    assert plan.ctx.echo_counts() == [2, 3, 4]
    assert plan.config["variants"]["combine"] == ["single", "optcom"]
    assert "1 of the 3 run(s) have fewer: sub-01_ses-01_task-images_run-02)" in plan.ctx.echo_note
    make_bids_tree(bids, runs=("04",), echoes=(0.028,), data=False)
    with pytest.raises(PlanError) as info:
        _plan(bids, tmp_path)
    assert str(info.value) == (
        "single_echo.echo: expected an echo every run has (1 to 1); found 2, beyond the last "
        "echo of 1 run(s): sub-01_ses-01_task-images_run-04. Fix: set single_echo.echo to "
        "1..1 (--config 'single_echo={echo: 1}'), or leave these runs out with exclude_runs."
    )
    one = _plan(bids, tmp_path, single_echo={"echo": 1})
    assert one.fitted.glm_variants() == ["raw-single", "nordic-single"]


def test_anatomy_t1w_picks_the_anatomy_jobs_input_and_is_recorded(tmp_path):
    """``anatomy.t1w`` chooses among a subject's T1w images at discovery: the anatomy job
    reads the chosen file, and the stage's options (recorded in its sidecar) say why."""
    bids = tmp_path / "bids"
    make_bids_tree(bids, runs=("01",), data=False)
    t1w = next(bids.glob("sub-01/ses-01/anat/*_T1w.nii.gz"))
    shutil.copy(t1w, t1w.with_name("sub-01_ses-01_run-02_T1w.nii.gz"))
    wc = SimpleNamespace(subject="01")
    assert _plan(bids, tmp_path).anatomy.t1w(wc) == str(t1w)
    plan = _plan(bids, tmp_path, anatomy={"t1w": {"run": 2}})
    assert plan.anatomy.t1w(wc).endswith("/sub-01_ses-01_run-02_T1w.nii.gz")
    options = json.loads(plan.anatomy.anatomy().params["options"])
    assert options["t1w"] == {"run": 2} and options["registration"] == "quick"


def test_without_spatial_preprocessing_a_subjects_runs_must_share_one_grid(tmp_path):
    """Legal runs on other grids (another matrix; the same matrix placed elsewhere after the
    head moved between sessions) are resampled onto one by spatial preprocessing; without it
    they are refused when the workflow is planned, naming them and the fixes."""
    bids = tmp_path / "bids"
    make_bids_tree(bids, sessions=("01",), runs=("01", "02"), data=False)
    make_bids_tree(bids, sessions=("02",), runs=("01",), data=False, shape=(6, 7, 4))
    off = {"enabled": False}
    with pytest.raises(PlanError) as info:
        _plan(bids, tmp_path, spatial=off)
    assert str(info.value) == (
        "spatial.enabled: false: expected the runs of each subject on one voxel grid (its "
        "sessions' GLMs, masks and noise ceiling read them voxel by voxel); found 1 of the 3 "
        "runs of sub-01 on another grid (shape or affine) than sub-01_ses-01_task-images_run-01 "
        "(shape (6, 7, 5)): sub-01_ses-02_task-images_run-01 (shape (6, 7, 4)). Fix: set "
        "spatial.enabled: true (every run is resampled onto one grid), or leave the runs on "
        "another grid out with exclude_runs."
    )
    assert _plan(bids, tmp_path).fitted.glm_variants()  # resampled onto one grid
    assert _plan(bids, tmp_path, spatial=off, exclude_runs=["sub-01_ses-02"]).fitted
    # the same matrix, moved by 2 mm: another grid too
    shutil.rmtree(bids / "sub-01" / "ses-02")
    make_bids_tree(bids, sessions=("02",), runs=("01",), data=False)
    moved = default_affine((6, 7, 5))
    moved[:3, 3] += 2.0
    for echo in (1, 2, 3):
        for part in ("mag", "phase"):
            path = bold_path(bids, ses="02", run="01", echo=echo, part=part)
            write_nifti(path, (6, 7, 5, 12), moved, data=False, tr=1.9)
    with pytest.raises(PlanError, match=r"sub-01_ses-02_task-images_run-01 \(shape \(6, 7, 5\)\)"):
        _plan(bids, tmp_path, spatial=off)


def test_the_distortion_correction_of_every_run_is_stated_in_one_line(tmp_path):
    """A fieldmap in one session only: corrected and uncorrected runs would be mixed
    silently; the plan's summary names the uncorrected runs and both fixes."""
    bids = tmp_path / "bids"
    make_bids_tree(bids, sessions=("01",), runs=("01", "02"), data=False, fieldmap=True)
    make_bids_tree(bids, sessions=("02",), runs=("01", "02"), data=False, fieldmap=False)
    plan = _plan(bids, tmp_path)
    assert plan.sdc_summary() == (
        "Distortion correction: 2 of 4 run(s) with their fieldmap (phasediff; 2 by IntendedFor); "
        "2 without a fieldmap, not corrected: sub-01_ses-02_task-images_run-01, "
        "sub-01_ses-02_task-images_run-02. Corrected and uncorrected runs differ in geometry: "
        "give every run what the method needs, choose another spatial.sdc, or set "
        "spatial.sdc: none to correct none."
    )
    off = _plan(bids, tmp_path, spatial={"fieldmap": False})
    assert (
        off.sdc_summary()
        == "Distortion correction: none of the 4 run(s) (spatial.fieldmap: false)."
    )
    none = _plan(bids, tmp_path, spatial={"sdc": "none"})
    assert none.sdc_summary() == "Distortion correction: none of the 4 run(s) (spatial.sdc: none)."
    assert _plan(bids, tmp_path, spatial={"enabled": False}).sdc_summary() is None
    # GRE fieldmaps only, so a pepolar choice corrects none of them and says why
    pepolar = _plan(bids, tmp_path, spatial={"sdc": "pepolar"})
    assert pepolar.sdc_summary().startswith(
        "Distortion correction: 0 of 4 run(s) with their fieldmap (spatial.sdc: pepolar); 4 "
        "without a reversed phase-encoding pair, not corrected: "
    )
    # every run has magnitude and phase of 3 echoes: frame-wise corrects all, fieldmaps unread
    framewise = _plan(bids, tmp_path, spatial={"sdc": "phase-framewise"})
    assert framewise.sdc_summary() == (
        "Distortion correction: 4 of 4 run(s) with their phase (spatial.sdc: phase-framewise)."
    )
    run = framewise.dataset.runs[0]
    assert run.fieldmap is None  # fieldmaps are not read for frame-wise correction
    inputs = framewise.spatial.geometry_inputs(run)
    assert inputs["framewise"] == [str(p) for e in run.echoes for p in (e.mag, e.phase)]
    args = framewise.spatial.geometry_args(run, None)
    assert "--framewise-json" in args and "--fieldmap-json" not in args
    assert framewise.ctx.sdc_method(run) == "phase-framewise"


def test_a_run_without_trials_is_preprocessed_but_left_out_of_its_sessions_glm(tmp_path):
    """A run whose events are all blank trial types is legal: discovery counts 0 modelled
    trials, the plan still preprocesses it (its analysis mask reads it) but its session's GLM
    fits the other run only; the condition column chosen for the dataset reaches the GLM."""
    root = make_bids_tree(tmp_path / "bids", sessions=("01",), runs=("01", "02"), data=False)
    (root / "sub-01/ses-01/func/sub-01_ses-01_task-images_run-02_events.tsv").write_text(
        "onset\tduration\ttrial_type\tstim_name\n0.0\t2.5\tblank\tn/a\n3.0\t2.5\tblank\tn/a\n"
    )
    plan = _plan(root, tmp_path)
    assert [r.n_trials for r in plan.dataset.runs] == [5, 0]  # 6 events, the 4th a blank
    assert plan.dataset.label_column == "stim_name"
    session = SimpleNamespace(
        ses_prefix="sub-01_ses-01_task-images", nordic="raw", combine="optcom"
    )
    glm = plan.spec("glm").input_function(session)
    assert [Path(e).name for e in glm["events"]] == ["sub-01_ses-01_task-images_run-01_events.tsv"]
    assert len(glm["bold"]) == 1
    params = plan.spec("glm").params
    assert params["run_labels"](session) == "01"
    assert params["session"](session) == "--session 01"
    assert len(plan.spec("analysis_mask").input_function(session)["raw-optcom"]) == 2
    assert '"label_column": "stim_name"' in plan.ctx.options("glm")
