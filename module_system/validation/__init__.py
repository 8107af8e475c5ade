"""Validators by name: the keys of a service's ``validation:`` block."""

from module_system.plugins import PluginRegistry
from module_system.validation.base import Issue, Validator, Verdict

VALIDATORS = PluginRegistry(
    "module_system.validators",
    {
        "json_schema": "module_system.validation.json_schema:JsonSchemaValidator",
        "csv": "module_system.validation.csv:CsvValidator",
        "html": "module_system.validation.html:HtmlValidator",
    },
)

__all__ = ["VALIDATORS", "Issue", "Validator", "Verdict"]
