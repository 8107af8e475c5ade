"""Errors raised by Module System.

Every error says whether retrying can help::

    ModuleSystemError
    ├── ConfigError          terminal: bad registry or batch file (CLI exit status 2)
    ├── TransientError       worth retrying: connection reset, 5xx, throttling
    └── TerminalError        retrying will not help this item: bad input, refused request
        ├── FatalError       nothing else in the job can work either: access denied,
        │                    missing bucket, wrong password; the job stops at once
        ├── ItemVanished     the item was listed but is gone; reported, not a job failure
        ├── JobCancelled     the batch was interrupted before the job finished
        └── JobTimeout       the job ran past its deadline

Library errors (botocore, ftplib, httpx, ...) are translated into these in one place
per protocol, always with ``raise ... from exc`` so the cause stays visible.

Every error also carries a short machine-readable ``reason`` (``http_503``,
``connection_lost``, ``checksum_mismatch``, ``ftp_421``, ...): the job report counts
retries by it, and the dashboard shows it. A class default applies when none is given.
"""

from __future__ import annotations


class ModuleSystemError(Exception):
    """Base class for every error this package raises on purpose."""

    default_reason = "error"

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or self.default_reason


class ConfigError(ModuleSystemError):
    """The registry or batch file is invalid; nothing was run.

    ``problems`` lists one line per problem, each naming the file, the service or job and
    the field, so a user can fix them all at once.
    """

    default_reason = "config"

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class TransientError(ModuleSystemError):
    """A failure that may succeed when tried again (network, 5xx, throttling).

    ``retry_after`` is the server's requested wait in seconds, when it gave one.
    """

    default_reason = "transient"

    def __init__(
        self, message: str, retry_after: float | None = None, *, reason: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class TerminalError(ModuleSystemError):
    """A failure that retrying will not fix (permissions, missing resources, bad input)."""

    default_reason = "terminal"


class FatalError(TerminalError):
    """A failure that dooms the whole job (permissions, missing bucket, bad credentials):
    the job stops taking items at once instead of failing them one by one."""

    default_reason = "fatal"


class JobCancelled(TerminalError):
    """The batch was interrupted (Ctrl-C) before this job finished."""

    default_reason = "cancelled"


class JobTimeout(TerminalError):
    """The job ran past its timeout; files not started were left for the next run."""

    default_reason = "timed_out"


class ItemVanished(TerminalError):
    """The item was listed but is gone when fetched; it is reported, not a job failure."""

    default_reason = "vanished"
