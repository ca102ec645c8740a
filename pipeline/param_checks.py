"""The building blocks every area's params schema uses: the error type, schema markers and type checks.

It imports nothing from the project, so each area's schema module (`pipeline.training.schema`,
`pipeline.detection.schema`, `pipeline.metrics.schema`, ...) and the loader `pipeline.params` can all
import it without importing each other. A schema is a nested dict of defaults: a missing key takes its
default, an unknown key or a value of the wrong type is an error naming the key.
"""
from __future__ import annotations

import copy
import re
from typing import Any, Callable


class ParamError(ValueError):
    """A parameter is unknown, missing or of the wrong type."""


class Optional_:
    """Schema marker: a value of `type_` or null, defaulting to `default`."""

    def __init__(self, type_: type, default: Any = None):
        self.type_ = type_
        self.default = default


class AnyMapping:
    """Schema marker: a mapping whose values its area's check validates (free-form keys)."""

    def __init__(self, default: dict | None = None):
        self.default = default or {}


Fail = Callable[[str, str, Any], None]
SHOWN_CHARS = 80
# Names that become file paths, DVC stage names and shell arguments (`xmr train ${item.dataset} ...`).
SAFE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """`repr(value)` cut to `limit` characters for a message (a 10 MB value must not make a 10 MB line)."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print (sys.get_int_max_str_digits)
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_name(name: Any, key: str, source: str) -> None:
    """A dataset or method name is data, never code: letters, digits, `_` and `-`, starting with a letter."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise ParamError(f"{source}: parameter '{key}' names {shown(name)}; a name must start with a letter and "
                         f"hold only letters, digits, '_' and '-' (at most 64 characters)")


def failer(source: str) -> Fail:
    """`fail(key, expected, value)` raising ParamError "<source>: parameter '<key>' must be <expected>, got ..."."""
    def fail(key: str, expected: str, value: Any) -> None:
        raise ParamError(f"{source}: parameter '{key}' must be {expected}, got {shown(value)}")
    return fail


def _type_name(value: Any) -> str:
    return type(value).__name__


def check_value(value: Any, default: Any, key: str, source: str) -> Any:
    """Return `value` validated against the schema entry `default`."""
    where = f"{source}: parameter '{key}'"
    if isinstance(default, Optional_):
        if value is None:
            return None
        return check_value(value, default.type_(), key, source)
    if isinstance(default, AnyMapping):
        if not isinstance(value, dict):
            raise ParamError(f"{where} must be a mapping, got {_type_name(value)} {shown(value)}")
        return copy.deepcopy(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ParamError(f"{where} must be a mapping, got {_type_name(value)} {shown(value)}")
        return merge_section(value, default, key + ".", source)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ParamError(f"{where} must be true or false, got {shown(value)}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{where} must be a number, got {_type_name(value)} {shown(value)}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{where} must be an integer, got {_type_name(value)} {shown(value)}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ParamError(f"{where} must be a string, got {_type_name(value)} {shown(value)}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ParamError(f"{where} must be a list, got {_type_name(value)} {shown(value)}")
        if default:
            return [check_value(v, default[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
        return list(value)
    raise TypeError(f"unsupported schema entry for {key}: {default!r}")


def default_of(entry: Any) -> Any:
    """The default value a schema entry stands for."""
    if isinstance(entry, (Optional_, AnyMapping)):
        return copy.deepcopy(entry.default)
    if isinstance(entry, dict):
        return {k: default_of(v) for k, v in entry.items()}
    return copy.deepcopy(entry)


def merge_section(given: dict, schema: dict, prefix: str, source: str) -> dict:
    """`given` checked key by key against `schema`, with defaults filled in; unknown keys are errors."""
    unknown = sorted(set(given) - set(schema))
    if unknown:
        raise ParamError(
            f"{source}: unknown parameter '{prefix}{unknown[0]}' "
            f"(expected one of: {', '.join(sorted(schema))})"
        )
    return {key: check_value(given[key], entry, prefix + key, source) if key in given else default_of(entry)
            for key, entry in schema.items()}
