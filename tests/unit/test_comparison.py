"""The 2×3 comparison: metrics by hand, the ranking computed from the data, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from echoprep.io.images import StageInputError
from echoprep.stages import comparison as cmp

FACTORS = {
    "raw-single": 1.0,
    "raw-optcom": 1.42,
    "raw-denoised": 1.30,
    "nordic-single": 1.42,
    "nordic-optcom": 1.78,
    "nordic-denoised": 1.70,
}


def _save(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.diag([2.0, 2, 2, 1])), path)
    return path


def test_variant_metrics_by_hand():
    nc = np.array([10.0, 20.0, 0.0, 2.0, 99.0])
    roi = np.array([True, True, False, False, False])
    brain = np.array([True, True, True, True, False])  # voxel 4 is outside the brain
    m = cmp.variant_metrics(nc, roi, brain)
    # in: 10, 20 (mean 15, var 50); out: 0, 2 (mean 1, var 2); pooled SD sqrt((50 + 2) / 2)
    assert m["voxels"] == 2
    assert m["median_nc"] == pytest.approx(15.0)
    assert m["mean_nc"] == pytest.approx(15.0)
    assert m["dprime"] == pytest.approx(14 / np.sqrt(26))
    assert m["dprime"] == pytest.approx(2.7456, abs=1e-4)


def _dataset(tmp_path: Path, factors_by_subject: dict[str, dict[str, float]]) -> list[cmp.Entry]:
    """NC maps on a 6x6x4 grid: ROI = x < 2 (NC = 10 f + gradient), rest of brain NC ~ 2."""
    shape = (6, 6, 4)
    roi = np.zeros(shape, np.uint8)
    roi[:2] = 1
    brain = np.ones(shape, np.uint8)
    brain[:, :, 3] = 0
    grad = np.linspace(-2, 2, int(roi.sum())).reshape(2, 6, 4)
    entries = []
    for sub, factors in factors_by_subject.items():
        r = _save(tmp_path / f"sub-{sub}_roi.nii.gz", roi)
        b = _save(tmp_path / f"sub-{sub}_brain.nii.gz", brain)
        for variant, f in factors.items():
            nc = np.full(shape, 2.0, np.float32)
            nc[2:, :, 1::2] = 3.0
            nc[:2] = 10.0 * f + grad
            p = _save(tmp_path / f"sub-{sub}_{variant}_nc.nii.gz", nc)
            entries.append(cmp.Entry(sub, "01", variant, p, r, b))
    return entries


def test_comparison_ranks_clear_winner(tmp_path):
    entries = _dataset(tmp_path, {"01": FACTORS, "02": FACTORS})
    out = cmp.output_paths(tmp_path / "comparison", "images")
    rec = cmp.run_comparison(entries, out)
    assert rec["variant"] == "nordic-optcom"
    assert [r["variant"] for r in rec["ranking"]] == [
        "nordic-optcom",
        "nordic-denoised",
        "raw-optcom",  # tie with nordic-single: canonical order
        "nordic-single",
        "raw-denoised",
        "raw-single",
    ]
    # median NC in the ROI is 10 f (the gradient is symmetric)
    assert rec["margin_over_runner_up"]["variant"] == "nordic-denoised"
    assert rec["margin_over_runner_up"]["difference"] == pytest.approx(0.8, abs=1e-4)
    assert rec["margin_over_baseline"]["difference"] == pytest.approx(7.8, abs=1e-4)
    assert rec["margin_over_baseline"]["relative_percent"] == pytest.approx(78.0, abs=1e-3)
    assert rec["winner_below_baseline"] == []
    table = pd.read_csv(out["tsv"], sep="\t", dtype={"subject": str, "session": str})
    assert list(table.columns) == list(cmp.TABLE_COLUMNS)
    assert len(table) == 12
    row = table[(table.subject == "01") & (table.variant == "nordic-optcom")].iloc[0]
    assert row["gain"] == pytest.approx(78.0, abs=1e-2)
    assert row["nordic"] == "nordic" and row["combine"] == "optcom"
    assert row["voxels"] == 48
    assert table[table.variant == "raw-single"]["gain"].abs().max() < 1e-9
    side = json.loads(out["tsv"].with_suffix(".json").read_text())
    assert side["Sources"] == sorted({str(p) for e in entries for p in (e.nc, e.roi, e.brain)})
    assert side["Parameters"]["RankBy"] == "median_nc" and len(side["Parameters"]["Entries"]) == 12
    assert "echoprep" in side["SoftwareVersions"] and "matplotlib" in side["SoftwareVersions"]
    saved = json.loads(out["json"].read_text())
    assert saved["variant"] == "nordic-optcom" and "echoprep" in saved["SoftwareVersions"]
    assert saved["Sources"] == [str(out["tsv"])] and saved["Parameters"] == side["Parameters"]
    assert out["png"].stat().st_size > 10_000
    assert out["svg"].read_text().lstrip().startswith("<?xml")


def test_comparison_ranking_is_computed_not_assumed(tmp_path):
    """Make raw-denoised best: it must win, whatever the expectation from the literature."""
    factors = dict(FACTORS, **{"raw-denoised": 2.5})
    entries = _dataset(tmp_path, {"01": factors})
    rec = cmp.run_comparison(entries, cmp.output_paths(tmp_path / "c", "x"))
    assert rec["variant"] == "raw-denoised"
    assert rec["margin_over_runner_up"]["variant"] == "nordic-optcom"


def test_comparison_flags_subject_below_baseline(tmp_path):
    """NORDIC+ICA best on average but worse than the baseline for one subject (LAION's case)."""
    good = dict(FACTORS, **{"nordic-denoised": 2.6})
    bad = dict(FACTORS, **{"nordic-denoised": 0.9})
    entries = _dataset(tmp_path, {"01": good, "02": good, "03": bad})
    rec = cmp.run_comparison(entries, cmp.output_paths(tmp_path / "c", "x"))
    assert rec["variant"] == "nordic-denoised"
    assert [w["subject"] for w in rec["winner_below_baseline"]] == ["03"]
    top = rec["ranking"][0]
    assert top["below_baseline"] == 1
    assert top["gain_min"] == pytest.approx(-10.0, abs=1e-3)
    # ranking by d' instead is allowed and recorded
    rec_d = cmp.recommend(cmp.comparison_table(entries), "dprime")
    assert rec_d["rank_by"] == "dprime"


def test_dprime_in_table_by_hand(tmp_path):
    entries = _dataset(tmp_path, {"01": {"raw-single": 1.0}})
    table = cmp.comparison_table(entries)
    nc = np.asarray(nib.load(entries[0].nc).dataobj, float)
    roi = np.asarray(nib.load(entries[0].roi).dataobj).astype(bool)
    brain = np.asarray(nib.load(entries[0].brain).dataobj).astype(bool)
    a, b = nc[roi], nc[brain & ~roi]
    pooled = np.sqrt(
        ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    )
    assert table.loc[0, "dprime"] == pytest.approx((a.mean() - b.mean()) / pooled)


def test_group_statistics_sem():
    table = pd.DataFrame(
        {
            "subject": ["01", "02", "03"],
            "session": ["01"] * 3,
            "variant": ["raw-single"] * 3,
            "median_nc": [10.0, 12.0, 14.0],
            "dprime": [1.0, 1.0, 1.0],
            "gain": [0.0, 0.0, 0.0],
        }
    )
    stats = cmp.group_statistics(table).iloc[0]
    assert stats["median_nc_mean"] == pytest.approx(12.0)
    assert stats["median_nc_sem"] == pytest.approx(2.0 / np.sqrt(3))


def test_comparison_errors(tmp_path):
    entries = _dataset(tmp_path, {"01": {"raw-single": 1.0}})
    with pytest.raises(StageInputError, match="given twice"):
        cmp.comparison_table([entries[0], entries[0]])
    empty = _save(tmp_path / "empty.nii.gz", np.zeros((6, 6, 4), np.uint8))
    e = cmp.Entry("01", "01", "raw-single", entries[0].nc, empty, entries[0].brain)
    with pytest.raises(StageInputError, match="non-empty visually responsive ROI; found 0"):
        cmp.comparison_table([e])
    other = _save(tmp_path / "other.nii.gz", np.ones((5, 6, 4), np.uint8))
    e = cmp.Entry("01", "01", "raw-single", entries[0].nc, other, entries[0].brain)
    with pytest.raises(StageInputError, match="on the grid of the noise-ceiling maps"):
        cmp.comparison_table([e])
    with pytest.raises(ValueError, match="rank_by must be one of"):
        cmp.recommend(cmp.comparison_table(entries), "mean")


def test_cli(tmp_path):
    from echoprep.cli import build_parser

    entries = _dataset(tmp_path, {"01": FACTORS})
    argv = ["comparison"]
    for e in entries:
        argv += ["--entry", e.subject, e.session, e.variant, str(e.nc), str(e.roi), str(e.brain)]
    out = cmp.output_paths(tmp_path / "cmp", "images")
    argv += ["--out", *(f"{k}={v}" for k, v in out.items())]
    args = build_parser().parse_args(argv)
    assert args.func(args) == 0
    assert json.loads(out["json"].read_text())["variant"] == "nordic-optcom"


def test_figure_files_are_reproducible(tmp_path):
    """Same table, same bytes: the SVG carries no date and no random element ids."""
    table = pd.DataFrame(
        {
            "subject": ["01", "01"],
            "session": ["01", "01"],
            "variant": ["raw-single", "nordic-optcom"],
            "median_nc": [5.0, 7.0],
            "dprime": [0.3, 0.4],
        }
    )
    files = []
    for name in ("a", "b"):
        png, svg = tmp_path / f"{name}.png", tmp_path / f"{name}.svg"
        cmp.plot_comparison(table, png=png, svg=svg)
        files.append((png.read_bytes(), svg.read_bytes()))
    assert files[0] == files[1]
