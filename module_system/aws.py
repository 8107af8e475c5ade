"""boto3 sessions and clients from an :class:`S3Connection`, and botocore error translation.

This is the one place botocore errors become :class:`TransientError` or
:class:`TerminalError`, with the bucket and the credentials source named in the message.
"""

from __future__ import annotations

import email.utils
import hashlib
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.exceptions
import botocore.session
import botocore.utils
from botocore.config import Config

from module_system import aws_direct
from module_system.aws_direct import DirectS3
from module_system.config.models import S3Connection
from module_system.errors import FatalError, ItemVanished, TerminalError, TransientError

# Error codes that retrying can fix.
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "500",
        "502",
        "503",
        "504",
    }
)
MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# Error codes after which nothing else in the job can work: stop the job at once.
FATAL_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "NoSuchBucket",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "403",
    }
)


def make_session(conn: S3Connection) -> boto3.session.Session:
    """A session with the configured keys or profile, else boto3's default chain."""
    if conn.aws_access_key_id and conn.aws_secret_access_key:
        session = boto3.session.Session(
            aws_access_key_id=conn.aws_access_key_id,
            aws_secret_access_key=conn.aws_secret_access_key.get_secret_value(),
            aws_session_token=(
                conn.aws_session_token.get_secret_value() if conn.aws_session_token else None
            ),
            region_name=conn.region,
        )
    else:
        session = boto3.session.Session(profile_name=conn.profile, region_name=conn.region)
    _share_loaded_models(session._session)
    return session


_LOADER_LOCK = threading.Lock()
_SHARED: dict[str, Any] = {}


def _share_loaded_models(session: botocore.session.Session) -> None:
    """Every session reads the S3 service model (a few MB of JSON) once per process, not
    once per client: a job makes two clients, and a batch of small jobs many jobs. The
    loader and the response parsers are stateless caches, safe to share between threads."""
    with _LOADER_LOCK:
        if not _SHARED:
            _SHARED["data_loader"] = session.get_component("data_loader")
            factory = session.get_component("response_parser_factory")
            # botocore parses every timestamp (each listed object's LastModified) with
            # dateutil; the standard library's parsers do the same for S3's two formats.
            factory.set_parser_defaults(timestamp_parser=_parse_timestamp)
            _SHARED["response_parser_factory"] = factory
    for name, component in _SHARED.items():
        session.register_component(name, component)


def _parse_timestamp(value: str) -> datetime:
    try:  # ISO 8601 in XML bodies ("2026-05-05T10:00:00.000Z")
        parsed = datetime.fromisoformat(value)
    except ValueError:  # RFC 7231 in headers ("Tue, 05 May 2026 10:00:00 GMT")
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return botocore.utils.parse_timestamp(value)  # anything else: botocore's own
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# boto3's own retries inside each of ours (standard mode: backoff with jitter on throttling,
# 5xx and connection errors). Kept small and fixed so the two layers don't multiply much:
# a service's `retry.attempts` counts our tries; each may make up to this many requests.
BOTOCORE_ATTEMPTS = 3


def shared_client(conn: S3Connection) -> Any:
    """The process's S3 client for the connection in ``conn``: botocore clients are
    thread-safe, and making one (with its session) costs about 0.1 s of CPU, so every user
    of the same endpoint, region and credentials shares one: a job's source and landing,
    every job of a batch, every batch of a scheduler or Dask worker. Only the connection's
    own fields count: ``conn`` may be a source's whole config, whose bucket and prefix do
    not. Never close it."""
    # The JSON masks the secrets, so the key adds a digest of them: two connections that
    # differ only in their secret key never share a client.
    fields = conn.model_dump_json(include=set(S3Connection.model_fields))
    secrets = [conn.aws_secret_access_key, conn.aws_session_token]
    digest = hashlib.sha256(
        "\0".join(s.get_secret_value() if s else "" for s in secrets).encode()
    ).hexdigest()
    key = (fields, digest)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = make_client(conn, SHARED_POOL)
        return client


# Connections a shared client keeps open per host: enough for a landing's parallel parts
# and a source's concurrent files at once; idle ones cost nothing until opened.
SHARED_POOL = 64
_CLIENTS: dict[tuple[str, str], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def make_client(conn: S3Connection, max_pool: int = 32) -> Any:
    """An S3 client for ``conn``; thread-safe, shared by a job's file threads."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": BOTOCORE_ATTEMPTS},
        max_pool_connections=max_pool,
        connect_timeout=10,
        read_timeout=60,
        request_checksum_calculation="when_required",
        parameter_validation=False,  # our own calls: saves CPU on every request
        response_checksum_validation="when_supported",
    )
    session = make_session(conn)
    client = session.client("s3", endpoint_url=conn.endpoint_url, config=config)
    credentials = session.get_credentials()
    # the very object the client signs with (sessions cache it)
    if credentials is not None and aws_direct.enabled():
        _DIRECT[client] = DirectS3(client, credentials)
    return client


_DIRECT: weakref.WeakKeyDictionary[Any, DirectS3] = weakref.WeakKeyDictionary()


def direct_for(client: Any) -> DirectS3 | None:
    """The direct-request path of a client made by :func:`make_client` (see
    :mod:`module_system.aws_direct`), or None for any other client."""
    return _DIRECT.get(client)


def credentials_source(conn: S3Connection) -> str:
    """Say where credentials came from (never the credentials themselves)."""
    if conn.aws_access_key_id:
        return "explicit keys in the registry"
    if conn.profile:
        return f"profile '{conn.profile}'"
    try:
        creds = make_session(conn).get_credentials()
    except botocore.exceptions.BotoCoreError:
        return "boto3 default chain (failed to resolve)"
    return f"boto3 default chain ({creds.method})" if creds else "no credentials found"


TRANSIENT_EXCEPTIONS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.FlexibleChecksumError,
    botocore.exceptions.HTTPClientError,
)


def _transient_reason(exc: Exception) -> str:
    if isinstance(
        exc, botocore.exceptions.IncompleteReadError | botocore.exceptions.ResponseStreamingError
    ):
        return "short_read"
    if isinstance(
        exc, botocore.exceptions.ReadTimeoutError | botocore.exceptions.ConnectTimeoutError
    ):
        return "timeout"
    if isinstance(exc, botocore.exceptions.FlexibleChecksumError):
        return "checksum_mismatch"
    return "connection_lost"


@dataclass(frozen=True)
class CopySource:
    """An S3 object a source just fetched (``etag``: the version fetched), which a landing
    bucket on the same endpoint can copy server-side instead of taking an upload."""

    endpoint_url: str | None
    region: str | None
    bucket: str
    key: str
    etag: str


@contextmanager
def translate_errors(
    conn: S3Connection, bucket: str, key: str | None = None, missing_is_vanished: bool = False
) -> Iterator[None]:
    """Turn botocore exceptions raised inside the block into our error types.

    ``missing_is_vanished``: a missing key means a listed source object is gone (reported,
    not a failure); elsewhere (e.g. verifying an upload) it is an ordinary error.
    """
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = f"{where}: {code or status}: {exc.response.get('Error', {}).get('Message', '')}"
        reason = f"s3_{code or status}".lower()
        if code in TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
            raise TransientError(message, reason=reason) from exc
        if key and missing_is_vanished and code in MISSING_KEY_CODES:
            raise ItemVanished(f"{where}: the object is gone (listed, then not found)") from exc
        if code in FATAL_CODES:
            raise FatalError(f"{message} (credentials: {credentials_source(conn)})",
                             reason=reason) from exc  # fmt: skip
        raise TerminalError(message, reason=reason) from exc
    except TRANSIENT_EXCEPTIONS as exc:
        reason = _transient_reason(exc)
        raise TransientError(f"{where}: {exc}", reason=reason) from exc
    except botocore.exceptions.NoCredentialsError as exc:
        raise FatalError(f"{where}: no AWS credentials found ({credentials_source(conn)})") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise TerminalError(f"{where}: {exc}") from exc
