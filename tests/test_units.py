"""Pure logic: landing keys, URL masking, checksums, JSON validation, retries."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import module_system
from module_system.config.models import RetryConfig
from module_system.errors import JobCancelled, TerminalError, TransientError
from module_system.landing.checksums import digest_file
from module_system.landing.keys import LandingLayout, safe_relative_key
from module_system.observability.redaction import mask_url, redact, register_secret
from module_system.retry import Retrier
from module_system.validation.json_schema import JsonSchemaValidator


def public_names(package: types.ModuleType) -> set[str]:
    """Every name ``package`` offers without a leading underscore, except its submodules."""
    return {
        name
        for name, value in vars(package).items()
        if not name.startswith("_")
        and not (
            isinstance(value, types.ModuleType)
            and value.__name__.startswith(package.__name__ + ".")
        )
    }


def test_public_names_are_exactly_all() -> None:
    assert sorted(module_system.__all__) == sorted(set(module_system.__all__))
    assert public_names(module_system) == set(module_system.__all__)


def test_public_names_sees_a_name_missing_from_all() -> None:
    package = types.ModuleType("pkg")
    package.__all__ = ["run"]
    package.run = package.helper = print  # a public helper left out of __all__
    package.sub = types.ModuleType("pkg.sub")  # a submodule is not an export
    package.os = types.ModuleType("os")  # a stray import of another module is one
    assert public_names(package) == {"run", "helper", "os"}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("a/b.json", "a/b.json"),
        ("../../etc/passwd", "%2E%2E/%2E%2E/etc/passwd"),
        ("/abs//x/./y.json", "%2F/abs/%2F/x/%2E/y.json"),
        ("a/%2E%2E/b", "a/%252E%2E/b"),  # a literal look-alike is escaped once more
        ("", "%2F"),
        ("naïve name.csv", "naïve name.csv"),
    ],
)
def test_safe_relative_key(key: str, expected: str) -> None:
    assert safe_relative_key(key) == expected


def test_safe_relative_key_is_one_to_one() -> None:
    keys = ["a/b", "a//b", "/a/b", "a/./b", "a/../b", "a/%2E/b", "a/%2E%2E/b", "a/%252E/b",
            "a/%2F/b", "a/%2f/b", "./a/b", "%2E/a/b"]  # fmt: skip
    assert len({safe_relative_key(k) for k in keys}) == len(keys)


def test_landing_layout_and_long_keys() -> None:
    layout = LandingLayout("raw/", "s3", "svc", "validated")
    assert layout.valid_key("a.json") == "raw/data/s3/svc/validated/a.json"
    assert layout.quarantine_key("a.json") == "raw/data/s3/svc/quarantine/a.json"
    assert layout.manifest_key("job1") == "raw/data/s3/svc/_manifests/job1.json"
    long_key = layout.quarantine_key("x" * 2000 + ".json")
    assert len(long_key.encode()) + len(".error.json") <= 1024 and long_key.endswith(".json")
    assert layout.quarantine_key("x" * 2000 + ".json") == long_key  # stable
    assert layout.valid_key("y" * 2000 + ".json") != layout.valid_key("y" * 2001 + ".json")


def test_mask_url_and_redact() -> None:
    assert mask_url("ftp://user:pa55@host/path") == "ftp://user:***@host/path"
    masked = mask_url("https://api.example.com/v1?station=1&api_key=abc123&token=t0k")
    assert "abc123" not in masked and "t0k" not in masked and "station=1" in masked
    register_secret("hunter2-secret")
    assert redact("password is hunter2-secret!") == "password is ***!"


def test_digest_file_matches_s3_composite(tmp_path: Path) -> None:
    data = bytes(range(256)) * 50_000  # 12.8 MB
    path = tmp_path / "f"
    path.write_bytes(data)
    part = 5 * 1024 * 1024
    digest = digest_file(path, part)
    assert digest.sha256_hex == hashlib.sha256(data).hexdigest() and digest.size == len(data)
    parts = [hashlib.sha256(data[i : i + part]).digest() for i in range(0, len(data), part)]
    combined = base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()
    assert digest.s3_checksum(multipart=True) == f"{combined}-3"
    assert (
        digest.s3_checksum(multipart=False)
        == base64.b64encode(hashlib.sha256(data).digest()).decode()
    )


def make_validator(schema: dict[str, object]) -> JsonSchemaValidator:
    return JsonSchemaValidator(JsonSchemaValidator.parse_options(schema, Path(".")))


def test_json_validator_draft7_formats_and_gzip(tmp_path: Path) -> None:
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
              "properties": {"when": {"type": "string", "format": "date-time"},
                             "mail": {"type": "string", "format": "email"}}}  # fmt: skip
    validator = make_validator(schema)
    good = tmp_path / "a.json"
    good.write_text(json.dumps({"when": "2026-11-28T10:00:00Z", "mail": "a@b.org"}))
    assert validator.validate(good, "a.json").valid
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"when": "yesterday", "mail": "nope"}))
    verdict = validator.validate(bad, "b.json")
    assert not verdict.valid and {i.location for i in verdict.issues} == {"$.when", "$.mail"}
    lines = tmp_path / "c.ndjson.gz"
    lines.write_bytes(gzip.compress(b'{"when": "2026-01-01T00:00:00Z"}\n\n{"when": 5}\n'))
    verdict = validator.validate(lines, "c.ndjson.gz")
    assert verdict.records == 2 and verdict.error_count == 1
    assert verdict.issues[0].location == "line 3: $.when"


def test_json_validator_caps_reported_errors(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(json.dumps({"n": "x"}) for _ in range(250)))
    verdict = make_validator({"properties": {"n": {"type": "integer"}}}).validate(
        path, "many.jsonl"
    )
    assert verdict.error_count == 250 and len(verdict.issues) == 100


def test_retrier_retries_transient_then_gives_up() -> None:
    retrier = Retrier(RetryConfig(attempts=3, backoff=0.001, max_backoff=0.001))
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("boom")
        return "ok"

    assert retrier.call(flaky, "flaky") == "ok" and retrier.retries["transient"] == 2
    with pytest.raises(TransientError):
        retrier.call(lambda: (_ for _ in ()).throw(TransientError("always")), "always")
    calls.clear()

    def terminal() -> None:
        calls.append(1)
        raise TerminalError("denied")

    with pytest.raises(TerminalError):
        retrier.call(terminal, "terminal")
    assert len(calls) == 1


def test_retrier_honours_retry_after_and_cancel() -> None:
    retrier = Retrier(RetryConfig(attempts=5, backoff=0.001, max_backoff=0.01))
    assert retrier.delay(1, TransientError("429", retry_after=7)) == 7
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(JobCancelled):
        Retrier(RetryConfig(attempts=3), cancel).call(
            lambda: (_ for _ in ()).throw(TransientError("x")), "cancelled"
        )


def test_ndjson_batches_report_exact_lines_with_and_without_refs(tmp_path: Path) -> None:
    plain = {"type": "object", "properties": {"n": {"type": "integer"}}}
    with_ref = {"$defs": {"n": {"type": "integer"}},
                "type": "object", "properties": {"n": {"$ref": "#/$defs/n"}}}  # fmt: skip
    lines = [json.dumps({"n": i}) for i in range(2500)]
    lines[1500] = json.dumps({"n": "bad"})
    lines[2100] = ""  # blank lines are allowed
    path = tmp_path / "big.ndjson"
    path.write_text("\n".join(lines) + "\n")
    for schema in (plain, with_ref):
        verdict = make_validator(schema).validate(path, "big.ndjson")
        assert verdict.records == 2499 and verdict.error_count == 1
        assert verdict.issues[0].location == "line 1501: $.n"


def test_listed_items_are_looked_up_in_batches_that_end_early_on_a_slow_listing() -> None:
    """Up to ``size`` items a batch, but a batch the listing takes ``wait`` seconds to fill
    is handed on at once (a fake clock: the listing's items arrive at the times given)."""
    from module_system.pipeline.files import timed_batches

    arrivals = [0.0, 0.0, 0.0, 0.0, 0.01, 0.02, 0.5, 0.5, 0.51, 1.2, 1.2]
    now = [0.0]

    def listing() -> Iterator[int]:
        for n, at in enumerate(arrivals):
            now[0] = at
            yield n

    batches = list(timed_batches(listing(), size=4, wait=0.1, clock=lambda: now[0]))
    # 0-3 fill a batch; 4 and 5 come quickly, 6 late (0.5 s): it ends their batch; so 9
    # (1.2 s) ends the batch of 7 and 8; 10 is the listing's last.
    assert batches == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]
