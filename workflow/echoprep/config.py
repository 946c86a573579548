"""Loading and validating the workflow configuration against its JSON Schema.

Besides the schema check, :func:`validate_config` makes the configuration easy to override:

* **dotted keys** (``nordic.enabled: false`` in an overrides file, or ``{"nordic.enabled":
  False}`` through the Python API) set one nested key, so an overrides file needs no nesting;
* **values given with ``--config``** arrive from Snakemake as text when they are not plain numbers
  or ``True``/``False`` (``--config 'nordic={enabled: false}'`` gives ``{"enabled": "false"}``):
  they are read as YAML scalars wherever the schema wants something else than a string
  (``false``, ``1.5``, ``null``, ``[single, optcom]``);
* a section given as a string, a dotted key into a value that is not a section and a missing
  ``bids_dir`` are refused with a message that shows the forms that work.

Snakemake's own command line refuses a dotted name before the workflow starts
(``--config nordic.enabled=false``: "Config entry must start with a valid identifier"); the working
forms are ``--config 'nordic={enabled: false}'`` and ``--configfile overrides.yaml``
(docs/configuration.md).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"

#: How to override a nested key; quoted in the error messages.
OVERRIDE_FORMS = (
    "on the command line as a YAML mapping, e.g. --config 'nordic={enabled: false}' (Snakemake "
    "refuses dotted names such as --config nordic.enabled=false before the workflow starts), "
    "or in a file given with --configfile overrides.yaml, holding either `nordic: {enabled: "
    "false}` or the dotted form `nordic.enabled: false`"
)
#: How to give the raw dataset; quoted when bids_dir is missing.
BIDS_DIR_FORMS = (
    "give the raw BIDS dataset with --config bids_dir=/path/to/bids (or bids_dir: in your "
    "--configfile); for the built-in demo use --configfile config/demo.yaml"
)


class ConfigError(ValueError):
    """The configuration does not match the schema."""


#: PyYAML's safe loader, in C (libyaml) where PyYAML was built with it: the schema is read by
#: every Snakemake process (a cluster job's too) and every stage, and the pure-Python loader
#: took 0.09 s of the 3.2 s of the demo's dry run, twice (0.01 s with libyaml; same result).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_schema() -> dict[str, Any]:
    """The config JSON Schema (``workflow/schemas/config.schema.yaml``) as a dict."""
    with open(SCHEMA_PATH) as fh:
        return yaml.load(fh, Loader=SAFE_LOADER)


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


def _types(schema: Mapping[str, Any]) -> set[str]:
    kind = schema.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


# ---------------------------------------------------------------------------------------------
# dotted keys and command-line text


def expand_dotted(
    config: Mapping[str, Any], schema: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Turn top-level dotted keys (``"nordic.enabled"``) into nested ones.

    Parameters
    ----------
    config
        A configuration as merged by Snakemake (not modified).
    schema
        The config schema: a dotted key through a key that the schema does not type as a
        section (``seed.x``) is a problem. ``None``: only the values present are checked.

    Returns
    -------
    expanded
        A copy where each dotted key set its nested key (a dotted key wins over the same key
        given nested, whatever the order).
    problems
        One line per dotted key that runs into a value that is not a section (``seed.x``).
    """
    out = copy.deepcopy(dict(config))
    problems: list[str] = []
    for key in sorted(k for k in out if isinstance(k, str) and "." in k):
        value = out.pop(key)
        parts = key.split(".")
        if any(not p for p in parts):
            problems.append(
                f"{key}: expected a dotted key of non-empty names (section.key); found an empty "
                "name. Fix: write it as section.key, e.g. nordic.enabled."
            )
            continue
        node, sub = out, schema
        for depth, part in enumerate(parts[:-1]):
            sub = sub.get("properties", {}).get(part) if sub is not None else None
            child = node.setdefault(part, {})
            if not isinstance(child, dict) or (sub is not None and "object" not in _types(sub)):
                where = ".".join(parts[: depth + 1])
                if child == {}:
                    del node[part]
                problems.append(
                    f"{key}: expected {where} to be a section (a mapping of keys); found a "
                    f"single value there. Fix: {where} takes a value itself ({where}: <value>)."
                )
                break
            node = child
        else:
            node[parts[-1]] = value
    return out, problems


def _valid(value: Any, schema: Mapping[str, Any]) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def _from_text(value: Any, schema: Mapping[str, Any]) -> Any:
    """A value given on the command line, read as YAML where the schema wants it typed."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: _from_text(v, props[k]) if k in props else v for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            return [_from_text(v, items) for v in value]
        return value
    if not isinstance(value, str):
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if isinstance(parsed, str):
        return value
    if isinstance(parsed, list | dict):
        parsed = _from_text(parsed, schema)
    # the typed value when it is valid or at least of an allowed type (its error then names the
    # range it breaks), else the text as given
    if _valid(parsed, schema) or ("type" in schema and _valid(parsed, {"type": schema["type"]})):
        return parsed
    return value


def _apply_command_line(
    config: dict[str, Any], given: Mapping[str, Any], schema: Mapping[str, Any]
) -> None:
    """Read the values that came from ``--config`` (``given``) as YAML, in place."""
    props = schema.get("properties", {})
    for key, raw in given.items():
        if key not in config or key not in props:
            continue
        sub = props[key]
        if isinstance(raw, Mapping) and isinstance(config[key], dict):
            if "object" in _types(sub):
                _apply_command_line(config[key], raw, sub)
            continue
        config[key] = _from_text(config[key], sub)


# ---------------------------------------------------------------------------------------------
# validation


def _message(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties":
        sub = err.schema.get("properties", {})
        return (
            f"{_where(err)}: {err.message}. Allowed keys here: {sorted(sub)}. "
            "Fix: remove or rename the key (see config/config.yaml)."
        )
    if err.validator == "required" and "'bids_dir'" in err.message:
        return (
            "bids_dir: expected the raw BIDS dataset folder (required, no default); found no "
            f"bids_dir. Fix: {BIDS_DIR_FORMS}."
        )
    if (
        err.validator == "type"
        and "array" in _types(err.schema)
        and not isinstance(err.instance, list | dict)
    ):
        key = ".".join(str(p) for p in err.absolute_path)
        on_the_command_line = (
            f"a quoted YAML list, e.g. --config '{key}=[\"01\"]' (--config reads a bare 01 "
            "as the number 1), or "
            if "." not in key
            else ""
        )
        return (
            f"{_where(err)}: expected a list; found {err.instance!r}. Fix: give "
            f"{on_the_command_line}a YAML list in your --configfile."
        )
    if (
        err.validator == "type"
        and "object" in _types(err.schema)
        and not isinstance(err.instance, dict)
    ):
        return (
            f"{_where(err)}: expected a section (a mapping of keys to values); found "
            f"{err.instance!r}. Fix: give its keys {OVERRIDE_FORMS}."
        )
    return f"{_where(err)}: {err.message}."


def validate_config(
    config: Mapping[str, Any], command_line: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Validate a configuration and return a copy with every default filled in.

    Parameters
    ----------
    config
        As read from YAML (and merged with ``--config`` overrides); top-level dotted keys
        (``"nordic.enabled"``) set nested keys.
    command_line
        The ``--config`` entries as Snakemake parsed them (``workflow.config_settings.config``);
        their text values are read as YAML where the schema wants a number, boolean, null or
        list. ``None``: no value is re-read.

    Returns
    -------
    dict
        The validated configuration, defaults included, without dotted keys.

    Raises
    ------
    ConfigError
        Listing every problem: the key, what the schema expects and what was found
        (unknown keys name the section they are in and the keys that are allowed; a missing
        bids_dir and a section given as a string say how to give them).
    """
    schema = load_schema()
    filled, problems = expand_dotted(config, schema)
    if command_line:
        given, _ = expand_dotted(command_line, schema)
        _apply_command_line(filled, given, schema)
    _fill_defaults(filled, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(e.absolute_path))
    problems += [_message(err) for err in errors]
    if not errors:
        problems += _folder_problems(filled) + _device_problems(filled)
    if problems:
        raise ConfigError(
            f"{len(problems)} problem(s) in the echoprep configuration:\n"
            + "\n".join(f"  {i}. {line}" for i, line in enumerate(problems, 1))
        )
    return filled


def _device_problems(config: Mapping[str, Any]) -> list[str]:
    """``glm.device: cuda`` with ``glm.engine: glmsingle``: upstream GLMsingle has no GPU path
    (docs/glm.md §14, "GPU")."""
    glm = config.get("glm") or {}
    if glm.get("device") != "cuda" or glm.get("engine") != "glmsingle":
        return []
    return [
        "glm.device: expected cpu with glm.engine: glmsingle; found cuda. The GPU path is our "
        "engine's (glm.engine: echoprep); upstream GLMsingle runs on the CPU only. Fix: set "
        "glm.device: cpu, or glm.engine: echoprep"
    ]


def _folder_problems(config: Mapping[str, Any]) -> list[str]:
    """``output_dir`` or ``work_dir`` inside the raw dataset (``bids_dir``), outside its
    ``derivatives/`` folder: the workflow would write into the dataset it reads (invalid BIDS
    for other tools, and the next discovery finds the workflow's own files as inputs).
    Paths are compared resolved (relative ones from the working directory)."""
    if not isinstance(config.get("bids_dir"), str):
        return []
    bids = Path(config["bids_dir"]).resolve()
    problems = []
    for key in ("output_dir", "work_dir"):
        folder = Path(str(config[key])).resolve()
        if folder.is_relative_to(bids / "derivatives") or not folder.is_relative_to(bids):
            continue
        problems.append(
            f"{key}: expected a folder outside the raw dataset bids_dir ({bids}) or below its "
            f"derivatives/ folder; found {folder}. The workflow writes there, and files written "
            "inside a raw BIDS dataset make it invalid for other tools and are found as inputs "
            f"by the next run. Fix: --config {key}={bids / 'derivatives' / 'echoprep'}"
            f"{'/work' if key == 'work_dir' else ''} (or a folder outside {bids})"
        )
    return problems
