"""Registry and batch files kept where the team keeps config: ``s3://bucket/key`` or an
``https://`` URL instead of a local path.

Each use fetches afresh into a private temporary folder that is removed once the files are
loaded: there is no cache, so a stale copy can never be used silently. A remote registry's
relative schema files (``json_schema: schemas/x.json``) are fetched from beside it.

* S3: boto3's default credential chain; ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``)
  points it at any S3-compatible store.
* HTTPS: with ``MODULE_SYSTEM_CONFIG_TOKEN`` set, it is sent as a bearer token (over HTTPS,
  or plain HTTP to a loopback address only). Redirects are not followed.

Errors are :class:`ConfigError` naming the (masked) URL: nothing runs.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
import botocore.exceptions
import yaml

from module_system.errors import ConfigError
from module_system.observability.redaction import mask_url

TOKEN_ENV = "MODULE_SYSTEM_CONFIG_TOKEN"
REMOTE_SCHEMES = ("s3://", "https://", "http://")
MAX_BYTES = 16 * 1024 * 1024  # a config file larger than this is a mistake
TIMEOUT = 30.0


def is_remote(ref: str | os.PathLike[str] | None) -> bool:
    return isinstance(ref, str) and ref.lower().startswith(REMOTE_SCHEMES)


@contextmanager
def local_copies(
    registry: str | os.PathLike[str] | None, batch: str | os.PathLike[str] | None
) -> Iterator[tuple[str | os.PathLike[str] | None, str | os.PathLike[str] | None]]:
    """Local paths for ``registry`` and ``batch``: remote ones fetched now, local ones as
    given. The fetched files are deleted when the block ends."""
    if not (is_remote(registry) or is_remote(batch)):
        yield registry, batch
        return
    with tempfile.TemporaryDirectory(prefix="module-system-config-") as folder:
        root, shown = Path(folder), {}
        if is_remote(registry):
            url = str(registry)
            registry = fetch_registry(url, root / "registry")
            shown[str(registry)] = mask_url(url)
            shown[f"{registry.parent}/"] = mask_url(_sibling(url, ""))
        if is_remote(batch):
            shown[str(root / "batch" / "batch.json")] = mask_url(str(batch))
            batch = _download(str(batch), root / "batch" / "batch.json")
        try:
            yield registry, batch
        except ConfigError as exc:  # name the URLs, not the temporary copies
            raise ConfigError([_unlocal(problem, shown) for problem in exc.problems]) from None


def _unlocal(problem: str, shown: dict[str, str]) -> str:
    for local, url in shown.items():
        problem = problem.replace(local, url)
    return problem


def fetch_registry(url: str, folder: Path) -> Path:
    """Download a registry and the relative schema files it names, keeping their layout."""
    path = _download(url, folder / _name(url, "project_registry.yaml"))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return path  # the loader reports the problem with its usual message
    for relative in sorted(set(_relative_files(raw))):
        _download(_sibling(url, relative), folder / relative)
    return path


def _relative_files(raw: Any) -> Iterator[str]:
    """Strings under ``services.*.validation`` that name a relative ``.json`` file."""
    services = raw.get("services") if isinstance(raw, dict) else None
    for service in (services or {}).values():
        if isinstance(service, dict):
            yield from _json_paths(service.get("validation"))


def _json_paths(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _json_paths(value)
    elif isinstance(node, str) and node.endswith(".json") and "${" not in node:
        if is_remote(node) or posixpath.isabs(node) or ".." in node.split("/"):
            raise ConfigError(
                f"{node}: a remote registry may name schema files beside it only "
                "(a relative path without '..')"
            )
        yield posixpath.normpath(node)


def _sibling(url: str, relative: str) -> str:
    """The URL of ``relative`` next to ``url`` (``urljoin`` does not know ``s3://``)."""
    parts = urlsplit(url)
    folder = posixpath.dirname(parts.path)
    return urlunsplit((parts.scheme, parts.netloc, f"{folder}/{relative}", "", ""))


def _name(url: str, default: str) -> str:
    return posixpath.basename(urlsplit(url).path) or default


def _download(url: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    data = _fetch_s3(url) if url.lower().startswith("s3://") else _fetch_http(url)
    dest.write_bytes(data)
    return dest


def _fetch_s3(url: str) -> bytes:
    parts = urlsplit(url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise ConfigError(f"{url}: expected s3://bucket/key")
    try:
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        data = body.read(MAX_BYTES + 1)
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ConfigError(f"{url}: cannot read it from S3: {code}") from None
    except (botocore.exceptions.BotoCoreError, OSError) as exc:
        raise ConfigError(f"{url}: cannot read it from S3: {type(exc).__name__}") from None
    return _within_limit(url, data)


def _fetch_http(url: str) -> bytes:
    import httpx  # here: ~50 ms of start-up that runs reading S3, FTP or local registries skip

    shown = mask_url(url)
    headers = {"Accept": "application/yaml, application/json, text/plain, */*"}
    token = os.environ.get(TOKEN_ENV)
    if token and _may_send_token(url):
        headers["Authorization"] = f"Bearer {token}"
    try:
        with httpx.stream("GET", url, headers=headers, timeout=TIMEOUT) as response:
            if response.status_code != 200:
                raise ConfigError(f"{shown}: HTTP {response.status_code}")
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_BYTES:
                    break
    except httpx.HTTPError as exc:
        raise ConfigError(f"{shown}: cannot fetch it: {type(exc).__name__}") from None
    return _within_limit(shown, data)


def _may_send_token(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme.lower() == "https":
        return True
    try:
        return ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        return parts.hostname == "localhost"


def _within_limit(shown: str, data: bytes) -> bytes:
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{mask_url(shown)}: larger than {MAX_BYTES // (1024 * 1024)} MB")
    return data
