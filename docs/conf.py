"""Sphinx configuration of echoprep's documentation site (docs/about-these-docs.md).

Build: ``make docs`` (``sphinx-build -W --keep-going -b html docs docs/_build/html``), offline;
``tests/unit/test_docs_site.py`` builds it in the default test pass with warnings as errors.
The pages are the Markdown files of this folder (MyST); ``reference/`` is written by the
extension ``_ext/echoprep_reference.py`` at every build, from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent / "workflow"))

from echoprep import __version__  # noqa: E402

project = "echoprep"
author = "the echoprep developers"
copyright = "echoprep developers, BSD-3-Clause"
version = release = __version__

extensions = ["myst_parser", "echoprep_reference"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]
# headings up to level 4 get anchors, so that links such as `comparison.md#the-verdict` resolve
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence", "deflist"]

html_theme = "furo"
html_title = f"echoprep {__version__}"
html_static_path: list[str] = []
html_show_sourcelink = True
# no request leaves the build: no fonts, analytics or remote images
html_theme_options = {"navigation_with_keys": True}
