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

from echoprep.report import figures
from echoprep.report.html import Section, cell, data_uri, render
from echoprep.stages import comparison as cmp
from echoprep.stages import diagnostics as diagnostics_stage
from echoprep.stages.report import build_report

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
        own[s] = cmp.subject_output_paths(tmp_path / "comparison", s, "images")
        cmp.run_subject_comparison(
            [e for e in entries if e.subject == s], own[s], options={"bootstrap": 0}
        )
    cmp.run_comparison(
        [own[s]["tsv"] for s in own],
        cmp.output_paths(tmp_path / "comparison", "images"),
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
                "runs": 2,
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


def test_full_report_is_self_contained(tmp_path):
    out = build_report("01", tmp_path / "reports/sub-01.html", **_inputs(tmp_path))
    text = out.read_text()
    images = _decoded_images(text)
    # tSNR, T2*, motion, R², NC, comparison
    assert len(images) == 6 == text.count("<img ")
    assert all(im.width > 100 and im.height > 100 for im in images)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)
    assert "<script" not in text and "<link" not in text
    # NC maps only (no betas): NC alone does not make NORDIC the recommendation
    assert "Recommended variant for sub-01 (its comparison sessions): raw-single" in text
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
    group = cmp.output_paths(tmp_path / "comparison", "images")
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
    assert text.count("Not available") == 7
    assert "NORDIC is off" in text and "spatial preprocessing" in text
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


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(
            "Chromium is not installed and cannot be installed here (needs root and apt-get): "
            "run `apt-get install -y chromium` to enable this test"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=600)
    res = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium"],
        check=False,
        env=env,
        timeout=1200,
        capture_output=True,
        text=True,
    )
    found = shutil.which("chromium")
    if not found:
        pytest.skip(f"apt-get install chromium failed: {res.stderr[-500:]}")
    return found


def _chromium_args(binary: str, profile: Path) -> list[str]:
    return [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]


_PROBE = """<script>
window.addEventListener("load", function () {
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = Array.prototype.map.call(document.images, function (im) {
    return im.complete + ":" + im.naturalWidth + "x" + im.naturalHeight;
  }).join(" ");
  document.body.appendChild(out);
});
</script>
"""


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    binary = _chromium()
    out = build_report("01", tmp_path / "reports/sub-01.html", **_inputs(tmp_path))
    profile = tmp_path / "chromium-profile"
    shot = tmp_path / "shot.png"
    # screenshot of the report as written (offline: file:// URL, networking features disabled)
    res = subprocess.run(
        [
            *_chromium_args(binary, profile),
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            out.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert shot.is_file(), res.stderr[-2000:]
    print(f"report screenshot: {shot}")
    im = Image.open(shot).convert("L")
    assert im.size == (1200, 3000)
    hist = im.histogram()
    assert sum(hist[:200]) > 0.05 * im.size[0] * im.size[1], "the screenshot is nearly blank"
    # the DOM after load: every <img> decoded by the browser (naturalWidth > 0) ...
    probe = out.with_name("probe.html")
    probe.write_text(out.read_text().replace("</body>", _PROBE + "</body>"))
    res = subprocess.run(
        [
            *_chromium_args(binary, profile),
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    dom = res.stdout
    m = re.search(r'<pre id="probe">([^<]*)</pre>', dom)
    assert m, f"probe missing from the DOM: {res.stderr[-2000:]}"
    states = m.group(1).split()
    assert len(states) == 6
    for s in states:
        complete, size = s.split(":")
        w, h = (int(v) for v in size.split("x"))
        assert complete == "true" and w > 0 and h > 0, states
    # ... and the data URIs in the DOM decode with PIL to the same sizes
    decoded = _decoded_images(dom)
    assert [f"{i.width}x{i.height}" for i in decoded] == [s.split(":")[1] for s in states]


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
    assert desc["SourceDatasets"] == [{"URL": "/data/bids"}]
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
