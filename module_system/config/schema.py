"""The JSON Schema (2020-12) of ``project_registry.yaml``, generated from the models.

Each service is one branch of a ``oneOf`` picked by its ``type``: the branch's ``source`` is
that source type's ``config_model`` and its ``validation`` maps every validator's name to its
options. The schema describes the file as written, so it also accepts what the loader turns
into the models: ``${VAR}`` in place of a number or a boolean, a file path in place of a
schema (``table_schema: schemas/sales.json``), and a validator's one required schema option
given alone (``json_schema: schemas/financial.schema.json``).

The package ships the schema generated from the built-in types (``registry.schema.json``,
kept current by a test), so ``module-system schema`` works without every extra installed;
``generate()`` includes third-party types too.
"""

from __future__ import annotations

import json
from copy import deepcopy
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from module_system.config.loader import SERVICE_ID
from module_system.config.models import LandingConfig, ServiceConfig
from module_system.plugins import SOURCE_TYPES, VALIDATORS

SHIPPED = Path(__file__).with_name("registry.schema.json")
DIALECT = "https://json-schema.org/draft/2020-12/schema"
# What a `${VAR}` or `${VAR:-default}` value looks like before interpolation.
INTERPOLATED = {
    "type": "string",
    "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}",
    "description": "${VAR} or ${VAR:-default}: the value comes from the environment",
}
SCHEMA_FILE = {"type": "string", "description": "a JSON file, relative to the registry's folder"}
LOADER_FILLED = ("source", "schema_source")  # set by a validator's parse_options, not by users


def shipped() -> dict[str, Any]:
    """The schema of the built-in types, as shipped with the package."""
    return dict(json.loads(SHIPPED.read_text(encoding="utf-8")))


def generate(source_types: list[str] | None = None) -> dict[str, Any]:
    """The registry's schema for ``source_types`` (default: every installed type)."""
    types = {name: SOURCE_TYPES.get(name) for name in source_types or SOURCE_TYPES.names()}
    validators = {name: VALIDATORS.get(name) for name in VALIDATORS.names()}
    models: list[type[BaseModel]] = [LandingConfig, ServiceConfig]
    models += [cls.config_model for cls in types.values()]
    models += [cls.options_model for cls in validators.values()]
    refs, top = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/$defs/{model}"
    )
    defs: dict[str, Any] = top["$defs"]

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return dict(refs[(model, "validation")])

    options = {name: (ref(v.options_model), _summary(v)) for name, v in validators.items()}
    defs["Validation"] = _validation(defs, options)
    common = dict(defs.pop("ServiceConfig")["properties"])
    branches = [_service(name, cls, ref(cls.config_model), common) for name, cls in types.items()]
    defs["Service"] = {"oneOf": branches, "description": "One service; its `type` picks a branch."}
    schema = {
        "$schema": DIALECT,
        "title": "Module System registry (project_registry.yaml)",
        "description": "The landing bucket and the services jobs can name (docs/configuration.md).",
        "type": "object",
        "additionalProperties": False,
        "required": ["landing", "services"],
        "properties": {
            "landing": ref(LandingConfig),
            "services": {
                "type": "object",
                "description": "Service id (names logs and landing folders) -> service.",
                "minProperties": 1,
                "propertyNames": {"pattern": f"^{SERVICE_ID.pattern}$"},
                "additionalProperties": {"$ref": "#/$defs/Service"},
            },
        },
        "$defs": dict(sorted(defs.items())),
    }
    return _allow_interpolation(schema)


def _summary(cls: Any) -> str:
    """The first paragraph of a class's docstring, on one line."""
    return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())


def _service(
    name: str, cls: Any, source_ref: dict[str, Any], common: dict[str, Any]
) -> dict[str, Any]:
    properties = {
        **common,
        "type": {"const": name, "description": "the source type"},
        "source": {**source_ref, "description": f"the `{name}` source's own keys"},
        "validation": {"$ref": "#/$defs/Validation"},
    }
    return {
        "title": f"{name} service",
        "description": _summary(cls) or f"A `{name}` service.",
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "source"],
        "properties": properties,
    }


def _validation(
    defs: dict[str, Any], options: dict[str, tuple[dict[str, Any], str]]
) -> dict[str, Any]:
    properties = {}
    for name, (option_ref, summary) in options.items():
        model = defs[option_ref["$ref"].rsplit("/", 1)[1]]
        for field in LOADER_FILLED:
            model["properties"].pop(field, None)
        shorthand = _schema_fields(model)
        forms: list[dict[str, Any]] = [option_ref]
        required = model.get("required", [])
        if len(required) == 1 and required[0] in shorthand:  # `json_schema: path/or/mapping`
            forms = [SCHEMA_FILE, {"type": "object"}, option_ref]
        properties[name] = {"anyOf": forms, "description": summary or f"the {name} validator"}
    return {
        "type": "object",
        "description": "Validator name -> its options; empty: files land unchecked.",
        "additionalProperties": False,
        "properties": properties,
    }


def _schema_fields(model: dict[str, Any]) -> set[str]:
    """Options holding a schema mapping also accept the path of a file that holds it."""
    names = set()
    for name, prop in model["properties"].items():
        if name.endswith("schema") and _is_mapping(prop):
            model["properties"][name] = {
                "anyOf": [SCHEMA_FILE, {"type": "object"}, {"type": "null"}][
                    : 3 if _nullable(prop) else 2
                ],
                **{k: v for k, v in prop.items() if k in ("description", "default", "title")},
            }
            names.add(name)
    return names


def _is_mapping(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "object" or any(
        branch.get("type") == "object" for branch in prop.get("anyOf", [])
    )


def _nullable(prop: dict[str, Any]) -> bool:
    return any(branch.get("type") == "null" for branch in prop.get("anyOf", []))


def _allow_interpolation(node: Any) -> Any:
    """Numbers and booleans may be written as ``${VAR}`` (YAML reads those as strings)."""
    if isinstance(node, list):
        return [_allow_interpolation(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _allow_interpolation(value) for key, value in node.items()}
    if node.get("type") in ("integer", "number", "boolean") and "const" not in node:
        outer = {k: node.pop(k) for k in ("description", "default", "title") if k in node}
        return {"anyOf": [node, deepcopy(INTERPOLATED)], **outer}
    return node


def keys_without_description(schema: dict[str, Any]) -> list[str]:
    """Where a property has no description of its own nor one on the definition it names."""
    defs = schema["$defs"]
    missing = []

    def visit(where: str, node: dict[str, Any]) -> None:
        for name, prop in node.get("properties", {}).items():
            named = [prop, *prop.get("anyOf", [])]
            targets = [defs.get(p["$ref"].rsplit("/", 1)[1], {}) for p in named if "$ref" in p]
            if not any(t.get("description") for t in [prop, *targets]):
                missing.append(f"{where}.{name}")

    for name, definition in defs.items():
        visit(name, definition)
        for branch in definition.get("oneOf", []):
            visit(f"{name}[{branch['properties']['type']['const']}]", branch)
    return sorted(set(missing))


def dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
