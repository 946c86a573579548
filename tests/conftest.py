"""Put ``tests/`` on ``sys.path`` so that ``import helpers.bidstree`` works from every test,
provide the shared end-to-end run ``demo``, and keep the suite correct under pytest-xdist.

The default run uses two workers (``-n 2 --dist loadgroup``, pyproject.toml). A fixture wider
than a test (session, module, class) is built once per worker that needs it, so
:func:`pytest_collection_modifyitems` puts every test that uses such a fixture of ``tests/``
into one ``xdist_group``: the session fixtures (``demo``, the SLURM cluster) into group
``demo``, a module's own fixtures into a group named after the module. Nobody has to remember
to mark a test. It also orders the work units so that the longest start first.
"""

import inspect
import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from helpers.demo import DemoRun, run_demo  # noqa: E402

#: Group of every test that uses a session-scoped fixture of tests/ (``demo``, ``slurm_cluster``).
SESSION_GROUP = "demo"
_WIDE_SCOPES = ("session", "package", "module", "class")


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """One ``make demo DEMO_PRESET=tiny`` run on a freshly simulated dataset, shared by every
    test that needs real outputs (tests/e2e, tests/hpc). Tests must not change its folders;
    one that has to (adding a subject) restores them with ``helpers.demo.preserved``.
    Under xdist every test that uses it runs in one worker (group ``demo``, see
    :func:`pytest_collection_modifyitems`), so it is built once."""
    return run_demo(tmp_path_factory.mktemp("demo"))


def _defined_in_tests(func: object) -> bool:
    try:
        source = inspect.getsourcefile(func)  # type: ignore[arg-type]
    except TypeError:
        return False
    return source is not None and Path(source).resolve().is_relative_to(_TESTS)


def xdist_group_of(item: pytest.Item) -> str | None:
    """The group an item must share a worker with, from the wide fixtures of tests/ it uses
    (directly or through other fixtures): :data:`SESSION_GROUP` for session/package scope,
    the module's path for module/class scope; None when it needs none."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    group = None
    for name in item.fixturenames:
        defs = info.name2fixturedefs.get(name)
        if not defs:
            continue
        fixturedef = defs[-1]  # the definition that applies to this item
        scope = fixturedef.scope
        if scope not in _WIDE_SCOPES or not _defined_in_tests(fixturedef.func):
            continue
        if scope in ("session", "package"):
            return SESSION_GROUP
        group = item.nodeid.split("::", 1)[0]
    return group


def _cost_rank(item: pytest.Item, group: str | None) -> int:
    """0: the session group (built once, long: demo, resume, SLURM); 1: other groups (a
    module fixture to build) and tests marked slow; 2: the rest, which then fill the gaps."""
    if group == SESSION_GROUP:
        return 0
    if group is not None or item.get_closest_marker("slow") is not None:
        return 1
    return 2


def _put_group_in_nodeid(item: pytest.Item, group: str) -> None:
    """What xdist's loadgroup does on a worker: the controller's scheduler reads an item's
    group from its nodeid, ``<nodeid>@<group>``. pytest-xdist 3.8.0 writes that to
    ``item._nodeid``, which pytest 9.2 no longer reads (its nodeids are structured ``_id``
    values), so with these pins the marks were silently ignored and every test was scheduled
    on its own (pytest-dev/pytest-xdist#1386, fix pending in #1388). Set the structured id
    here; with a fixed xdist the suffix comes twice, and the scheduler uses the last one."""
    node_id = getattr(item, "_id", None)
    if node_id is None or str(node_id).endswith(f"@{group}"):
        return  # an older pytest: xdist's own hook sets item._nodeid
    from _pytest.nodeid import NodeId

    item._id = NodeId.parse(f"{node_id}@{group}")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ranks = {}
    for item in items:
        marks = list(item.iter_markers("xdist_group"))
        group = None
        if marks:
            mark = marks[0]
            group = str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        else:
            group = xdist_group_of(item)
            if group is not None:
                item.add_marker(pytest.mark.xdist_group(group))
        ranks[id(item)] = _cost_rank(item, group)
        if group is not None and getattr(config.option, "loadgroup", False):
            _put_group_in_nodeid(item, group)
    # xdist hands out work units in collection order (with --no-loadscope-reorder): longest
    # first, so that the short ones fill the end. In the session group the SLURM tests come
    # first (right after the demo run they need): their run mostly waits on the executor's
    # submissions and queue polls, which the other worker's CPU-bound tests fill best early
    # on. A stable sort keeps the order otherwise.
    items.sort(key=lambda item: (ranks[id(item)], "slurm_cluster" not in item.fixturenames))
