"""The 2×3 comparison: metrics by hand, the ranking computed from the data, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from echoprep.io.bids_uri import localize
from echoprep.io.images import StageInputError
from echoprep.io.outputs import group_key, paths_in
from echoprep.kernels.measures import PLANTED_NORDIC_READING
from echoprep.kernels.ranking import bias_bound
from echoprep.report import verdict as vd
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
    brain[2:, :, 3] = 0  # the ROI lies inside the brain
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


def _subject_paths(root: Path, subject: str) -> dict[str, Path]:
    """Where a subject's comparison tables go (``--out`` keys ``tsv`` and ``bootstrap``)."""
    return {k: root / f"sub-{subject}_{k}.tsv" for k in ("tsv", "bootstrap")}


def _run(tmp_path: Path, entries: list[cmp.Entry], rank_by: str = "heldout_r", n_boot=20):
    """The subject step for every subject, then the group step."""
    tables, boots = [], []
    for sub in sorted({e.subject for e in entries}):
        paths = _subject_paths(tmp_path / "comparison", sub)
        cmp.run_subject_comparison(
            [e for e in entries if e.subject == sub], paths, options={"bootstrap": n_boot}, seed=0
        )
        tables.append(paths["tsv"])
        boots.append(paths["bootstrap"])
    out = paths_in(
        tmp_path / "comparison", "comparison", group_key("images"), keys=cmp.GROUP_OUTPUTS
    )
    return cmp.run_comparison(tables, out, options={"rank_by": rank_by}, bootstraps=boots), out


def test_comparison_ranks_clear_winner_by_nc_when_no_betas(tmp_path):
    """Without betas there is no held-out fidelity: the ranking falls back to the median NC and
    says that NC gains are not evidence of better betas."""
    entries = _dataset(tmp_path, {"01": FACTORS, "02": FACTORS})
    rec, out = _run(tmp_path / "default", entries)
    # NC alone does not make NORDIC the recommendation: the best NORDIC-off variant by NC
    assert rec["ranked_first"] == "nordic-optcom" and rec["variant"] == "raw-optcom"
    assert rec["rank_by"] == "median_nc" and rec["rank_by_requested"] == "heldout_r"
    assert any("not evidence of better betas" in w for w in rec["warnings"])
    assert "the best variant without NORDIC, raw-optcom" in rec["reason"]
    side = json.loads(out["tsv"].with_suffix(".json").read_text())
    assert side["Parameters"]["RankBy"] == "heldout_r"
    # LAION's criterion, when asked for explicitly, is followed
    rec, out = _run(tmp_path, entries, rank_by="median_nc")
    assert rec["variant"] == "nordic-optcom" and rec["rank_by_requested"] == "median_nc"
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
    assert rec["nc_winner"] == "nordic-optcom" and rec["agreement"] is True
    table = cmp.read_table(out["tsv"])
    assert list(table.columns) == list(cmp.TABLE_COLUMNS)
    assert len(table) == 12
    row = table[(table.subject == "01") & (table.variant == "nordic-optcom")].iloc[0]
    assert row["gain"] == pytest.approx(78.0, abs=1e-2)
    assert row["nordic"] == "nordic" and row["combine"] == "optcom"
    assert row["voxels"] == 48
    assert table["heldout_r"].isna().all()
    assert table["reference"].isna().all() and "Reference" not in rec["Parameters"]
    assert table[table.variant == "raw-single"]["gain"].abs().max() < 1e-9
    side = json.loads(out["tsv"].with_suffix(".json").read_text())
    assert len(side["Sources"]) == 2 and side["Parameters"]["RankBy"] == "median_nc"
    assert "echoprep" in side["SoftwareVersions"] and "matplotlib" in side["SoftwareVersions"]
    sub_side = json.loads(
        _subject_paths(tmp_path / "comparison", "01")["tsv"].with_suffix(".json").read_text()
    )
    assert sub_side["Sources"] == sorted(
        {str(p) for e in entries if e.subject == "01" for p in (e.nc, e.roi, e.brain)}
    )
    assert len(sub_side["Parameters"]["Entries"]) == 6
    saved = localize(json.loads(out["json"].read_text()), out["json"])
    assert saved["variant"] == "nordic-optcom" and "echoprep" in saved["SoftwareVersions"]
    assert saved["Sources"] == [str(out["tsv"])] and saved["Parameters"] == side["Parameters"]
    assert out["png"].stat().st_size > 10_000
    assert out["svg"].read_text().lstrip().startswith("<?xml")


def test_comparison_ranking_is_computed_not_assumed(tmp_path):
    """Make raw-denoised best: it must win, whatever the expectation from the literature."""
    factors = dict(FACTORS, **{"raw-denoised": 2.5})
    rec, _ = _run(tmp_path, _dataset(tmp_path, {"01": factors}), rank_by="median_nc")
    assert rec["variant"] == "raw-denoised"
    assert rec["margin_over_runner_up"]["variant"] == "nordic-optcom"


def test_comparison_flags_subject_below_baseline(tmp_path):
    """NORDIC+ICA best on average but worse than the baseline for one subject (LAION's case)."""
    good = dict(FACTORS, **{"nordic-denoised": 2.6})
    bad = dict(FACTORS, **{"nordic-denoised": 0.9})
    entries = _dataset(tmp_path, {"01": good, "02": good, "03": bad})
    rec, _ = _run(tmp_path, entries, rank_by="median_nc")
    assert rec["variant"] == "nordic-denoised"
    assert [w["subject"] for w in rec["winner_below_baseline"]] == ["03"]
    top = rec["ranking"][0]
    assert top["below_baseline"] == 1
    assert top["gain_min"] == pytest.approx(-10.0, abs=1e-3)
    assert any("+160 %" in w and "implausible" in w for w in rec["warnings"])
    # ranking by d' instead is allowed and recorded
    table, *_ = cmp.comparison_table(entries)
    assert cmp.recommend(table, "dprime")["rank_by"] == "dprime"


def test_dprime_in_table_by_hand(tmp_path):
    entries = _dataset(tmp_path, {"01": {"raw-single": 1.0}})
    table, *_ = cmp.comparison_table(entries)
    nc = np.asarray(nib.load(entries[0].nc).dataobj, float)
    roi = np.asarray(nib.load(entries[0].roi).dataobj).astype(bool)
    brain = np.asarray(nib.load(entries[0].brain).dataobj).astype(bool)
    a, b = nc[roi & brain], nc[brain & ~roi]
    pooled = np.sqrt(
        ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    )
    assert table.loc[0, "dprime"] == pytest.approx((a.mean() - b.mean()) / pooled)


def test_voxels_outside_a_fit_mask_are_not_fake_zeros(tmp_path):
    """One variant fitted only half of the ROI (NC 0 elsewhere): every variant's statistics use
    the voxels all variants fitted, so nobody's median is dragged towards 0."""
    entries = _dataset(tmp_path, {"01": {"raw-single": 1.0, "raw-optcom": 1.42}})
    shape = (6, 6, 4)
    fit = np.ones(shape, np.uint8)
    fit[:, 3:] = 0
    nc = np.asarray(nib.load(entries[1].nc).dataobj, np.float32) * fit
    nc_path = _save(tmp_path / "optcom_half_nc.nii.gz", nc)
    mask_path = _save(tmp_path / "optcom_fit.nii.gz", fit)
    half = cmp.Entry(
        "01", "01", "raw-optcom", nc_path, entries[1].roi, entries[1].brain, mask=mask_path
    )
    table, *_ = cmp.comparison_table([entries[0], half])
    assert list(table["voxels"]) == [24, 24]  # x < 2, y < 3
    row = table.set_index("variant").loc["raw-optcom"]
    assert row["median_nc"] > 13.0  # 14.2 +- gradient; a fake-zero median would be ~7
    assert row["gain"] == pytest.approx(42.0, abs=5.0)


def test_implausible_maps_and_margins_are_flagged(tmp_path):
    entries = _dataset(tmp_path, {"01": {"raw-single": 1.0, "nordic-single": 2.2}})
    nc = np.asarray(nib.load(entries[1].nc).dataobj, np.float32)
    nc[5, :, :3] = 90.0  # a ring of implausible values at the brain edge
    ring = cmp.Entry(
        "01",
        "01",
        "nordic-single",
        _save(tmp_path / "ring.nii.gz", nc),
        entries[1].roi,
        entries[1].brain,
    )
    table, *_ = cmp.comparison_table([entries[0], ring])
    assert table.set_index("variant").loc["nordic-single", "edge_nc80"] > 0.1
    warnings = cmp.implausibility_warnings(table, "nordic-single")
    assert any("edge of the fitted brain" in w and "nordic-single" in w for w in warnings)
    assert any("+120 %" in w for w in warnings)
    table.loc[table.variant == "nordic-single", "dprime"] = -0.06
    assert any(
        "negative d′ (-0.06)" in w for w in cmp.implausibility_warnings(table, "nordic-single")
    )


def _betas_dataset(tmp_path: Path):
    """A session where NORDIC-like projection raises NC but lowers fidelity.

    ROI = x < 2 (48 voxels); 4 runs; 60 images, each once in runs 1/3 and once in runs 2/4.
    raw betas = truth + noise (truth: rank-2 part + voxel-specific part); the "nordic" betas
    are a per-run rank-2 projection of the raw ones; NC maps from the betas themselves.
    """
    from echoprep.kernels.noiseceiling import noise_ceiling

    r = np.random.default_rng(0)
    shape = (6, 6, 4)
    roi = np.zeros(shape, bool)
    roi[:2] = True
    brain = np.ones(shape, bool)
    n_vox, n_img = int(roi.sum()), 60
    mu = 0.55 * r.standard_normal((n_vox, 2)) @ r.standard_normal((2, n_img))
    mu += 0.84 * r.standard_normal((n_vox, n_img))
    runs, labels = [], []
    for first, second in ((1, 3), (2, 4)):
        perm = r.permutation(n_img)
        for run, imgs in ((first, perm[:30]), (second, perm[30:])):
            runs += [run] * 30
            labels += imgs.tolist()
    order = np.argsort(runs, kind="stable")
    runs, labels = np.asarray(runs)[order], np.asarray(labels)[order]
    raw = mu[:, labels] + 1.0 * r.standard_normal((n_vox, len(labels)))
    proj = np.empty_like(raw)
    for g in np.unique(runs):
        u, s, vt = np.linalg.svd(raw[:, runs == g], full_matrices=False)
        proj[:, runs == g] = (u[:, :2] * s[:2]) @ vt[:2]
    trials = pd.DataFrame({"run": [f"{x:02d}" for x in runs], "label": [f"img{x}" for x in labels]})
    tpath = tmp_path / "trials.tsv"
    trials.to_csv(tpath, sep="\t", index=False)
    rpath = _save(tmp_path / "roi.nii.gz", roi.astype(np.uint8))
    bpath = _save(tmp_path / "brain.nii.gz", brain.astype(np.uint8))
    entries = []
    for variant, betas in (("raw-single", raw), ("raw-optcom", raw), ("nordic-single", proj)):
        vol = np.zeros((*shape, len(labels)), np.float32)
        vol[roi] = betas
        vol[~roi] = r.standard_normal((int((~roi).sum()), len(labels)))
        nc = np.zeros(shape, np.float32)
        nc[roi] = noise_ceiling(betas, trials["label"], trials["run"]).nc
        bet = _save(tmp_path / f"{variant}_betas.nii.gz", vol)
        means, volumes = _heldout_files(tmp_path, variant, vol, roi, trials)
        entries.append(
            cmp.Entry(
                "01",
                "01",
                variant,
                _save(tmp_path / f"{variant}_nc.nii.gz", nc),
                rpath,
                bpath,
                betas=bet,
                trials=tpath,
                heldout=means,
                heldout_volumes=volumes,
            )
        )
    return entries


def _heldout_files(tmp_path, variant, vol, roi, trials):
    """The held-out image means of betas whose processing acts run by run (fitting the halves
    apart would give the same betas): the layout ``echoprep glm-heldout`` writes."""
    from echoprep.kernels.fidelity import split_means

    labels, runs = trials["label"].to_numpy(), trials["run"].to_numpy()
    splits = split_means(vol[roi], labels, runs)
    cols, rows = [], []
    for s, m in enumerate(splits, start=1):
        for half, x in (("A", m.a), ("B", m.b)):
            cols.append(x)
            rows += [
                {"split": s, "half": half, "label": lab, "run_labels": "n/a"} for lab in m.images
            ]
    means = np.zeros((*roi.shape, sum(c.shape[1] for c in cols)), np.float32)
    means[roi] = np.concatenate(cols, axis=1)
    mpath = _save(tmp_path / f"{variant}_heldout.nii.gz", means)
    vpath = tmp_path / f"{variant}_heldout.tsv"
    pd.DataFrame(rows).to_csv(vpath, sep="\t", index=False)
    return mpath, vpath


def test_nc_and_heldout_fidelity_disagree_and_the_json_says_so(tmp_path):
    entries = _betas_dataset(tmp_path)
    rec, out = _run(tmp_path, entries, n_boot=50)
    table = cmp.read_table(out["tsv"]).set_index("variant")
    # the projection raises NC and split-half reliability but lowers the held-out fidelity
    assert table.loc["nordic-single", "median_nc"] > table.loc["raw-single", "median_nc"] + 10
    assert table.loc["nordic-single", "splithalf_r"] > table.loc["raw-single", "splithalf_r"]
    assert table.loc["nordic-single", "heldout_r"] < table.loc["raw-single", "heldout_r"] - 0.05
    assert rec["rank_by"] == "heldout_r"
    assert rec["nc_winner"] == "nordic-single"
    assert rec["variant"] in ("raw-single", "raw-optcom")
    assert rec["agreement"] is False
    assert "disagree" in rec["disagreement"] and "nordic-single" in rec["disagreement"]
    # raw-single and raw-optcom are the same betas: their margin is 0, within its noise, and
    # the verdict names both
    assert rec["margin_over_runner_up"]["difference"] == pytest.approx(0.0, abs=1e-12)
    assert rec["margin_over_runner_up"]["shown"] is False
    assert {"raw-single", "raw-optcom"} <= set(rec["indistinguishable"]) | {rec["variant"]}
    assert "the data cannot tell" in rec["verdict"]
    # with the twin excluded, raw and the projection are two data: the lead must hold under
    # each one's own halves, and the projection's (its repeats agree) does not show it
    assert "nordic-single" in rec["indistinguishable"]
    # every variant against the others (never itself): the table's columns are means over
    # its references, computed from the long table of every pair (replicate 0: the estimate)
    boot = cmp.read_bootstrap(_subject_paths(tmp_path / "comparison", "01")["bootstrap"])
    assert len(boot) == 3 * 3 * 51
    est = boot[boot["replicate"] == 0].set_index(["variant", "reference"])["heldout_r"]
    own = {v: np.sqrt(est[(v, v)]) for v in ("raw-single", "raw-optcom", "nordic-single")}
    # raw-single and raw-optcom are the same betas: the same data, never each other's
    # reference; with one other variant left, raw-single is judged against it and itself
    same = boot[boot["replicate"] == 0].set_index(["variant", "reference"])["same_data"]
    assert bool(same[("raw-single", "raw-optcom")]) and not same[("raw-single", "nordic-single")]
    refs = ["raw-single", "nordic-single"]
    assert table.loc["raw-single", "reference"] == ",".join(refs)
    assert table.loc["nordic-single", "reference"] == "raw-single,raw-optcom"
    assert table.loc["raw-single", "heldout_r"] == pytest.approx(
        np.mean([est[("raw-single", w)] for w in refs]), abs=2e-4
    )
    assert table.loc["raw-single", "heldout_truth"] == pytest.approx(
        np.mean([est[("raw-single", w)] for w in refs]) / np.mean([own[w] for w in refs]),
        abs=2e-3,
    )
    assert table.loc["raw-single", "reference_reliability"] == pytest.approx(
        np.mean([own[w] for w in refs]), abs=2e-3
    )
    # symmetric: a variant against a reference = the reference against that variant
    assert est[("raw-single", "nordic-single")] == est[("nordic-single", "raw-single")]
    assert rec["Parameters"]["Reference"] == cmp.REFERENCE_RULE
    assert rec["references"] == cmp.REFERENCE_RULE and rec["default_rule"] == cmp.DEFAULT_RULE
    # every margin names its references, none of them one of the two variants compared
    by_ref = rec["margin_over_baseline"] or rec["margin_over_runner_up"]
    assert {m["reference"] for m in by_ref["by_reference"]}.isdisjoint(
        {rec["variant"], by_ref["variant"]}
    )


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
    with pytest.raises(StageInputError, match="every variant fitted; found 0"):
        cmp.comparison_table([e])
    other = _save(tmp_path / "other.nii.gz", np.ones((5, 6, 4), np.uint8))
    e = cmp.Entry("01", "01", "raw-single", entries[0].nc, other, entries[0].brain)
    with pytest.raises(
        StageInputError,
        match=r"other.nii.gz: expected a ROI mask on the grid of .*nc.* found shape \(5, 6, 4\)",
    ):
        cmp.comparison_table([e])
    with pytest.raises(ValueError, match="rank_by must be one of"):
        cmp.recommend(cmp.comparison_table(entries)[0], "mean")
    with pytest.raises(SystemExit, match="unknown variant"):
        cmp.parse_entry(["subject=01", "session=01", "variant=x", "nc=a", "roi=b", "brain=c"])
    with pytest.raises(SystemExit, match="missing brain"):
        cmp.parse_entry(["subject=01", "session=01", "variant=raw-single", "nc=a", "roi=b"])


def test_cli(tmp_path):
    from echoprep.cli import build_parser

    entries = _betas_dataset(tmp_path)
    sub = _subject_paths(tmp_path / "cmp", "01")
    argv = ["comparison", "subject"]
    for e in entries:
        argv += ["--entry", *cmp.entry_words(e.__dict__)]
    argv += ["--options-json", '{"bootstrap": 20}']
    argv += ["--out", *(f"{k}={v}" for k, v in sub.items())]
    args = build_parser("comparison").parse_args(argv)
    assert args.func(args) == 0
    out = paths_in(tmp_path / "cmp", "comparison", group_key("images"), keys=cmp.GROUP_OUTPUTS)
    argv = [
        "comparison",
        "group",
        "--table",
        str(sub["tsv"]),
        "--bootstrap-table",
        str(sub["bootstrap"]),
        "--out",
        *(f"{k}={v}" for k, v in out.items()),
    ]
    args = build_parser("comparison").parse_args(argv)
    assert args.func(args) == 0
    rec = json.loads(out["json"].read_text())
    assert rec["rank_by"] == "heldout_r" and rec["variant"] != "nordic-single"
    assert json.loads(sub["tsv"].with_suffix(".json").read_text())["Parameters"]["Bootstrap"] == 20


def test_cli_options_one_source(capsys):
    """The comparison options come from the schema section, given whole as --options-json
    (missing keys: schema defaults) to both sub-commands; the legacy one-key flags are gone;
    unknown keys and disallowed values are refused."""
    from echoprep.cli import build_parser
    from echoprep.options import OptionsError, section_defaults

    parse = build_parser("comparison").parse_args
    group = ["comparison", "group", "--table", "t.tsv", "--out", "tsv=a.tsv", "json=a.json"]
    subject = ["comparison", "subject", "--entry", "subject=01", "--out", "tsv=s.tsv"]
    args = parse([*group, "--options-json", '{"rank_by": "dprime", "bootstrap": 30}'])
    opts = cmp._given_options(args)
    assert (opts.rank_by, opts.bootstrap) == ("dprime", 30)
    assert opts.reference == section_defaults("comparison")["reference"]
    args = parse([*subject, "--options-json", '{"bootstrap": 27}'])
    assert cmp._given_options(args).bootstrap == 27
    for base in (group, subject):
        assert cmp._given_options(parse(base)) == cmp.stage_options(None)
        assert cmp.stage_options(None) == cmp.stage_options(section_defaults("comparison"))
        # abbreviations are refused too: --bootstrap is not read as --bootstrap-table
        for flag, value in (("--rank-by", "dprime"), ("--bootstrap", "10")):
            with pytest.raises(SystemExit):
                parse([*base, flag, value])
            assert f"unrecognized arguments: {flag} {value}" in capsys.readouterr().err
    args = parse([*group, "--options-json", '{"rank": "gain"}'])
    with pytest.raises(OptionsError, match=r"unknown key\(s\) \['rank'\]"):
        cmp._given_options(args)
    args = parse([*subject, "--options-json", '{"bootstrap": -1}'])
    with pytest.raises(OptionsError, match=r"comparison.bootstrap"):
        cmp._given_options(args)
    # 0 or 1 replicates would give no standard error, and any NORDIC lead would win
    for few in (0, 1, 19):
        with pytest.raises(OptionsError, match=rf"comparison.bootstrap: {few} is less than"):
            cmp.stage_options({"bootstrap": few})
    assert cmp.stage_options({"bootstrap": 20}).bootstrap == 20


def test_figure_files_are_reproducible(tmp_path):
    """Same table, same bytes: the SVG carries no date and no random element ids."""
    table = pd.DataFrame(
        {
            "subject": ["01", "01"],
            "session": ["01", "01"],
            "variant": ["raw-single", "nordic-optcom"],
            "median_nc": [5.0, 7.0],
            "dprime": [0.3, 0.4],
            "heldout_r": [0.2, 0.1],
        }
    )
    files = []
    for name in ("a", "b"):
        png, svg = tmp_path / f"{name}.png", tmp_path / f"{name}.svg"
        cmp.plot_comparison(table, png=png, svg=svg)
        files.append((png.read_bytes(), svg.read_bytes()))
    assert files[0] == files[1]


def _table_and_boot(heldout: dict[str, float], spread: float, seed: int = 0):
    """A one-session table with the given held-out fidelities and bootstrap replicates whose
    paired differences have SD ~ ``spread``."""
    r = np.random.default_rng(seed)
    rows, boots = [], []
    common = r.normal(0, 0.02, 100)
    for v, h in heldout.items():
        rows.append(
            {
                "subject": "01",
                "session": "01",
                "variant": v,
                "median_nc": 10.0,
                "dprime": 1.0,
                "gain": 0.0,
                "heldout_r": h,
                "splithalf_r": 0.1,
                "edge_nc80": 0.0,
                "voxels": 100,
            }
        )
        own = h + common + r.normal(0, spread / np.sqrt(2), 100)
        boots += [
            {"subject": "01", "session": "01", "variant": v, "replicate": i, "heldout_r": x}
            for i, x in enumerate(own)
        ]
    return pd.DataFrame(rows), pd.DataFrame(boots)


def test_nordic_is_recommended_only_where_its_advantage_is_shown():
    # NORDIC ahead by far less than its paired standard error: the NORDIC-off variant
    table, boot = _table_and_boot({"raw-optcom": 0.100, "nordic-optcom": 0.101}, spread=0.01)
    rec = cmp.recommend(table, "heldout_r", boot)
    assert rec["ranked_first"] == "nordic-optcom" and rec["variant"] == "raw-optcom"
    assert "NORDIC's advantage is not" in rec["reason"] and "shown by these data" in rec["reason"]
    assert rec["margin_over_runner_up"]["variant"] == "nordic-optcom"
    assert rec["margin_over_runner_up"]["difference"] < 0
    # ahead by many standard errors: NORDIC is recommended; without a truth scale the lead
    # cannot be checked against the estimate's bias bound, so it is not called shown
    table, boot = _table_and_boot({"raw-optcom": 0.100, "nordic-optcom": 0.130}, spread=0.005)
    rec = cmp.recommend(table, "heldout_r", boot)
    assert rec["variant"] == "nordic-optcom" and rec["ranked_first"] == "nordic-optcom"
    lead = rec["margin_over_runner_up"]
    assert lead["beyond_noise"] is True and lead["shown"] is False and lead["within_bias"]
    assert rec["indistinguishable"] == ["raw-optcom"]
    assert "within the estimate's bias bound (0.09 in r with the truth" in rec["reason"]
    # on the truth scale beyond the bias bound between NORDIC and no NORDIC (0.09): shown
    table["reference_reliability"] = 0.25
    rec = cmp.recommend(table, "heldout_r", boot)
    lead = rec["margin_over_runner_up"]
    assert lead["truth_difference"] == pytest.approx(0.12) and lead["shown"] is True
    assert rec["variant"] == "nordic-optcom" and rec["indistinguishable"] == []
    assert "bias bound" not in rec["reason"]


def test_a_lead_within_the_bias_bound_is_not_shown():
    """Beyond the sampling noise under every reference but within the estimate's bias bound
    (0.04 in r between two NORDIC-off variants, 0.09 across NORDIC): not shown, and the
    variant is named as indistinguishable; a wider lead of the same noise is shown."""
    table, boot = _sessions_and_boot(
        {("01", "01"): {"raw-single": 0.100, "raw-optcom": 0.115, "nordic-optcom": 0.070}},
        spread=0.002,
    )
    rec = cmp.recommend(table, "heldout_r", boot)
    assert rec["variant"] == "raw-optcom"
    by = {m["variant"]: m for m in rec["margins"]}
    single, nordic = by["raw-single"], by["nordic-optcom"]
    # 0.015 in heldout_r, 0.03 in r: beyond 2 standard errors, within 0.04
    assert single["beyond_noise"] is True and single["truth_difference"] == pytest.approx(0.03)
    assert single["bias_bound"] == 0.04 and single["shown"] is False
    # 0.045, 0.09 in r: not beyond the NORDIC bound of 0.09
    assert nordic["bias_bound"] == 0.09 and nordic["shown"] is False
    assert rec["indistinguishable"] == ["raw-single", "nordic-optcom"]
    assert "or within the estimate's bias bound" in rec["verdict"]
    table, boot = _sessions_and_boot(
        {("01", "01"): {"raw-single": 0.090, "raw-optcom": 0.115, "nordic-optcom": 0.060}},
        spread=0.002,
    )
    rec = cmp.recommend(table, "heldout_r", boot)
    assert all(m["shown"] for m in rec["margins"]) and rec["indistinguishable"] == []
    assert "beyond the estimate's bias bound" in rec["verdict"]


def _planted_table(planted: dict[str, float], spread: float, seed: int = 0):
    """:func:`_table_and_boot` with the given values as the planted fidelity (image-bootstrap
    replicates numbered from 1, as the planted table has them)."""
    table, boot = _table_and_boot(planted, spread, seed)
    table = table.assign(planted_r=table["heldout_r"], planted_trial_r=table["heldout_r"] / 2)
    table["heldout_r"] = 0.1
    reps = boot.rename(columns={"heldout_r": "planted_r"})
    reps = reps.assign(replicate=reps["replicate"] + 1, planted_trial_r=reps["planted_r"] / 2)
    return table, reps


def test_the_planted_estimate_shows_a_lead_over_nordic_only_beyond_its_bias_against_nordic():
    """The planted estimate reads the NORDIC variants low (docs/comparison.md): a lead of a
    NORDIC-off variant over a NORDIC one is shown only beyond its bias bound (0.11 in r), one
    between variants of the same NORDIC setting beyond 0.04, a lead of a NORDIC variant beyond
    the sampling noise alone."""
    assert bias_bound("raw-optcom", "nordic-denoised", planted=True) == 0.11
    assert bias_bound("nordic-denoised", "raw-optcom", planted=True) == 0.0
    assert bias_bound("raw-optcom", "raw-single", planted=True) == 0.04
    assert bias_bound("nordic-optcom", "nordic-denoised", planted=True) == 0.04
    # raw-optcom ahead of nordic-denoised by 0.089 (thermal, 12 runs: truly 0.017 behind),
    # beyond 2 standard errors but within the bound: not shown; raw-single, 0.08 behind and
    # with the same NORDIC setting: shown
    table, reps = _planted_table(
        {"raw-optcom": 0.467, "nordic-denoised": 0.378, "raw-single": 0.387}, spread=0.01
    )
    rec = cmp.recommend(table, "planted_r", planted=reps)
    by = {m["variant"]: m for m in rec["margins"]}
    assert rec["variant"] == "raw-optcom"
    nordic, single = by["nordic-denoised"], by["raw-single"]
    assert nordic["beyond_noise"] is True and nordic["shown"] is False
    assert nordic["bias_bound"] == 0.11 and nordic["within_bias"] is True
    assert single["shown"] is True and single["bias_bound"] == 0.04
    assert rec["indistinguishable"] == ["nordic-denoised"]
    assert "or within the estimate's bias bound" in rec["verdict"]
    # beyond the bound: shown, and the verdict says so
    table, reps = _planted_table(
        {"raw-optcom": 0.467, "nordic-denoised": 0.33, "raw-single": 0.387}, spread=0.01
    )
    rec = cmp.recommend(table, "planted_r", planted=reps)
    assert all(m["shown"] for m in rec["margins"]) and rec["indistinguishable"] == []
    assert "beyond the estimate's bias bound" in rec["verdict"]
    # a NORDIC variant ahead by 0.05, beyond the noise: shown and recommended, no bound
    table, reps = _planted_table({"raw-optcom": 0.40, "nordic-denoised": 0.45}, spread=0.01)
    rec = cmp.recommend(table, "planted_r", planted=reps)
    lead = rec["margin_over_runner_up"]
    assert rec["variant"] == "nordic-denoised" and lead["shown"] is True
    assert lead["bias_bound"] == 0.0 and "bias bound" not in rec["verdict"]


def test_a_session_without_image_responses_is_named_and_claims_none():
    """Events that do not belong to their runs (a fast design written over data of another
    one, end to end: planted_r -0.35 to +0.01, split-half r -0.006 to 0.025): no variant's
    fidelity lies beyond 2 of its own standard errors above 0, so the verdict says the data
    show no image responses, and no warning says that a variant's betas carry them. With the
    same noise and fidelities of 0.3 and more, neither."""
    values = {"raw-single": 0.0, "raw-optcom": 0.03, "nordic-optcom": -0.02}
    for metric in ("planted_r", "heldout_r"):
        if metric == "planted_r":
            table, reps = _planted_table(values, spread=0.01)
            rec = cmp.recommend(table.assign(median_nc=0.0), metric, planted=reps)
        else:
            table, boot = _table_and_boot(values, spread=0.01)
            rec = cmp.recommend(table.assign(median_nc=0.0), metric, boot)
        silent = [w for w in rec["warnings"] if w.startswith("No variant's fidelity is shown")]
        assert len(silent) == 1 and "the data show no image responses there" in silent[0]
        assert "glm.label_column" in silent[0] and "comparison.sessions" in silent[0]
        assert not any("carry the image responses" in w for w in rec["warnings"])
        assert all(not m["shown"] for m in rec["margins"])
    strong = {k: v + 0.3 for k, v in values.items()}
    table, reps = _planted_table(strong, spread=0.01)
    rec = cmp.recommend(table.assign(median_nc=0.0), "planted_r", planted=reps)
    assert not any(w.startswith("No variant's fidelity") for w in rec["warnings"])
    assert any("carry the image responses" in w for w in rec["warnings"])


def test_the_planted_standard_error_comes_from_the_bootstrap_draws_not_the_estimate():
    """The planted table's replicate 0 is the estimate itself (``stages/comparison/planted.py``),
    the bootstrap's draws are replicates 1 and on: a margin's standard error is the spread of
    the draws' paired differences alone (the held-out path's ``score_replicates`` keeps
    replicates >= 1 too)."""
    table, reps = _planted_table({"raw-optcom": 0.50, "nordic-optcom": 0.45}, spread=0.01)
    # the estimate as replicate 0, far from where the draws of its difference lie
    estimate = table[["subject", "session", "variant", "planted_r"]].assign(replicate=0)
    estimate["planted_r"] += np.where(estimate["variant"] == "raw-optcom", 0.2, 0.0)
    both = pd.concat([estimate.assign(planted_trial_r=0.0), reps], ignore_index=True)
    lead = cmp.recommend(table, "planted_r", planted=both)["margin_over_runner_up"]
    draws = reps.groupby(["variant", "replicate"])["planted_r"].mean()
    expected = np.std(
        draws.loc["raw-optcom"].to_numpy() - draws.loc["nordic-optcom"].to_numpy(), ddof=1
    )
    assert lead["standard_error"] == pytest.approx(expected, rel=1e-12)
    assert lead["difference"] == pytest.approx(0.05)


def test_with_responses_from_the_other_sessions_a_lead_over_nordic_needs_a_smaller_bound():
    """Planted from the subject's other comparison sessions (every ranked session's
    ``planted_source``), the estimate read a NORDIC-off variant's lead over a NORDIC variant
    at most 0.083 above its truth on ten two-session cases (docs/comparison.md, "The bias bound
    with two sessions"): such a lead is shown beyond 0.09 in r; a session planted from its own
    half A (or the column empty or missing) keeps 0.11 for the whole ranking."""
    assert bias_bound("raw-optcom", "nordic-single", True, "other_sessions") == 0.09
    assert bias_bound("raw-optcom", "nordic-single", True, "session") == 0.11
    assert bias_bound("raw-optcom", "nordic-single", True, None) == 0.11
    assert bias_bound("nordic-single", "raw-optcom", True, "other_sessions") == 0.0
    assert bias_bound("raw-optcom", "raw-single", True, "other_sessions") == 0.04
    assert bias_bound("raw-optcom", "nordic-single", False, "other_sessions") == 0.09
    # raw-optcom 0.100 ahead of nordic-optcom (modest seed 0, two sessions: truly 0.071)
    scores = {"raw-optcom": 0.499, "nordic-optcom": 0.399}
    table, reps = _planted_table(scores, spread=0.005)
    both = cmp.recommend(table.assign(planted_source="other_sessions"), "planted_r", planted=reps)
    lead = both["margin_over_runner_up"]
    assert lead["beyond_noise"] is True and lead["bias_bound"] == 0.09
    assert lead["shown"] is True and both["indistinguishable"] == []
    assert "beyond the estimate's bias bound" in both["verdict"]
    # one session planted from its own half A: the ranking keeps the bound of half A
    mixed = table.assign(planted_source="other_sessions")
    mixed.loc[mixed.index[0], "planted_source"] = "session"
    for t in (mixed, table.assign(planted_source=None), table):
        rec = cmp.recommend(t, "planted_r", planted=reps)
        lead = rec["margin_over_runner_up"]
        assert lead["bias_bound"] == 0.11 and lead["shown"] is False
        assert rec["indistinguishable"] == ["nordic-optcom"]


def test_a_planted_lead_between_nordic_variants_within_their_error_spread_is_not_shown():
    """With slice timing corrected the NORDIC variants' planted errors differed by 0.02
    (docs/comparison.md, "Leads between variants of the same NORDIC setting"): nordic-optcom
    read 0.015 ahead of nordic-denoised, beyond 2 standard errors, where it is truly 0.005
    behind. Such a lead is within the same-setting bound (0.04): not shown, and the two are
    named as indistinguishable with the first by ``planted_r`` as the default; a lead beyond
    the bound is shown."""
    scores = {"nordic-optcom": 0.569, "nordic-denoised": 0.554, "raw-optcom": 0.498}
    table, reps = _planted_table(scores, spread=0.002)
    rec = cmp.recommend(table, "planted_r", planted=reps)
    by = {m["variant"]: m for m in rec["margins"]}
    assert rec["variant"] == "nordic-optcom"
    denoised = by["nordic-denoised"]
    assert denoised["beyond_noise"] is True and denoised["within_bias"] is True
    assert denoised["shown"] is False and denoised["bias_bound"] == 0.04
    assert rec["indistinguishable"] == ["nordic-denoised"]
    # raw-optcom, 0.071 behind across NORDIC (a NORDIC variant ahead: no bound): shown
    assert by["raw-optcom"]["shown"] is True
    # the same pair 0.05 apart: beyond the bound, shown
    table, reps = _planted_table({**scores, "nordic-denoised": 0.519}, spread=0.002)
    rec = cmp.recommend(table, "planted_r", planted=reps)
    assert all(m["shown"] for m in rec["margins"]) and rec["indistinguishable"] == []


def test_nc_winner_within_noise_on_heldout_is_explained():
    table, boot = _table_and_boot({"raw-optcom": 0.100, "nordic-optcom": 0.101}, spread=0.01)
    table.loc[table.variant == "nordic-optcom", "median_nc"] = 15.0
    rec = cmp.recommend(table, "heldout_r", boot)
    assert rec["variant"] == "raw-optcom" and rec["nc_winner"] == "nordic-optcom"
    assert rec["agreement"] is False
    assert "do not show that its betas are more faithful" in rec["disagreement"]


def _sessions_and_boot(values: dict[tuple[str, str], dict[str, float]], spread: float, seed=0):
    """A table of several subject-sessions with the given held-out fidelities (NaN allowed)
    and bootstrap replicates whose paired differences have SD ~ ``spread`` per session."""
    r = np.random.default_rng(seed)
    rows, boots = [], []
    for (sub, ses), heldout in values.items():
        common = r.normal(0, 0.02, 50)
        for v, h in heldout.items():
            rows.append(
                {
                    "subject": sub,
                    "session": ses,
                    "variant": v,
                    "median_nc": 10.0,
                    "dprime": 1.0,
                    "gain": 0.0,
                    "heldout_r": h,
                    "heldout_truth": h / 0.5,
                    "reference_reliability": 0.5,
                    "splithalf_r": 0.1,
                    "edge_nc80": 0.0,
                    "voxels": 100,
                }
            )
            if np.isfinite(h):
                own = h + common + r.normal(0, spread / np.sqrt(2), 50)
                boots += [
                    {"subject": sub, "session": ses, "variant": v, "replicate": i, "heldout_r": x}
                    for i, x in enumerate(own)
                ]
    return pd.DataFrame(rows), pd.DataFrame(boots)


def _pair_se(boot, a, b):
    means = boot.groupby(["variant", "replicate"])["heldout_r"].mean()
    return float(np.std(means.loc[a].to_numpy() - means.loc[b].to_numpy(), ddof=1))


def test_words_of_a_demoted_nordic_winner_state_the_numbers_of_the_pair_they_name():
    from echoprep.report.recommendation import recommendation_lines

    table, boot = _sessions_and_boot(
        {("01", "01"): {"raw-single": 0.05, "raw-optcom": 0.100, "nordic-optcom": 0.101}},
        spread=0.01,
    )
    rec = cmp.recommend(table, "heldout_r", boot)
    assert rec["variant"] == "raw-optcom" and rec["ranked_first"] == "nordic-optcom"
    lines = recommendation_lines(rec, "for sub-01")
    # never "ranked first" for the variant that is not; the runner-up ranks higher: "behind"
    assert "raw-optcom (optcom), ranked first" not in lines[0]
    assert "nordic-optcom ranks first by heldout_r, but its lead is not shown" in lines[0]
    m = rec["margin_over_runner_up"]
    assert m["variant"] == "nordic-optcom" and m["difference"] == pytest.approx(-0.001)
    se = _pair_se(boot, "raw-optcom", "nordic-optcom")
    assert m["standard_error"] == pytest.approx(se)
    assert "behind the next variant nordic-optcom by 0.001 in held-out" in lines[0]
    assert f"(standard error {se:.3f}; about {0.001 / 0.5:.2f} in r with the truth" in lines[0]
    assert "not shown by the data" in lines[0]
    # the baseline margin: its own pair's standard error, and shown
    mb = rec["margin_over_baseline"]
    assert mb["standard_error"] == pytest.approx(_pair_se(boot, "raw-optcom", "raw-single"))
    assert mb["shown"] is True and "ahead of the baseline raw-single by 0.050" in lines[0]
    assert rec["verdict"].startswith("raw-optcom or nordic-optcom: the data cannot tell")
    assert rec["indistinguishable"] == ["nordic-optcom"]
    assert "The default is raw-optcom (optcom)" in rec["verdict"]
    assert f"Δ = 0.001 (standard error {se:.3f}" in rec["reason"]
    assert rec["power"]["resolution_truth"] == pytest.approx(rec["power"]["resolution"] / 0.5)


def test_a_tiny_held_out_difference_is_not_called_less_faithful():
    """NC favours NORDIC; on held-out data the NORDIC-off variant is ahead by 0.0002 with a
    standard error ten times that: the words say the data cannot tell them apart."""
    table, boot = _sessions_and_boot(
        {("01", "01"): {"raw-optcom": 0.1002, "nordic-optcom": 0.1000}}, spread=0.003
    )
    table.loc[table.variant == "nordic-optcom", "median_nc"] = 15.0
    rec = cmp.recommend(table, "heldout_r", boot)
    assert rec["variant"] == "raw-optcom" and rec["nc_winner"] == "nordic-optcom"
    assert "agree less" not in rec["disagreement"]
    assert "the data cannot tell their betas apart" in rec["disagreement"]
    assert "raw-optcom leads by Δ = 0.000" in rec["disagreement"]
    # a lead of many standard errors is called one
    table, boot = _sessions_and_boot(
        {("01", "01"): {"raw-optcom": 0.150, "nordic-optcom": 0.100}}, spread=0.003
    )
    table.loc[table.variant == "nordic-optcom", "median_nc"] = 15.0
    rec = cmp.recommend(table, "heldout_r", boot)
    assert "its betas agree less with independent held-out data" in rec["disagreement"]
    assert "raw-optcom leads by Δ = 0.050" in rec["disagreement"]
    assert rec["verdict"].startswith("raw-optcom (optcom): its held-out fidelity is ahead")


def test_below_the_baseline_is_judged_by_the_ranking_measure():
    from echoprep.report.recommendation import recommendation_lines

    table, boot = _sessions_and_boot(
        {
            ("01", "01"): {"raw-single": 0.10, "raw-optcom": 0.20},
            ("01", "02"): {"raw-single": 0.25, "raw-optcom": 0.20},
        },
        spread=0.01,
    )
    # a lower NC for the winner in session 01 does not make it "below the baseline"
    table.loc[(table.variant == "raw-optcom") & (table.session == "01"), "gain"] = -20.0
    rec = cmp.recommend(table, "heldout_r", boot)
    assert rec["variant"] == "raw-optcom"
    assert rec["winner_below_baseline"] == [
        {
            "subject": "01",
            "session": "02",
            "measure": "heldout_r",
            "difference": pytest.approx(-0.05),
        }
    ]
    lines = recommendation_lines(rec, "")
    assert "Below the baseline raw-single by held-out fidelity in: sub-01 ses-02." in lines


def test_a_session_without_held_out_fidelity_for_one_variant_keeps_the_ranking_paired():
    """nordic-optcom has no held-out fidelity in session 02, where every variant does well:
    averaging each variant over its own sessions would favour raw-optcom; compared on the same
    session (01), nordic-optcom is ahead by many standard errors."""
    table, boot = _sessions_and_boot(
        {
            ("01", "01"): {"raw-optcom": 0.10, "nordic-optcom": 0.20},
            ("01", "02"): {"raw-optcom": 0.40, "nordic-optcom": np.nan},
        },
        spread=0.005,
    )
    rec = cmp.recommend(table, "heldout_r", boot)
    assert rec["variant"] == "nordic-optcom"
    assert rec["paired_sessions"] == [["01", "01"]]
    first = rec["ranking"][0]
    assert first["heldout_r_mean"] == pytest.approx(0.20) and first["n"] == 1
    assert any(
        "sub-01 ses-02: left out of the ranking, because nordic-optcom has no heldout_r" in w
        for w in rec["warnings"]
    )


def test_the_group_standard_error_counts_subject_disagreement():
    """Four subjects disagree on the sign of NORDIC's lead (+0.03, -0.02, +0.04, -0.03): each
    session's bootstrap error is tiny, the spread over subjects is not, and the lead of 0.005
    is not shown."""
    leads = {"01": 0.03, "02": -0.02, "03": 0.04, "04": -0.03}
    table, boot = _sessions_and_boot(
        {(s, "01"): {"raw-optcom": 0.2, "nordic-optcom": 0.2 + d} for s, d in leads.items()},
        spread=0.001,
    )
    rec = cmp.recommend(table, "heldout_r", boot)
    assert rec["ranked_first"] == "nordic-optcom" and rec["variant"] == "raw-optcom"
    m = rec["margin_over_runner_up"]
    between = np.std(list(leads.values()), ddof=1) / 2
    assert m["standard_error"] == pytest.approx(between, rel=1e-6)
    assert m["standard_error"] > 10 * _pair_se(boot, "raw-optcom", "nordic-optcom")


def test_the_verdict_says_which_variant_is_best_for_which_use():
    """Repeat-averaged responses favour raw-optcom, single trials nordic-optcom (both shown):
    the JSON and the report lines name each for its use."""
    from echoprep.report.recommendation import recommendation_lines

    table, boot = _sessions_and_boot(
        {("01", "01"): {"raw-optcom": 0.30, "nordic-optcom": 0.25}}, spread=0.005
    )
    table["heldout_trial_r"] = table["variant"].map({"raw-optcom": 0.20, "nordic-optcom": 0.26})
    trial = _sessions_and_boot(
        {("01", "01"): {"raw-optcom": 0.20, "nordic-optcom": 0.26}}, spread=0.005, seed=1
    )[1]
    boot["heldout_trial_r"] = trial["heldout_r"].to_numpy()
    rec = cmp.recommend(table, "heldout_r", boot)
    assert rec["variant"] == "raw-optcom"
    single = rec["single_trials"]
    assert single["variant"] == "nordic-optcom"
    assert single["margin_over_runner_up"]["shown"] is True
    assert (
        "for analyses of single trials (decoding, trial-wise encoding) it is nordic-optcom"
        in (single["uses"])
    )
    lines = recommendation_lines(rec, "")
    assert any(line.startswith("For single trials") and "nordic-optcom" in line for line in lines)
    # the same variant for both uses: said in one line, no "uses" paragraph
    table["heldout_trial_r"] = table["variant"].map({"raw-optcom": 0.30, "nordic-optcom": 0.20})
    boot["heldout_trial_r"] = boot["heldout_r"]
    rec = cmp.recommend(table, "heldout_r", boot)
    assert rec["single_trials"]["variant"] == "raw-optcom" and "uses" not in rec["single_trials"]


def test_a_collapsed_noise_ceiling_with_positive_held_out_fidelity_is_explained():
    table, _ = _sessions_and_boot(
        {("01", "01"): {"raw-optcom": 0.18, "nordic-optcom": 0.12}}, spread=0.005
    )
    table.loc[table.variant == "nordic-optcom", ["median_nc", "gain"]] = [0.0, -100.0]
    warnings = cmp.implausibility_warnings(table, "raw-optcom")
    (text,) = [w for w in warnings if "nordic-optcom: median noise ceiling 0.0 %" in w]
    assert "held-out fidelity is 0.120" in text and "not by its NC or NC gain" in text
    # a variant without signal on held-out data gets no such explanation
    table.loc[table.variant == "nordic-optcom", "heldout_r"] = -0.01
    assert not any(
        "no better than different images" in w
        for w in cmp.implausibility_warnings(table, "raw-optcom")
    )


def _image_locked_session(seed: int = 0):
    """Truth ``mu`` (voxels x images) and single-trial betas of five variants on 6 runs (every
    image once per run): raw-optcom carries an image-locked error (a fixed per-image pattern
    added to every repeat of the image), raw-denoised the truth with the same trial noise and
    no such error (truly better), the others noisier."""
    from echoprep.kernels.fidelity import split_means

    r = np.random.default_rng(seed)
    n_vox, n_img, n_runs = 300, 60, 6
    mu = r.standard_normal((n_vox, n_img))
    locked = 0.8 * r.standard_normal((n_vox, n_img))
    runs = np.repeat(np.arange(1, n_runs + 1), n_img)
    labels = np.concatenate([r.permutation(n_img) for _ in range(n_runs)])

    def trials(signal, noise):
        return signal[:, labels] + noise * r.standard_normal((n_vox, labels.size))

    betas = {
        "raw-single": trials(mu, 2.5),
        "raw-optcom": trials(mu + locked, 1.5),
        "raw-denoised": trials(mu, 1.5),
        "nordic-single": trials(mu, 2.5),
        "nordic-optcom": trials(mu, 2.0),
    }
    splits = {v: split_means(b, labels, runs) for v, b in betas.items()}
    return mu, betas, labels, runs, splits


def test_a_variant_with_image_locked_errors_is_not_preferred_as_or_against_the_reference():
    """raw-optcom adds a fixed per-image pattern to every repeat: its repeats agree (its own
    halves count the pattern as signal) while its image means follow the truth less than
    raw-denoised's. Judged with raw-optcom as the one reference (the former design), it leads
    raw-denoised; judged against every other variant and never itself, raw-denoised ranks
    above it and no lead of raw-optcom over it is claimed."""
    from echoprep.kernels.fidelity import heldout_fidelity, truth_fidelity
    from echoprep.kernels.fidelity_pairs import heldout_pairs
    from echoprep.stages.comparison.fidelity import pair_rows, variant_fidelity

    mu, betas, labels, runs, splits = _image_locked_session()
    truth = {
        v: float(np.nanmedian(truth_fidelity(b, labels, runs, mu, np.arange(mu.shape[1]))))
        for v, b in betas.items()
    }
    assert truth["raw-denoised"] > truth["raw-optcom"] + 0.05  # measured 0.85 against 0.70
    # the former single reference: raw-optcom against its own halves leads by far
    old = {v: heldout_fidelity(s, splits["raw-optcom"]).median for v, s in splits.items()}
    assert old["raw-optcom"] > old["raw-denoised"] + 0.1
    # every variant against the others
    pairs = heldout_pairs(splits, n_boot=50, seed=3)
    rows = []
    for v in splits:
        fid = variant_fidelity(pairs, v, np.nan)
        rows.append(
            {
                "subject": "01",
                "session": "01",
                "variant": v,
                "median_nc": 10.0,
                "dprime": 1.0,
                "gain": 0.0,
                "heldout_r": fid.heldout_r,
                "heldout_truth": fid.heldout_truth,
                "heldout_trial_r": fid.trial_r,
                "heldout_trial_truth": fid.trial_truth,
                "reference_reliability": fid.reliability,
                "splithalf_r": 0.1,
                "edge_nc80": 0.0,
                "voxels": 300,
            }
        )
    table = pd.DataFrame(rows)
    boot = pd.DataFrame(pair_rows(pairs, "01", "01"))
    rec = cmp.recommend(table, "heldout_r", boot)
    ranked = [r["variant"] for r in rec["ranking"]]
    assert ranked.index("raw-denoised") < ranked.index("raw-optcom")
    assert rec["variant"] == "raw-denoised"
    # the truth-scale estimates order the two as the truth does
    est = table.set_index("variant")["heldout_truth"]
    assert est["raw-denoised"] > est["raw-optcom"]
    # the margin over raw-optcom names its references (neither of the two) and, where
    # shown, is shown under each of them in the true direction
    m = rec["margin_over_runner_up"]
    pair = {rec["variant"], m["variant"]}
    assert all(x["reference"] not in pair for x in m["by_reference"])
    assert len(m["by_reference"]) == 3
    if m["shown"]:
        assert all(x["holds"] for x in m["by_reference"])


def test_a_lead_reversed_under_one_reference_is_not_shown():
    """Two variants, three references: under two references a leads by many standard errors,
    under the third b leads. The lead is not shown, the JSON names the reversing reference and
    the words say so."""
    r = np.random.default_rng(0)
    refs = ["raw-single", "nordic-single", "nordic-optcom"]
    lead = {"raw-single": 0.05, "nordic-single": 0.05, "nordic-optcom": -0.02}
    base = {"raw-optcom": 0.30, "raw-denoised": 0.30}
    rows, boots = [], []
    variants = [*base, *refs]
    est: dict[tuple[str, str], float] = {}
    for v in variants:
        for w in variants:
            if (w, v) in est:
                est[(v, w)] = est[(w, v)]
            elif v == w:
                est[(v, w)] = 0.5
            elif v in base and w in refs:
                est[(v, w)] = base[v] + (lead[w] if v == "raw-optcom" else 0.0)
            else:
                est[(v, w)] = 0.2
    common = r.normal(0, 0.01, 60)
    for (v, w), x in est.items():
        boots.append(
            {
                "subject": "01",
                "session": "01",
                "variant": v,
                "reference": w,
                "replicate": 0,
                "heldout_r": x,
                "heldout_trial_r": x,
            }
        )
        noise = common + r.normal(0, 0.002, 60)
        boots += [
            {
                "subject": "01",
                "session": "01",
                "variant": v,
                "reference": w,
                "replicate": i + 1,
                "heldout_r": x + e,
                "heldout_trial_r": x + e,
            }
            for i, e in enumerate(noise)
        ]
    boot = pd.DataFrame(boots)
    for v in variants:
        mine = [est[(v, w)] for w in variants if w != v]
        rows.append(
            {
                "subject": "01",
                "session": "01",
                "variant": v,
                "median_nc": 10.0,
                "dprime": 1.0,
                "gain": 0.0,
                "heldout_r": float(np.mean(mine)),
                "heldout_truth": np.nan,
                "heldout_trial_r": float(np.mean(mine)),
                "reference_reliability": 0.7,
                "splithalf_r": 0.1,
                "edge_nc80": 0.0,
                "voxels": 100,
            }
        )
    rec = cmp.recommend(pd.DataFrame(rows), "heldout_r", boot)
    assert rec["ranked_first"] == "raw-optcom" and rec["variant"] == "raw-optcom"
    m = rec["margin_over_runner_up"]
    assert m["variant"] == "raw-denoised"
    holds = {x["reference"]: x["holds"] for x in m["by_reference"]}
    assert holds == {"raw-single": True, "nordic-single": True, "nordic-optcom": False}
    assert m["reversed_by"] == ["nordic-optcom"] and m["shown"] is False
    assert "raw-denoised" in rec["indistinguishable"]
    assert "under some reference" in rec["verdict"]
    # the report's lines name the reversing reference and the stated default rule
    from echoprep.report.recommendation import recommendation_lines

    lines = recommendation_lines(rec, "")
    assert "reversed with nordic-optcom as the reference; not shown by the data" in lines[0]
    assert f"the default is {cmp.DEFAULT_RULE}." in "\n".join(lines)


def test_by_the_planted_estimate_a_nordic_variant_ranked_first_is_the_default_within_the_noise():
    """The planted estimate reads NORDIC low on average on simulated truth, so a NORDIC variant
    it ranks first is not held back for the best NORDIC-off variant (``lowdim``, 6 runs:
    nordic-optcom 0.041 ahead of raw-optcom, within 2 standard errors, truly 0.039 better); by
    the held-out fidelity, which can read NORDIC high, the same margins give the NORDIC-off
    variant. The words do not claim the estimate never reads NORDIC high: it did, by up to 0.03
    in r, in some simulated datasets."""
    values = {"raw-optcom": 0.5595, "nordic-optcom": 0.6003, "raw-single": 0.4797}
    table, reps = _planted_table(values, spread=0.03)
    rec = cmp.recommend(table, "planted_r", planted=reps)
    lead = rec["margin_over_runner_up"]
    assert rec["ranked_first"] == rec["variant"] == "nordic-optcom"
    assert lead["variant"] == "raw-optcom" and lead["beyond_noise"] is False
    assert rec["indistinguishable"] == ["raw-optcom"]
    assert "reads the NORDIC variants low on average" in rec["reason"]
    assert "up to 0.03 in r high in some datasets" in rec["reason"]
    assert rec["reason"].endswith("so it is the default over raw-optcom")
    assert "NORDIC or not" in rec["default_rule"]
    assert "up to 0.03 in r high in some datasets" in rec["default_rule"]
    assert "never high" not in rec["default_rule"]
    assert PLANTED_NORDIC_READING in rec["reason"]
    assert "docs/comparison.md, 'The default and NORDIC'" in rec["default_rule"]
    assert vd.verdict_sentence(rec) == (
        "Use nordic-optcom (NORDIC + optcom): its betas follow the responses planted into your "
        "data best, but the data cannot tell it apart from raw-optcom, so it is the default as "
        "the first-ranked of them."
    )
    held, boot = _table_and_boot(values, spread=0.03)
    rec = cmp.recommend(held, "heldout_r", boot)
    assert rec["ranked_first"] == "nordic-optcom" and rec["variant"] == "raw-optcom"
