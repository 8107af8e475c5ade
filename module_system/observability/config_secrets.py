"""Find the secrets in a loaded configuration, so that redaction can mask them.

Any model can be walked: a new source type's or validator's options need no code here
as long as their secrets are typed ``SecretStr``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, SecretBytes, SecretStr

from module_system.observability.redaction import SENSITIVE_PARAMS, register_secret

# Header and parameter names (in a plain mapping such as ``headers:``) whose value is a
# credential, compared without case, '-' or '_': ``X-API-Key``, ``Private-Token``, ...
_SENSITIVE_NAME_ENDINGS = (
    "apikey",
    "auth",
    "authorization",
    "cookie",
    "credential",
    "credentials",
    "passphrase",
    "passwd",
    "password",
    "secret",
    "sig",
    "signature",
    "token",
)
# Only in these is a name a promise about the value: elsewhere (a CSV schema's
# ``columns: {password: string}``) a key named "password" holds no password.
_REQUEST_MAPPINGS = frozenset({"headers", "params", "cookies", "query", "form"})
_SENSITIVE_NAMES = frozenset(re.sub(r"[^a-z0-9]", "", name) for name in SENSITIVE_PARAMS)


def register_secrets_in(value: Any, field: str = "") -> None:
    """Register every secret inside ``value``, walking models, mappings and sequences.

    A secret is a ``SecretStr`` / ``SecretBytes`` value, the password or a credential-like
    query parameter of any URL, and, in a request mapping (a field named ``headers``,
    ``params``, ``cookies``, ...), the value of a credential-like name
    (``headers: {X-API-Key: ...}``). ``field`` is the name ``value`` was found under.
    """
    if isinstance(value, SecretStr):
        register_secret(value.get_secret_value())
    elif isinstance(value, SecretBytes):
        register_secret(value.get_secret_value().decode("utf-8", "replace"))
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            register_secrets_in(getattr(value, name), name)
    elif isinstance(value, Mapping):
        _register_mapping(value, request_mapping=field.lower() in _REQUEST_MAPPINGS)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            register_secrets_in(item)
    elif isinstance(value, str) and "://" in value:
        _register_url_secrets(value)


def _register_mapping(mapping: Mapping[Any, Any], request_mapping: bool) -> None:
    for key, item in mapping.items():
        if request_mapping and isinstance(item, str) and is_sensitive_name(str(key)):
            _register_credential(item)
        register_secrets_in(item, str(key))


def is_sensitive_name(name: str) -> bool:
    """True for header and parameter names that carry credentials."""
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    return bool(squashed) and (
        squashed in _SENSITIVE_NAMES or squashed.endswith(_SENSITIVE_NAME_ENDINGS)
    )


def _register_credential(value: str) -> None:
    register_secret(value)
    scheme, _, credential = value.strip().partition(" ")  # "Bearer abc", "Basic YWJj"
    if credential and scheme.isalpha():
        register_secret(credential.strip())


def _register_url_secrets(url: str) -> None:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return
    if password:
        register_secret(password)
        register_secret(unquote(password))
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in SENSITIVE_PARAMS:
            register_secret(value)
