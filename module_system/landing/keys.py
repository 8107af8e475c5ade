"""Where files land: ``{prefix}data/{source}/{service_id}/{area}/{relative key}``.

Relative keys come from remote systems and are not trusted: ``.``, ``..`` and empty
segments are escaped, so a landing key can never climb out of its service's folder, and
over-long keys are shortened with a hash so S3 accepts them. The escaping is one-to-one:
two different remote keys never share a landing key.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAX_KEY_BYTES = 1024
QUARANTINE = "quarantine"
MANIFESTS = "_manifests"
STAGING = "_staging"  # proven here before replacing an object; cleared at each job start
ERROR_SUFFIX = ".error.json"


_ESCAPED = {"": "%2F", ".": "%2E", "..": "%2E%2E"}
# A literal segment that looks like an escape gets its "%" escaped, keeping the map 1:1.
_LOOKS_ESCAPED = re.compile(r"%(25)*(2F|2E|2E%2E)")


def safe_relative_key(key: str) -> str:
    """Turn a remote path into a relative S3 key that stays below its folder.

    ``a/b.csv`` stays as it is; ``..`` becomes ``%2E%2E``, ``.`` ``%2E`` and an empty
    segment (``a//b``, a leading ``/``) ``%2F``.
    """
    return "/".join(_escape(segment) for segment in key.split("/"))


def _escape(segment: str) -> str:
    if segment in _ESCAPED:
        return _ESCAPED[segment]
    if _LOOKS_ESCAPED.fullmatch(segment):
        return "%25" + segment[1:]
    return segment


@dataclass(frozen=True)
class LandingLayout:
    """Key layout for one service."""

    prefix: str
    source_type: str
    service_id: str
    area: str

    @property
    def root(self) -> str:
        return f"{self.prefix}data/{self.source_type}/{self.service_id}/"

    def valid_key(self, relative: str) -> str:
        return self._fit(self.root + f"{self.area}/", relative)

    def quarantine_key(self, relative: str) -> str:
        return self._fit(self.root + f"{QUARANTINE}/", relative, reserve=len(ERROR_SUFFIX))

    def manifest_key(self, job_id: str) -> str:
        return f"{self.root}{MANIFESTS}/{job_id}.json"

    def log_key(self, job_id: str) -> str:
        return f"{self.root}_logs/{job_id}.log"

    @property
    def staging_root(self) -> str:
        return f"{self.root}{STAGING}/"

    def staging_key(self, job_id: str, number: int) -> str:
        return f"{self.staging_root}{job_id}-{number:08d}"

    @staticmethod
    def _fit(folder: str, relative: str, reserve: int = 0) -> str:
        tail = safe_relative_key(relative)
        key = folder + tail
        if len(key.encode()) + reserve <= MAX_KEY_BYTES:
            return key
        digest = hashlib.sha256(tail.encode()).hexdigest()[:16]
        suffix = tail.rsplit(".", 1)[-1][:16] if "." in tail.rsplit("/", 1)[-1] else ""
        # bytes, not characters: a suffix of multi-byte characters must still fit
        room = (
            MAX_KEY_BYTES - len(folder.encode()) - reserve - len(digest) - len(suffix.encode()) - 3
        )
        head = tail.encode()[: max(room, 0)].decode(errors="ignore")
        return f"{folder}{head}~{digest}" + (f".{suffix}" if suffix else "")
