"""All validators configured for one service, applied to each file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from module_system.validation import VALIDATORS
from module_system.validation.base import InputRefused, Issue, Validator, Verdict


class ValidationSuite:
    """Runs every configured validator that accepts a file and merges their verdicts.

    With no validators configured every file is valid (a plain copy). With validators
    configured, a file none of them accepts is invalid: it would otherwise land unchecked.
    """

    def __init__(self, validation: dict[str, Any]) -> None:
        self.validators: list[Validator] = [
            VALIDATORS.get(name).from_options(options) for name, options in validation.items()
        ]

    @property
    def can_check_growing_files(self) -> bool:
        """True when every validator reads through :func:`open_binary` (see
        :attr:`Validator.reads_growing_files`): files may be validated while they download."""
        return all(v.reads_growing_files for v in self.validators)

    def validate(self, path: Path, name: str) -> Verdict:
        if not self.validators:
            return Verdict(True, "none")
        applicable = [v for v in self.validators if v.accepts(name)]
        if not applicable:
            configured = ", ".join(v.name for v in self.validators)
            issue = Issue(f"no configured validator ({configured}) checks files named like this")
            return Verdict(False, "none", [issue], 1)
        verdicts = [_verdict(v, path, name) for v in applicable]
        if len(verdicts) == 1:
            return verdicts[0]
        return Verdict(
            valid=all(v.valid for v in verdicts),
            validator="+".join(v.validator for v in verdicts),
            issues=[issue for v in verdicts for issue in v.issues],
            error_count=sum(v.error_count for v in verdicts),
            records=verdicts[0].records,
        )


def _verdict(validator: Validator, path: Path, name: str) -> Verdict:
    """The validator's verdict; a file it refused to read on (too large, a decompression
    bomb) is invalid for that reason."""
    try:
        return validator.validate(path, name)
    except InputRefused as exc:
        return Verdict(False, validator.name, [Issue(str(exc), "file", exc.reason)], 1)
