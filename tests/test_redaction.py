"""Secrets never reach a log handler: not ours, not a library's, not a user's.

The registries here are loaded from files like any user's; the library logs are real
(httpx logging a real request to a server on loopback).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from module_system.config import Registry, load_registry
from module_system.observability.config_secrets import register_secrets_in
from module_system.observability.logging import setup_logging
from module_system.observability.redaction import (
    redact,
    redact_record,
    register_secret,
)
from tests.api_server import API_KEY, ApiServer
from tests.helpers import write_registry

LANDING = {"bucket": "landing-bucket"}


def api_service(url: str, **source: object) -> dict[str, object]:
    return {"type": "api", "source": {"url": url, **source}}


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServer]:
    server = ApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def user_handler() -> Iterator[io.StringIO]:
    """What a user does to debug httpx: a handler of their own on its logger, at DEBUG,
    not propagating to the root logger (so no filter of ours on the root sees it)."""
    logger, out = logging.getLogger("httpx"), io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield out
    logger.removeHandler(handler)
    logger.setLevel(saved[0])
    logger.propagate = saved[1]


def test_a_user_handler_on_httpx_never_sees_the_api_key(
    tmp_path: Path, api: ApiServer, user_handler: io.StringIO
) -> None:
    auth = {"type": "api_key", "in": "query", "name": "api_key", "api_key": API_KEY}
    path = write_registry(
        tmp_path / "r.yaml", LANDING, {"svc": api_service(f"{api.url}/secure/key-query", auth=auth)}
    )
    source = load_registry(path).services["svc"].source
    with httpx.Client(auth=source.auth.build()) as client:
        response = client.get(source.url)
    assert response.status_code == 200  # the key was sent, and httpx logged the request
    logged = user_handler.getvalue()
    assert "/secure/key-query?api_key=***" in logged
    assert API_KEY not in logged


def failing_login(password: str) -> None:
    raise PermissionError(f"login refused for password {password!r}")


def test_a_secret_in_an_exception_message_is_masked_in_the_traceback(
    tmp_path: Path, user_handler: io.StringIO
) -> None:
    source = {"host": "127.0.0.1", "username": "u", "password": "pw-in-traceback-8d2"}
    path = write_registry(tmp_path / "r.yaml", LANDING, {"ftp": {"type": "ftp", "source": source}})
    load_registry(path)
    try:
        failing_login("pw-in-traceback-8d2")
    except PermissionError:
        logging.getLogger("httpx").exception("request failed")
    logged = user_handler.getvalue()
    assert "Traceback (most recent call last)" in logged and "failing_login" in logged
    assert "PermissionError: login refused for password '***'" in logged
    assert "pw-in-traceback-8d2" not in logged


def test_our_log_files_are_masked_also_for_records_made_outside_the_factory(
    tmp_path: Path,
) -> None:
    register_secret("made-elsewhere-secret")
    log_file = setup_logging(tmp_path / "logs", console_handler=logging.NullHandler())
    # A record that did not go through the record factory (a queue or socket listener).
    record = logging.makeLogRecord(
        {"name": "module_system.test", "levelno": logging.ERROR, "levelname": "ERROR",
         "msg": "token %s", "args": ("made-elsewhere-secret",)}
    )  # fmt: skip
    logging.getLogger("module_system").handle(record)
    for handler in logging.getLogger("module_system").handlers:
        handler.flush()
    (line,) = [json.loads(x) for x in log_file.read_text().splitlines() if "token" in x]
    assert line["message"] == "token ***"


def test_every_registry_registers_its_secrets(tmp_path: Path) -> None:
    first = write_registry(
        tmp_path / "a.yaml", {**LANDING, "aws_secret_access_key": "first-registry-secret"},
        {"s3": {"type": "s3", "source": {"bucket": "source-bucket"}}},
    )  # fmt: skip
    load_registry(first)
    second = write_registry(
        tmp_path / "b.yaml", LANDING,
        {"sftp": {"type": "sftp", "source": {"host": "127.0.0.1", "passphrase": "second-pass"}}},
    )  # fmt: skip
    load_registry(second)
    assert redact("first-registry-secret, second-pass") == "***, ***"


def test_a_registry_built_in_code_registers_its_secrets() -> None:
    Registry.model_validate(
        {"landing": {**LANDING, "aws_session_token": "built-in-code-token"}, "services": {}}
    )
    assert redact("token=built-in-code-token") == "token=***"


def test_passwords_in_configured_urls_are_masked_alone_and_encoded(tmp_path: Path) -> None:
    landing = {**LANDING, "endpoint_url": "http://minio:url-pw%2F42@127.0.0.1:9000"}
    api = api_service("https://reader:api-pw-77@127.0.0.1/v1?token=query-tok-12")
    load_registry(write_registry(tmp_path / "r.yaml", landing, {"svc": api}))
    # What a library might log: the decoded password alone, or the URL it came in.
    assert redact("auth=('minio', 'url-pw/42')") == "auth=('minio', '***')"
    assert redact("GET https://127.0.0.1/x?p=api-pw-77") == "GET https://127.0.0.1/x?p=***"
    assert redact("sent token query-tok-12") == "sent token ***"
    assert "url-pw%2F42" not in redact("connecting to http://minio:url-pw%2F42@127.0.0.1:9000")


def test_any_url_password_is_masked_even_unregistered() -> None:
    assert redact("could not reach ftp://user:pw-never-seen@127.0.0.1/in") == (
        "could not reach ftp://user:***@127.0.0.1/in"
    )


def test_credentials_in_headers_and_params_are_registered(tmp_path: Path) -> None:
    source = {
        "headers": {"Authorization": "Bearer hdr-tok-31", "Accept": "application/json"},
        "params": {"apikey": "param-key-55", "station": "ST001"},
    }
    path = write_registry(
        tmp_path / "r.yaml", LANDING, {"svc": api_service("https://127.0.0.1/x", **source)}
    )
    load_registry(path)
    text = "Bearer hdr-tok-31 hdr-tok-31 param-key-55 application/json ST001"
    assert redact(text) == "*** *** *** application/json ST001"


def test_names_outside_request_mappings_are_not_secrets() -> None:
    register_secrets_in({"columns": {"password": "string", "token": "integer"}})
    assert redact("a string and an integer") == "a string and an integer"


def test_bad_format_arguments_are_masked_too() -> None:
    register_secret("arg-secret-99")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items", ("arg-secret-99",), None)
    redact_record(record)
    assert "arg-secret-99" not in f"{record.msg} {record.args}"
