"""Keep secrets out of everything a person or a file can read.

Every registry, however it is built, registers the secrets it holds
(:mod:`~module_system.observability.config_secrets`). From the first registered secret on,
every log record of every logger is redacted when it is created
(:func:`install_record_redaction`), so no handler, ours or a library's or a user's, sees a
secret; reports and error messages pass their text through :func:`redact`. URLs are masked
with :func:`mask_url` before they are stored anywhere (manifests, the state store).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

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
# ``scheme://user:password@`` in any text, registered or not.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)[^\s/@]+@")
_MIN_LENGTH = 3  # shorter values would mask ordinary text

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None  # replaced whole, so readers need no lock


def register_secret(value: str | None) -> None:
    """Remember a secret so :func:`redact` replaces it wherever it appears, also in the
    percent-encoded form it takes inside a URL, and start redacting log records."""
    if not value or len(value) < _MIN_LENGTH:
        return
    forms = {value, quote(value, safe=""), quote_plus(value, safe="")}
    with _lock:
        if forms <= _secrets:
            return
        _secrets.update(forms)
        _rebuild_pattern()
    install_record_redaction()


def _rebuild_pattern() -> None:
    global _pattern
    longest_first = sorted(_secrets, key=len, reverse=True)
    _pattern = re.compile("|".join(re.escape(secret) for secret in longest_first))


def forget_secrets() -> None:
    """Forget every registered secret (for tests that load many registries)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(text: str) -> str:
    """``text`` with every registered secret, and the password of any ``user:pass@`` URL,
    replaced by ``***``."""
    if "://" in text and "@" in text:
        text = _URL_PASSWORD.sub(rf"\g<head>{MASK}@", text)
    pattern = _pattern
    return pattern.sub(MASK, text) if pattern is not None else text


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


# --- log records ---------------------------------------------------------------------------


def redact_record(record: logging.LogRecord) -> None:
    """Redact the message, arguments, traceback and stack text of ``record`` in place.

    A record is only rewritten where it held a secret. When its traceback did, the
    redacted text goes to ``exc_text`` (which formatters print instead of rendering the
    traceback again) and ``exc_info`` is dropped, so that no formatter can render the
    exception's own text.
    """
    try:
        message = record.getMessage()
    except Exception:  # bad %-arguments: let the handler report it, with redacted values
        record.msg = redact(str(record.msg))
        record.args = tuple(redact(repr(arg)) for arg in _as_tuple(record.args))
    else:
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
    if record.exc_info and not record.exc_text:
        text = _TRACEBACK_FORMATTER.formatException(record.exc_info)
        redacted = redact(text)
        if redacted != text:
            record.exc_text, record.exc_info = redacted, None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _as_tuple(args: Any) -> tuple[Any, ...]:
    if args is None:
        return ()
    return args if isinstance(args, tuple) else (args,)


_TRACEBACK_FORMATTER = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Redacts each record a handler receives (see :func:`redact_record`); never drops one.

    The record factory already redacts every record when it is made; this filter is for
    records made elsewhere (``logging.makeLogRecord`` from a queue or socket) and for a
    process where another library later replaced the record factory without chaining.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_factory_lock = threading.Lock()
_factory_installed = False


def install_record_redaction() -> None:
    """Make every log record of every logger redacted at creation, before any handler (a
    user's, a library's, one added later) can see it. Idempotent.

    A record factory rather than filters: a filter covers only the handlers it is attached
    to, while loggers such as ``httpx`` or ``paramiko`` may have handlers of their own and
    ``propagate=False``. The factory wraps the one in place; it is installed once, because
    wrapping a factory that itself wraps ours would recurse.
    """
    global _factory_installed
    with _factory_lock:
        if _factory_installed:
            return
        make_record = logging.getLogRecordFactory()

        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            redact_record(record)
            return record

        logging.setLogRecordFactory(redacting_factory)
        _factory_installed = True
