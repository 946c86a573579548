"""tedana ICA after NORDIC on one simulated run of demo geometry (40x48x36, 120 volumes, 3
echoes): with tedana.nordic_tedpca: raw_run the NORDIC-denoised run's FastICA converges on its
first attempt and keeps no more components than the same run without NORDIC."""

from __future__ import annotations

import json

import pytest

from echoprep.io.paths import sidecar_path
from echoprep.simulate import simulate_dataset
from echoprep.stages.combine import ICA_RECORD, run_tedana
from echoprep.stages.nordic import run_nordic

pytestmark = pytest.mark.slow

TES = [0.011, 0.02882, 0.04662]


def _outputs(root, name):
    return {
        k: root / name / f"{k}.{ext}"
        for k, ext in (("bold", "nii.gz"), ("metrics", "tsv"), ("mixing", "tsv"))
    }


def test_nordic_run_converges_without_restarts_and_keeps_at_most_the_raw_count(tmp_path):
    bids = simulate_dataset(
        tmp_path / "bids", "demo", seed=0, subjects=1, runs=1, motion=False, fieldmap=False
    )
    func = bids / "sub-01" / "ses-01" / "func"
    stem = "sub-01_ses-01_task-images_run-01"
    mags = [func / f"{stem}_echo-{e}_part-mag_bold.nii.gz" for e in (1, 2, 3)]
    denoised = []
    for e, mag in enumerate(mags, start=1):
        out = {
            k: tmp_path / "nordic" / f"echo-{e}_{k}.nii.gz" for k in ("bold", "gfactor", "removed")
        }
        run_nordic(mag, func / f"{stem}_echo-{e}_part-phase_bold.nii.gz", out, seed=0)
        denoised.append(out["bold"])

    raw = _outputs(tmp_path, "raw")
    run_tedana(mags, TES, raw, work_dir=tmp_path / "work", repetition_time=1.9)
    nordic = _outputs(tmp_path, "nordic-denoised")
    run_tedana(
        denoised,
        TES,
        nordic,
        nordic=True,
        raw_components=sidecar_path(raw["mixing"]),
        work_dir=tmp_path / "work",
        repetition_time=1.9,
    )
    r = json.loads(sidecar_path(raw["mixing"]).read_text())[ICA_RECORD]
    n = json.loads(sidecar_path(nordic["mixing"]).read_text())[ICA_RECORD]
    assert r["TedpcaUsed"] == "aic" and 1 <= r["NComponents"] < 60
    assert n["NComponents"] <= r["NComponents"]
    assert (
        n["ComponentSource"]
        == f"same run without NORDIC (tedana kept {r['NComponents']} components)"
    )
    assert (n["ICAAttempts"], n["ICARestarts"], n["ICAConverged"]) == (1, 0, True)
    assert r["ICAConverged"] is True
