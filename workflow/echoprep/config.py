"""Loading and validating the workflow configuration against its JSON Schema."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration does not match the schema."""


def load_schema() -> dict[str, Any]:
    """The config JSON Schema (``workflow/schemas/config.schema.yaml``) as a dict."""
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def _fill_defaults(instance: Any, schema: Mapping[str, Any]) -> None:
    """Insert schema defaults for missing keys, recursively (in place)."""
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub)


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a configuration and return a copy with every default filled in.

    Parameters
    ----------
    config
        As read from YAML (and merged with ``--config`` overrides).

    Returns
    -------
    dict
        The validated configuration, defaults included.

    Raises
    ------
    ConfigError
        Listing every problem: the key, what the schema expects and what was found
        (unknown keys name the section they are in and the keys that are allowed).
    """
    schema = load_schema()
    filled = copy.deepcopy(dict(config))
    _fill_defaults(filled, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            if err.validator == "additionalProperties":
                sub = err.schema.get("properties", {})
                lines.append(
                    f"{_where(err)}: {err.message}. Allowed keys here: {sorted(sub)}. "
                    "Fix: remove or rename the key (see config/config.yaml)."
                )
            else:
                lines.append(f"{_where(err)}: {err.message}.")
        raise ConfigError(
            f"{len(errors)} problem(s) in the echoprep configuration:\n"
            + "\n".join(f"  {i}. {line}" for i, line in enumerate(lines, 1))
        )
    return filled


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config file, apply top-level overrides, validate and fill defaults."""
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    config.update(overrides or {})
    return validate_config(config)
