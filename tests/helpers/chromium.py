"""Headless Chromium for the report tests: find it (or install Debian's package when run as root),
its command line, and a page's layout after load (``--dump-dom`` with a probe script)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers.locks import run_lock


def chromium(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Chromium binary; installs Debian's ``chromium`` with apt-get when it is missing and
    this runs as root, else skips the test."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(
            "Chromium is not installed and cannot be installed here (needs root and apt-get): "
            "run `apt-get install -y chromium` to enable this test"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # one apt-get at a time across the xdist workers (the SLURM test may install too)
    with run_lock(tmp_path_factory, "apt-get"):
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


def chromium_args(binary: str, profile: Path) -> list[str]:
    """Headless, offline (networking features off), a private profile."""
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


#: After load, writes ``<pre id="screen">`` with the viewport (``WxH``) and the bounding boxes
#: ``name=left,top,right,bottom`` (CSS px; "none": absent) of the first screen's parts: the
#: verdict figure's drawing and the sentence.
SCREEN_PROBE = """<script>
window.addEventListener("load", function () {
  var out = document.createElement("pre");
  out.id = "screen";
  var parts = [window.innerWidth + "x" + window.innerHeight];
  [["verdict-figure", "#verdict-figure svg"], ["verdict-sentence", "#verdict-sentence"]]
  .forEach(function (item) {
    var e = document.querySelector(item[1]);
    var r = e ? e.getBoundingClientRect() : null;
    parts.push(item[0] + "=" + (r ? [r.left, r.top, r.right, r.bottom].map(Math.round)
                                    .join(",") : "none"));
  });
  out.textContent = parts.join(" ");
  document.body.appendChild(out);
});
</script>
"""


def dump_dom(binary: str, profile: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    """The DOM of ``page`` after load (``--dump-dom``, 10 s of virtual time), with ``args``
    (e.g. ``--window-size=W,H``) added to the Chromium command line."""
    return subprocess.run(
        [
            *chromium_args(binary, profile),
            *args,
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def screenshot(binary: str, profile: Path, page: Path, shot: Path, width: int, height: int) -> Path:
    """A ``width`` × ``height`` screenshot of ``page`` (offline: a file URL, networking features
    off) written to ``shot``; fails with Chromium's messages when none was written."""
    res = subprocess.run(
        [
            *chromium_args(binary, profile),
            f"--screenshot={shot}",
            f"--window-size={width},{height}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert shot.is_file(), res.stderr[-2000:]
    return shot


def first_screen_boxes(
    binary: str, profile: Path, page: Path, width: int = 1366, height: int = 768
) -> dict[str, tuple[int, ...] | None]:
    """The viewport (``"viewport"``: width, height) and the bounding boxes (left, top, right,
    bottom; None when absent) of the verdict figure and sentence of a report page opened in a
    ``width`` × ``height`` window, before any scrolling."""
    probe = page.with_name(f"{page.stem}-screen.html")
    probe.write_text(page.read_text().replace("</body>", SCREEN_PROBE + "</body>"))
    res = dump_dom(binary, profile, probe, f"--window-size={width},{height}")
    m = re.search(r'<pre id="screen">([^<]*)</pre>', res.stdout)
    assert m, f"screen probe missing from the DOM: {res.stderr[-2000:]}"
    view, *boxes = m.group(1).split()
    out: dict[str, tuple[int, ...] | None] = {"viewport": tuple(int(v) for v in view.split("x"))}
    for item in boxes:
        key, _, value = item.partition("=")
        out[key] = None if value == "none" else tuple(int(v) for v in value.split(","))
    return out
