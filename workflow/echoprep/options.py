"""Stage options: one frozen object per stage, built from its config section.

The config schema (``workflow/schemas/config.schema.yaml``) is the one place where an option's
default and allowed values are written. A stage declares the options it reads as a frozen
dataclass whose fields carry no defaults, names the config section they come from, and builds
the object with :func:`parse_options`: missing keys take the schema default, unknown keys and
values the schema does not allow are refused with one message naming every problem.
See ``docs/architecture.md`` ("One source of options").
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

import jsonschema

from echoprep.config import load_schema

T = TypeVar("T")


class OptionsError(ValueError):
    """Options given to a stage are unknown or not allowed by the config schema."""


@cache
def _schema() -> dict[str, Any]:
    return load_schema()


def section_schema(section: str) -> dict[str, Any]:
    """The JSON Schema of one config section (e.g. ``"nordic"``).

    Raises
    ------
    KeyError
        For a section the schema does not have.
    """
    props = _schema()["properties"]
    if section not in props or props[section].get("type") != "object":
        raise KeyError(f"the config schema has no section {section!r}")
    return props[section]


def section_defaults(section: str) -> dict[str, Any]:
    """Every option of ``section`` with its schema default (a deep copy)."""
    props = section_schema(section).get("properties", {})
    return {k: copy.deepcopy(v["default"]) for k, v in props.items() if "default" in v}


def option_names(section: str) -> tuple[str, ...]:
    """The option names of ``section``, in schema order."""
    return tuple(section_schema(section).get("properties", {}))


def _freeze(value: Any) -> Any:
    """Lists become tuples (recursively) so that options objects are hashable and immutable."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    return value


def parse_options(
    cls: type[T], section: str, given: T | Mapping[str, Any] | None, *, source: str
) -> T:
    """Build a stage's frozen options object from (part of) its config section.

    Parameters
    ----------
    cls
        A frozen dataclass whose field names are exactly the option names of ``section``.
    section
        The config section, e.g. ``"glm"``.
    given
        The options given (e.g. the rule's config section, decoded from ``--options-json``);
        missing keys take the schema default, None means all defaults. An instance of ``cls``
        (options already parsed) is returned as it is.
    source
        Where the options came from, for the message (e.g. ``"--options-json"``).

    Returns
    -------
    cls
        With every field set; lists are turned into tuples.

    Raises
    ------
    OptionsError
        Listing every unknown key and every value the schema does not allow.
    """
    if isinstance(given, cls):
        return given
    names = option_names(section)
    fields = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    if set(fields) != set(names):
        raise TypeError(
            f"{cls.__name__} must declare exactly the options of config section '{section}': "
            f"missing {sorted(set(names) - set(fields))}, extra {sorted(set(fields) - set(names))}"
        )
    given = dict(given or {})
    problems = []
    unknown = sorted(set(given) - set(names))
    if unknown:
        problems.append(
            f"unknown key(s) {unknown}; allowed keys of '{section}': {sorted(names)}. "
            f"Fix: remove or rename them (config/config.yaml documents '{section}')"
        )
    values = section_defaults(section)
    values.update({k: copy.deepcopy(v) for k, v in given.items() if k in names})
    validator = jsonschema.Draft202012Validator(section_schema(section))
    for err in sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in err.absolute_path)
        if err.validator == "additionalProperties":
            if not where:
                continue  # unknown keys of the section itself: reported above
            allowed = err.schema.get("properties", {})
            extra = sorted(set(err.instance) - set(allowed))
            problems.append(
                f"unknown key(s) {extra} in '{section}.{where}'; allowed keys: {sorted(allowed)}. "
                "Fix: remove or rename them"
            )
            continue
        problems.append(f"{section}.{where or section}: {err.message}")
    if problems:
        raise OptionsError(
            f"{source}: {len(problems)} problem(s) in the '{section}' options:\n"
            + "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1))
        )
    return cls(**{k: _freeze(values.get(k)) for k in fields})


def options_dict(options: Any) -> dict[str, Any]:
    """A plain dict (lists, not tuples) of an options object, e.g. for a JSON sidecar."""
    return {k: _thaw(v) for k, v in dataclasses.asdict(options).items()}


def options_json(options: Mapping[str, Any] | Any) -> str:
    """The compact JSON a rule passes as ``--options-json`` (sorted keys)."""
    data = options if isinstance(options, Mapping) else options_dict(options)
    return json.dumps(_thaw(dict(data)), sort_keys=True)


__all__ = [
    "OptionsError",
    "option_names",
    "options_dict",
    "options_json",
    "parse_options",
    "section_defaults",
    "section_schema",
]
