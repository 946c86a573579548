"""``echoprep install-profile``: ``snakemake --profile slurm`` works as typed afterwards.

The link goes where Snakemake 9 looks for a profile by name (``snakemake.cli.get_profile_dir``:
the current folder, then ``platformdirs``' user configuration folder, ``$XDG_CONFIG_HOME`` or
``~/.config``, plus ``snakemake``); a second run says it is installed; anything else under the
name is left alone (exit 2, saying what is there and how to go on) unless ``--force``. The
acceptance test runs the README's two commands with ``HOME`` an empty temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from echoprep.install_profile import PROFILES, install_profile, user_profile_dir
from helpers.bidstree import make_bids_tree
from helpers.snake import ROOT, job_counts

SLURM = PROFILES / "slurm"


def _env(home: Path, xdg: Path | None = None) -> dict[str, str]:
    """This process's environment with ``HOME`` (and ``XDG_CONFIG_HOME`` set or unset)."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME", "SNAKEMAKE_PROFILE")}
    env["HOME"] = str(home)
    if xdg is not None:
        env["XDG_CONFIG_HOME"] = str(xdg)
    return env


def _echoprep(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("echoprep")), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _make(kind: str, path: Path, other: Path, gone: Path) -> None:
    """Put a ``kind`` of thing at ``path``: another profile folder, a file, a link to
    ``other`` or a dangling link (to ``gone``)."""
    if kind == "folder":
        path.mkdir()
        (path / "config.yaml").write_text("jobs: 1\n")
    elif kind == "file":
        path.write_text("x")
    else:
        path.symlink_to(other if kind == "link" else gone)


def test_the_folder_is_where_snakemake_looks(tmp_path, monkeypatch):
    """Our XDG rule gives platformdirs' folder (Snakemake's), with XDG_CONFIG_HOME unset,
    blank or set; and Snakemake's own lookup finds the link."""
    from platformdirs import AppDirs
    from snakemake.cli import get_profile_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for xdg in (None, " ", str(tmp_path / "xdg")):
        if xdg is None:
            monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CONFIG_HOME", xdg)
        assert user_profile_dir() == Path(AppDirs("snakemake", "snakemake").user_config_dir)
        assert install_profile().status == 0
        found = get_profile_dir("slurm")
        assert found is not None and found[0] == user_profile_dir() / "slurm"
        assert found[1].resolve() == (SLURM / "config.yaml").resolve()


def test_second_run_says_installed_and_others_are_left_alone(tmp_path):
    home = tmp_path / "home"
    env = {"HOME": str(home)}
    first = install_profile(environ=env, home=home)
    link = home / ".config" / "snakemake" / "slurm"
    assert first.status == 0 and "installed" in first.message
    assert link.is_symlink() and link.resolve() == SLURM.resolve()
    again = install_profile(environ=env, home=home)
    assert again.status == 0 and again.message.startswith("already installed")
    # something else under the name: described, left as it is, the three ways on named
    other = tmp_path / "mine"
    other.mkdir()
    said = {
        "folder": "a folder (config.yaml)",
        "file": "a file",
        "link": f"a symbolic link to {other}",
        "dangling": f"a symbolic link to {tmp_path / 'gone'}, which does not exist",
    }
    link.unlink()
    for kind, words in said.items():
        _make(kind, link, other, tmp_path / "gone")
        before = sorted(p.name for p in link.parent.iterdir())
        out = install_profile(environ=env, home=home)
        assert out.status == 2, kind
        assert f"{link} already exists: {words}" in out.message, (kind, out.message)
        for way in ("echoprep install-profile --force", f"rm {link}", f"--profile {SLURM}"):
            assert way in out.message.replace("rm -r", "rm"), (kind, way)
        assert sorted(p.name for p in link.parent.iterdir()) == before
        forced = install_profile(environ=env, home=home, force=True)
        assert forced.status == 0 and link.resolve() == SLURM.resolve(), kind
        if kind == "folder":  # moved aside, never deleted
            (aside,) = link.parent.glob("slurm.before-echoprep-*")
            assert (aside / "config.yaml").read_text() == "jobs: 1\n"
        link.unlink()
    assert other.is_dir()  # a link's target is never touched


def test_command_line_exit_status_and_messages(tmp_path):
    home = tmp_path / "home"
    (home / ".config" / "snakemake" / "slurm").mkdir(parents=True)
    res = _echoprep("install-profile", env=_env(home), cwd=tmp_path)
    assert res.returncode == 2 and "already exists: a folder" in res.stderr, res.stderr
    res = _echoprep("install-profile", "--force", env=_env(home), cwd=tmp_path)
    assert res.returncode == 0 and "installed:" in res.stdout, res.stderr
    res = _echoprep("install-profile", env=_env(home), cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.startswith("already installed"), res.stderr


@pytest.mark.parametrize("xdg", [False, True], ids=["default", "XDG_CONFIG_HOME"])
def test_snakemake_profile_slurm_plans_after_install(tmp_path, xdg):
    """The issue's acceptance check: in an empty HOME, ``echoprep install-profile`` then
    ``snakemake --profile slurm -n --sdm env-modules --config bids_dir=...`` plans (exit 0),
    with the slurm profile's settings (its placeholder partition warned about)."""
    home = tmp_path / "home"
    home.mkdir()
    env = _env(home, tmp_path / "xdg" if xdg else None)
    bids = make_bids_tree(
        tmp_path / "bids", subjects=("01",), sessions=("01",), runs=("01",), data=False
    )
    res = _echoprep("install-profile", env=env, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (user_profile_dir(env, home) / "slurm").resolve() == SLURM.resolve()
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", "--sdm", "env-modules"]
    cmd += ["--config", f"bids_dir={bids}", f"output_dir={tmp_path / 'out'}"]
    cmd += [f"work_dir={tmp_path / 'work'}"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert job_counts(out)["glm"] >= 1
    assert "CHANGE_ME_partition" in out  # the slurm profile's settings were read
    # without the link the same command cannot find the profile
    bare = tmp_path / "bare"
    bare.mkdir()
    res = subprocess.run(cmd, cwd=ROOT, env=_env(bare), capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "profile" in (res.stdout + res.stderr)
