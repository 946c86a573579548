"""Put ``tests/`` on ``sys.path`` so that ``import helpers.bidstree`` works from every test,
provide the shared end-to-end run ``demo``, and keep the suite correct under pytest-xdist.

The default run uses two workers (``-n 2 --dist loadgroup``, pyproject.toml). A fixture wider
than a test (session, module, class) is built once per worker that needs it, so
:func:`pytest_collection_modifyitems` puts every test that uses such a fixture of ``tests/``
into one ``xdist_group``: the SLURM cluster's tests into group ``slurm``, the other users of
``demo`` into group ``demo``, a module's own fixtures into a group named after the module.
Nobody has to remember to mark a test. The ``demo`` run itself is made once per pytest run,
whichever worker asks first (the others wait for it and read its record): the SLURM tests
need it only to compare their derivatives with it, so the SLURM run (on its own copy of the
dataset) and the demo run go on at the same time, one in each worker. The hook also orders
the work units so that the longest start first.
"""

import inspect
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from helpers.demo import DemoRun, run_demo  # noqa: E402
from helpers.locks import run_base, run_lock  # noqa: E402

#: Group of every test that uses a session-scoped fixture of tests/ (``demo``) and no fixture of
#: :data:`OWN_GROUPS`: the users of ``demo`` share its raw dataset, which one of them changes
#: for a while (it adds a subject, then restores the folder), so they run in one worker.
SESSION_GROUP = "demo"
#: Session fixtures whose tests form a group of their own, whatever else they use: the SLURM
#: cluster's daemons run once per pytest run, in the worker that started them (its tests use
#: their own copy of the demo's dataset, and ``demo`` only for its derivatives).
OWN_GROUPS = {"slurm_cluster": "slurm"}
_WIDE_SCOPES = ("session", "package", "module", "class")


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """One ``make demo DEMO_PRESET=tiny`` run on a freshly simulated dataset, shared by every
    test that needs real outputs (tests/e2e, tests/hpc). Tests must not change its folders;
    one that has to (adding a subject) restores them with ``helpers.demo.preserved``.

    Made once per pytest run, in the run's base folder (``helpers.locks.run_base``): the first
    worker to ask makes it while holding the run lock ``demo``; the others wait for that lock,
    then read the record it left (a failed run is recorded too, and fails them at once)."""
    base = run_base(tmp_path_factory)
    record, failed = base / "demo.pickle", base / "demo.failed"
    with run_lock(tmp_path_factory, "demo"):
        if failed.exists():
            pytest.fail(f"the demo run failed (in another worker):\n{failed.read_text()}")
        if not record.exists():
            folder = base / "demo"
            folder.mkdir(exist_ok=True)
            try:
                run = run_demo(folder)
            except (Exception, pytest.fail.Exception) as exc:
                failed.write_text(f"{type(exc).__name__}: {exc}"[-8000:])
                raise
            record.write_bytes(pickle.dumps(run))
    return pickle.loads(record.read_bytes())


#: Variables that stages set for their own process (``set_itk_threads``; ``python -m echoprep
#: --threads N``) and that a test calling a stage in-process would otherwise leave to the tests
#: after it in the same worker, and to every subprocess they start.
THREAD_VARIABLES = (
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


@pytest.fixture(autouse=True)
def _thread_variables_restored() -> Iterator[None]:
    """Give back :data:`THREAD_VARIABLES` as each test found them (set, changed or removed)."""
    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _defined_in_tests(func: object) -> bool:
    try:
        source = inspect.getsourcefile(func)  # type: ignore[arg-type]
    except TypeError:
        return False
    return source is not None and Path(source).resolve().is_relative_to(_TESTS)


def xdist_group_of(item: pytest.Item) -> str | None:
    """The group an item must share a worker with, from the wide fixtures of tests/ it uses
    (directly or through other fixtures): :data:`SESSION_GROUP` for session/package scope,
    the module's path for module/class scope; a fixture of :data:`OWN_GROUPS` its own group
    before both; None when it needs none."""
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
        if name in OWN_GROUPS:
            return OWN_GROUPS[name]
        if scope in ("session", "package"):
            group = SESSION_GROUP
        elif group is None:
            group = item.nodeid.split("::", 1)[0]
    return group


def _cost_rank(item: pytest.Item, group: str | None) -> int:
    """0: the session groups (long: the demo run and resume; the SLURM run); 1: other groups
    (a module fixture to build) and tests marked slow; 2: the rest, which then fill the gaps."""
    if group == SESSION_GROUP or group in OWN_GROUPS.values():
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
    # xdist hands out work units in collection order (with --no-loadscope-reorder), the first
    # one to each worker: longest first, so that the short ones fill the end. The SLURM group
    # comes first and the demo group second, so that the two long runs start at once, one in
    # each worker (the SLURM run mostly waits on the executor's submissions and queue polls,
    # which the demo run's CPU-bound jobs fill). A stable sort keeps the order otherwise.
    items.sort(key=lambda item: (ranks[id(item)], "slurm_cluster" not in item.fixturenames))
