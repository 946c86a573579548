"""Where the external packages the adapters run come from when the package index lacks them.

A leaf module (imports nothing), so that ``echoprep.preflight`` can name the fix without
importing an adapter.
"""

from __future__ import annotations

#: Upstream GLMsingle 1.2 (BSD-3-Clause, ``glm.engine: glmsingle``) is not on the package index:
#: its repository at the commit its 1.2 wheel was built from. The same as ``pyproject.toml``'s
#: ``[tool.echoprep.git-sources]``, from which ``envs/glmsingle.yaml`` is written
#: (``tests/unit/test_glm_upstream.py`` checks that they agree).
GLMSINGLE_SOURCE = (
    "git+https://github.com/cvnlab/GLMsingle.git@1ab54a65edd3ea41a6133d4b4ecb78a9c7296684"
)
#: The pip requirement that installs it (quote it in a shell: it has spaces).
GLMSINGLE_REQUIREMENT = f"glmsingle @ {GLMSINGLE_SOURCE}"

__all__ = ["GLMSINGLE_REQUIREMENT", "GLMSINGLE_SOURCE"]
