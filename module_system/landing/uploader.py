"""Upload files to the landing bucket with end-to-end integrity.

Every upload carries a SHA-256 checksum that S3 verifies on receipt (per part for
multipart uploads); afterwards the checksum S3 stored is read back and compared with the
one computed here from the local file, so a corrupted or truncated upload never counts as
landed. Files stream from disk through boto3's transfer manager: memory stays bounded.
"""

from __future__ import annotations

import contextlib
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import boto3.exceptions
import botocore.exceptions
import orjson
from boto3.s3.transfer import TransferConfig
from s3transfer.utils import ChunksizeAdjuster

from module_system.aws import CopySource, direct_for, shared_client, translate_errors
from module_system.aws_direct import attempt, object_headers
from module_system.config.models import LandingConfig
from module_system.errors import FatalError, ModuleSystemError, TerminalError, TransientError
from module_system.landing.checksums import FileDigest, digest_file
from module_system.landing.streaming import StreamingCopy, StreamingUpload

MB = 1024 * 1024
MAX_COPY_BYTES = 5 * 1024 * MB  # CopyObject's limit; bigger objects copy in parts


@dataclass(frozen=True)
class UploadResult:
    key: str
    size: int
    checksum: str


class S3Lander:
    """Writes objects into the landing bucket. Thread-safe: one client, many threads."""

    def __init__(self, landing: LandingConfig, client: Any | None = None) -> None:
        self.landing = landing
        self.client = client or shared_client(landing)
        self.threshold = landing.multipart_threshold_mb * MB
        self.chunksize = landing.multipart_chunksize_mb * MB
        self._direct = direct_for(self.client)
        # Source buckets the landing's credentials may not copy from (a Dask worker shares
        # one lander between services: one refusal must not turn copies off for the rest).
        self._copy_refused: set[tuple[str | None, str]] = set()

    def close(self) -> None:
        """Nothing to release: the client is the process's shared one."""

    def part_size(self, size: int) -> int:
        return int(ChunksizeAdjuster().adjust_chunksize(self.chunksize, size))

    def digest(self, path: Path, size: int | None = None) -> FileDigest:
        """Hash ``path`` in this lander's part size. ``size``: the expected size, for a
        file still being written."""
        size = path.stat().st_size if size is None else size
        return digest_file(path, self.part_size(size))

    def upload_file(
        self,
        path: Path,
        key: str,
        digest: FileDigest,
        metadata: dict[str, str],
        staging_key: str | None = None,
    ) -> UploadResult:
        """Upload ``path`` to ``key`` and prove it intact, or leave nothing there.

        With ``staging_key`` (an object may already be at ``key``: a changed file), the
        bytes go to the staging key first and replace ``key`` by a server-side copy only
        once proven, so a failed upload never costs the last good object."""
        if staging_key is None:
            return self._upload(path, key, digest, metadata)
        try:
            self._upload(path, staging_key, digest, metadata)
            self._copy_proven(staging_key, key, digest)
        finally:
            self._delete_quietly(staging_key)
        return UploadResult(key, digest.size, digest.sha256_hex)

    def copies(self, source: CopySource, size: int, replacing: bool) -> bool:
        """Whether to land ``size`` bytes from ``source`` by server-side copy (rclone's
        default between buckets of one endpoint). A small new file is uploaded instead: the
        upload is one request too, and on S3 servers a copy costs more than a small PUT; a
        replacement is copied all the same, since the upload would need a staging copy."""
        landing = self.landing
        if not landing.server_side_copy or _source_bucket(source) in self._copy_refused:
            return False
        if not replacing and size < landing.server_side_copy_min_mb * MB:
            return False
        mine = (landing.endpoint_url or "").rstrip("/")
        if mine != (source.endpoint_url or "").rstrip("/"):
            return False
        return bool(mine) or (source.region or None) == (landing.region or None)

    def copy_in(
        self, source: CopySource, key: str, digest: FileDigest, metadata: dict[str, str]
    ) -> bool:
        """Land ``key`` as a server-side copy of ``source``, only if it is still the version
        that was fetched (``CopySourceIfMatch``) and S3's checksum of the copy equals ours
        of the validated bytes. False when the copy cannot be made or proven: upload then."""
        bucket = self.landing.bucket
        args: dict[str, Any] = {
            "CopySourceIfMatch": f'"{source.etag}"',
            "ChecksumAlgorithm": "SHA256",
            **self._object_args(key, {**metadata, "sha256": digest.sha256_hex}),
        }
        copy_from = {"Bucket": source.bucket, "Key": source.key}
        try:
            with translate_errors(self.landing, bucket, key):
                if digest.size > MAX_COPY_BYTES:
                    config = _copy_in_parts(digest)
                    self.client.copy(copy_from, bucket, key, ExtraArgs=args, Config=config)
                    self.verify(key, digest.s3_checksum(True), digest.size)
                    return True
                stored = attempt(
                    self._direct,
                    lambda direct: direct.copy(
                        bucket, key, (source.bucket, source.key), source.etag,
                        _headers(args),
                    ),
                    lambda: self.client.copy_object(
                        Bucket=bucket, Key=key, CopySource=copy_from,
                        MetadataDirective="REPLACE", **args,
                    ).get("CopyObjectResult", {}).get("ChecksumSHA256"),
                )  # fmt: skip
            self._compare(key, stored, digest.sha256_b64)
            return True
        except FatalError:  # e.g. AccessDenied on the source bucket: upload from now on
            self.refuse_copies(source)
            return False
        except TransientError as exc:
            if exc.reason in ("checksum_mismatch", "size_mismatch"):
                return False  # not the validated bytes: our upload replaces them
            raise  # the connection or the server: retried
        except TerminalError:  # changed since the fetch (412), or gone: upload ours
            return False

    def refuse_copies(self, source: CopySource) -> None:
        """The landing's credentials could not copy from ``source``'s bucket: files from it
        are uploaded from now on."""
        self._copy_refused.add(_source_bucket(source))

    def _copy_proven(self, source_key: str, key: str, digest: FileDigest) -> None:
        bucket = self.landing.bucket
        in_parts = digest.size > MAX_COPY_BYTES  # UploadPartCopy, in our part size
        with translate_errors(self.landing, bucket, key):
            if in_parts:
                self.client.copy(
                    {"Bucket": bucket, "Key": source_key}, bucket, key,
                    ExtraArgs={"ChecksumAlgorithm": "SHA256"}, Config=_copy_in_parts(digest),
                )  # fmt: skip
            else:
                self.client.copy_object(
                    Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": source_key},
                    ChecksumAlgorithm="SHA256", MetadataDirective="COPY",
                )  # fmt: skip
        # The copy's checksum is computed anew by S3: checked against ours all the same.
        self.verify(key, digest.s3_checksum(in_parts), digest.size)

    def _delete_quietly(self, key: str) -> None:
        # A leftover staging object is removed at the service's next job start.
        with contextlib.suppress(ModuleSystemError):
            self.delete(key)

    def _upload(
        self, path: Path, key: str, digest: FileDigest, metadata: dict[str, str]
    ) -> UploadResult:
        multipart = digest.size >= self.threshold
        if multipart and digest.part_size != self.part_size(digest.size):
            # hashed in another part size (a server-side copy's, which failed): hash again,
            # so the upload goes in parallel parts and S3's checksum can be compared with ours
            digest = self.digest(path)
        extra = {
            "ChecksumAlgorithm": "SHA256",
            **self._object_args(key, {**metadata, "sha256": digest.sha256_hex}),
        }
        bucket = self.landing.bucket
        if not multipart:
            # One PUT; its response carries the checksum S3 stored, so no HEAD is needed.
            with translate_errors(self.landing, bucket, key), path.open("rb") as body:
                stored = attempt(
                    self._direct,
                    lambda direct: direct.put(
                        bucket,
                        key,
                        body,
                        digest.size,
                        (digest.sha256_hex, digest.sha256_b64),
                        _headers(extra),
                    ),
                    lambda: self._put_object(key, body, extra),
                )
            self._checked(key, lambda: self._compare(key, stored, digest.sha256_b64))
            return UploadResult(key, digest.size, digest.sha256_hex)
        config = TransferConfig(  # made only here: it costs ~40 attribute hooks to build
            multipart_threshold=self.threshold,
            multipart_chunksize=digest.part_size,
            max_concurrency=4,
        )
        with translate_errors(self.landing, bucket, key):
            try:
                self.client.upload_file(str(path), bucket, key, ExtraArgs=extra, Config=config)
            except boto3.exceptions.S3UploadFailedError as exc:
                # boto3 wraps the real error; re-raise it so it is judged transient or not.
                if isinstance(exc.__context__, botocore.exceptions.ClientError):
                    raise exc.__context__ from exc
                raise TransientError(
                    f"s3://{bucket}/{key}: upload failed: {exc}", reason="upload_failed"
                ) from exc
        self._checked(key, lambda: self.verify(key, digest.s3_checksum(multipart), digest.size))
        return UploadResult(key, digest.size, digest.sha256_hex)

    def _put_object(self, key: str, body: BinaryIO, extra: dict[str, Any]) -> str | None:
        """Through botocore: PUT ``body`` from its start; the SHA-256 S3 stored."""
        body.seek(0)
        response = self.client.put_object(Bucket=self.landing.bucket, Key=key, Body=body, **extra)
        return response.get("ChecksumSHA256")

    def _checked(self, key: str, check: Callable[[], None]) -> None:
        """Run ``check``; if it fails, delete what was uploaded before re-raising."""
        try:
            check()
        except ModuleSystemError:
            self.delete(key)
            raise

    def put_json(self, key: str, document: Any) -> UploadResult:
        """Upload a small JSON document (manifests, error reports)."""
        body = orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str)
        bucket = self.landing.bucket
        with translate_errors(self.landing, bucket, key):
            self.client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                ChecksumAlgorithm="SHA256",
            )
        return UploadResult(key, len(body), "")

    def streams(self, size: int | None) -> bool:
        """Whether a file of ``size`` bytes is uploaded in parts (and so can be streamed)."""
        return size is not None and size >= self.threshold

    def streaming_upload(
        self,
        key: str,
        size: int,
        metadata: dict[str, str],
        before_complete: Callable[[], None] = lambda: None,
    ) -> StreamingUpload:
        """A multipart upload fed during the download; visible only once completed. Its
        metadata has no ``sha256``: that is known only at the end (the manifest has it)."""
        args = self._object_args(key, metadata)
        return StreamingUpload(self, key, size, args, before_complete)

    def streaming_copy(
        self,
        source: CopySource,
        key: str,
        size: int,
        metadata: dict[str, str],
        before_complete: Callable[[], None] = lambda: None,
    ) -> StreamingCopy:
        """A server-side multipart copy of ``source`` made during its download; visible
        only once completed. Its metadata has no ``sha256``, as for a streamed upload."""
        args = self._object_args(key, metadata)
        return StreamingCopy(self, source, key, size, args, before_complete)

    def clear_leftovers(self, root: str, staging_root: str) -> int:
        """Remove what a killed job under ``root`` left behind: staging objects and
        unfinished multipart uploads. Only safe while holding the service's lease."""
        bucket, removed = self.landing.bucket, 0
        with translate_errors(self.landing, bucket, root):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=staging_root)  # fmt: skip
            for page in pages:
                for obj in page.get("Contents", []):
                    self.client.delete_object(Bucket=bucket, Key=obj["Key"])
                    removed += 1
            uploads = self.client.list_multipart_uploads(Bucket=bucket, Prefix=root)
            for upload in uploads.get("Uploads", []):
                self.client.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])  # fmt: skip
                removed += 1
        return removed

    def delete(self, key: str) -> None:
        """Remove an object that failed its check, so nothing unproven stays visible."""
        with translate_errors(self.landing, self.landing.bucket, key):
            self.client.delete_object(Bucket=self.landing.bucket, Key=key)

    @staticmethod
    def _object_args(key: str, metadata: dict[str, str]) -> dict[str, Any]:
        return {
            "Metadata": _ascii_metadata(metadata),
            "ContentType": mimetypes.guess_type(key)[0] or "application/octet-stream",
        }

    def verify(self, key: str, expected: str, size: int) -> None:
        """Compare the checksum and size S3 stored for ``key`` with ours."""
        bucket = self.landing.bucket
        with translate_errors(self.landing, bucket, key):
            head = self.client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        if head.get("ContentLength") != size:
            raise TransientError(
                f"s3://{bucket}/{key}: stored {head.get('ContentLength')} bytes, sent {size}; "
                "will re-upload",
                reason="size_mismatch",
            )
        self._compare(key, head.get("ChecksumSHA256"), expected)

    def _compare(self, key: str, stored: str | None, expected: str) -> None:
        where = f"s3://{self.landing.bucket}/{key}"
        if stored is None:
            raise TerminalError(
                f"{where}: the server reported no SHA-256 checksum, "
                "so the upload cannot be proven intact"
            )
        if not _same_checksum(stored, expected):
            raise TransientError(
                f"{where}: checksum mismatch after upload (stored {stored}, expected {expected}); "
                "will re-upload",
                reason="checksum_mismatch",
            )


def _copy_in_parts(digest: FileDigest) -> TransferConfig:
    """A copy bigger than CopyObject allows, in parts of our part size: S3's checksum of
    the copy then comes out as ours."""
    return TransferConfig(multipart_threshold=MAX_COPY_BYTES, multipart_chunksize=digest.part_size)


def _headers(args: dict[str, Any]) -> dict[str, str]:
    """The object arguments (see ``S3Lander._object_args``) as request headers, for the
    direct path."""
    return object_headers(args["Metadata"], args["ContentType"])


def _source_bucket(source: CopySource) -> tuple[str | None, str]:
    return (source.endpoint_url, source.bucket)


def _same_checksum(stored: str, expected: str) -> bool:
    # Real S3 reports composite (multipart) checksums as "<b64>-<parts>"; some
    # S3-compatible servers (moto among them) leave off the part count.
    digest, _, parts = stored.partition("-")
    want_digest, _, want_parts = expected.partition("-")
    return digest == want_digest and (not parts or parts == want_parts)


def _ascii_metadata(metadata: dict[str, str]) -> dict[str, str]:
    # S3 user metadata travels in HTTP headers: keep it ASCII by percent-encoding.
    return {k: quote(v, safe="/:@=+,;~ ") for k, v in metadata.items()}
