"""Reading a config file into plain data, with every way it can fail as a ConfigError.

Whatever the file holds (not UTF-8, nesting deeper than the parser's recursion, an alias
that refers to itself, a "billion laughs" of aliases, a directory instead of a file), the
user gets one line naming the file, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from module_system.errors import ConfigError

# Far beyond any real registry, far below what would take the loader more than a moment.
MAX_VALUES = 100_000
MAX_DEPTH = 64


def read_text(path: Path, what: str) -> str:
    """The file's text; ``what`` ("registry file", "batch file") names it in errors."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def parse_yaml(path: Path, text: str) -> Any:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Only the problem and its position: PyYAML's own text quotes the offending line,
        # which may hold a secret that is not yet known to the log redaction.
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply (more than {MAX_DEPTH} levels)") from None
    check_size(path, data)
    return data


def parse_json(path: Path, text: str) -> Any:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply (more than {MAX_DEPTH} levels)") from None
    check_size(path, data)
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or "syntax error"
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem


def check_size(path: Path, data: Any) -> None:
    """Refuse data with more than MAX_VALUES values or MAX_DEPTH levels once YAML aliases
    are expanded, as the loader's recursive steps would see it. An alias that contains
    itself is infinitely deep, so it is refused as well."""
    values, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        values += 1
        if depth > MAX_DEPTH:
            raise ConfigError(
                f"{path}: nested too deeply (more than {MAX_DEPTH} levels,"
                " or a YAML alias that refers to itself)"
            )
        if values > MAX_VALUES:
            raise ConfigError(
                f"{path}: too large (more than {MAX_VALUES} values once YAML aliases are expanded)"
            )
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, dict | list):
            stack.extend((child, depth + 1) for child in children)
