"""The JSON Schema validator's ``records_path`` option and how the API source sets it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from module_system.sources.api import ApiSource, ApiSourceConfig
from module_system.validation.json_schema import JsonSchemaOptions, JsonSchemaValidator

RECORD = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}


def check(tmp_path: Path, body: object | str, options: JsonSchemaOptions) -> dict[str, object]:
    path = tmp_path / "page.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return JsonSchemaValidator(options).validate(path, "page.json").as_dict()


def test_schema_applies_to_each_record(tmp_path: Path) -> None:
    options = JsonSchemaValidator.parse_options(
        {"schema": RECORD, "records_path": "data"}, tmp_path
    )
    verdict = check(tmp_path, {"data": [{"id": 1}, {"id": "2"}, {}]}, options)
    assert verdict["records"] == 3 and verdict["error_count"] == 2
    assert [e["location"] for e in verdict["errors"]] == ["$.data[1].id", "$.data[2]"]  # type: ignore[attr-defined]


def test_records_at_the_root(tmp_path: Path) -> None:
    options = JsonSchemaOptions(schema_=RECORD, records_path="$")
    assert check(tmp_path, [{"id": 1}, {"id": 2}], options)["valid"]
    assert check(tmp_path, {"id": 1}, options)["records"] == 1  # one object is one record


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"other": []}, "no records: the response has no 'data'"),
        ({"data": {"id": 1}}, "records_path 'data' is a dict, not a list"),
        ("<html>oops</html>", "not parseable JSON"),
    ],
)
def test_unreadable_responses_are_invalid(tmp_path: Path, body: object, message: str) -> None:
    verdict = check(tmp_path, body, JsonSchemaOptions(schema_={}, records_path="data"))
    assert not verdict["valid"]
    assert message in verdict["errors"][0]["message"]  # type: ignore[index]


def test_without_records_path_the_document_is_checked_whole(tmp_path: Path) -> None:
    options = JsonSchemaValidator.parse_options(RECORD, tmp_path)
    assert options.records_path is None
    assert check(tmp_path, {"id": 1}, options)["valid"]
    assert not check(tmp_path, [{"id": 1}], options)["valid"]


def test_unknown_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown option"):
        JsonSchemaValidator.parse_options({"schema": RECORD, "record_path": "x"}, tmp_path)


def test_api_source_fills_in_records_path(tmp_path: Path) -> None:
    config = ApiSourceConfig(url="https://api.example.com/v1", records_path="data.items")
    given = {"json_schema": JsonSchemaOptions(schema_=RECORD)}
    assert ApiSource.adapt_validation(config, given)["json_schema"].records_path == "data.items"
    # with no schema configured, responses are still checked for JSON and records
    default = ApiSource.adapt_validation(config, {})["json_schema"]
    assert (default.schema_, default.records_path) == ({}, "data.items")
    explicit = {"json_schema": JsonSchemaOptions(schema_=RECORD, records_path="other")}
    assert ApiSource.adapt_validation(config, explicit)["json_schema"].records_path == "other"
