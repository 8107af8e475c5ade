"""One pass over a file yields its SHA-256 and the per-part digests S3 uses for
multipart uploads, so the checksum S3 stores can be compared with ours."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from module_system.growing_file import open_following

READ_SIZE = 1024 * 1024


@dataclass(frozen=True)
class FileDigest:
    sha256_hex: str
    size: int
    part_size: int
    part_digests: tuple[bytes, ...]

    @property
    def sha256_b64(self) -> str:
        return base64.b64encode(bytes.fromhex(self.sha256_hex)).decode()

    def s3_checksum(self, multipart: bool) -> str:
        """The ``ChecksumSHA256`` S3 reports: the plain digest, or for multipart uploads
        the digest of the part digests followed by ``-<parts>``."""
        if not multipart:
            return self.sha256_b64
        combined = hashlib.sha256(b"".join(self.part_digests)).digest()
        return f"{base64.b64encode(combined).decode()}-{len(self.part_digests)}"


def digest_file(path: Path, part_size: int) -> FileDigest:
    """Hash ``path`` whole and in ``part_size`` parts, reading it once."""
    whole = hashlib.sha256()
    parts: list[bytes] = []
    part = hashlib.sha256()
    in_part = size = 0
    with open_following(path) as fh:
        while chunk := fh.read(min(READ_SIZE, part_size - in_part)):
            whole.update(chunk)
            part.update(chunk)
            in_part += len(chunk)
            size += len(chunk)
            if in_part == part_size:
                parts.append(part.digest())
                part, in_part = hashlib.sha256(), 0
    if in_part or not parts:
        parts.append(part.digest())
    return FileDigest(whole.hexdigest(), size, part_size, tuple(parts))
