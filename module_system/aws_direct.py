"""The single-request calls of a file (GetObject, a one-part PutObject, CopyObject) as one
signed request each, without botocore's per-call machinery.

Why: on a small file botocore's work around a request (serialising parameters, resolving
the endpoint, about twenty event handlers, header dictionaries, parsing the response) costs
about 0.8 ms of CPU, twice what sending the request costs; a file makes two such calls.
The request carries what botocore's would: the URL of the bucket is taken from a
ListObjectsV2 request botocore made (every job lists its source and landing buckets first);
it is signed by botocore's own SigV4 signer with the client's credentials (refreshed as
botocore refreshes them) and sent through the client's own HTTP session (its connection
pool, proxies, CA bundle and timeouts). A GET asks for the object's checksum and checks
the body against it as botocore does; a PUT sends the SHA-256 already computed, which S3
checks and the signature covers.

Only success is handled here. An error status, or an exception before the answer, and the
call is made again through botocore, so errors, redirects, retries and error messages are
botocore's. An error in the middle of a body (a short read, a checksum mismatch) is raised
like botocore's own, for our retries. A bucket whose URL is not known yet (or an access
point or S3 Express bucket) goes through botocore. ``MODULE_SYSTEM_S3_DIRECT=0`` turns all
this off.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote

import botocore
import botocore.httpchecksum
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.httpchecksum import StreamingChecksumBody
from botocore.response import StreamingBody

from module_system._version import __version__

USER_AGENT = f"module-system/{__version__} botocore/{botocore.__version__} (direct)"
# botocore's own tables of the checksums it checks a response against, in its order of
# preference, so a body is checked here exactly when botocore would check it.
_ALGORITHMS: list[str] = botocore.httpchecksum._ALGORITHMS_PRIORITY_LIST  # type: ignore[attr-defined]
_CHECKSUM_CLS: dict[str, Any] = botocore.httpchecksum._CHECKSUM_CLS  # type: ignore[attr-defined]
_CHECKSUM = re.compile(rb"<ChecksumSHA256>([^<]+)</ChecksumSHA256>")
_ETAG = re.compile(rb"<ETag>([^<]+)</ETag>")


def enabled() -> bool:
    """Read when a client is made: ``MODULE_SYSTEM_S3_DIRECT=0`` gives it no direct path."""
    return os.environ.get("MODULE_SYSTEM_S3_DIRECT", "1") != "0"


@dataclass(frozen=True)
class _Bucket:
    url: str  # "http://host:9000/bucket" (path style) or "https://bucket.s3.region.amazonaws.com"
    region: str


class _KnownPayloadSigner(S3SigV4Auth):
    """SigV4 for S3 that takes a PUT body's SHA-256 from the request's context, where the
    caller put the hash it already has, instead of reading the whole body again."""

    def payload(self, request: AWSRequest) -> str:
        known: str | None = request.context.get("payload_sha256")
        return known or str(super().payload(request))


class Fallback(Exception):
    """The direct request did not succeed: make the call through botocore instead."""


class DirectS3:
    """Signed single requests for one botocore S3 client; see the module's docstring."""

    def __init__(self, client: Any, credentials: Any) -> None:
        self._credentials = credentials
        # The client's own HTTP session: botocore exposes no public handle on it.
        self._http = client._endpoint.http_session
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        client.meta.events.register("request-created.s3.ListObjectsV2", self._learn)

    def _learn(self, request: AWSRequest, **_: Any) -> None:
        """Remember the URL and signing region of a bucket from botocore's own request."""
        context = request.context
        bucket = context.get("s3_redirect", {}).get("bucket")
        signing = context.get("signing", {})
        plain_sigv4 = context.get("auth_type") == "v4" and signing.get("signing_name") == "s3"
        if not bucket or bucket.startswith("arn:") or not plain_sigv4 or not signing.get("region"):
            return
        url = str(request.url).split("?", 1)[0].rstrip("/")
        with self._lock:
            self._buckets[bucket] = _Bucket(url, signing["region"])

    def knows(self, bucket: str) -> bool:
        return bucket in self._buckets

    def _forget(self, bucket: str) -> None:
        with self._lock:
            self._buckets.pop(bucket, None)

    def _send(
        self,
        method: str,
        bucket: str,
        key: str,
        headers: Mapping[str, str],
        body: bytes | IO[bytes] | None = None,
        stream: bool = False,
        payload_sha256: str | None = None,
    ) -> AWSResponse:
        where = self._buckets.get(bucket)
        if where is None:
            raise Fallback(f"no URL known for bucket {bucket}")
        request = AWSRequest(
            method, f"{where.url}/{quote(key, safe='/~')}", headers=dict(headers), data=body
        )
        request.headers["User-Agent"] = USER_AGENT
        request.context["payload_sha256"] = payload_sha256
        credentials = self._credentials.get_frozen_credentials()
        _KnownPayloadSigner(credentials, "s3", where.region).add_auth(request)
        prepared = request.prepare()
        prepared.stream_output = stream
        try:
            response = self._http.send(prepared)
        except Exception as exc:  # botocore's retries and messages apply: make the call there
            raise Fallback(str(exc)) from exc
        if not 200 <= response.status_code < 300:
            if response.status_code in (301, 307):  # moved (another region): learn anew
                self._forget(bucket)
            if stream:  # read the error body off the connection before it is reused
                response.raw.drain_conn()
            raise Fallback(f"HTTP {response.status_code}")
        return response

    def get_to(self, bucket: str, key: str, out: IO[bytes], chunk: int) -> str:
        """Write the object's body to ``out``; return its ETag (without quotes)."""
        response = self._send("GET", bucket, key, {"x-amz-checksum-mode": "ENABLED"}, stream=True)
        length = response.headers.get("content-length", "")
        if not length.isdigit():  # a length is what proves the body complete
            response.raw.drain_conn()
            raise Fallback("no Content-Length")
        body = _checked_body(response, int(length))
        try:
            for piece in body.iter_chunks(chunk):  # raises on a short body or a bad checksum
                out.write(piece)
        except BaseException:
            response.raw.close()  # cut off mid-body: the connection cannot be reused
            raise
        response.raw.release_conn()  # read to the end: back to the pool
        return str(response.headers.get("etag", "")).strip('"')

    def put(
        self, bucket: str, key: str, body: IO[bytes], size: int, checksums: tuple[str, str],
        headers: Mapping[str, str],
    ) -> str | None:  # fmt: skip
        """Upload ``body`` (``size`` bytes) with its SHA-256 (``checksums``: hex, base64),
        which S3 checks on receipt; return the SHA-256 S3 reports storing."""
        sha256_hex, sha256_b64 = checksums
        response = self._send("PUT", bucket, key, {
            **headers,
            "Content-Length": str(size),
            "x-amz-sdk-checksum-algorithm": "SHA256",
            "x-amz-checksum-sha256": sha256_b64,
        }, body, payload_sha256=sha256_hex)  # fmt: skip
        return response.headers.get("x-amz-checksum-sha256")

    def copy(
        self, bucket: str, key: str, source: tuple[str, str], if_match: str,
        headers: Mapping[str, str],
    ) -> str | None:  # fmt: skip
        """Copy ``source`` (bucket, key) to ``key`` if its ETag is still ``if_match``,
        replacing the metadata with ``headers``; return S3's SHA-256 of the copy."""
        response = self._send("PUT", bucket, key, {
            **headers,
            "x-amz-copy-source": quote(f"{source[0]}/{source[1]}", safe="/~"),
            "x-amz-copy-source-if-match": f'"{if_match}"',
            "x-amz-metadata-directive": "REPLACE",
            "x-amz-checksum-algorithm": "SHA256",
        })  # fmt: skip
        content = response.content
        if not _ETAG.search(content):  # S3 can answer 200 with an error in the body
            raise Fallback("no CopyObjectResult in the answer")
        found = _CHECKSUM.search(content)
        return found.group(1).decode() if found else None


def _checked_body(response: AWSResponse, length: int) -> StreamingBody:
    """The body, checked against the object's full checksum when S3 sent one that can be
    computed here: botocore's own rule (``response_checksum_validation``), and its classes."""
    for algorithm in _ALGORITHMS:
        expected = response.headers.get(f"x-amz-checksum-{algorithm}")
        # "<b64>-<parts>" is a checksum of part checksums: not one of the whole body
        if expected and "-" not in expected and algorithm in _CHECKSUM_CLS:
            checksum = _CHECKSUM_CLS[algorithm]()
            return StreamingChecksumBody(response.raw, length, checksum, expected)
    return StreamingBody(response.raw, length)


def object_headers(metadata: Mapping[str, str], content_type: str) -> dict[str, str]:
    """``Metadata`` and ``ContentType`` as the headers botocore would send."""
    return {"Content-Type": content_type, **{f"x-amz-meta-{k}": v for k, v in metadata.items()}}


def attempt(
    direct: DirectS3 | None, call: Callable[[DirectS3], Any], fallback: Callable[[], Any]
) -> Any:
    """``call`` on the direct path when there is one, else (or when it falls back) ``fallback``."""
    if direct is not None:
        try:
            return call(direct)
        except Fallback:
            pass
    return fallback()
