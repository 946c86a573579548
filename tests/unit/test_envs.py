"""Every rule runs in a pinned conda env: its direct pins equal pyproject.toml's (what CI
installs) and every transitive dependency is pinned at the tested .venv's version (envs/lock.py
writes the envs; these tests recompute the closure and compare)."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "envs"))
import lock  # noqa: E402  (envs/lock.py, a script)

from echoprep import preflight  # noqa: E402

RULES_DIR = ROOT / "workflow" / "rules"
RULE_FILES = [*sorted(RULES_DIR.glob("*.smk")), ROOT / "Snakefile"]
#: Configs whose rules run in other envs: the default; NORDIC's and our GLM engine's heavy
#: steps on a GPU (envs/gpu.yaml); upstream GLMsingle (envs/glmsingle.yaml).
CONFIGS = {
    "default": {},
    "nordic-cuda": {"nordic": {"device": "cuda"}},
    "glm-cuda": {"glm": {"device": "cuda"}},
    "glmsingle": {"glm": {"engine": "glmsingle"}},
}
EXACT_PIP = re.compile(r"^([A-Za-z0-9_.\-]+)==([0-9][0-9A-Za-z.+\-]*)$")
EXACT_CONDA = re.compile(r"^([A-Za-z0-9_.\-]+)=([0-9][0-9.]*)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_pins() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(data["dependencies"])
    for extra in data.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    pins = {}
    for req in reqs:
        m = EXACT_PIP.match(req)
        assert m, f"pyproject.toml: {req!r} is not an exact pin (NAME==VERSION)"
        pins[_norm(m.group(1))] = m.group(2)
    return pins


def _git_pin(req: str) -> re.Match | None:
    """``NAME @ git+URL@COMMIT`` of a package in pyproject.toml's ``[tool.echoprep.git-sources]``
    (a full commit hash), matched as ``NAME==VERSION`` with the version pyproject.toml pins."""
    m = re.match(r"^([A-Za-z0-9_.\-]+) @ (git\+https://\S+@[0-9a-f]{40})$", req)
    if not m or lock.git_sources().get(_norm(m.group(1))) != m.group(2):
        return None
    return EXACT_PIP.match(f"{m.group(1)}=={_pyproject_pins()[_norm(m.group(1))]}")


def _skip_without_wheel_extras(env_file: Path | None = None) -> None:
    """Skip where a package of the wheel extras is not installed (its wheel was absent when
    ``make setup`` ran) and the closure to check needs it."""
    missing = lock.missing_wheel_extras()
    extras = lock.WHEEL_EXTRAS if env_file is None else lock.SPECS[env_file.name].extras
    if missing and set(extras) & set(lock.WHEEL_EXTRAS):
        pytest.skip(
            f"{', '.join(missing)} not installed: `make setup` installs it from"
            " ../shared/wheels, which was absent"
        )


def _rule_blocks() -> list[tuple[Path, str, str]]:
    """(file, rule name, rule body) for every rule a rule file spells out by name (``rule
    all``; the others are defined from the plan's specs by ``workflow/rules/jobs.smk``)."""
    out = []
    for path in RULE_FILES:
        text = path.read_text()
        heads = list(re.finditer(r"^rule (\w+):\n", text, flags=re.M))
        for i, m in enumerate(heads):
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            body = text[m.end() : end]
            body = re.split(r"^\S", body, maxsplit=1, flags=re.M)[0]  # up to dedent
            out.append((path, m.group(1), body))
    return out


def _jobs_blocks() -> list[str]:
    """The bodies of the rule blocks of ``workflow/rules/jobs.smk`` (one per kind of rule,
    each taking everything from its ``spec``)."""
    text = (RULES_DIR / "jobs.smk").read_text()
    return re.split(r"^\s+rule:\n", text, flags=re.M)[1:]


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict:
    """Config name (:data:`CONFIGS`) -> (validated config, every rule's spec)."""
    from helpers.bidstree import make_bids_tree
    from helpers.plans import make_plan

    base = tmp_path_factory.mktemp("envs")
    root = make_bids_tree(base / "bids", data=False)
    found = {}
    for name, config in CONFIGS.items():
        plan = make_plan(root, base / name, **config)
        specs = plan.specs()
        # every rule (a per-run chain's once per echo count: one here) has its spec
        assert [s.name for s in specs] == plan.rule_names()
        found[name] = (plan.config, specs)
    return found


def _env_of(spec) -> Path:
    """The env file a spec's ``conda:`` names (relative to the rule files, or absolute)."""
    return (RULES_DIR / spec.conda).resolve()


def test_every_rule_that_runs_a_command_names_an_existing_env(plans):
    blocks = _rule_blocks()
    for path, name, body in blocks:  # a rule spelled out in a rule file
        if re.search(r"^\s+(shell|script):", body, flags=re.M):
            assert re.search(r"conda:\s*\n\s*\"[^\"]+\"", body), (
                f"rule {name} in {path.name} runs a command but has no conda:"
            )
    # jobs.smk: every block that runs a command takes its env from the spec
    for body in _jobs_blocks():
        if re.search(r"^\s+(shell|script):", body, flags=re.M):
            assert re.search(r"^\s+conda:\n\s+_?spec\.conda$", body, flags=re.M), body
    for config, (_, specs) in plans.items():
        assert len(specs) >= 4
        for spec in specs:
            if spec.shell:
                assert spec.conda, f"{config}: rule {spec.name} runs a command but has no conda:"
                env = _env_of(spec)
                assert env.is_file(), f"{config}: rule {spec.name}: conda env {env} does not exist"


def test_glm_rules_run_in_the_env_of_their_engine(plans):
    """Every rule that fits (``echoprep glm``/``glm-heldout``) runs in the env of glm.engine
    (:func:`echoprep.preflight.glm_env`); upstream's env is ours plus the pinned upstream
    package. The planted fits (``glm-planted``) apply a finished fit's choices with our own
    frozen fit, whatever the engine: they run in our env."""
    for config, (validated, specs) in plans.items():
        fitting = {
            s.name for s in specs if re.search(r"python -m echoprep glm(-heldout)?\s", s.shell)
        }
        assert fitting == {"glm", "glm_reference", "glm_heldout"}, config
        planted = [s for s in specs if "python -m echoprep glm-planted " in s.shell]
        assert planted and all(_env_of(s).name == "echoprep.yaml" for s in planted), config
        env = preflight.glm_env(validated)
        assert all(_env_of(s) == env for s in specs if s.name in fitting), config
        if validated["glm"]["device"] != "cuda":
            assert env in preflight.GLM_ENVS.values()
    assert _env_of(next(s for s in plans["glmsingle"][1] if s.name == "glm")).name == (
        "glmsingle.yaml"
    )
    assert preflight.glm_env({"glm": {"engine": "echoprep"}}).name == "echoprep.yaml"
    assert preflight.glm_env({"glm": {"engine": "glmsingle"}}).name == "glmsingle.yaml"
    ours, _ = _env_pins(ROOT / "envs" / "echoprep.yaml")
    upstream, _ = _env_pins(ROOT / "envs" / "glmsingle.yaml")
    assert set(ours) < set(upstream) and "glmsingle" in upstream


def _env_pins(env_file: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(pip pins, conda pins) of an env file, normalised name -> version."""
    env = yaml.safe_load(env_file.read_text())
    pip_pins: dict[str, str] = {}
    conda_pins: dict[str, str] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for req in dep["pip"]:
                m = EXACT_PIP.match(req) or _git_pin(req)
                assert m, f"{env_file.name}: pip requirement {req!r} is not NAME==VERSION"
                assert _norm(m.group(1)) not in pip_pins, f"{env_file.name}: {req} twice"
                pip_pins[_norm(m.group(1))] = m.group(2)
        else:
            m = EXACT_CONDA.match(dep)
            assert m, f"{env_file.name}: {dep!r} is not an exact conda pin"
            conda_pins[_norm(m.group(1))] = m.group(2)
    return pip_pins, conda_pins


def lock_problems(pins: dict[str, str], expected: dict[str, str]) -> list[str]:
    """Differences between an env's pip pins and the closure it should pin."""
    problems = [
        f"{n}: not pinned (the .venv has {v})" for n, v in expected.items() if n not in pins
    ]
    problems += [
        f"{n}=={pins[n]}, but the .venv has {v}"
        for n, v in expected.items()
        if n in pins and pins[n] != v
    ]
    problems += [f"{n}=={v}: pinned but not needed" for n, v in pins.items() if n not in expected]
    return problems


def test_every_env_file_is_generated_by_the_lock_script():
    assert sorted(p.name for p in (ROOT / "envs").glob("*.yaml")) == sorted(lock.SPECS)


@pytest.mark.parametrize("env_file", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_are_exact_and_agree_with_pyproject(env_file):
    env = yaml.safe_load(env_file.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    pins = _pyproject_pins()
    pip_pins, _ = _env_pins(env_file)
    direct = lock.pyproject_requirements(lock.SPECS[env_file.name])
    for req in direct:
        m = EXACT_PIP.match(req)
        name, version = _norm(m.group(1)), m.group(2)
        assert pip_pins.get(name) == version == pins[name], (
            f"{env_file.name}: {name} pinned {pip_pins.get(name)}, pyproject.toml {pins[name]}"
        )
    # the echoprep package must be importable in every env: all core dependencies present
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    needed = {_norm(EXACT_PIP.match(r).group(1)) for r in core} - {"tedana", "six"}
    assert needed <= set(pip_pins), f"{env_file.name} lacks {sorted(needed - set(pip_pins))}"


@pytest.mark.parametrize("env_file", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_every_transitive_dependency_at_the_tested_version(env_file):
    """The closure of the env's direct requirements, recomputed from this interpreter's
    package metadata (the tested .venv), is exactly what the env pins: a missing pin, another
    version or a stale extra pin fails. Fix: `.venv/bin/python envs/lock.py`."""
    _skip_without_wheel_extras(env_file)
    pip_pins, conda_pins = _env_pins(env_file)
    expected = lock.closure(lock.pyproject_requirements(lock.SPECS[env_file.name]))
    assert lock_problems(pip_pins, expected) == [], "run `.venv/bin/python envs/lock.py`"
    assert conda_pins == {"python": lock.PYTHON, "pip": lock.PIP}
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == lock.PYTHON.rsplit(".", 1)[0]


def test_the_closure_follows_requirements_and_the_check_can_fail():
    """jsonschema needs attrs, referencing (which needs rpds-py) ...: all found, at the
    installed versions; a pin removed or changed is reported."""
    got = lock.closure(["jsonschema==4.26.0"])
    for name in ("jsonschema", "attrs", "referencing", "rpds-py", "jsonschema-specifications"):
        assert got[name] == Version(metadata.version(name)).public, name
    assert "numpy" not in got
    pins = dict(got)
    pins.pop("attrs")
    pins["referencing"] = "0.0.1"
    problems = lock_problems(pins, got)
    assert len(problems) == 2 and "attrs: not pinned" in problems[0], problems
    assert lock_problems({**got, "six": "1.17.0"}, got) == ["six==1.17.0: pinned but not needed"]


def test_lock_script_check_mode_agrees():
    _skip_without_wheel_extras()
    assert lock.main(["--check"]) == 0


def test_installed_versions_equal_the_pins():
    """What CI installed (this interpreter) is exactly what pyproject.toml and envs pin (the
    wheel extras where their wheel was at hand)."""
    missing = {_norm(n) for n in lock.missing_wheel_extras()}
    for name, version in _pyproject_pins().items():
        if name in missing:
            continue
        installed = Version(metadata.version(name))
        # a local build label (torch 2.13.0+cpu) satisfies the pin 2.13.0, as pip treats it
        assert installed.public == version, f"{name}: installed {installed}, pinned {version}"


def _constraint_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lock.CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            m = EXACT_PIP.match(line)
            assert m, f"envs/constraints.txt: {line!r} is not NAME==VERSION"
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def test_constraints_lock_everything_setup_installs_at_the_tested_version():
    """A fresh .venv (CI's) must get the locked transitive versions, not the registry's newest:
    envs/constraints.txt pins the closure of pyproject.toml's core and every extra, and every
    env agrees with it."""
    _skip_without_wheel_extras()
    pins = _constraint_pins()
    expected = lock.closure(lock.setup_requirements())
    assert lock_problems(pins, expected) == [], "run `.venv/bin/python envs/lock.py`"
    for name, pin in _pyproject_pins().items():
        assert pins[name] == pin, name
    for env_file in sorted((ROOT / "envs").glob("*.yaml")):
        pip_pins, _ = _env_pins(env_file)
        other = {n: v for n, v in pip_pins.items() if pins.get(n) != v}
        assert other == {}, f"{env_file.name} pins other versions than envs/constraints.txt"


def test_make_setup_installs_under_the_constraints():
    """The Makefile's install line passes the lock, and the .venv is rebuilt when it changes."""
    text = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(VENV\)/\.installed: .*envs/constraints\.txt", text, flags=re.M)
    install = re.search(r"pip install [^\n]*(?:\\\n[^\n]*)*-e \"\.\[", text)
    assert install and "-c envs/constraints.txt" in install.group(0), install
