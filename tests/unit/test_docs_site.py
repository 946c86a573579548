"""The documentation site: built from ``docs/`` offline with warnings as errors, its references
complete against the code, and one page rendered in a browser.

- The build: ``sphinx-build -W --keep-going -b html docs OUT`` (what ``make docs`` runs), in a
  temporary folder; a broken cross-reference, a page outside every toctree or a malformed
  page is a warning, so the build fails on it.
- The references (``docs/_ext/echoprep_reference.py``, written by the build): every rule that
  ``snakemake --list-rules`` prints has a section in ``reference/rules.html``, every key of the
  config schema a row in ``reference/config.html`` and every command of the ``echoprep`` parser
  a section in ``reference/cli.html``. The lists come from the workflow, the schema and the
  parser, not from the generator, so a rule, key or command it drops fails here.
- Headless Chromium (Debian's package, installed as for the report tests) opens the rules
  page as a reader would: the theme's navigation and search are on it, the page's own
  headings are there, and the screenshot is not blank.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from helpers.bidstree import make_bids_tree
from helpers.chromium import chromium, dump_dom, screenshot
from helpers.snake import ROOT, snakemake

DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))

import echoprep_reference  # noqa: E402  (docs/_ext)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built site (its ``index.html``'s folder)."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(out / "doctrees"),
            str(DOCS),
            str(out / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"the site does not build cleanly:\n{done.stderr[-5000:]}"
    return out / "html"


def _headings(page: Path, level: int) -> list[str]:
    """The text of every ``<hN>`` of a built page."""
    found = re.findall(rf"<h{level}>(.*?)</h{level}>", page.read_text(), flags=re.S)
    return [html.unescape(re.sub(r"<[^>]+>|¶", "", h)).strip() for h in found]


def missing_rules(page: Path, rules: set[str]) -> set[str]:
    """The rules of ``rules`` without a section (an ``<h3>`` of its name) on the rules page."""
    return rules - set(_headings(page, 3))


@pytest.fixture(scope="module")
def listed_rules(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every rule of ``snakemake --list-rules`` on a generated dataset (but ``all``)."""
    root = tmp_path_factory.mktemp("rules")
    bids = make_bids_tree(root / "bids", data=False)
    res = snakemake(
        "--list-rules",
        config={"bids_dir": bids, "output_dir": root / "o", "work_dir": root / "w"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    names = {line.split(" ", 1)[0] for line in res.stdout.splitlines() if line.strip()}
    return names - {"all"}


def test_the_site_builds_with_navigation_search_and_every_page(site):
    index = (site / "index.html").read_text()
    assert (site / "search.html").is_file() and (site / "searchindex.js").is_file()
    sources = {p.stem for p in DOCS.glob("*.md")}
    built = {p.stem for p in site.glob("*.html")}
    assert sources <= built, sorted(sources - built)
    for page in ("install", "your-data", "cluster", "nordic", "reference/rules"):
        assert f'href="{page}.html"' in index, page
    assert "sidebar-search" in index  # the theme's search box on every page


def test_the_rules_reference_has_every_rule_snakemake_lists(site, listed_rules):
    page = site / "reference" / "rules.html"
    assert len(listed_rules) >= 30
    assert missing_rules(page, listed_rules) == set()
    text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
    # one rule on one page: where it is defined, its command, resources and env
    for needed in ("combine.py:", "python -m echoprep combine denoised", "conda env", "threads"):
        assert needed in text, needed
    # the check can fail: a rule the page lacks is reported
    assert missing_rules(page, {*listed_rules, "no_such_rule"}) == {"no_such_rule"}


def test_the_config_reference_has_every_schema_key(site):
    text = html.unescape((site / "reference" / "config.html").read_text())
    keys = [key for key, _ in echoprep_reference.schema_keys()]
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    assert len(keys) > 100 and set(schema["properties"]) <= {k.split(".")[0] for k in keys}
    missing = [k for k in keys if f'<span class="pre">{k}</span>' not in text]
    assert missing == []
    assert "glm.device" in keys and "rois.visual.alpha" in keys  # nested sections walked


def test_the_cli_reference_has_every_command(site):
    from echoprep.cli import STAGE_COMMANDS

    headings = set(_headings(site / "reference" / "cli.html", 2))
    headings |= set(_headings(site / "reference" / "cli.html", 3))
    names = [name for name, _, _ in echoprep_reference.commands()]
    assert {f"echoprep {c}" for c in STAGE_COMMANDS} <= set(names)
    assert {"echoprep simulate", "echoprep install-profile", "echoprep spatial run"} <= set(names)
    assert [n for n in names if n not in headings and n.count(" ") < 3] == []


def test_a_page_renders_in_chromium_with_its_navigation(site, tmp_path, tmp_path_factory):
    """The rules page opened offline in headless Chromium at 1366 × 768: the stylesheet is
    applied (the sidebar's navigation is laid out beside the content, the search box is
    there), its first heading is on the first screen, and its screenshot is not blank."""
    binary = chromium(tmp_path_factory)
    page = site / "reference" / "rules.html"
    probe = page.with_name("rules-probe.html")
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    res = dump_dom(binary, tmp_path / "profile", probe, "--window-size=1366,768")
    m = re.search(r'<pre id="probe">([^<]*)</pre>', res.stdout)
    assert m, f"probe missing from the DOM: {res.stderr[-2000:]}"
    state = dict(item.split("=", 1) for item in m.group(1).split())
    assert int(state["sheets"]) >= 1
    nav_left, nav_right = map(int, state["nav"].split(","))
    content_left = int(state["content"])
    assert nav_right > nav_left and content_left >= nav_right - 1, state
    assert state["search"] == "yes" and int(state["links"]) > 20, state
    assert 0 <= int(state["h1"]) < 768, state
    shot = screenshot(binary, tmp_path / "profile", page, tmp_path / "rules.png", 1366, 768)
    grey = Image.open(shot).convert("L")
    dark = sum(grey.histogram()[:160])
    assert dark > 0.005 * grey.size[0] * grey.size[1], "the screenshot is nearly blank"


#: After load: stylesheets, the navigation's horizontal extent, the content's left edge, the
#: search box, the sidebar's links, the top of the first heading (CSS px).
_PROBE = """<script>
window.addEventListener("load", function () {
  var box = function (sel) { var e = document.querySelector(sel);
    return e ? e.getBoundingClientRect() : null; };
  var nav = box(".sidebar-tree"), main = box("article"), h1 = box("article h1");
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = [
    "sheets=" + document.styleSheets.length,
    "nav=" + (nav ? Math.round(nav.left) + "," + Math.round(nav.right) : "0,0"),
    "content=" + (main ? Math.round(main.left) : -1),
    "search=" + (document.querySelector("form.sidebar-search-container input") ? "yes" : "no"),
    "links=" + document.querySelectorAll(".sidebar-tree a").length,
    "h1=" + (h1 ? Math.round(h1.top) : -1)
  ].join(" ");
  document.body.appendChild(out);
});
</script>
"""
