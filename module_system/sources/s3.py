"""S3 source: objects under a bucket prefix, filtered by glob patterns."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Self

import boto3.exceptions
from boto3.s3.transfer import TransferConfig
from pydantic import Field

from module_system.aws import CopySource, direct_for, shared_client, translate_errors
from module_system.aws_direct import attempt
from module_system.config.models import S3Connection
from module_system.errors import TransientError
from module_system.sources.base import RemoteItem, Source, SourceContext
from module_system.sources.globs import wanted

CHUNK = 1024 * 1024


class S3SourceConfig(S3Connection):
    bucket: str = Field(min_length=3, description="source bucket")
    prefix: str = Field("", description="only keys below it; landing keys are relative to it")
    include: list[str] = Field(
        default_factory=lambda: ["*"], description="globs on the relative key (* matches / too)"
    )
    exclude: list[str] = Field(default_factory=list, description="globs of keys to leave out")
    # Off by default: one streamed GET (what rclone does between buckets) is fastest on
    # most S3-compatible servers; on AWS itself ranged GETs of very large objects can be faster.
    ranged_download_threshold_mb: int | None = Field(
        None,
        ge=8,
        description="objects at least this many MB are fetched as parallel ranged GETs "
        "(unset: one streamed GET each)",
    )


class S3Source(Source):
    """Every object below ``prefix`` whose relative key matches ``include`` (and not
    ``exclude``). The item key is the object key relative to the prefix; its ETag is the
    version."""

    type_name = "s3"
    config_model = S3SourceConfig

    def __init__(self, config: S3SourceConfig, client: Any) -> None:
        self.config = config
        self.client = client
        self._direct = direct_for(client)
        self._ranged_threshold = (config.ranged_download_threshold_mb or 0) * CHUNK or None
        self._transfer = TransferConfig(
            multipart_threshold=self._ranged_threshold or 8 * CHUNK,
            multipart_chunksize=8 * CHUNK,
            max_concurrency=4,
            use_threads=True,
        )
        self._fetched: dict[str, str] = {}  # item key -> ETag of the bytes last fetched
        self._fetched_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: S3SourceConfig, context: SourceContext) -> Self:
        return cls(config, shared_client(config))

    def list_items(self) -> Iterator[RemoteItem]:
        cfg = self.config
        paginator = self.client.get_paginator("list_objects_v2")
        with translate_errors(cfg, cfg.bucket):
            for page in paginator.paginate(Bucket=cfg.bucket, Prefix=cfg.prefix):
                for obj in page.get("Contents", []):
                    item = self._item(obj)
                    if item is not None:
                        yield item

    def _item(self, obj: dict[str, Any]) -> RemoteItem | None:
        key: str = obj["Key"]
        relative = key[len(self.config.prefix) :]
        if not relative or key.endswith("/") or not self._wanted(relative):
            return None
        return RemoteItem(
            key=relative,
            uri=f"s3://{self.config.bucket}/{key}",
            size=obj.get("Size"),
            version=str(obj.get("ETag", "")).strip('"') or None,
            modified=obj.get("LastModified"),
            extra={"s3_key": key},
        )

    def _wanted(self, relative: str) -> bool:
        return wanted(relative, self.config.include, self.config.exclude)

    def writes_in_place(self, item: RemoteItem) -> bool:
        # Ranged downloads write parts out of order into a temp file renamed at the end.
        threshold = self._ranged_threshold
        return not (threshold and item.size is not None and item.size >= threshold)

    def fetch(self, item: RemoteItem, dest: Path) -> None:
        key = item.extra["s3_key"]
        with translate_errors(self.config, self.config.bucket, key, missing_is_vanished=True):
            try:
                threshold = self._ranged_threshold
                if threshold and item.size is not None and item.size >= threshold:
                    self.client.download_file(
                        self.config.bucket, key, str(dest), Config=self._transfer
                    )
                    # The listed version; a copy of another is caught by its checksum.
                    self._remember(item.key, item.version)
                    return
                with dest.open("wb") as out:
                    etag = attempt(
                        self._direct,
                        lambda direct: direct.get_to(self.config.bucket, key, out, CHUNK),
                        lambda: self._get(key, out),
                    )
                self._remember(item.key, etag)
            except (
                boto3.exceptions.RetriesExceededError,
                boto3.exceptions.S3TransferFailedError,
            ) as exc:
                raise TransientError(f"s3://{self.config.bucket}/{key}: {exc}") from exc

    def _get(self, key: str, out: BinaryIO) -> str:
        """Through botocore: write the object to ``out`` (from its start) and return its ETag."""
        out.seek(0)
        out.truncate()
        response = self.client.get_object(Bucket=self.config.bucket, Key=key)
        shutil.copyfileobj(response["Body"], out, CHUNK)
        return str(response.get("ETag", "")).strip('"')

    def _remember(self, item_key: str, etag: str | None) -> None:
        with self._fetched_lock:
            if etag:
                self._fetched[item_key] = etag
            else:
                self._fetched.pop(item_key, None)

    def copy_source(self, item: RemoteItem) -> CopySource | None:
        with self._fetched_lock:
            etag = self._fetched.pop(item.key, None)
        return None if etag is None else self._copy_of(item, etag)

    def listed_copy_source(self, item: RemoteItem) -> CopySource | None:
        return self._copy_of(item, item.version) if item.version else None

    def _copy_of(self, item: RemoteItem, etag: str) -> CopySource:
        cfg = self.config
        return CopySource(cfg.endpoint_url, cfg.region, cfg.bucket, item.extra["s3_key"], etag)

    def close(self) -> None:
        """Nothing to release: the client is the process's shared one."""
