"""Subject report: figures, self-contained HTML, rendering in headless Chromium."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from echoprep.io.outputs import group_key, paths_in
from echoprep.report import figures
from echoprep.report.html import Section, cell, data_uri, render
from echoprep.stages import comparison as cmp
from echoprep.stages import diagnostics as diagnostics_stage
from echoprep.stages.report import build_report
from helpers.chromium import chromium as _chromium
from helpers.chromium import chromium_args as _chromium_args
from helpers.chromium import dump_dom, first_screen_boxes, screenshot
from helpers.recommendations import pairwise_recommendation

_DATA_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), path)
    return path


def _inputs(tmp_path: Path) -> dict:
    """Every input of a full report, small and synthetic (4 mm functional grid, 2 mm T1w)."""
    rng = np.random.default_rng(0)
    shape = (12, 14, 10)
    aff = np.diag([4.0, 4, 4, 1])
    yy, xx, zz = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    brain = (xx**2 + yy**2 + zz**2) < 0.8
    base = np.where(brain, 1000.0, 50.0)
    raw = base[..., None] + 40 * rng.standard_normal((*shape, 30))
    nordic = base[..., None] + 15 * rng.standard_normal((*shape, 30))
    t1_aff = np.diag([2.0, 2, 2, 1])
    t1 = np.kron(np.where(brain, 1.0, 0.2), np.ones((2, 2, 2))) * 500
    nc = np.where(brain, 30 * (xx + 1), 0)
    conf = []
    for r in (1, 2):
        n = 30
        t = pd.DataFrame(
            {
                **{c: 0.1 * np.cumsum(rng.standard_normal(n)) for c in ("trans_x", "trans_y")},
                "trans_z": np.zeros(n),
                **{c: 0.001 * rng.standard_normal(n) for c in ("rot_x", "rot_y", "rot_z")},
            }
        )
        t["framewise_displacement"] = np.r_[np.nan, np.abs(np.diff(t["trans_x"]))]
        p = tmp_path / f"run-{r}_desc-confounds_timeseries.tsv"
        t.to_csv(p, sep="\t", index=False, na_rep="n/a")
        conf.append(p)
    # comparison outputs from the comparison stage itself
    roi = (np.where(brain, xx, -1) > 0.3).astype(np.uint8)
    entries = []
    for v, f in (("raw-single", 1.0), ("nordic-optcom", 1.8)):
        for s in ("01", "02"):
            p = _save(tmp_path / f"nc_{s}_{v}.nii.gz", nc * f, aff)
            r = _save(tmp_path / f"roi_{s}.nii.gz", roi, aff)
            b = _save(tmp_path / f"brain_{s}.nii.gz", brain.astype(np.uint8), aff)
            entries.append(cmp.Entry(s, "01", v, p, r, b))
    own = {}
    for s in ("01", "02"):
        own[s] = {k: tmp_path / "comparison" / f"sub-{s}_{k}.tsv" for k in ("tsv", "bootstrap")}
        cmp.run_subject_comparison(
            [e for e in entries if e.subject == s], own[s], options={"bootstrap": 20}
        )
    cmp.run_comparison(
        [own[s]["tsv"] for s in own],
        paths_in(
            tmp_path / "comparison", "comparison", group_key("images"), keys=cmp.GROUP_OUTPUTS
        ),
        bootstraps=[own[s]["bootstrap"] for s in own],
    )
    diagnostics = tmp_path / "sub-01_task-images_desc-nordic_diagnostics.tsv"
    pd.DataFrame(
        [
            {
                **{c: float("nan") for c in diagnostics_stage.COLUMNS},
                "subject": "01",
                "session": "01",
                "combine": "single",
                "n_runs": 2,
                "tsnr_raw": 20.0,
                "tsnr_nordic": 38.0,
                "tsnr_gain": 1.9,
                "roi_voxels": 120,
                "amplitude_raw": 1.0,
                "amplitude_nordic": 0.82,
                "amplitude_ratio": 0.82,
                "fwhm_raw": 4.1,
                "fwhm_nordic": 5.3,
                "fwhm_ratio": 5.3 / 4.1,
                "removed_nn_x": 0.02,
                "removed_nn_y": 0.31,
                "removed_nn_z": 0.01,
            }
        ]
    ).to_csv(diagnostics, sep="\t", index=False, na_rep="n/a")
    roi_table = tmp_path / "rois.tsv"
    pd.DataFrame(
        {
            "category": ["visual"],
            "roi": ["visuallyResponsive"],
            "voxels": [120],
            "nc_median": [22.5],
            "nc_mean": [21.0],
            "r2_median": [float("nan")],
        }
    ).to_csv(roi_table, sep="\t", index=False, na_rep="n/a")
    return {
        "bold_raw": _save(tmp_path / "raw_bold.nii.gz", raw, aff),
        "bold_nordic": _save(tmp_path / "nordic_bold.nii.gz", nordic, aff),
        "t2star": _save(tmp_path / "t2star.nii.gz", np.where(brain, 0.028, 0), aff),
        "confounds": conf,
        "underlay": _save(tmp_path / "t1w.nii.gz", t1, t1_aff),
        "r2": _save(tmp_path / "r2.nii.gz", np.where(brain, 10 * (yy + 1), 0), aff),
        "r2_variant": "nordic-optcom",
        "nc_maps": {
            "raw-single": tmp_path / "nc_01_raw-single.nii.gz",
            "nordic-optcom": tmp_path / "nc_01_nordic-optcom.nii.gz",
        },
        "roi_tables": {"raw-single": roi_table, "nordic-optcom": roi_table},
        "roi": tmp_path / "roi_01.nii.gz",
        "brain": tmp_path / "brain_01.nii.gz",
        "comparison_table": own["01"]["tsv"],
        "comparison_bootstrap": own["01"]["bootstrap"],
        "diagnostics": diagnostics,
        "config": {"nordic": {"enabled": True}, "seed": 0},
        "session": "01",
    }


def _decoded_images(text: str) -> list[Image.Image]:
    images = []
    for b64 in _DATA_URI.findall(text):
        im = Image.open(io.BytesIO(base64.b64decode(b64)))
        im.load()
        images.append(im)
    return images


def test_tsnr_known_ratio(tmp_path):
    rng = np.random.default_rng(3)
    aff = np.eye(4)
    a = _save(tmp_path / "a.nii.gz", 100 + 10 * rng.standard_normal((6, 6, 6, 200)), aff)
    b = _save(tmp_path / "b.nii.gz", 100 + 5 * rng.standard_normal((6, 6, 6, 200)), aff)
    png, stats = figures.tsnr_figure(a, b)
    assert stats["median_before"] == pytest.approx(10, rel=0.1)
    assert stats["ratio"] == pytest.approx(2.0, rel=0.1)
    assert Image.open(io.BytesIO(png)).format == "PNG"


def test_motion_stats(tmp_path):
    t = pd.DataFrame({"trans_x": [0, 0.1, 0.3], "framewise_displacement": [np.nan, 0.1, 0.2]})
    p = tmp_path / "c.tsv"
    t.to_csv(p, sep="\t", index=False, na_rep="n/a")
    png, stats = figures.motion_figure([p])
    assert stats == pytest.approx({"max_fd": 0.2, "mean_fd": 0.15})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_render_escapes_and_embeds():
    png = figures.mosaic({"x": np.arange(64, dtype=float).reshape(4, 4, 4)})
    text = render(
        "t <b>",
        [Section("A & B", figures=[("cap", png)], tables=[("tab", ["a", "b"], [[1.234, None]])])],
    )
    assert "t &lt;b&gt;" in text and "A &amp; B" in text
    assert data_uri(png)[:30] in text
    assert "<td>1.23</td><td>n/a</td>" in text
    assert cell(float("nan")) == "n/a"


def _sdc_run(tmp_path: Path) -> list[Path]:
    """A run's raw echo, boldref and geometry with a static shift map (distortion section)."""
    shape, aff = (12, 14, 10), np.diag([4.0, 4, 4, 1])
    yy, xx, zz = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    brain = (xx**2 + yy**2 + zz**2) < 0.8
    base = np.where(brain, 1000.0, 50.0)
    geometry = tmp_path / "run-1_desc-geometry_xfm.npz"
    np.savez(
        geometry,
        vsm=np.where(brain, 0.5 * yy, 0).astype(np.float32),
        pe_axis=np.int64(1),
        vsm_maps=np.zeros(0, np.float32),
        vsm_courses=np.zeros(0, np.float32),
    )
    geometry.with_suffix(".json").write_text(
        json.dumps({"FieldmapCorrection": {"Method": "static fieldmap"}})
    )
    echo = _save(tmp_path / "run-1_echo-2_bold.nii.gz", np.repeat(base[..., None], 4, 3), aff)
    return [echo, _save(tmp_path / "run-1_boldref.nii.gz", base, aff), geometry]


def test_full_report_is_self_contained(tmp_path):
    out = build_report(
        "01", tmp_path / "reports/sub-01.html", **_inputs(tmp_path), sdc_run=_sdc_run(tmp_path)
    )
    text = out.read_text()
    images = _decoded_images(text)
    # tSNR, T2*, motion, distortion, R², NC, comparison
    assert len(images) == 7 == text.count("<img ")
    assert all(im.width > 100 and im.height > 100 for im in images)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)
    assert "<script" not in text and "<link" not in text
    # NC maps only (no betas): NC alone does not make NORDIC the recommendation
    assert "Recommended variant for sub-01 (its comparison sessions): raw-single" in text
    assert "method static fieldmap, largest shift 0.41 voxels (docs/distortion.md)" in text
    assert "the best variant without NORDIC, raw-single" in html.unescape(text)
    assert "visuallyResponsive" in text
    assert "Not available" not in text
    # the NORDIC diagnostics: the table and its plain-words reading
    assert "NORDIC on vs off" in text and "<td>0.82</td>" in text
    plain = html.unescape(text)
    assert "NORDIC kept 82 % of the evoked amplitude in the visual ROI" in plain
    assert "FWHM of 4.10 mm without and 5.30 mm with NORDIC" in plain
    assert "spatially correlated (neighbour correlation up to 0.31 along y)" in plain
    # a NORDIC variant ranked first on repeat agreement alone is flagged
    assert '<div class="warning" role="alert">' in text
    assert "not evidence of better betas" in plain
    assert '"seed": 0' in html.unescape(text)  # the configuration


def test_group_comparison_outputs_are_shown_when_given(tmp_path):
    inputs = _inputs(tmp_path)
    group = paths_in(
        tmp_path / "comparison", "comparison", group_key("images"), keys=cmp.GROUP_OUTPUTS
    )
    del inputs["comparison_table"], inputs["comparison_bootstrap"]
    out = build_report(
        "02",
        tmp_path / "sub-02.html",
        **inputs,
        comparison_png=group["png"],
        comparison_tsv=group["tsv"],
        recommendation=group["json"],
    )
    text = html.unescape(out.read_text())
    assert len(_decoded_images(out.read_text())) == 6
    assert "Recommended variant over all subjects: raw-single" in text
    assert "Ranking over all subjects (means over subjects)" in text


def test_report_without_inputs_says_why(tmp_path):
    out = build_report("02", tmp_path / "sub-02.html")
    text = out.read_text()
    assert text.count("Not available") == 8
    assert "NORDIC is off" in text and "spatial preprocessing" in text
    assert "no run geometry" in text
    assert "<img" not in text


def test_report_cli(tmp_path):
    from echoprep.cli import build_parser

    inp = _inputs(tmp_path)
    argv = [
        "report",
        "--subject",
        "01",
        "--out",
        f"html={tmp_path / 'r.html'}",
        "--t2star",
        str(inp["t2star"]),
        "--nc",
        *(f"{k}={v}" for k, v in inp["nc_maps"].items()),
        "--config-json",
        json.dumps(inp["config"]),
    ]
    args = build_parser("report").parse_args(argv)
    assert args.func(args) == 0
    assert len(_decoded_images((tmp_path / "r.html").read_text())) == 2


# --------------------------------------------------------------------------------------------
# headless Chromium


_PROBE = """<script>
window.addEventListener("load", function () {
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = Array.prototype.map.call(document.images, function (im) {
    return im.complete + ":" + im.naturalWidth + "x" + im.naturalHeight;
  }).join(" ");
  var details = document.querySelector("details");
  out.setAttribute("data-details", details ? details.open + ":" +
    details.querySelector("pre").checkVisibility() : "none");
  document.body.appendChild(out);
});
</script>
"""


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path, tmp_path_factory):
    binary = _chromium(tmp_path_factory)
    out = build_report("01", tmp_path / "reports/sub-01.html", **_inputs(tmp_path))
    profile = tmp_path / "chromium-profile"
    shot = tmp_path / "shot.png"
    # screenshot of the report as written (offline: file:// URL, networking features disabled)
    screenshot(binary, profile, out, shot, 1200, 3000)
    print(f"report screenshot: {shot}")
    im = Image.open(shot).convert("L")
    assert im.size == (1200, 3000)
    hist = im.histogram()
    assert sum(hist[:200]) > 0.05 * im.size[0] * im.size[1], "the screenshot is nearly blank"
    # the DOM after load: every <img> decoded by the browser (naturalWidth > 0) ...
    probe = out.with_name("probe.html")
    probe.write_text(out.read_text().replace("</body>", _PROBE + "</body>"))
    res = dump_dom(binary, profile, probe)
    dom = res.stdout
    m = re.search(r'<pre id="probe"[^>]*>([^<]*)</pre>', dom)
    assert m, f"probe missing from the DOM: {res.stderr[-2000:]}"
    states = m.group(1).split()
    # the configuration is folded: its <details> is closed and its <pre> is not shown
    assert re.search(r'<pre id="probe" data-details="false:false"', dom), dom[-500:]
    assert len(states) == 6
    for s in states:
        complete, size = s.split(":")
        w, h = (int(v) for v in size.split("x"))
        assert complete == "true" and w > 0 and h > 0, states
    # ... and the data URIs in the DOM decode with PIL to the same sizes
    decoded = _decoded_images(dom)
    assert [f"{i.width}x{i.height}" for i in decoded] == [s.split(":")[1] for s in states]
    # the maps as the browser got them: ROI outlined on each, 0 and maximum in their colours
    maps = [decoded[i] for i in (0, 1, 3, 4)]
    assert all(_red_outline_pixels(im) > 20 for im in maps)
    nc = decoded[4]
    assert _colour_count(nc, _viridis(1.0)) > 50 and _colour_count(nc, _viridis(0.0), 30) > 50
    # the first screen at 1366 x 768: the verdict figure, then its sentence, seen without
    # scrolling, in this report (two variants ranked by NC) and with six variants ranked by
    # held-out fidelity (the tallest figure); headless Chromium's window leaves a smaller
    # viewport (625 px with Chromium 156, like a browser's bars), which the boxes must fit too
    rec = tmp_path / "recommended_variant.json"
    rec.write_text(json.dumps(pairwise_recommendation()))
    six = build_report("01", tmp_path / "reports/sub-01-six.html", recommendation=rec)
    for page in (out, six):
        boxes = first_screen_boxes(binary, profile, page, 1366, 768)
        width, height = boxes["viewport"]
        figure, sentence = boxes["verdict-figure"], boxes["verdict-sentence"]
        assert width == 1366 and figure and sentence, boxes
        assert 0 <= figure[1] and figure[3] <= sentence[1], boxes  # the figure, then the sentence
        assert sentence[3] <= min(height, 768) and max(figure[2], sentence[2]) <= width, boxes
        assert figure[2] - figure[0] >= 600 and figure[3] - figure[1] >= 150, boxes  # readable
        print(f"{page.name} at 1366x768: {boxes}")
    shot = tmp_path / "first-screen.png"
    args = [f"--screenshot={shot}", "--window-size=1366,768", six.resolve().as_uri()]
    subprocess.run([*_chromium_args(binary, profile), *args], capture_output=True, timeout=180)
    print(f"first screen: {shot}")


def test_report_folder_describes_itself(tmp_path):
    """``echoprep describe report``: GeneratedBy, the config and the raw dataset, like the
    other derivative folders; the HTML pages are BIDS-ignored."""
    from echoprep import CODE_URL, __version__
    from echoprep.cli import main

    out = tmp_path / "reports" / "dataset_description.json"
    config = {"seed": 0, "report": {"enabled": True}}
    args = ["describe", str(out), "--stage", "report", "--source", "/data/bids"]
    assert main([*args, "--config-json", json.dumps(config)]) == 0
    desc = json.loads(out.read_text())
    assert desc["DatasetType"] == "derivative" and desc["BIDSVersion"]
    generated = desc["GeneratedBy"][0]
    assert (generated["Name"], generated["Version"], generated["CodeURL"]) == (
        "echoprep",
        __version__,
        CODE_URL,
    )
    assert desc["echoprepConfig"] == config
    assert desc["SourceDatasets"] == [{"URL": "bids:raw:"}]
    assert desc["DatasetLinks"]["raw"] == os.path.relpath("/data/bids", out.parent.resolve())
    assert "*.html" in (out.parent / ".bidsignore").read_text().split()


# --------------------------------------------------------------------------------------------
# the comparison's recommendation, its warnings, implausible maps


def _recommendation(tmp_path: Path, **more) -> Path:
    rec = {
        "variant": "raw-optcom",
        "name": "optcom",
        "rank_by": "heldout_r",
        "measures": {
            "heldout_r": {"label": "held-out fidelity (r)", "description": "tracks the truth"},
            "median_nc": {"label": "median NC (%)", "description": "repeat agreement"},
        },
        "nc_winner": "nordic-optcom",
        "agreement": False,
        "disagreement": "NC prefers nordic-optcom (+31 %), but its betas agree less with "
        "independent data (held-out r 0.21 against 0.27).",
        "warnings": ["nordic-optcom: NC gain over +100 % for sub-01."],
        "margin_over_baseline": {"variant": "raw-single", "difference": 0.04},
        "ranking": [
            {
                "variant": "raw-optcom",
                "median_nc_mean": 20.0,
                "dprime_mean": 1.1,
                "heldout_r_mean": 0.27,
                "heldout_r_sem": 0.01,
                "gain_mean": 10.0,
                "below_baseline": 0,
            },
            {
                "variant": "nordic-optcom",
                "median_nc_mean": 26.2,
                "dprime_mean": 1.3,
                "heldout_r_mean": 0.21,
                "heldout_r_sem": 0.01,
                "gain_mean": 44.0,
                "below_baseline": 0,
            },
        ],
        **more,
    }
    path = tmp_path / "recommended_variant.json"
    path.write_text(json.dumps(rec))
    return path


def test_disagreement_and_warnings_are_shown_in_a_warning_box(tmp_path):
    out = build_report("01", tmp_path / "r.html", recommendation=_recommendation(tmp_path))
    text = html.unescape(out.read_text())
    box = text.split('<div class="warning" role="alert">', 1)[1].split("</div>", 1)[0]
    assert "NC prefers nordic-optcom (+31 %)" in box
    assert "NC gain over +100 % for sub-01." in box
    assert "ranked first by heldout_r (held-out fidelity (r))" in text
    assert "The highest median noise ceiling: nordic-optcom (another variant" in text
    # NC and d′ as LAION reported them, the validated measure next to them
    assert (
        "<th>median NC (%)</th><th>d′</th><th>held-out fidelity (r)</th><th>NC gain (%)</th>"
        in text
    )
    assert "<td>0.27 ± 0.01</td>" in text and "<td>recommended</td>" in text
    assert "<td>highest NC</td>" in text
    assert "held-out fidelity (r): tracks the truth" in text
    # the NORDIC note belongs to repeat-agreement rankings only
    assert "not evidence of better betas" not in text


def test_agreement_shows_no_warning_box(tmp_path):
    rec = _recommendation(
        tmp_path, agreement=True, disagreement=None, warnings=[], nc_winner="raw-optcom"
    )
    text = build_report("01", tmp_path / "r.html", recommendation=rec).read_text()
    assert 'class="warning"' not in text
    assert "The highest median noise ceiling: raw-optcom (the same variant)." in text


def test_a_ring_of_high_noise_ceiling_at_the_brain_edge_is_flagged(tmp_path):
    shape = (20, 20, 16)
    zz, yy, xx = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij")
    brain = (xx**2 + yy**2 + (1.2 * zz) ** 2) < 7.5**2
    nc = np.where(brain, 15.0, 0.0)
    ring = brain & ~ndimage.binary_erosion(brain)
    good = _save(tmp_path / "good.nii.gz", nc, np.eye(4))
    nc[ring] = 89.5
    bad = _save(tmp_path / "bad.nii.gz", nc, np.eye(4))
    out = build_report(
        "01", tmp_path / "r.html", nc_maps={"raw-single": good, "nordic-denoised": bad}
    )
    text = html.unescape(out.read_text())
    assert f"nordic-denoised: {ring.sum()} of the {ring.sum()} voxels at the brain edge" in text
    assert "raw-single:" not in text
    assert text.count('<div class="warning" role="alert">') == 2  # top of page and section
    # a brain mask on the maps' grid is used (its outside counts as edge); on another grid it
    # is left out with a warning, and the check still runs
    inner = _save(tmp_path / "inner.nii.gz", ndimage.binary_erosion(brain, iterations=2), np.eye(4))
    out = build_report("01", tmp_path / "r2.html", nc_maps={"raw-single": good}, brain=inner)
    assert "raw-single:" not in html.unescape(out.read_text())
    other = _save(tmp_path / "other.nii.gz", brain, np.diag([2.0, 2, 2, 1]))
    out = build_report("01", tmp_path / "r3.html", nc_maps={"nordic-denoised": bad}, brain=other)
    assert "nordic-denoised: " in html.unescape(out.read_text())


def test_diagnostics_absent_says_why(tmp_path):
    text = build_report(
        "01", tmp_path / "r.html", config={"nordic": {"enabled": False}}
    ).read_text()
    assert "NORDIC diagnostics" in text
    assert "Not available: NORDIC is off (nordic.enabled: false)." in text


# --------------------------------------------------------------------------------------------
# a report read at a glance: colour map, ROI outline, same slices, units, software, config


_SLICES = re.compile(r"Axial slices at z = ([-\d, ]+) mm")


def _colour_count(im: Image.Image, rgb, tol: int = 14) -> int:
    a = np.asarray(im.convert("RGB"), int)
    return int((np.abs(a - np.asarray(rgb)).max(axis=-1) <= tol).sum())


def _red_outline_pixels(im: Image.Image) -> int:
    a = np.asarray(im.convert("RGB"), int)
    return int(((a[..., 0] > 220) & (a[..., 1] < 80) & (a[..., 2] < 80)).sum())


def _viridis(x: float) -> tuple[int, int, int]:
    import matplotlib.pyplot as plt

    return tuple(round(255 * c) for c in plt.get_cmap(figures.MAP_CMAP)(x)[:3])


def test_zero_and_maximum_map_to_clearly_different_opaque_colours_inside_the_brain():
    values = np.array([[0.0, 50.0, 0.0, 50.0, np.nan]])
    inside = np.array([[True, True, False, False, True]])
    rgba = figures.map_rgba(values, inside, vmin=0.0, vmax=50.0)
    zero, top = rgba[0, 0], rgba[0, 1]
    assert zero[3] == top[3] == 1.0  # 0 inside the brain is drawn, as opaque as the maximum
    assert np.linalg.norm(zero[:3] - top[:3]) > 0.8  # far apart in RGB (unit cube)
    # and 0 is not a grey that the anatomy could take (hue, not only lightness)
    assert np.ptp(zero[:3]) > 0.2 and np.ptp(top[:3]) > 0.2
    assert rgba[0, 2, 3] == rgba[0, 3, 3] == 0.0  # outside the brain: transparent
    assert rgba[0, 4, 3] == 0.0  # no data


def test_noise_ceiling_of_zero_inside_the_brain_is_drawn_and_differs_from_the_maximum(tmp_path):
    shape = (16, 16, 10)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape[::-1]], indexing="ij")
    xx, yy, zz = (a.transpose(2, 1, 0) for a in (xx, yy, zz))
    brain = (xx**2 + yy**2 + zz**2) < 0.9
    nc = np.where(brain & (xx > 0), 40.0, 0.0)  # half the brain at 0 %, half at 40 %
    aff = np.diag([3.0, 3, 3, 1])
    out = build_report(
        "01",
        tmp_path / "r.html",
        nc_maps={"raw-single": _save(tmp_path / "nc.nii.gz", nc, aff)},
        brain=_save(tmp_path / "brain.nii.gz", brain, aff),
        underlay=_save(tmp_path / "t1.nii.gz", np.where(brain, 600.0, 150.0), aff),
    )
    (png,) = _decoded_images(out.read_text())
    zero_px, top_px = _colour_count(png, _viridis(0.0)), _colour_count(png, _viridis(1.0))
    # both halves are drawn, in their own colours, with comparable areas
    assert zero_px > 500 and top_px > 500
    assert 0.3 < zero_px / top_px < 3


def test_choose_slices_spans_the_brain_and_includes_the_roi():
    extent = np.zeros((4, 4, 40), bool)
    extent[..., 10:30] = True
    roi = np.zeros_like(extent)
    roi[1, 1, 12] = True
    zs = figures.choose_slices(40, 6, extent, roi)
    assert len(zs) == 6 and 12 in zs
    assert all(10 <= z < 30 for z in zs)
    assert figures.choose_slices(40, 6, extent) != zs  # the ROI changed the choice


def test_every_map_shows_the_same_slices_with_the_roi_outlined(tmp_path):
    inputs = _inputs(tmp_path)
    out = build_report("01", tmp_path / "r.html", **inputs)
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html.unescape(out.read_text()))
    slices = [m for c in captions for m in _SLICES.findall(c)]
    assert len(slices) == 4  # tSNR, T2*, R², noise ceiling
    assert len(set(slices)) == 1, slices
    assert sum("red outline: the visually responsive ROI" in c for c in captions) == 4
    images = _decoded_images(out.read_text())
    maps = [images[i] for i in (0, 1, 3, 4)]
    assert all(_red_outline_pixels(im) > 20 for im in maps)
    assert _red_outline_pixels(images[2]) == 0  # the motion trace has no outline
    # the slices are the display's: one per column, in world mm
    roi = nib.load(inputs["roi"])
    display = figures.display_grid(inputs["nc_maps"]["raw-single"], inputs["underlay"], roi=roi)
    assert ", ".join(f"{v:.0f}" for v in display.slice_mm()) == slices[0].strip()


def test_the_roi_and_fitted_mask_come_from_the_sidecars_when_not_given(tmp_path):
    inputs = _inputs(tmp_path)
    roi = tmp_path / "rois/sub-01/visual/sub-01_space-T1w_label-visuallyResponsive_mask.nii.gz"
    roi.parent.mkdir(parents=True)
    shutil.copy(inputs["roi"], roi)
    table = inputs["roi_tables"]["raw-single"]
    table.with_suffix(".json").write_text(
        json.dumps({"Sources": [str(inputs["nc_maps"]["raw-single"]), str(roi)]})
    )
    del inputs["roi"]
    out = build_report("01", tmp_path / "r.html", **inputs)
    images = _decoded_images(out.read_text())
    assert all(_red_outline_pixels(images[i]) > 20 for i in (0, 1, 3, 4))
    # without the ROI anywhere: no outline, no claim of one
    table.with_suffix(".json").unlink()
    out = build_report("01", tmp_path / "r2.html", **inputs)
    assert "red outline" not in out.read_text()
    assert all(_red_outline_pixels(im) == 0 for im in _decoded_images(out.read_text()))


def test_units_in_the_summary_tables_and_captions(tmp_path):
    from echoprep.report.comparison import plot_comparison
    from echoprep.report.labels import DOTS

    rec = _recommendation(
        tmp_path,
        variant="raw-optcom",
        rank_by="median_nc",
        margin_over_baseline={
            "variant": "raw-single",
            "difference": 8.65,
            "relative_percent": 46.2,
        },
        margin_over_runner_up={"variant": "nordic-optcom", "difference": 0.5},
    )
    text = html.unescape(build_report("01", tmp_path / "r.html", recommendation=rec).read_text())
    assert (
        "ahead of the baseline raw-single by 8.65 percentage points of median NC (+46.2 % "
        "relative)" in text
    )
    assert "ahead of the next variant nordic-optcom by 0.50 percentage points of median NC" in text
    inputs = _inputs(tmp_path)
    text = html.unescape(build_report("01", tmp_path / "f.html", **inputs).read_text())
    # ROI tables: units in the headers
    assert (
        "<th>ROI category</th><th>ROI</th><th>voxels</th><th>median NC (%)</th>"
        "<th>mean NC (%)</th><th>median R² (%)</th>" in text
    )
    assert "<th>nc_median</th>" not in text
    # the diagnostics and comparison tables too
    assert "<th>amplitude, NORDIC off (% signal change)</th>" in text
    assert "<th>FWHM, NORDIC on (mm)</th>" in text
    assert "<th>median NC (%)</th>" in text and "<th>d′</th>" in text
    # what a dot is: the same words in the figure title, the captions and the rst caption
    assert f"({DOTS})" in text
    from echoprep.io.tables import read_comparison_table

    fig = plot_comparison(read_comparison_table(inputs["comparison_table"]))
    assert DOTS in fig._suptitle.get_text()
    rst = Path(__file__).parents[2] / "workflow" / "report" / "comparison.rst"
    assert DOTS in " ".join(rst.read_text().split())


def test_configuration_is_folded_away_in_details(tmp_path):
    config = {"nordic": {"enabled": True}, "seed": 0, "glm": {"engine": "native"}}
    text = build_report("01", tmp_path / "r.html", config=config).read_text()
    m = re.search(r"<details><summary>([^<]*)</summary><pre>(.*?)</pre></details>", text, re.S)
    assert m and "configuration" in m.group(1).lower()
    assert json.loads(html.unescape(m.group(2))) == config
    assert "<details open" not in text
    # no other <pre> block: the JSON is not on the page outside the folded element
    assert text.count("<pre>") == 1


def test_software_table_lists_every_package_recorded_in_the_sidecars(tmp_path):
    from echoprep.report import provenance

    aff = np.eye(4)
    raw = _save(tmp_path / "bids/sub-01/func/sub-01_bold.nii.gz", np.ones((4, 4, 4, 3)), aff)
    raw.with_name("sub-01_bold.json").write_text(json.dumps({"SoftwareVersions": "syngo XA60"}))
    betas = _save(tmp_path / "out/glmx/sub-01/func/sub-01_betas.nii.gz", np.ones((4, 4, 4)), aff)
    betas.with_name("sub-01_betas.json").write_text(
        json.dumps({"Sources": [str(raw)], "SoftwareVersions": {"zzfitter": "9.9.9"}})
    )
    nc = _save(tmp_path / "out/ncx/sub-01/func/sub-01_nc.nii.gz", np.ones((4, 4, 4)), aff)
    nc.with_name("sub-01_nc.json").write_text(
        json.dumps(
            {
                "Sources": [str(betas)],
                "SoftwareVersions": "echoprep 0.1.0, qqbrain 1.2.3, torch 2.13.0+cpu",
            }
        )
    )
    found = provenance.collect_software([nc])
    rows = {r[0]: r for r in found.rows()}
    assert rows["zzfitter"] == ["zzfitter", "9.9.9", "glmx"]  # a package no list names
    assert rows["qqbrain"][1:] == ["1.2.3", "ncx"]
    assert rows["torch"][1] == "2.13.0+cpu"
    assert "syngo" not in rows  # the scanner's software of the raw data is not ours
    text = html.unescape(build_report("01", tmp_path / "r.html", nc_maps={"v": nc}).read_text())
    assert "<td>zzfitter</td><td>9.9.9</td><td>glmx</td>" in text
    assert "<td>qqbrain</td><td>1.2.3</td><td>ncx</td>" in text
    assert "<td>matplotlib</td>" in text and "<td>python</td>" in text  # the report's own
    assert provenance.parse_versions("a 1, b 2.0 rc1") == {"a": "1", "b": "2.0 rc1"}


def test_motion_section_follows_the_config_not_the_output_space(tmp_path):
    inputs = _inputs(tmp_path)
    native = {"spatial": {"enabled": True, "output_space": "native"}}
    text = build_report(
        "01", tmp_path / "a.html", confounds=inputs["confounds"], config=native
    ).read_text()
    head = text.split('id="head-motion"', 1)[1].split("</section>", 1)[0]
    assert "<img" in head and "Not available" not in head
    # motion estimated (spatial on) but no confounds given: never "spatial preprocessing is off"
    text = build_report("01", tmp_path / "b.html", config=native).read_text()
    assert "head-motion estimation) is off" not in text
    assert "spatial preprocessing is on (spatial.output_space: native)" in text
    off = {"spatial": {"enabled": False}}
    text = build_report("01", tmp_path / "c.html", config=off).read_text()
    assert "spatial preprocessing (head-motion estimation) is off (spatial.enabled: false)" in text


def test_native_output_space_passes_the_motion_confounds_to_the_report(tmp_path):
    from types import SimpleNamespace

    from echoprep.config import validate_config
    from echoprep.io.bids import discover
    from echoprep.plan import Plan
    from helpers.bidstree import make_bids_tree

    bids = tmp_path / "bids"
    make_bids_tree(bids, subjects=("01",), sessions=("01",), runs=("01", "02"), data=False)
    cfg = validate_config(
        {
            "bids_dir": str(bids),
            "output_dir": str(tmp_path / "out"),
            "work_dir": str(tmp_path / "w"),
            "spatial": {"output_space": "native"},
        }
    )
    plan = Plan(cfg, discover(cfg["bids_dir"], cache_dir=tmp_path / "w" / "idx"))
    files = plan.spec("subject_report").input_function(SimpleNamespace(subject="01"))
    assert [Path(p).name for p in files.get("confounds", [])] == [
        f"sub-01_ses-01_task-images_run-0{r}_desc-confounds_timeseries.tsv" for r in (1, 2)
    ]
