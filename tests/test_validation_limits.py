"""Validators read within limits: a gzip bomb or an oversized document makes the file
invalid with a reason (``decompression_bomb``, ``too_large``) instead of filling memory."""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from module_system.demo.servers import MotoServer
from module_system.results import JobStatus
from module_system.validation import csv as csv_module
from module_system.validation.base import Verdict
from module_system.validation.csv import CsvValidator
from module_system.validation.suite import ValidationSuite
from tests.helpers import RunJobs, read_json
from tests.s3_helpers import s3_service

MiB = 1024 * 1024
RECORD = {"type": "object"}


def gzip_bomb(unit: bytes, size: int = 1024 * MiB, head: bytes = b"") -> bytes:
    """``head`` then ``unit`` repeated up to ``size`` bytes, gzip-compressed (~1,000 to 1
    for zeros, ~300 to 1 for short text) without ever holding it: one compressed MiB
    repeated as gzip members (a gzip file may hold several; ``gzip -d`` writes them out one
    after the other)."""
    member = gzip.compress(unit * (MiB // len(unit)), compresslevel=9)
    return gzip.compress(head) + member * (size // MiB)


def suite_for(name: str, **options: Any) -> ValidationSuite:
    """A suite of one built-in validator with ``options`` (as in a registry)."""
    from module_system.plugins import VALIDATORS

    kind = {"json": "json_schema", "ndjson": "json_schema", "csv": "csv", "html": "html"}[name]
    raw: dict[str, Any] = dict(options)
    if kind == "json_schema":
        raw = {"schema": RECORD, **options}
    return ValidationSuite({kind: VALIDATORS.get(kind).parse_options(raw, Path("."))})


def validate(tmp_path: Path, name: str, data: bytes, **options: Any) -> Verdict:
    path = tmp_path / name
    path.write_bytes(data)
    return suite_for(name.split(".")[1], **options).validate(path, name)


def refusal(verdict: Verdict) -> tuple[str, str]:
    assert not verdict.valid and verdict.error_count == 1, verdict.as_dict()
    error = verdict.as_dict()["errors"][0]
    return error["reason"], error["location"]


BOMBS = {
    "data.json.gz": gzip_bomb(b"\0"),
    "data.ndjson.gz": gzip_bomb(b'{"pad": "' + b"x" * 52 + b'"}\n'),  # 64-byte lines
    "data.csv.gz": gzip_bomb(b"1," + b"x" * 61 + b"\n", head=b"a,b\n"),
    "page.html.gz": gzip_bomb(b"<p>", head=b"<html><body>"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_gzip_bomb_is_invalid_and_read_only_a_little(tmp_path: Path, name: str) -> None:
    bomb = BOMBS[name]
    assert len(bomb) < 1024 * MiB / 300  # 1 GiB once decompressed
    verdict = validate(tmp_path, name, bomb)
    assert refusal(verdict) == ("decompression_bomb", "file")
    # (not measured with tracemalloc: on Python 3.11 stopping it races with Arrow's threads)
    found = re.search(r"compressed bytes gave over ([\d,]+)", verdict.issues[0].message)
    assert found, verdict.issues[0].message
    assert int(found.group(1).replace(",", "")) < 8 * MiB  # read: a little, not 1 GiB


def test_the_csv_fast_path_does_not_hand_a_bomb_to_the_python_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any) -> None:
        raise AssertionError("the pure-Python path read the bomb again")

    monkeypatch.setattr(CsvValidator, "_validate_python", refuse)
    monkeypatch.setattr(csv_module, "FAST_PATH_MIN_BYTES", 0)  # the bomb is small on disk
    verdict = validate(tmp_path, "data.csv.gz", BOMBS["data.csv.gz"])
    assert refusal(verdict) == ("decompression_bomb", "file")


def test_a_small_file_may_compress_well(tmp_path: Path) -> None:
    """Below the grace size any ratio passes: a 1 MiB text compresses ~1,000 to 1."""
    document = json.dumps({"note": "x" * (MiB - 100)}).encode()
    assert validate(tmp_path, "data.json.gz", gzip.compress(document)).valid


def test_a_document_over_max_file_bytes_is_too_large(tmp_path: Path) -> None:
    document = json.dumps({"values": list(range(1000))}).encode()
    assert validate(tmp_path, "data.json", document).valid  # the default cap is 256 MiB
    verdict = validate(tmp_path, "data.json", document, max_file_bytes=1000)
    assert refusal(verdict) == ("too_large", "file")
    assert "larger than 1,000 bytes (max_file_bytes)" in verdict.issues[0].message


def test_a_page_over_max_file_bytes_is_too_large(tmp_path: Path) -> None:
    page = b"<html><body>" + b"<p>text</p>" * 1000 + b"</body></html>"
    assert validate(tmp_path, "page.html", page).valid  # the default cap is 64 MiB
    verdict = validate(tmp_path, "page.html", page, max_file_bytes=4096)
    assert refusal(verdict) == ("too_large", "file")


def test_max_file_bytes_counts_decompressed_bytes(tmp_path: Path) -> None:
    rng = random.Random(7)
    document = json.dumps([rng.random() for _ in range(10_000)]).encode()  # ~2:1 in gzip
    verdict = validate(tmp_path, "data.json.gz", gzip.compress(document), max_file_bytes=50_000)
    assert refusal(verdict) == ("too_large", "file")
    assert "once decompressed" in verdict.issues[0].message


def test_an_ndjson_line_over_max_file_bytes_is_too_large(tmp_path: Path) -> None:
    lines = b'{"a": 1}\n' * 3 + json.dumps({"a": "x" * 5000}).encode() + b"\n"
    assert validate(tmp_path, "data.ndjson", lines).valid
    verdict = validate(tmp_path, "data.ndjson", lines, max_file_bytes=1000)
    assert refusal(verdict) == ("too_large", "file")
    assert verdict.issues[0].message.startswith("line 4 is longer than 1,000 bytes")


@pytest.mark.parametrize("name", ["data.json.gz", "data.ndjson.gz"])
def test_a_truncated_gzip_is_invalid_not_a_crash(tmp_path: Path, name: str) -> None:
    packed = gzip.compress(b'{"a": 1}\n' * 10_000)
    verdict = validate(tmp_path, name, packed[: len(packed) // 2])
    assert not verdict.valid
    assert verdict.issues[-1].location == "file"
    assert verdict.issues[-1].message.startswith("cannot read the file")


def test_the_ratio_guard_is_an_option(tmp_path: Path) -> None:
    """With the ratio guard raised, the size cap stops the same bomb."""
    options = {"max_decompression_ratio": 5000, "max_file_bytes": 32 * MiB}
    verdict = validate(tmp_path, "data.json.gz", BOMBS["data.json.gz"], **options)
    assert refusal(verdict) == ("too_large", "file")


def test_a_bomb_lands_in_quarantine_with_its_reason(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str
) -> None:
    s3.put_object(Bucket=source_bucket, Key="in/bomb.json.gz", Body=BOMBS["data.json.gz"])
    s3.put_object(
        Bucket=source_bucket,
        Key="in/fine.json.gz",
        Body=gzip.compress(b'{"id": 1, "day": "2026-01-02"}'),
    )
    service = s3_service(s3_server.url, source_bucket)
    service["source"]["include"] = ["*.json.gz"]
    job = run_jobs({"svc": service}, [("j", "svc")]).jobs[0]
    assert job.status is JobStatus.COMPLETED, job.error
    assert (job.counts.valid, job.counts.invalid) == (1, 1)
    report = read_json(s3, landing_bucket, "data/s3/svc/quarantine/bomb.json.gz.error.json")
    assert report["errors"][0]["reason"] == "decompression_bomb"
