"""Keep secrets out of everything a person or a file can read.

Config loading registers every secret value it sees; log formatters, reports and error
messages pass their text through :func:`redact`. URLs are masked with :func:`mask_url`
before they are stored anywhere (manifests, the state store).
"""

from __future__ import annotations

import threading
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters whose values are credentials in common APIs.
SENSITIVE_PARAMS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "auth",
        "client_secret",
        "key",
        "password",
        "secret",
        "sig",
        "signature",
        "token",
        "x-amz-credential",
        "x-amz-security-token",
        "x-amz-signature",
    }
)

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so :func:`redact` replaces it wherever it appears."""
    if value and len(value) >= 3:  # shorter values would mask ordinary text
        with _lock:
            _secrets.add(value)


def forget_secrets() -> None:
    """Forget every registered secret (for tests that load many registries)."""
    with _lock:
        _secrets.clear()


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``."""
    if not _secrets:
        return text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_url(url: str) -> str:
    """Mask the password in ``user:pass@host`` and credential-like query parameters."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc
    if parts.password:
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{parts.username}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, MASK if k.lower() in SENSITIVE_PARAMS else v) for k, v in pairs], safe="*"
        )
    masked = SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment)
    return redact(urlunsplit(masked))
