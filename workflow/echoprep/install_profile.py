"""``echoprep install-profile``: make ``snakemake --profile slurm`` find this checkout's profile.

Snakemake 9 resolves ``--profile NAME`` that is not an existing path by looking for a folder
``NAME`` in the current directory, then in the user's configuration folder and then in the
site's (``snakemake.cli.get_profile_dir``: ``platformdirs.AppDirs("snakemake", "snakemake")``,
on Linux ``$XDG_CONFIG_HOME/snakemake``, by default ``~/.config/snakemake``, then
``/etc/xdg/snakemake``). ``profiles/slurm`` of a checkout is none of those, so the command
links it there: ``~/.config/snakemake/slurm -> <checkout>/profiles/slurm``. A link rather than
a copy, so that the profile stays the checkout's (a ``git pull`` updates it, and the partition
you set in ``profiles/slurm/config.yaml`` is the one every way of naming the profile reads).

Running it again is harmless (it says the link is there). Anything else already under that
name (your own profile folder, a file, a link to another folder) is left alone: the command
says what is there and how to go on (``--force``, removing it, or naming the profile by its
path ``--profile <checkout>/profiles/slurm``), exit status 2. ``--force`` replaces a link or a
file and moves a folder aside (``slurm.before-echoprep-<time>``), never deleting one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: The checkout's profile folders (``profiles/<name>``).
PROFILES = Path(__file__).resolve().parents[2] / "profiles"
#: The profile linked by default.
DEFAULT_NAME = "slurm"
#: The sub-command's description (``echoprep install-profile --help``).
DESCRIPTION = (
    "Link this checkout's profiles/slurm into the folder where Snakemake looks for profiles by"
    " name ($XDG_CONFIG_HOME/snakemake, by default ~/.config/snakemake), so that `snakemake"
    " --profile slurm` works from any folder. Run again: says it is installed. Something else"
    " already named slurm there: left alone (exit 2) unless --force."
)


def user_profile_dir(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """The folder where Snakemake looks for profiles by name, for the current user.

    The XDG rule that ``platformdirs`` applies on Linux (what Snakemake uses): ``$XDG_CONFIG_HOME``
    when set and not blank, else ``~/.config``; then ``snakemake``.

    Parameters
    ----------
    environ
        Environment variables (None: ``os.environ``).
    home
        The home folder (None: ``Path.home()``, i.e. ``$HOME``).
    """
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME", "").strip()
    if not base:
        base = str((home if home is not None else Path.home()) / ".config")
    return Path(base).expanduser() / "snakemake"


@dataclass(frozen=True)
class Outcome:
    """What :func:`install_profile` did: exit ``status`` (0 done, 2 refused) and the
    ``message`` for the user."""

    status: int
    message: str


def _describe(path: Path) -> str:
    """What is at ``path`` (which exists or is a dangling link), in words."""
    if path.is_symlink():
        target = os.readlink(path)
        state = "" if path.exists() else ", which does not exist"
        return f"a symbolic link to {target}{state}"
    if path.is_dir():
        entries = sorted(p.name for p in path.iterdir())
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        return f"a folder ({shown or 'empty'}): another profile"
    return "a file"


def _same(link: Path, source: Path) -> bool:
    """Whether ``link`` is a symbolic link that leads to ``source``."""
    if not link.is_symlink():
        return False
    target = Path(os.readlink(link))
    if not target.is_absolute():
        target = link.parent / target
    return os.path.realpath(target) == os.path.realpath(source)


def install_profile(
    name: str = DEFAULT_NAME,
    *,
    force: bool = False,
    profiles: Path = PROFILES,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Outcome:
    """Link ``profiles/<name>`` into the user's Snakemake profile folder.

    Parameters
    ----------
    name
        The profile (a folder of ``profiles``), and the name ``--profile`` will take.
    force
        Replace what is there: a link or a file is removed, a folder moved aside.
    profiles
        The checkout's profile folders.
    environ, home
        As for :func:`user_profile_dir`.

    Returns
    -------
    Outcome
        Status 0 when the link is (now, or already) in place, 2 when something else is in the
        way (and ``force`` is off) or the profile does not exist.
    """
    source = profiles / name
    if not (source / "config.yaml").is_file():
        return Outcome(
            2,
            f"{source} is not a Snakemake profile (no config.yaml): run this command from the"
            " echoprep checkout's .venv (`.venv/bin/echoprep install-profile`).",
        )
    folder = user_profile_dir(environ, home)
    link = folder / name
    by_path = f"--profile {source}"
    if _same(link, source):
        return Outcome(
            0,
            f"already installed: {link} -> {source}. `snakemake --profile {name}` uses it.",
        )
    moved = ""
    if link.exists() or link.is_symlink():
        what = _describe(link)
        is_folder = link.is_dir() and not link.is_symlink()
        if not force:
            remove = "rm -r" if is_folder else "rm"
            return Outcome(
                2,
                f"{link} already exists: {what}. Snakemake would use it for `--profile {name}`,"
                " so it was left as it is. To go on, either:\n"
                f"  - replace it: echoprep install-profile --force"
                " (a link or file is replaced, a folder moved aside, not deleted);\n"
                f"  - remove it yourself ({remove} {link}) and run this command again;\n"
                f"  - or leave it and name echoprep's profile by its path: {by_path}",
            )
        if is_folder:
            aside = link.with_name(f"{name}.before-echoprep-{time.strftime('%Y%m%d-%H%M%S')}")
            link.rename(aside)
            moved = f" (the folder that was there is now {aside})"
        else:
            link.unlink()
            moved = f" (replaced {what})"
    folder.mkdir(parents=True, exist_ok=True)
    link.symlink_to(source.resolve(), target_is_directory=True)
    return Outcome(
        0,
        f"installed: {link} -> {source.resolve()}{moved}. `snakemake --profile {name}` now uses"
        " this checkout's profile; set your partition in"
        f" {source.resolve() / 'config.yaml'} (default-resources).",
    )


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``echoprep install-profile`` arguments to a sub-command parser."""
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace what is already there (a link or file is replaced, a folder moved aside)",
    )
    return parser


def snakemake_lookup(name: str) -> Path | None:
    """The profile folder Snakemake itself finds for ``--profile NAME`` from the current
    folder (``snakemake.cli.get_profile_dir``), or None (not found, or Snakemake is not
    importable here)."""
    try:
        from snakemake.cli import get_profile_dir
    except ImportError:
        return None
    found = get_profile_dir(name)
    return None if found is None else Path(found[0])


def run_from_args(args: argparse.Namespace) -> int:
    """Run :func:`install_profile` for parsed arguments; print its message; its status.

    After a successful install, Snakemake's own lookup is asked which folder ``--profile
    slurm`` now means; a ``slurm`` folder in the current directory, which Snakemake searches
    first, is named in a warning."""
    outcome = install_profile(force=args.force)
    print(outcome.message, file=sys.stdout if outcome.status == 0 else sys.stderr)
    if outcome.status == 0:
        link = user_profile_dir() / DEFAULT_NAME
        found = snakemake_lookup(DEFAULT_NAME)
        if found is not None and found.absolute() != link.absolute():
            print(
                f"warning: from {Path.cwd()}, Snakemake finds {found.absolute()} first for"
                f" `--profile {DEFAULT_NAME}` (it searches the current folder before"
                f" {link.parent}); run Snakemake from another folder, or use --profile {link}",
                file=sys.stderr,
            )
    return outcome.status


__all__ = [
    "DEFAULT_NAME",
    "DESCRIPTION",
    "PROFILES",
    "Outcome",
    "add_arguments",
    "install_profile",
    "run_from_args",
    "snakemake_lookup",
    "user_profile_dir",
]
