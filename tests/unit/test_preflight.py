"""echoprep.preflight: placeholders, missing conda and optional packages stop a run (or warn)
before anything is built or submitted, with messages that name the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from echoprep import preflight
from echoprep.preflight import (
    Finding,
    Mode,
    PreflightError,
    check,
    conda_available,
    env_packages,
    missing_for,
    needed_packages,
    placeholder_resources,
    placeholder_source,
    profile_configs,
    raise_or_warn,
)

ROOT = Path(__file__).resolve().parents[2]
SLURM = ROOT / "profiles" / "slurm" / "config.yaml"
PLACEHOLDER_RES = ["mem_mb=500", "slurm_partition='CHANGE_ME_partition'", "runtime=10"]


def _check(mode: Mode, **kw) -> list[Finding]:
    args = {
        "mode": mode,
        "local_executor": False,
        "default_resources": PLACEHOLDER_RES,
        "deployment": [],
        "conda_found": True,
        "profile_files": [SLURM],
    }
    args.update(kw)
    return check(**args)


def test_placeholders_are_found_in_resource_strings():
    found = placeholder_resources([*PLACEHOLDER_RES, "slurm_account=CHANGE_ME_account", "x"])
    assert found == {
        "slurm_partition": "CHANGE_ME_partition",
        "slurm_account": "CHANGE_ME_account",
    }
    assert placeholder_resources(["slurm_partition=debug", "mem_mb=200"]) == {}


def test_the_shipped_slurm_profile_has_the_placeholder_and_it_is_located():
    assert placeholder_source("slurm_partition", [SLURM]) == SLURM
    assert placeholder_source("slurm_partition", [ROOT / "profiles/slurm-ci/config.yaml"]) is None


def test_submitting_with_a_placeholder_is_refused_naming_file_key_and_fix():
    (finding,) = _check(Mode.RUN)
    assert finding.level == "error"
    msg = finding.message
    assert str(SLURM) in msg and "slurm_partition=CHANGE_ME_partition" in msg
    # the command-line form repeats the other defaults: the option replaces the whole list
    cli = msg.split("--default-resources ", 1)[1].split(". ", 1)[0].split()
    assert sorted(cli) == ["mem_mb=500", "runtime=10", "slurm_partition=<yours>"]
    with pytest.raises(PreflightError, match="nothing was run or submitted"):
        raise_or_warn([finding], warn=print)


@pytest.mark.parametrize(
    ("mode", "local"), [(Mode.DRY_RUN, False), (Mode.RUN, True), (Mode.CREATE_ENVS, False)]
)
def test_a_placeholder_only_warns_when_nothing_is_submitted(mode, local):
    (finding,) = _check(mode, local_executor=local)
    assert finding.level == "warning"
    warned: list[str] = []
    raise_or_warn([finding], warn=warned.append)
    assert len(warned) == 1 and "slurm_partition" in warned[0]


def test_report_unlock_and_listing_are_never_refused():
    assert _check(Mode.OTHER, conda_found=False, deployment=["conda"]) == []


def test_a_real_value_passes():
    assert _check(Mode.RUN, default_resources=["slurm_partition=debug"]) == []


@pytest.mark.parametrize("mode", [Mode.RUN, Mode.DRY_RUN, Mode.CREATE_ENVS])
def test_conda_without_conda_names_both_ways_out(mode):
    (finding,) = _check(mode, default_resources=[], deployment=["conda"], conda_found=False)
    assert finding.level == "error"
    assert "Miniforge" in finding.message
    assert "--sdm env-modules" in finding.message
    assert "--conda-create-envs-only" in finding.message


def test_conda_present_or_not_used_passes():
    assert _check(Mode.RUN, default_resources=[], deployment=["conda"], conda_found=True) == []
    assert (
        _check(Mode.RUN, default_resources=[], deployment=["env-modules"], conda_found=False) == []
    )
    # --conda-create-envs-only implies conda whatever the profile says
    (f,) = _check(Mode.CREATE_ENVS, default_resources=[], deployment=[], conda_found=False)
    assert f.level == "error"


def test_conda_available_looks_for_conda_or_mamba():
    assert conda_available(lambda exe: None) is False
    assert conda_available(lambda exe: "/x/mamba" if exe == "mamba" else None) is True


def test_profile_configs_resolve_paths_names_and_the_environment(tmp_path):
    prof = tmp_path / "cwd" / "profiles" / "slurm"
    prof.mkdir(parents=True)
    (prof / "config.yaml").write_text("executor: slurm\n")
    home_prof = tmp_path / "home" / ".config" / "snakemake" / "mine"
    home_prof.mkdir(parents=True)
    (home_prof / "config.yaml").write_text("executor: slurm\n")
    kw = {"cwd": tmp_path / "cwd", "home": tmp_path / "home"}
    assert profile_configs(["--profile", "profiles/slurm"], {}, **kw) == [
        (prof / "config.yaml").resolve()
    ]
    assert profile_configs(["--profile=mine"], {}, **kw) == [home_prof / "config.yaml"]
    assert profile_configs([], {"SNAKEMAKE_PROFILE": "mine"}, **kw) == [home_prof / "config.yaml"]
    assert profile_configs(["--profile", "absent"], {}, **kw) == []


def test_optional_packages_follow_the_config():
    assert needed_packages({"glm": {"engine": "echoprep", "hdf5": False}}) == []
    got = needed_packages({"glm": {"engine": "glmsingle", "hdf5": True}})
    assert [(opt, mod) for opt, mod, _ in got] == [
        ("glm.engine: glmsingle", "glmsingle"),
        ("glm.hdf5: true", "h5py"),
    ]


def test_missing_optional_packages_with_and_without_conda(tmp_path, monkeypatch):
    env = tmp_path / "env.yaml"
    env.write_text("dependencies:\n  - python=3.11.7\n  - pip:\n      - h5py==3.16.0\n")
    cfg = {"glm": {"engine": "glmsingle", "hdf5": True}}
    # conda: what the glm env file lists
    assert [m for _, m, _ in missing_for(cfg, ["conda"], env_file=env)] == ["glmsingle"]
    # no conda: what this Python can import
    monkeypatch.setattr(preflight, "importable", lambda module: module == "h5py")
    assert [m for _, m, _ in missing_for(cfg, [], env_file=env)] == ["glmsingle"]
    monkeypatch.setattr(preflight, "importable", lambda module: False)
    assert [m for _, m, _ in missing_for(cfg, ["env-modules"], env)] == ["glmsingle", "h5py"]
    # the fix installs upstream from its repository at the pinned commit (not on the index)
    missing = needed_packages({"glm": {"engine": "glmsingle"}})
    (f,) = _check(Mode.RUN, default_resources=[], missing_packages=missing)
    assert f.level == "error"
    assert "glm.engine: glmsingle" in f.message
    assert "pip install 'glmsingle @ git+https://github.com/cvnlab/GLMsingle.git@" in f.message
    # with conda the fitting rules of glm.engine: glmsingle run in envs/glmsingle.yaml, which
    # has upstream GLMsingle and h5py: nothing is missing
    assert preflight.glm_env(cfg).name == "glmsingle.yaml"
    assert missing_for(cfg, ["conda"]) == []
    assert [m for _, m, _ in missing_for({"glm": {"hdf5": True}}, ["conda"])] == ["h5py"]
    (f,) = _check(Mode.DRY_RUN, default_resources=[], missing_packages=missing)
    assert f.level == "warning"


def test_env_packages_reads_pins_and_included_lock_files(tmp_path):
    (tmp_path / "x.lock.txt").write_text("# header\nsix==1.17.0\nNumPy==2.3.5\n")
    env = tmp_path / "x.yaml"
    env.write_text("dependencies:\n  - python=3.11.7\n  - pip:\n      - -r x.lock.txt\n")
    assert env_packages(env) == {"python", "six", "numpy"}
