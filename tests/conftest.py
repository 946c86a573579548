"""Put ``tests/`` on ``sys.path`` so that ``import helpers.bidstree`` works from every test, and
provide the shared end-to-end run ``demo``."""

import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from helpers.demo import DemoRun, run_demo  # noqa: E402


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """One ``make demo DEMO_PRESET=tiny`` run on a freshly simulated dataset, shared by every
    test that needs real outputs (tests/e2e, tests/hpc). Tests must not change its folders;
    one that has to (adding a subject) restores them with ``helpers.demo.preserved``."""
    return run_demo(tmp_path_factory.mktemp("demo"))
