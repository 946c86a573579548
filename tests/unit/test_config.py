"""The config schema: defaults filled, unknown keys and bad types rejected with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from echoprep.config import ConfigError, load_schema, validate_config

ROOT = Path(__file__).resolve().parents[2]


def _walk(schema, path=""):
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}" if path else key)


def test_every_key_has_type_description_and_default():
    for path, sub in _walk(load_schema()):
        if not path:
            continue
        assert "type" in sub, path
        assert sub.get("description"), path
        if path != "bids_dir":
            assert "default" in sub, path


def test_config_yaml_documents_every_key_with_the_schema_default():
    shipped = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    schema = load_schema()
    defaults = validate_config({"bids_dir": "x"})
    for path, _sub in _walk(schema):
        if not path or path == "bids_dir":
            continue
        node_s, node_d = shipped, defaults
        for part in path.split("."):
            assert part in node_s, f"config/config.yaml lacks {path}"
            node_s, node_d = node_s[part], node_d[part]
        assert node_s == node_d, f"{path}: config.yaml has {node_s!r}, schema default {node_d!r}"


def test_defaults_are_filled():
    cfg = validate_config({"bids_dir": "/data"})
    assert cfg["single_echo"]["echo"] == 2
    assert cfg["tedana"]["tedpca"] == "aic"
    assert cfg["variants"]["combine"] == ["single", "optcom", "denoised"]
    assert cfg["seed"] == 0


def test_unknown_keys_and_bad_values_are_all_reported():
    with pytest.raises(ConfigError) as err:
        validate_config(
            {
                "bids_dir": "/d",
                "outptu_dir": "x",
                "tedana": {"tedpac": "aic"},
                "single_echo": {"echo": 0},
            }
        )
    msg = str(err.value)
    assert msg.startswith("3 problem(s) in the echoprep configuration")
    assert "'outptu_dir' was unexpected" in msg and "Allowed keys here" in msg
    assert "tedana: Additional properties are not allowed ('tedpac' was unexpected)" in msg
    assert "single_echo.echo: 0 is less than the minimum of 1" in msg


def test_missing_bids_dir_is_an_error_that_says_how_to_give_it():
    with pytest.raises(ConfigError) as err:
        validate_config({})
    msg = str(err.value)
    assert "bids_dir: expected the raw BIDS dataset folder (required, no default)" in msg
    assert "--config bids_dir=/path/to/bids" in msg
    assert "--configfile config/demo.yaml" in msg


def test_config_yaml_has_no_bids_dir_but_documents_it():
    """A plain run must not silently plan the demo: only config/demo.yaml names a dataset."""
    text = (ROOT / "config" / "config.yaml").read_text()
    assert "bids_dir" not in yaml.safe_load(text)
    assert "# bids_dir: /path/to/bids" in text and "Required" in text
    assert yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["bids_dir"] == "demo/bids"


def test_dotted_keys_set_nested_keys():
    cfg = validate_config(
        {
            "bids_dir": "/d",
            "nordic": {"enabled": True, "factor_error": 1.5},
            "nordic.enabled": False,
            "rois.visual.alpha": 0.01,
        }
    )
    assert cfg["nordic"]["enabled"] is False  # the dotted key wins
    assert cfg["nordic"]["factor_error"] == 1.5  # its neighbours stay
    assert cfg["rois"]["visual"]["alpha"] == 0.01
    assert (
        cfg["rois"]["visual"]["min_voxels"]
        == validate_config({"bids_dir": "/d"})["rois"]["visual"]["min_voxels"]
    )
    assert not any("." in key for key in cfg)


def test_unknown_dotted_keys_get_the_unknown_key_message():
    nested = {"bids_dir": "/d", "nordic": {"enabeld": False}, "nordc": {"enabled": False}}
    dotted = {"bids_dir": "/d", "nordic.enabeld": False, "nordc.enabled": False}
    with pytest.raises(ConfigError) as a:
        validate_config(nested)
    with pytest.raises(ConfigError) as b:
        validate_config(dotted)
    assert str(a.value) == str(b.value)
    assert "nordic: Additional properties are not allowed ('enabeld' was unexpected). " in str(
        b.value
    )
    assert "Allowed keys here: ['chunk_patches', 'device', 'enabled'," in str(b.value)
    assert "('nordc' was unexpected). Allowed keys here: ['anatomy', 'bids_dir'," in str(b.value)


def test_a_dotted_key_through_a_value_is_refused():
    with pytest.raises(ConfigError) as err:
        validate_config({"bids_dir": "/d", "seed.x": 1, "nordic..enabled": False})
    msg = str(err.value)
    assert "seed.x: expected seed to be a section (a mapping of keys); found a single value" in msg
    assert "nordic..enabled: expected a dotted key of non-empty names" in msg


def test_command_line_text_is_read_as_yaml_where_the_schema_wants_a_type():
    """What Snakemake hands over for --config 'nordic={enabled: false, factor_error: 1.5}'
    'variants={combine: [single, optcom]}' 'rois={dir: null}' (merged into the config
    files' values), typed by the schema; strings the schema wants stay strings."""
    given = {
        "nordic": {"enabled": "false", "factor_error": "1.5", "phase_units": "radians"},
        "variants": {"combine": ["single", "optcom"]},
        "rois": {"dir": "null"},
        "task": "on",  # YAML 1.1 would read a boolean: a task label stays text
    }
    shipped = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    merged = {**shipped, "bids_dir": "/d", "task": "on"}
    merged["nordic"] = {**shipped["nordic"], **given["nordic"]}
    merged["variants"] = given["variants"]
    merged["rois"] = {**shipped["rois"], **given["rois"]}
    cfg = validate_config(merged, command_line=given)
    assert cfg["nordic"]["enabled"] is False and cfg["nordic"]["factor_error"] == 1.5
    assert cfg["nordic"]["phase_units"] == "radians"
    assert cfg["variants"]["combine"] == ["single", "optcom"]
    assert cfg["rois"]["dir"] is None
    assert cfg["task"] == "on"
    # without the command line, the same text is an error (a config file says what it means)
    with pytest.raises(ConfigError, match=r"nordic\.enabled: 'false' is not of type 'boolean'"):
        validate_config(merged)
    # a typed value out of range names the range, not the type
    with pytest.raises(ConfigError, match=r"nordic\.factor_error: -1 is less than or equal to"):
        bad = {"nordic": {"factor_error": "-1"}}
        validate_config({"bids_dir": "/d", **bad}, command_line=bad)


def test_a_section_given_as_a_string_shows_the_working_forms():
    with pytest.raises(ConfigError) as err:
        validate_config({"bids_dir": "/d", "nordic": "off"}, command_line={"nordic": "off"})
    msg = str(err.value)
    assert "nordic: expected a section (a mapping of keys to values); found 'off'." in msg
    assert "--config 'nordic={enabled: false}'" in msg
    assert "--configfile overrides.yaml" in msg and "nordic.enabled: false" in msg


def test_command_line_overrides_a_files_values():
    given = yaml.safe_load("bids_dir: a\nseed: 3\nnordic.factor_error: 2.0\n")
    overrides = {"seed": 5, "nordic.enabled": "false"}  # as --config text
    cfg = validate_config({**given, **overrides}, command_line=overrides)
    assert cfg["seed"] == 5 and cfg["bids_dir"] == "a"
    assert cfg["nordic"]["enabled"] is False and cfg["nordic"]["factor_error"] == 2.0


def test_output_and_work_inside_the_raw_dataset_are_refused_derivatives_allowed(tmp_path):
    """Writing into the raw dataset (a dry run wrote work/bids_index there, and the next run
    found the workflow's files as inputs) is refused with both problems and the fix; below
    the dataset's derivatives/ and outside it are fine."""
    bids = tmp_path / "bids"
    with pytest.raises(ConfigError) as err:
        validate_config(
            {"bids_dir": str(bids), "output_dir": str(bids / "out"), "work_dir": str(bids)}
        )
    msg = str(err.value)
    assert msg.startswith("2 problem(s) in the echoprep configuration:")
    assert (
        f"output_dir: expected a folder outside the raw dataset bids_dir ({bids}) or below its "
        f"derivatives/ folder; found {bids / 'out'}."
    ) in msg
    assert f"Fix: --config output_dir={bids / 'derivatives' / 'echoprep'} (or a folder" in msg
    assert f"work_dir: expected a folder outside the raw dataset bids_dir ({bids})" in msg
    assert f"Fix: --config work_dir={bids / 'derivatives' / 'echoprep'}/work" in msg
    ok = validate_config(
        {
            "bids_dir": str(bids),
            "output_dir": str(bids / "derivatives" / "echoprep"),
            "work_dir": str(tmp_path / "work"),
        }
    )
    assert ok["output_dir"].endswith("derivatives/echoprep")
    # a sibling whose name starts like the dataset's is outside it
    validate_config({"bids_dir": str(bids), "output_dir": str(tmp_path / "bids-out")})


def test_a_label_list_given_as_one_number_says_how_to_quote_it():
    """``--config participant_label=01`` arrives as the number 1: the message says why and
    gives the quoted list that works."""
    with pytest.raises(ConfigError) as err:
        validate_config({"bids_dir": "/x", "participant_label": 1})
    assert str(err.value).endswith(
        "participant_label: expected a list; found 1. Fix: give a quoted YAML list, e.g. "
        "--config 'participant_label=[\"01\"]' (--config reads a bare 01 as the number 1), "
        "or a YAML list in your --configfile."
    )
