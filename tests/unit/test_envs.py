"""Every rule runs in a pinned conda env whose pins equal pyproject.toml's (what CI installs)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = [*sorted((ROOT / "workflow" / "rules").glob("*.smk")), ROOT / "Snakefile"]
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


def _rule_blocks() -> list[tuple[Path, str, str]]:
    """(file, rule name, rule body) for every rule."""
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


def _env_files() -> dict[str, Path]:
    envs = {}
    for path, name, body in _rule_blocks():
        m = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", body)
        if m:
            envs[name] = (path.parent / m.group(1)).resolve()
    return envs


def test_every_rule_that_runs_a_command_names_an_existing_env():
    blocks = _rule_blocks()
    assert len(blocks) >= 4
    envs = _env_files()
    for path, name, body in blocks:
        if re.search(r"^\s+(shell|script):", body, flags=re.M):
            assert name in envs, f"rule {name} in {path.name} runs a command but has no conda:"
            assert envs[name].is_file(), f"rule {name}: conda env {envs[name]} does not exist"


@pytest.mark.parametrize("env_file", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_are_exact_and_agree_with_pyproject(env_file):
    env = yaml.safe_load(env_file.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    pins = _pyproject_pins()
    pip_pins: dict[str, str] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for req in dep["pip"]:
                m = EXACT_PIP.match(req)
                assert m, f"{env_file.name}: pip requirement {req!r} is not NAME==VERSION"
                pip_pins[_norm(m.group(1))] = m.group(2)
        else:
            assert EXACT_CONDA.match(dep), f"{env_file.name}: {dep!r} is not an exact conda pin"
    for name, version in pip_pins.items():
        assert name in pins, f"{env_file.name}: {name} is not pinned in pyproject.toml"
        assert pins[name] == version, (
            f"{env_file.name}: {name}=={version} but pyproject.toml pins {pins[name]}"
        )
    # the echoprep package must be importable in every env: all core dependencies present
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    needed = {_norm(EXACT_PIP.match(r).group(1)) for r in core} - {"tedana", "six"}
    assert needed <= set(pip_pins), f"{env_file.name} lacks {sorted(needed - set(pip_pins))}"


def test_installed_versions_equal_the_pins():
    """What CI installed (this interpreter) is exactly what pyproject.toml and envs pin."""
    for name, version in _pyproject_pins().items():
        installed = Version(metadata.version(name))
        # a local build label (torch 2.13.0+cpu) satisfies the pin 2.13.0, as pip treats it
        assert installed.public == version, f"{name}: installed {installed}, pinned {version}"
