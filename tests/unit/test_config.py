"""The config schema: defaults filled, unknown keys and bad types rejected with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from echoprep.config import ConfigError, load_config, load_schema, validate_config

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


def test_missing_bids_dir_is_an_error():
    with pytest.raises(ConfigError, match="'bids_dir' is a required property"):
        validate_config({})


def test_load_config_applies_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("bids_dir: a\nseed: 3\n")
    cfg = load_config(f, {"seed": 5})
    assert cfg["seed"] == 5 and cfg["bids_dir"] == "a"
