"""``${VAR}`` and ``${VAR:-default}`` expansion of registry values from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PATTERN = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


class MissingVariable(KeyError):
    """A ``${VAR}`` without a default names a variable that is not set."""

    def __init__(self, name: str, where: str) -> None:
        super().__init__(name)
        self.name = name
        self.where = where


def interpolate(value: Any, env: Mapping[str, str], where: str = "") -> Any:
    """Expand variables in every string inside ``value`` (dicts and lists are walked).

    ``where`` is the dotted path of ``value`` in the file, used to say where a missing
    variable was referenced.
    """
    if isinstance(value, str):
        return _expand(value, env, where)
    if isinstance(value, dict):
        return {
            k: interpolate(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _expand(text: str, env: Mapping[str, str], where: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise MissingVariable(name, where)

    return _PATTERN.sub(substitute, text)
