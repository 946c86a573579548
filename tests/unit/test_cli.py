"""The ``echoprep`` command line: stage sub-commands import only their own module."""

from __future__ import annotations

import subprocess
import sys

import pytest

from echoprep.cli import STAGE_COMMANDS, _command_of, build_parser

PROBE = (
    "import sys; from echoprep.cli import build_parser; build_parser({cmd!r}); "
    "print(sorted(m for m in ('matplotlib', 'ants', 'jinja2', 'tedana') if m in sys.modules))"
)


@pytest.mark.parametrize("command", ["nordic", "glm", "noiseceiling", "simulate"])
def test_light_commands_do_not_import_the_report_or_ants_stacks(command: str) -> None:
    """A NORDIC or GLM job runs in envs/echoprep.yaml, which has no matplotlib or antspyx."""
    res = subprocess.run(
        [sys.executable, "-c", PROBE.format(cmd=command)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_every_stage_command_parses_its_own_arguments() -> None:
    for name in STAGE_COMMANDS:
        with pytest.raises(SystemExit) as exc:
            build_parser(name).parse_args([name, "--help"])
        assert exc.value.code == 0


def test_command_is_the_first_word_that_is_not_an_option() -> None:
    assert _command_of(["-v", "glm", "--bold", "x"]) == "glm"
    assert _command_of(["--version"]) == ""


def test_key_paths_parses_and_refuses_with_the_form_expected() -> None:
    from pathlib import Path

    from echoprep.io.arguments import key_paths

    assert key_paths(["bold=a.nii.gz", "mask=b/c.nii.gz"]) == {
        "bold": Path("a.nii.gz"),
        "mask": Path("b/c.nii.gz"),
    }
    assert key_paths(None) == {}
    for bad in ("bold", "=a.nii.gz", "bold="):
        with pytest.raises(SystemExit, match=rf"^--out expects KEY=PATH, got '{bad}'$"):
            key_paths([bad])
    with pytest.raises(SystemExit, match=r"^--nc expects tsv=PATH, got 'png=x'$"):
        key_paths(["png=x"], "--nc", form="tsv=PATH", keys=("tsv",))


def test_echo_key_paths_gives_each_echo_its_outputs_in_order() -> None:
    """A job treating several echoes: the i-th word with a key is echo i's; every key given
    (and every required one) once per echo."""
    from pathlib import Path

    from echoprep.io.arguments import echo_key_paths

    words = ["bold=b1", "gfactor=g1", "bold=b2", "gfactor=g2"]
    keys = ("bold", "gfactor", "removed")
    assert echo_key_paths(words, 2, keys=keys, required=("bold",), per="--mag") == [
        {"bold": Path("b1"), "gfactor": Path("g1")},
        {"bold": Path("b2"), "gfactor": Path("g2")},
    ]
    with pytest.raises(
        SystemExit, match=r"^--out expects one gfactor=PATH per --mag \(2\); got 1$"
    ):
        echo_key_paths(words[:3], 2, keys=keys, per="--mag")
    with pytest.raises(SystemExit, match=r"^--out expects one bold=PATH per echo \(1\); got 0$"):
        echo_key_paths(["gfactor=g1"], 1, keys=keys, required=("bold",))
    with pytest.raises(SystemExit, match=r"^--out expects bold\|gfactor\|removed=PATH, got 'x=1'$"):
        echo_key_paths(["x=1"], 1, keys=keys)
