"""The include/exclude glob filter that the S3, FTP and SFTP sources apply to relative keys."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable


def wanted(relative: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    """True when ``relative`` matches an ``include`` glob and no ``exclude`` glob.

    Case-sensitive on every platform, and ``*`` also matches ``/``, so ``*.csv`` takes
    CSV files in sub-folders too.
    """

    def matches(patterns: Iterable[str]) -> bool:
        return any(fnmatch.fnmatchcase(relative, p) for p in patterns)

    return matches(include) and not matches(exclude)
