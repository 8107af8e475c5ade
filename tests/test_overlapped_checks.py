"""Big files are hashed and validated while they download; a failed download falls back
to a plain retry. Against the real S3 server, through a proxy that can cut a download."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from module_system.demo.servers import MotoServer
from module_system.growing_file import GrowingFileReader, WriteProgress, WriterFailed
from module_system.results import JobStatus
from module_system.sources import SOURCE_TYPES, RemoteItem, Source, SourceContext
from module_system.validation import VALIDATORS, Issue, Validator, Verdict
from module_system.validation.csv import CsvOptions
from module_system.validation.html import HtmlOptions
from module_system.validation.json_schema import JsonSchemaOptions
from module_system.validation.suite import ValidationSuite
from tests.faulty_proxy import FaultRule, faulty_proxy
from tests.helpers import RunJobs, list_keys, read_json
from tests.s3_helpers import s3_service

ROOT = "data/s3/svc/"
LINE = json.dumps({"id": 1, "day": "2026-01-02", "pad": "p" * 100}) + "\n"


class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def pipeline_log() -> Iterator[RecordingHandler]:
    """Collect the pipeline's log messages, DEBUG included, during the block."""
    messages = RecordingHandler()
    logger = logging.getLogger("module_system.pipeline")
    logger.addHandler(messages)
    logger.setLevel(logging.DEBUG)
    try:
        yield messages
    finally:
        logger.removeHandler(messages)
        logger.setLevel(logging.NOTSET)


@pytest.fixture
def multipart(landing: dict[str, Any]) -> dict[str, Any]:
    """The landing block with 5 MB parts, so that a big file is a multipart upload, and no
    server-side copy (see test_streaming_copy.py), so that it is uploaded."""
    return {**landing, "multipart_threshold_mb": 5, "multipart_chunksize_mb": 5,
            "server_side_copy": False}  # fmt: skip


def big_ndjson(mb: int, last_line: str = LINE) -> bytes:
    return (LINE * (mb * 1024 * 1024 // len(LINE)) + last_line).encode()


def cut_first_download(source_bucket: str, cut: list[int]) -> FaultRule:
    """A proxy rule: the first GET of ``in/big.ndjson`` is cut off halfway (noted in ``cut``)."""

    def rule(method: str, path: str, n: int) -> str | None:
        if method == "GET" and path.startswith(f"/{source_bucket}/in/big.ndjson") and not cut:
            cut.append(n)
            return "truncate"
        return None

    return rule


def test_big_files_checked_during_download(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str
) -> None:
    good = big_ndjson(20)
    bad = big_ndjson(20, last_line='{"id": "x", "day": "2026-01-02"}\n')
    s3.put_object(Bucket=source_bucket, Key="in/good.ndjson", Body=good)
    s3.put_object(Bucket=source_bucket, Key="in/bad.ndjson", Body=bad)
    with pipeline_log() as messages:
        job = run_jobs({"svc": s3_service(s3_server.url, source_bucket)}, [("j", "svc")]).jobs[0]
    assert job.status is JobStatus.COMPLETED, job.error
    assert (job.counts.valid, job.counts.invalid) == (1, 1)
    overlapped = [m for m in messages.lines if "while it downloads" in m]
    assert len(overlapped) == 2
    head = s3.head_object(Bucket=landing_bucket, Key=ROOT + "validated/good.ndjson")
    assert head["Metadata"]["sha256"] == hashlib.sha256(good).hexdigest()
    lines = bad.count(b"\n")
    report = read_json(s3, landing_bucket, ROOT + "quarantine/bad.ndjson.error.json")
    assert report["error_count"] == 1
    assert report["errors"][0]["location"] == f"line {lines}: $.id"


def test_cut_download_falls_back_to_a_plain_retry(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str
) -> None:
    data = big_ndjson(18)
    s3.put_object(Bucket=source_bucket, Key="in/big.ndjson", Body=data)
    cut: list[int] = []
    with faulty_proxy(s3_server.url, cut_first_download(source_bucket, cut)) as proxy:
        job = run_jobs({"svc": s3_service(proxy.url, source_bucket)}, [("j", "svc")]).jobs[0]
    assert cut and job.status is JobStatus.COMPLETED, job.error
    assert job.counts.valid == 1 and job.counts.fetched == 1
    assert job.retries.get("short_read") == 1  # our retry, not botocore's
    assert list_keys(s3, landing_bucket, ROOT + "validated/") == [ROOT + "validated/big.ndjson"]
    landed = s3.get_object(Bucket=landing_bucket, Key=ROOT + "validated/big.ndjson")["Body"].read()
    assert landed == data


def test_growing_reader_waits_for_the_writer_and_stops_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    progress = WriteProgress()
    reader = GrowingFileReader(path, progress)
    buffer = bytearray(10)
    assert reader.readinto(buffer) == 3
    with path.open("ab") as fh:
        fh.write(b"def")
    assert reader.readinto(buffer) == 3 and bytes(buffer[:3]) == b"def"
    progress.done.set()
    assert reader.readinto(buffer) == 0  # end of file only once the writer is done
    failed = WriteProgress()
    failed.failed.set()
    failing = GrowingFileReader(path, failed)
    with pytest.raises(WriterFailed):
        failing.readinto(buffer)
    reader.close()
    failing.close()


def test_ranged_downloads_are_checked_after_they_finish(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    multipart: dict[str, Any],
) -> None:  # fmt: skip
    bad = big_ndjson(20, last_line='{"id": "x", "day": "2026-01-02"}\n')
    s3.put_object(Bucket=source_bucket, Key="in/bad.ndjson", Body=bad)
    service = s3_service(s3_server.url, source_bucket)
    service["source"]["ranged_download_threshold_mb"] = 8  # parts land out of order
    job = run_jobs({"svc": service}, [("j", "svc")], landing=multipart).jobs[0]
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.counts.invalid == 1
    keys = list_keys(s3, landing_bucket)
    assert ROOT + "quarantine/bad.ndjson" in keys and ROOT + "validated/bad.ndjson" not in keys


class RenamingConfig(BaseModel):
    file: str


class RenamingSource(Source):
    """Claims to write in place but renames a finished temp file over ``dest``: the
    pipeline must notice and check the finished file instead."""

    type_name = "renaming"
    config_model = RenamingConfig

    def __init__(self, file: Path) -> None:
        self.file = file

    @classmethod
    def from_config(cls, config: RenamingConfig, context: SourceContext) -> RenamingSource:
        return cls(Path(config.file))

    def list_items(self) -> Iterator[RemoteItem]:
        size = self.file.stat().st_size
        yield RemoteItem("big.ndjson", "renaming://big.ndjson", size=size)

    def writes_in_place(self, item: RemoteItem) -> bool:
        return True

    def fetch(self, item: RemoteItem, dest: Path) -> None:
        temp = dest.with_suffix(".part")
        temp.write_bytes(self.file.read_bytes())
        os.replace(temp, dest)


def test_a_replaced_file_is_checked_afterwards(
    tmp_path: Path, run_jobs: RunJobs, s3: Any, landing_bucket: str, multipart: dict[str, Any]
) -> None:
    SOURCE_TYPES.register("renaming", RenamingSource)
    bad = big_ndjson(17, last_line='{"id": "x", "day": "2026-01-02"}\n')
    (tmp_path / "body.ndjson").write_bytes(bad)
    schema = {"type": "object", "properties": {"id": {"type": "integer"}}}
    services = {"svc": {"type": "renaming", "source": {"file": str(tmp_path / "body.ndjson")},
                        "validation": {"json_schema": schema}}}  # fmt: skip
    with pipeline_log() as messages:
        job = run_jobs(services, [("j", "svc")], landing=multipart).jobs[0]
    assert any("was replaced while it downloaded" in m for m in messages.lines)
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.counts.invalid == 1
    keys = list_keys(s3, landing_bucket, "data/renaming/")
    assert "data/renaming/svc/quarantine/big.ndjson" in keys
    assert not any("/validated/" in k for k in keys)
    assert s3.list_multipart_uploads(Bucket=landing_bucket).get("Uploads", []) == []


class TailOptions(BaseModel):
    tail: str


class PlainOpenValidator(Validator):
    """A plugin that reads the path with plain ``open()``: it cannot follow a download,
    so it must only ever be given the complete file."""

    name = "ends_with"
    suffixes: ClassVar[tuple[str, ...]] = (".ndjson",)
    options_model = TailOptions

    def validate(self, path: Path, name: str) -> Verdict:
        with open(path, "rb") as fh:  # the point: plain open, not open_binary
            data = fh.read()
        if data.endswith(self.options.tail.encode()):
            return Verdict(True, self.name, records=len(data))
        issue = Issue(f"read {len(data)} bytes, not ending with the tail")
        return Verdict(False, self.name, [issue], 1, records=len(data))


def test_a_validator_reading_with_plain_open_sees_the_whole_file(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    multipart: dict[str, Any],
) -> None:  # fmt: skip
    VALIDATORS.register("ends_with", PlainOpenValidator)
    tail = '{"id": 99, "day": "2026-01-02", "last": true}\n'
    data = big_ndjson(20, last_line=tail)
    s3.put_object(Bucket=source_bucket, Key="in/big.ndjson", Body=data)
    service = s3_service(s3_server.url, source_bucket)
    # the plugin first: after the JSON validator it would find the download finished
    service["validation"] = {"ends_with": {"tail": tail},
                             "json_schema": service["validation"]["json_schema"]}  # fmt: skip
    with pipeline_log() as messages:
        job = run_jobs({"svc": service}, [("j", "svc")], landing=multipart).jobs[0]
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.counts.valid == 1, read_json(
        s3, landing_bucket, ROOT + "quarantine/big.ndjson.error.json"
    )
    # hashing and the upload still overlap the download; validation waits for its end
    assert any("hashing and uploading while it downloads" in m for m in messages.lines)
    landed = s3.get_object(Bucket=landing_bucket, Key=ROOT + "validated/big.ndjson")
    assert landed["Body"].read() == data


def test_only_suites_of_open_binary_readers_check_growing_files() -> None:
    VALIDATORS.register("ends_with", PlainOpenValidator)
    schema: dict[str, Any] = {"type": "object"}
    built_in = ValidationSuite({"json_schema": JsonSchemaOptions(schema_=schema),
                                "csv": CsvOptions(), "html": HtmlOptions()})  # fmt: skip
    assert built_in.can_check_growing_files
    assert ValidationSuite({}).can_check_growing_files  # nothing to validate
    mixed = ValidationSuite({"csv": CsvOptions(), "ends_with": TailOptions(tail="x")})
    assert not mixed.can_check_growing_files
