"""Validators by name: the keys of a service's ``validation:`` block."""

from module_system.plugins import VALIDATORS
from module_system.validation.base import Issue, Validator, Verdict

__all__ = ["VALIDATORS", "Issue", "Validator", "Verdict"]
