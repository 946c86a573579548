"""Per-run chains (echoprep.plan.chains): which steps a run's NORDIC-side and raw-side jobs run,
which echo combinations they fold in, and that every fitted combination of every run is made
by exactly one rule."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from echoprep.io import outputs as reg
from echoprep.plan import Plan, RuleHooks
from echoprep.plan.rule import declared_outputs
from echoprep.variants import Variant
from helpers.bidstree import make_bids_tree
from helpers.plans import make_plan


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chains") / "bids"
    make_bids_tree(root, subjects=("01",), sessions=("01", "02"), runs=("01",), data=False)
    return root


def _chain(plan, side: str, echoes: int = 3):
    """The spec of a side's chain rule for runs with ``echoes`` echoes."""
    return plan.spec({"nordic": "nordic", "raw": "spatial_resample"}[side], echoes)


def _makers(plan, combine: str, side: str) -> list[str]:
    """The rules that would make a run's ``combine`` on ``side``."""
    rules = [r for s, r in (("nordic", "nordic"), ("raw", "spatial_resample")) if s == side]
    found = [r for r in rules if combine in plan.chains.folded_combines(side)]
    if side in plan.chains.separate_combine_sides(combine):
        found.append({"single": "single_echo", "optcom": "optcom"}[combine])
    return found


def test_default_config_folds_what_every_session_of_a_side_fits(bids, tmp_path):
    """NORDIC side: every session fits nordic-optcom (glm.all_sessions_variants), only the
    comparison session nordic-single: optcom folded, single on its own. Raw side: its chain runs
    in the comparison session only (and for the NORDIC ICA's raw_run count, which needs no
    raw combination), which fits every variant: both folded."""
    plan = make_plan(bids, tmp_path)
    chains = plan.chains
    assert chains.chain_sides() == ["raw", "nordic"]
    assert chains.spatial_host == "nordic"
    assert chains.chain_steps("nordic") == ("spatial_run", "nordic", "spatial_resample", "optcom")
    assert chains.chain_steps("raw") == ("spatial_resample", "single_echo", "optcom")
    assert chains.separate_combine_sides("single") == ["nordic"]
    assert chains.separate_combine_sides("optcom") == []
    assert _chain(plan, "nordic").conda.endswith("tedana.yaml")
    for side in ("raw", "nordic"):
        for combine in ("single", "optcom"):
            assert len(_makers(plan, combine, side)) == 1, (side, combine)


def test_folding_follows_the_config_not_the_sessions_of_the_dataset(bids, tmp_path):
    """Adding a session must not change the jobs of the others: a one-session dataset folds
    the same (its chains' params, and so Snakemake's rerun decision, stay the same)."""
    one = tmp_path / "one"
    make_bids_tree(one, subjects=("01",), sessions=("01",), runs=("01",), data=False)
    two, single = make_plan(bids, tmp_path / "a"), make_plan(one, tmp_path / "b")
    for side in ("raw", "nordic"):
        assert two.chains.chain_steps(side) == single.chains.chain_steps(side)


BOTH = ("single", "optcom")


@pytest.mark.parametrize(
    ("config", "folded"),
    [
        # every variant of every run: everything folded, no combination rule
        ({"variants": {"sessions": "all"}}, {"raw": BOTH, "nordic": BOTH}),
        # NORDIC-denoised everywhere with the raw run's component count: the raw chain runs in
        # every session, which fit no raw combination: none folded on the raw side
        (
            {"glm": {"all_sessions_variants": ["nordic-denoised"]}},
            {"raw": (), "nordic": ()},
        ),
        ({"glm": {"all_sessions_variants": ["raw-optcom"]}}, {"raw": ("optcom",), "nordic": BOTH}),
        # NORDIC off: the raw chain only
        ({"nordic": {"enabled": False}}, {"raw": BOTH}),
        # no spatial preprocessing: no raw chain (the raw combinations read the raw data)
        ({"spatial": {"enabled": False}}, {"nordic": ("optcom",)}),
        ({"variants": {"combine": ["denoised"]}}, {"raw": (), "nordic": ()}),
    ],
)  # fmt: skip
def test_folded_combinations_per_config(bids, tmp_path, config, folded):
    plan = make_plan(bids, tmp_path, **config)
    assert {s: plan.chains.folded_combines(s) for s in plan.chains.chain_sides()} == folded
    for side in plan.ctx.nordic_variants:
        for combine in set(plan.config["variants"]["combine"]) - {"denoised"}:
            assert len(_makers(plan, combine, side)) == 1, (side, combine)


@pytest.mark.parametrize(
    ("config", "host"),
    [
        ({}, "nordic"),
        # NORDIC chains only in the comparison sessions: the raw chain runs everywhere
        ({"glm": {"all_sessions_variants": ["raw-optcom"]}}, "raw"),
        # NORDIC off and the default glm.all_sessions_variants (nordic-optcom): only the
        # comparison sessions run a chain; with raw-optcom everywhere the raw chain hosts
        ({"nordic": {"enabled": False}}, None),
        (
            {"nordic": {"enabled": False}, "glm": {"all_sessions_variants": ["raw-optcom"]}},
            "raw",
        ),
        ({"variants": {"sessions": "all"}}, "raw"),
        # NORDIC-denoised with the raw run's component count: both chains run everywhere
        ({"glm": {"all_sessions_variants": ["nordic-denoised"]}}, "raw"),
        # the ICA's own count: the raw chain only in the comparison sessions
        (
            {
                "glm": {"all_sessions_variants": ["nordic-denoised"]},
                "tedana": {"nordic_tedpca": "same"},
            },
            "nordic",
        ),
        ({"spatial": {"enabled": False}}, None),
    ],
)  # fmt: skip
def test_the_geometry_runs_in_a_chain_that_runs_in_every_session(bids, tmp_path, config, host):
    """A run's geometry (spatial_run) is the first step of the first chain (raw, then NORDIC, in
    chain_sides order) that every session runs, from the config alone; without one it keeps a
    job of its own."""
    plan = make_plan(bids, tmp_path, **config)
    assert plan.chains.spatial_host == host
    for side in plan.chains.chain_sides():
        steps = plan.chains.chain_steps(side)
        assert ("spatial_run" in steps) == (side == host)
        if side == host:
            assert steps[0] == "spatial_run"


def test_the_host_chain_makes_the_geometry_and_reads_the_subject_reference(bids, tmp_path):
    """The host chain declares the run's geometry outputs (spatial_*) and reads the geometry
    step's inputs; its resampling takes the geometry it wrote (a parameter, not an input: a
    job cannot wait for itself); every run but the reference reads the subject's reference
    boldref, which the grid reads too."""
    plan = make_plan(bids, tmp_path)
    outs = _chain(plan, "nordic").output
    spatial = plan.spatial.run_outputs()
    declared = declared_outputs(spatial)  # (the sidecars are written, not declared)
    assert {f"spatial_{k}": v for k, v in declared.items()}.items() <= outs.items()
    reference = plan.spatial.reference_outputs("01")["boldref"]
    assert reference.endswith("spatial/sub-01/func/sub-01_desc-reference_boldref.nii.gz")
    for run in plan.dataset.runs:
        wc = SimpleNamespace(run_prefix=reg.run_key(run.entities)[1])
        inputs = _chain(plan, "nordic").input_function(wc)
        assert "geometry" not in inputs and inputs["spatial_echo"].endswith(
            "echo-2_part-mag_bold.nii.gz"
        )
        is_ref = plan.ctx.reference_run("01") is run
        assert inputs.get("spatial_reference") == (None if is_ref else reference)
        geometry = _chain(plan, "nordic").params["resample_geometry"](wc)
        assert geometry == plan.spatial.run_outputs(run)["xfm"]
        # the raw chain waits for the host's geometry
        raw = _chain(plan, "raw").input_function(wc)
        assert raw["geometry"] == plan.spatial.run_outputs(run)["xfm"]
        assert not any(k.startswith("spatial_") for k in raw)
    assert (
        plan.spec("spatial_subject").input_function(SimpleNamespace(subject="01"))["boldref"]
        == reference
    )
    # the subject's reference job is the geometry step of its reference run: its own
    # definition, with the geometry step's figures, so the same resources
    assert plan.rule_steps("spatial_reference") == ("spatial_reference",)
    ref, geometry = plan.definition("spatial_reference"), plan.definition("spatial_run")
    figures = ("memory", "minutes", "threads", "scale", "per_echo")
    assert [getattr(ref, f) for f in figures] == [getattr(geometry, f) for f in figures]
    first = SimpleNamespace(run_prefix=reg.run_key(plan.ctx.reference_run("01").entities)[1])
    subject = SimpleNamespace(subject="01")
    for attempt in (1, 2):
        assert plan.mem_mb("spatial_reference")(subject, attempt) == plan.mem_mb("spatial_run")(
            first, attempt
        )
        assert plan.runtime("spatial_reference")(subject, attempt) == plan.runtime("spatial_run")(
            first, attempt
        )


def test_chain_outputs_and_steps_of_a_job(bids, tmp_path):
    """The NORDIC chain writes NORDIC's outputs per echo, the resampled echoes (kept by
    default, temporary with spatial.keep_echoes: false) and optcom; the raw chain no NORDIC
    outputs; the inputs and params are those of the chain's steps."""
    plan = make_plan(bids, tmp_path)
    hooks = RuleHooks(temp=lambda p: ("temp", p))
    dropped = make_plan(bids, tmp_path, spatial={"keep_echoes": False})
    marked = _chain(Plan(dropped.config, dropped.dataset, hooks), "nordic").output
    keys = set(marked)
    assert {f"echo{e}_{k}" for e in (1, 2, 3) for k in ("bold", "gfactor", "removed")} <= keys
    assert {f"preproc_echo{e}_bold" for e in (1, 2, 3)} <= keys
    assert {"optcom_bold", "optcom_t2star", "optcom_s0", "optcom_mask"} <= keys
    assert not any(k.startswith("single_") for k in keys)
    assert marked["preproc_echo2_bold"][0] == "temp" and isinstance(marked["optcom_bold"], str)
    assert "/preproc-nordic/" in marked["preproc_echo2_bold"][1]
    kept = _chain(Plan(plan.config, plan.dataset, hooks), "nordic").output
    assert isinstance(kept["preproc_echo2_bold"], str)
    # the raw chain: resampling of the raw echoes, single echo, optcom (no NORDIC outputs)
    raw = _chain(plan, "raw").output
    assert not any(k.startswith("echo") for k in raw)
    assert "/combine-raw/" in raw["single_bold"] and "/preproc-raw/" in raw["preproc_echo1_bold"]
    wc = SimpleNamespace(run_prefix=reg.run_key(plan.dataset.runs[0].entities)[1])
    inputs = _chain(plan, "nordic").input_function(wc)
    assert len(inputs["mag"]) == len(inputs["phase"]) == 3 and "echo" not in inputs
    assert {"grid", "xfm"} <= set(inputs)
    assert len(_chain(plan, "raw").input_function(wc)["echo"]) == 3
    params = _chain(plan, "raw").params
    assert "nordic_args" not in params and {"resample_echo", "combine_echo", "work"} <= set(params)
    assert _chain(plan, "nordic").message == (
        "Head motion and distortion + NORDIC + resample + optimal combination "
        "{wildcards.run_prefix} (3 echoes, nordic)"
    )


def test_every_fitted_combination_of_every_run_is_made(bids, tmp_path):
    """Every run's single echo and optcom of the variants its session fits match the output
    pattern of exactly one rule: a chain that folds it, or its own rule (ses-01 compared,
    ses-02 a regular session)."""
    plan = make_plan(bids, tmp_path, comparison={"sessions": ["01"]})
    patterns = {
        side: list(_chain(plan, side).output.values()) for side in plan.chains.chain_sides()
    }
    for combine in ("single", "optcom"):
        for side in plan.chains.separate_combine_sides(combine):
            own = plan.spec({"single": "single_echo", "optcom": "optcom"}[combine]).output
            patterns.setdefault(f"{combine}-{side}", []).extend(own.values())
    checked = 0
    for run in plan.dataset.runs:
        for v in map(Variant, plan.fitted.session_variants(run.subject, run.session)):
            if v.combine == "denoised":
                continue
            bold = plan.combine.outputs(v.combine, run, v.nordic)["bold"]
            rules = [r for r, pats in patterns.items() if any(_matches(p, bold) for p in pats)]
            # a combination's own rule matches any side; its wildcard constraint keeps it to
            # the sides that do not fold it
            rules = [r for r in rules if "-" not in r or r.endswith(f"-{v.nordic}")]
            assert len(rules) == 1, (bold, rules)
            checked += 1
    assert checked == 2 * 2 + 1  # ses-01: four variants; ses-02: nordic-optcom


def _matches(pattern: str, path: str) -> bool:
    regex = re.sub(r"\\\{(\w+)\\\}", ".+", re.escape(pattern))
    return re.fullmatch(regex, path) is not None


def test_nordic_on_a_gpu_asks_for_one_and_runs_in_the_gpu_env(bids, tmp_path):
    """nordic.device: cuda (docs/nordic.md "GPU"): the NORDIC chain asks the scheduler for one
    GPU and runs in the env with torch; the raw chain and the default config ask for none."""
    default = make_plan(bids, tmp_path / "cpu")
    assert "gpu" not in _chain(default, "nordic").resources
    gpu = make_plan(bids, tmp_path / "gpu", nordic={"device": "cuda"})
    spec = _chain(gpu, "nordic")
    assert spec.resources["gpu"] == 1
    assert set(spec.resources) == {"mem_mb", "runtime", "gpu"}
    assert spec.conda.endswith("envs/gpu.yaml")
    raw = _chain(gpu, "raw")
    assert "gpu" not in raw.resources
    assert raw.conda.endswith("tedana.yaml")
