"""Confounds for the standard readers (issue 41): fMRIPrep's expansions of the motion table,
the copies beside each BOLD series (rule ``confounds``) and the rejected ICA components."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echoprep.io import outputs as reg
from echoprep.io.confounds import copy_confounds
from echoprep.io.paths import sidecar_path
from echoprep.io.sidecars import write_sidecar
from echoprep.kernels.confounds import (
    MOTION_COLUMNS,
    column_descriptions,
    cosine_basis,
    fmriprep_confounds,
)
from echoprep.kernels.geometry.motion import motion_confounds
from echoprep.stages.combine import StageInputError, write_rejected
from helpers.bidstree import make_bids_tree
from helpers.plans import make_plan


def test_cosine_basis_is_nipypes_dct_without_the_constant():
    # 300 volumes at TR 1 s, 128-s period: order floor(2 * 300 / 128) = 4 -> 3 columns
    basis = cosine_basis(300, 1.0)
    assert basis.shape == (300, 3)
    t = np.arange(300)
    np.testing.assert_allclose(basis[:, 1], np.sqrt(2 / 300) * np.cos(np.pi * (t + 0.5) * 2 / 300))
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=1e-12)  # orthonormal
    np.testing.assert_allclose(basis.sum(axis=0), 0, atol=1e-12)  # no constant
    assert cosine_basis(20, 1.0).shape == (20, 0)  # shorter than half the period
    with pytest.raises(ValueError, match="repetition_time > 0"):
        cosine_basis(10, 0.0)


def test_fmriprep_confounds_adds_derivatives_squares_and_cosines():
    params = np.random.default_rng(0).normal(size=(100, 6))
    table = fmriprep_confounds(motion_confounds(params), 2.0)
    for j, name in enumerate(MOTION_COLUMNS):
        np.testing.assert_allclose(table[name], params[:, j])
        d = table[f"{name}_derivative1"].to_numpy()
        assert np.isnan(d[0]) and np.allclose(d[1:], np.diff(params[:, j]))
        np.testing.assert_allclose(table[f"{name}_power2"], params[:, j] ** 2)
        np.testing.assert_allclose(table[f"{name}_derivative1_power2"][1:], d[1:] ** 2)
    assert np.isnan(table["framewise_displacement"][0])
    assert [c for c in table.columns if c.startswith("cosine")] == ["cosine00", "cosine01"]
    assert len(table.columns) == 6 * 4 + 1 + 2
    units = column_descriptions(list(table.columns))
    assert units["rot_z_power2"]["Units"] == "rad^2" and units["trans_y"]["Units"] == "mm"
    assert set(units) == set(table.columns)
    with pytest.raises(ValueError, match=r"missing \['rot_z'\]"):
        fmriprep_confounds(table.drop(columns="rot_z"), 2.0)


def test_copies_beside_the_series_name_their_original(tmp_path):
    source = tmp_path / "spatial" / "sub-01_task-a_run-01_desc-confounds_timeseries.tsv"
    source.parent.mkdir()
    fmriprep_confounds(motion_confounds(np.zeros((50, 6))), 1.5).to_csv(
        source, sep="\t", index=False, na_rep="n/a"
    )
    write_sidecar(
        source,
        sources=["raw.nii.gz"],
        parameters={"slice_timing": True},
        extra={"Description": "Head motion", "RepetitionTime": 1.5, "trans_x": {"Units": "mm"}},
    )
    outputs = {
        "combine": tmp_path / "combine-raw" / source.name,
        "combine_json": tmp_path / "combine-raw" / sidecar_path(source).name,
    }
    assert copy_confounds(source, outputs) == [outputs["combine"]]
    assert outputs["combine"].read_bytes() == source.read_bytes()
    side = json.loads(outputs["combine_json"].read_text())
    assert side["Sources"] == [str(source)] and side["Parameters"] == {"slice_timing": True}
    assert side["RepetitionTime"] == 1.5 and side["trans_x"] == {"Units": "mm"}
    assert side["Description"].startswith("Head motion. A copy of the spatial stage's table")


def test_rejected_components_are_the_mixing_columns_tedana_rejected(tmp_path):
    mixing = tmp_path / "x_desc-ICA_mixing.tsv"
    metrics = tmp_path / "x_desc-tedana_metrics.tsv"
    mix = pd.DataFrame(np.arange(12.0).reshape(4, 3), columns=["ICA_0", "ICA_1", "ICA_2"])
    mix.to_csv(mixing, sep="\t", index=False)
    pd.DataFrame(
        {
            "Component": ["ICA_0", "ICA_1", "ICA_2"],
            "kappa": [10.0, 50.0, 12.0],
            "rho": [40.0, 5.0, 30.0],
            "classification": ["rejected", "accepted", "rejected"],
            "classification_tags": ["Unlikely BOLD", "Likely BOLD", ""],
        }
    ).to_csv(metrics, sep="\t", index=False)
    out = tmp_path / "x_desc-ICARejected_timeseries.tsv"
    assert write_rejected(mixing, metrics, out) == out
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns) == ["ICA_0", "ICA_2"]
    np.testing.assert_allclose(table.to_numpy(), mix[["ICA_0", "ICA_2"]].to_numpy())
    side = json.loads(sidecar_path(out).read_text())
    assert side["RejectedComponents"] == ["ICA_0", "ICA_2"]
    assert side["ICA_0"]["Description"].endswith("(kappa 10, rho 40, tags: Unlikely BOLD)")
    assert side["Sources"] == [str(mixing), str(metrics)]
    # none rejected: no columns, and the sidecar says so
    pd.read_csv(metrics, sep="\t").assign(classification="accepted").to_csv(
        metrics, sep="\t", index=False
    )
    write_rejected(mixing, metrics, out)
    assert (
        out.read_text() == ""
        and json.loads(sidecar_path(out).read_text())["RejectedComponents"] == []
    )
    pd.DataFrame({"Component": ["ICA_9"], "classification": ["rejected"]}).to_csv(
        metrics, sep="\t", index=False
    )
    with pytest.raises(StageInputError, match=r"names components \['ICA_9'\] that .* has no"):
        write_rejected(mixing, metrics, out)


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("confounds") / "bids"
    make_bids_tree(root, subjects=("01",), sessions=("01",), runs=("01", "02"), data=False)
    return root


def test_the_plan_puts_confounds_beside_every_series_it_makes(bids, tmp_path):
    plan = make_plan(bids, tmp_path)
    targets = {str(Path(t).relative_to(plan.ctx.out)) for t in plan.targets()}
    confounds = {t for t in targets if t.endswith("_desc-confounds_timeseries.tsv")}
    folders = {t.split("/")[0] for t in confounds}
    assert folders == {"spatial", "combine-raw", "combine-nordic", "preproc-raw", "preproc-nordic"}
    assert len(confounds) == 5 * 2  # 2 runs
    run = plan.dataset.runs[0]
    spec = plan.spec("confounds")
    # the job writes the copies' sidecars beside them (declared: the tables only)
    assert set(spec.output) == {"combine", "preproc"}
    assert spec.input == {"confounds": plan.spatial.run_outputs()["confounds"]}
    name = reg.get("spatial.confounds").path(plan.ctx.out, reg.run_key(run.entities)).name
    assert plan.spatial.confounds_outputs(run, "raw")["combine"].endswith(
        f"combine-raw/sub-01/ses-01/func/{name}"
    )
    # the resampled echoes not kept: no confounds in their folder
    dropped = make_plan(bids, tmp_path, spatial={"keep_echoes": False})
    kept = dropped.spatial.confounds_outputs(run, "raw")
    assert set(kept) == {"combine", "combine_json"}
    # no spatial preprocessing: no confounds at all
    off = make_plan(bids, tmp_path, spatial={"enabled": False})
    assert not [t for t in off.targets() if "desc-confounds" in t]
