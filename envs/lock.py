"""Write envs/*.yaml: each rule env's direct pins (pyproject.toml) plus every transitive pin.

The direct dependencies and their versions are chosen in one place, ``pyproject.toml``. An env
that pinned only those would resolve its transitive dependencies anew each time it is built, so
an env built on a cluster months later would differ from the one the tests ran in. This script
derives, for each env, the transitive closure of its direct requirements from the package
metadata of the Python that runs it (the tested ``.venv``), pins every package ``==`` its
installed version, and writes the env file with the closure inline (one file per env: Snakemake
hashes the env file to decide when to rebuild an env, so the pins must be in it, not in a file
it includes).

It also writes ``envs/constraints.txt``: the closure of everything ``make setup`` installs (the
core dependencies and every extra). ``make setup`` installs with ``pip install -c
envs/constraints.txt``, so a fresh ``.venv`` (CI's, a new user's) gets the locked transitive
versions too, not whatever the registry holds newest that day; the envs and the ``.venv`` the
tests ran in then agree by construction.

    .venv/bin/python envs/lock.py           # rewrite envs/*.yaml and envs/constraints.txt
    .venv/bin/python envs/lock.py --check   # exit 1 and list the stale files instead

A pinned package that is not on the package index (upstream GLMsingle, the extra
``glmsingle``) is written into the envs as ``NAME @ git+URL@COMMIT``, the source of its pinned
version in ``pyproject.toml``'s ``[tool.echoprep.git-sources]``; ``make setup`` installs it
from its wheel in ``../shared/wheels`` where that exists (without it, this script stops, naming
the package).

``tests/unit/test_envs.py`` recomputes the closure and fails when an env lacks a pin or pins
another version. Regenerate after changing a pin in ``pyproject.toml`` and ``make setup``.

Versions with a local build label (``torch 2.13.0+cpu``) are pinned without it, as in
``pyproject.toml``: pip treats ``==2.13.0`` as satisfied by either build.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "envs"
CONSTRAINTS = ENVS / "constraints.txt"
PYTHON = "3.11.7"
PIP = "24.0"


@dataclass(frozen=True)
class EnvSpec:
    """One rule env: ``extras`` of pyproject.toml on top of the core dependencies, minus the
    core dependencies in ``without``; ``about`` heads the file."""

    name: str
    about: str
    extras: tuple[str, ...] = ()
    without: tuple[str, ...] = ("tedana", "six")


SPECS: dict[str, EnvSpec] = {
    "echoprep.yaml": EnvSpec(
        "echoprep",
        "echoprep core: NumPy/SciPy/nibabel stages (single-echo baseline, sidecars, GLM, NC).",
    ),
    "report.yaml": EnvSpec(
        "echoprep-report",
        "Figures and the HTML report (comparison, subject reports): matplotlib, jinja2, Pillow.",
        extras=("report",),
    ),
    "spatial.yaml": EnvSpec(
        "echoprep-spatial",
        "Spatial preprocessing and anatomy: ANTs (antspyx), SimpleITK, deepbet (CPU torch).",
        extras=("spatial",),
    ),
    "tedana.yaml": EnvSpec(
        "echoprep-tedana",
        "tedana family: T2*/S0 fit, optimal combination, ICA denoising.",
        without=(),
    ),
    "gpu.yaml": EnvSpec(
        "echoprep-gpu",
        "GPU jobs (NORDIC chains with nordic.device: cuda, GLM fits with glm.device: cuda): the"
        " tedana env plus torch (its CUDA build).",
        extras=("gpu",),
        without=(),
    ),
    "glmsingle.yaml": EnvSpec(
        "echoprep-glmsingle",
        "GLM rules with glm.engine: glmsingle: the echoprep env plus upstream GLMsingle (from its"
        " repository at a pinned commit: pip needs git).",
        extras=("glmsingle",),
    ),
}

#: Extras whose packages are not on the package index: ``make setup`` installs them only where
#: ``../shared/wheels`` holds their wheels (:func:`missing_wheel_extras`).
WHEEL_EXTRAS = ("glmsingle",)


def norm(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_requirements(spec: EnvSpec, pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The direct requirements (``NAME==VERSION``) of one env, from pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = [r for r in project["dependencies"] if norm(Requirement(r).name) not in spec.without]
    for extra in spec.extras:
        reqs += project["optional-dependencies"][extra]
    return reqs


def git_sources(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """Normalised name -> ``git+URL@COMMIT`` of the pinned packages that are not on the package
    index (pyproject.toml ``[tool.echoprep.git-sources]``)."""
    tool = tomllib.loads(pyproject.read_text()).get("tool", {}).get("echoprep", {})
    return {norm(k): v for k, v in tool.get("git-sources", {}).items()}


def env_requirement(req: str, sources: dict[str, str]) -> str:
    """A direct requirement as an env installs it: ``NAME @ git+URL@COMMIT`` for a package of
    :func:`git_sources` (its pinned version is that commit's), else as it is."""
    name = Requirement(req).name
    source = sources.get(norm(name))
    return f"{name} @ {source}" if source else req


def missing_wheel_extras(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """Packages of :data:`WHEEL_EXTRAS` that this Python lacks (their wheel was absent when
    ``make setup`` ran): the closures that include them cannot be computed here."""
    project = tomllib.loads(pyproject.read_text())["project"]
    missing = []
    for extra in WHEEL_EXTRAS:
        for req in project["optional-dependencies"].get(extra, []):
            try:
                metadata.distribution(Requirement(req).name)
            except metadata.PackageNotFoundError:
                missing.append(Requirement(req).name)
    return missing


def setup_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """Everything ``make setup`` installs: the core dependencies and every extra."""
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return reqs


def render_constraints() -> str:
    """``envs/constraints.txt``: every package of the setup closure, ``==`` its version."""
    lines = [
        "# GENERATED by envs/lock.py: do not edit. `make setup` installs with `pip install -c`",
        "# this file: every package the .venv holds (pyproject.toml's pins, all extras, and",
        "# everything they need, transitively) at the version the tests ran with.",
    ]
    lines += [f"{n}=={v}" for n, v in closure(setup_requirements()).items()]
    return "\n".join(lines) + "\n"


def public_version(dist: str) -> str:
    """Installed version of ``dist`` without a local build label."""
    return Version(metadata.version(dist)).public


def closure(direct: list[str]) -> dict[str, str]:
    """Every installed distribution that ``direct`` needs, transitively, with its version.

    Requirements are followed as pip follows them for this interpreter and platform (markers
    evaluated, extras named in a requirement included). Returns normalised name -> version;
    a requirement that is not installed raises, naming it and who needs it.
    """
    env = default_environment()
    found: dict[str, str] = {}
    followed: set[tuple[str, str]] = set()  # (project, extra); "" = the bare requirement
    todo: list[tuple[Requirement, str]] = [(Requirement(r), "pyproject.toml") for r in direct]
    while todo:
        req, parent = todo.pop()
        key = norm(req.name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(
                f"envs/lock.py: {req.name} (needed by {parent}) is not installed in"
                f" {sys.prefix}; run `make setup` first, then this script with .venv/bin/python"
            ) from None
        found[key] = Version(dist.version).public
        for extra in sorted({"", *req.extras}):
            if (key, extra) in followed:
                continue
            followed.add((key, extra))
            for sub in dist.requires or []:
                child = Requirement(sub)
                if child.marker is None:
                    wanted = extra == ""
                else:
                    wanted = child.marker.evaluate({**env, "extra": extra})
                    # a marker without `extra` holds for the bare requirement only
                    wanted = wanted and (extra == "" or "extra" in str(child.marker))
                if wanted:
                    todo.append((child, key))
    return dict(sorted(found.items()))


def render(file_name: str, spec: EnvSpec) -> str:
    """The env file's text: header, direct pins, then the transitive ones."""
    direct = pyproject_requirements(spec)
    direct_names = {norm(Requirement(r).name) for r in direct}
    pins = closure(direct)
    lines = [
        f"# {spec.about}",
        "# GENERATED by envs/lock.py: do not edit. Direct pins come from pyproject.toml (the one",
        "# place where versions are chosen), the others are every transitive dependency at the",
        "# version installed in the tested .venv. After changing pyproject.toml: `make setup`,",
        f"# then `.venv/bin/python envs/lock.py`. tests/unit/test_envs.py checks {file_name}.",
        f"name: {spec.name}",
        "channels:",
        "  - conda-forge",
        "  - nodefaults",
        "dependencies:",
        f"  - python={PYTHON}",
        f"  - pip={PIP}",
        "  - pip:",
        "      # direct (pyproject.toml)",
    ]
    sources = git_sources()
    for r in direct:
        if env_requirement(r, sources) != r:
            lines.append(f"      # {r}: not on the package index, [tool.echoprep.git-sources]")
        lines.append(f"      - {env_requirement(r, sources)}")
    lines.append("      # transitive (from the tested .venv)")
    lines += [f"      - {n}=={v}" for n, v in pins.items() if n not in direct_names]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args(argv)
    stale = []
    wanted = {ENVS / name: render(name, spec) for name, spec in SPECS.items()}
    wanted[CONSTRAINTS] = render_constraints()
    for path, text in wanted.items():
        file_name = path.name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(file_name)
        if not args.check:
            path.write_text(text)
            print(f"wrote {path}")
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run `.venv/bin/python envs/lock.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
