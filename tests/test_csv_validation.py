"""The CSV validator: streaming, Table Schema types and constraints, and edge cases."""

from __future__ import annotations

import gc
import gzip
import json
import random
from pathlib import Path
from typing import Any

import psutil
import pytest

from module_system.config import load_registry
from module_system.errors import ConfigError
from module_system.validation.base import Verdict
from module_system.validation.csv import BATCH_ROWS, CsvValidator
from tests.helpers import write_registry

SALES_SCHEMA = {
    "fields": [
        {"name": "id", "type": "integer", "constraints": {"required": True, "unique": True}},
        {"name": "amount", "type": "number", "constraints": {"minimum": 0}},
        {"name": "day", "type": "date"},
    ]
}


def check(tmp_path: Path, content: str | bytes, name: str = "data.csv", **options: Any) -> Verdict:
    options.setdefault("table_schema", SALES_SCHEMA)
    path = tmp_path / name
    data = content.encode() if isinstance(content, str) else content
    if name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    validator = CsvValidator(CsvValidator.parse_options(options, tmp_path))
    return validator.validate(path, name)


def messages(verdict: Verdict) -> list[str]:
    return [f"{issue.location}: {issue.message}" for issue in verdict.issues]


def test_a_clean_file_is_valid_and_counts_rows(tmp_path: Path) -> None:
    verdict = check(tmp_path, "id,amount,day\n1,10.5,2026-11-01\n2,0,2026-11-02\n")
    assert verdict.valid, messages(verdict)
    assert verdict.records == 2
    assert verdict.validator == "csv"


def test_bom_crlf_and_quoted_newlines(tmp_path: Path) -> None:
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "note"}]}
    content = '\ufeffid,note\r\n1,"two\r\nlines, and a comma"\r\n2,"say ""hi"""\r\nx,bad\r\n'
    verdict = check(tmp_path, content, table_schema=schema)
    assert verdict.records == 3
    # the quoted newline makes row 2 span two lines, yet the bad id is reported as row 4
    assert messages(verdict) == ["row 4, column 'id': type: 'x' is not a valid integer"]


def test_wrong_field_count_names_the_row(tmp_path: Path) -> None:
    verdict = check(tmp_path, "id,amount,day\n1,2,2026-01-01\n2,3\n3,4,2026-01-03,extra\n")
    assert messages(verdict) == [
        "row 3: row has 2 fields, expected 3",
        "row 4: row has 4 fields, expected 3",
    ]


def test_bad_types_are_reported_with_row_and_column(tmp_path: Path) -> None:
    schema = {
        "fields": [
            {"name": "n", "type": "integer"},
            {"name": "x", "type": "number"},
            {"name": "d", "type": "date"},
            {"name": "b", "type": "boolean"},
            {"name": "t", "type": "datetime"},
        ]
    }
    content = (
        "n,x,d,b,t\n"
        "1,1.5,2026-01-01,true,2026-01-01T10:00:00Z\n"
        "1.5,abc,2026-13-01,maybe,yesterday\n"
    )
    verdict = check(tmp_path, content, table_schema=schema)
    assert messages(verdict) == [
        "row 3, column 'n': type: '1.5' is not a valid integer",
        "row 3, column 'x': type: 'abc' is not a valid number",
        "row 3, column 'd': type: '2026-13-01' is not a valid date",
        "row 3, column 'b': type: 'maybe' is not a valid boolean",
        "row 3, column 't': type: 'yesterday' is not a valid datetime",
    ]


def test_repeated_unique_key_in_a_later_batch(tmp_path: Path) -> None:
    rows = [f"{i},1,2026-01-01" for i in range(1, BATCH_ROWS * 3)]
    rows.append("7,1,2026-01-01")  # repeats row 8 (header is row 1), several batches later
    verdict = check(tmp_path, "id,amount,day\n" + "\n".join(rows) + "\n")
    last_row = len(rows) + 1
    assert messages(verdict) == [
        f"row {last_row}, column 'id': constraint unique: '7' repeats an earlier row"
    ]


def test_unique_compares_values_not_text(tmp_path: Path) -> None:
    verdict = check(tmp_path, "id,amount,day\n7,1,2026-01-01\n007,1,2026-01-01\n")
    assert messages(verdict) == [
        "row 3, column 'id': constraint unique: '007' repeats an earlier row"
    ]


def test_header_mismatch(tmp_path: Path) -> None:
    verdict = check(tmp_path, "id,total,day\n1,2,2026-01-01\n")
    assert not verdict.valid
    assert messages(verdict) == [
        "row 1: header does not match the schema: expected id, amount, day; found id, total, day",
        "row 1: column 'amount' of the schema is missing",
        "row 1: column 'total' is not in the schema",
    ]


def test_columns_in_another_order_are_checked_by_name(tmp_path: Path) -> None:
    verdict = check(tmp_path, "day,id,amount\n2026-01-01,1,-5\n")
    assert "row 2, column 'amount': constraint minimum: '-5' is below 0" in messages(verdict)


def test_non_utf8_bytes_name_the_row_and_the_check_goes_on(tmp_path: Path) -> None:
    content = b"id,amount,day\n1,2,2026-01-01\n2,3,caf\xe9\n3,x,2026-01-03\n"
    verdict = check(tmp_path, content)
    assert messages(verdict) == [
        "row 3, column 'day': bytes that are not valid utf-8 (check the file's encoding)",
        "row 4, column 'amount': type: 'x' is not a valid number",
    ]


def test_declared_encoding_is_used(tmp_path: Path) -> None:
    schema = {"fields": [{"name": "name"}]}
    verdict = check(
        tmp_path, "name\ncafé\n".encode("latin-1"), encoding="latin-1", table_schema=schema
    )
    assert verdict.valid


def test_empty_file_is_invalid_with_a_clear_message(tmp_path: Path) -> None:
    verdict = check(tmp_path, "")
    assert not verdict.valid
    assert messages(verdict) == ["row 1: the file is empty: no header and no rows"]


def test_header_only_is_valid_unless_min_rows(tmp_path: Path) -> None:
    assert check(tmp_path, "id,amount,day\n").valid
    assert check(tmp_path, "id,amount,day\n").records == 0
    verdict = check(tmp_path, "id,amount,day\n", min_rows=1)
    assert messages(verdict) == ["file: header only, no data rows; at least 1 required (min_rows)"]


def test_gzipped_csv_is_read_through_gzip(tmp_path: Path) -> None:
    verdict = check(tmp_path, "id,amount,day\n1,1,2026-01-01\n2,x,2026-01-01\n", name="d.csv.gz")
    assert messages(verdict) == ["row 3, column 'amount': type: 'x' is not a valid number"]


def test_corrupt_gzip_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv.gz"
    path.write_bytes(gzip.compress(b"id,amount,day\n" * 1000)[:50])
    validator = CsvValidator(CsvValidator.parse_options({}, tmp_path))
    verdict = validator.validate(path, path.name)
    assert not verdict.valid
    assert "cannot read the file" in verdict.issues[0].message


def test_constraints(tmp_path: Path) -> None:
    schema = {
        "fields": [
            {"name": "code", "constraints": {"pattern": "[A-Z]{3}", "required": True}},
            {"name": "qty", "type": "integer", "constraints": {"minimum": 1, "maximum": 10}},
            {"name": "cur", "constraints": {"enum": ["EUR", "USD"]}},
            {"name": "note", "constraints": {"minLength": 2, "maxLength": 4}},
        ]
    }
    content = "code,qty,cur,note\nABC,5,EUR,ok\nab,0,GBP,x\n,11,USD,toolong\n"
    verdict = check(tmp_path, content, table_schema=schema)
    assert messages(verdict) == [
        "row 3, column 'code': constraint pattern: 'ab' does not match",
        "row 4, column 'code': constraint required: value is missing",
        "row 3, column 'qty': constraint minimum: '0' is below 1",
        "row 4, column 'qty': constraint maximum: '11' is above 10",
        "row 3, column 'cur': constraint enum: 'GBP' is not one of the allowed values",
        "row 3, column 'note': constraint minLength: 'x' is shorter than 2",
        "row 4, column 'note': constraint maxLength: 'toolong' is longer than 4",
    ]


def test_formats_true_values_and_missing_values(tmp_path: Path) -> None:
    schema = {
        "missingValues": ["", "NA"],
        "fields": [
            {"name": "d", "type": "date", "format": "%d/%m/%Y"},
            {"name": "ok", "type": "boolean", "trueValues": ["yes"], "falseValues": ["no"]},
            {"name": "price", "type": "number", "decimalChar": ",", "groupChar": "."},
            {"name": "mail", "format": "email"},
        ],
    }
    content = (
        'd;ok;price;mail\n31/12/2026;yes;"1.234,5";a@b.io\nNA;no;NA;x\n2026-12-31;true;1;a@b.io\n'
    )
    verdict = check(tmp_path, content, table_schema=schema, delimiter=";")
    assert messages(verdict) == [  # within a batch of rows, problems come column by column
        "row 4, column 'd': type: '2026-12-31' is not a valid date",
        "row 4, column 'ok': type: 'true' is not a valid boolean",
        "row 3, column 'mail': format: not a valid email",
    ]


def test_no_header(tmp_path: Path) -> None:
    verdict = check(tmp_path, "1,2,2026-01-01\nx,2,2026-01-01\n", header=False)
    assert verdict.records == 2
    assert messages(verdict) == ["row 2, column 'id': type: 'x' is not a valid integer"]


def test_without_a_schema_only_the_shape_is_checked(tmp_path: Path) -> None:
    verdict = check(tmp_path, "a,b\n1,2\n3\n", table_schema=None)
    assert messages(verdict) == ["row 3: row has 1 fields, expected 2"]


def test_first_hundred_errors_are_listed_and_the_rest_counted(tmp_path: Path) -> None:
    rows = "".join(f"{i},-1,2026-01-01\n" for i in range(250))
    verdict = check(tmp_path, "id,amount,day\n" + rows)
    assert verdict.error_count == 250
    assert len(verdict.issues) == 100
    assert verdict.issues[99].location == "row 101, column 'amount'"


def test_schema_from_a_file_relative_to_the_registry(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "sales.json").write_text(json.dumps(SALES_SCHEMA))
    options = CsvValidator.parse_options({"table_schema": "schemas/sales.json"}, tmp_path)
    assert options.table_schema == SALES_SCHEMA
    assert options.schema_source.endswith("sales.json")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"table_schema": "missing.json"}, "table_schema file not found"),
        ({"table_schema": {"fields": [{"name": "a", "type": "geojson"}]}}, "unsupported type"),
        (
            {"table_schema": {"fields": [{"name": "a", "constraints": {"pattern": "("}}]}},
            "bad pattern",
        ),
        ({"encoding": "no-such-codec"}, "unknown encoding"),
    ],
)
def test_bad_options_fail_at_config_load(
    tmp_path: Path, options: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValueError, match=expected):
        CsvValidator.parse_options(options, tmp_path)


def test_registry_errors_name_the_service_and_field(tmp_path: Path) -> None:
    registry = write_registry(
        tmp_path / "registry.yaml",
        {"bucket": "landing"},
        {"ftp_sales": {"type": "ftp", "source": {"host": "h"},
                       "validation": {"csv": {"delimiter": ";;"}}}},
    )  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_registry(registry)
    assert "service 'ftp_sales': validation.csv.delimiter" in str(caught.value)


def test_huge_csv_streams_in_flat_memory(tmp_path: Path) -> None:
    """~60 MB of rows: resident memory must not grow with the file (no unique column)."""
    schema = {"fields": [
        {"name": "id", "type": "integer", "constraints": {"required": True}},
        {"name": "amount", "type": "number", "constraints": {"minimum": 0}},
        {"name": "day", "type": "date"},
        {"name": "note", "type": "string"},
    ]}  # fmt: skip
    path = tmp_path / "huge.csv"
    rng = random.Random(1)
    with path.open("w") as out:
        out.write("id,amount,day,note\n")
        block = "".join(
            f"{i},{rng.random() * 1000:.2f},2026-{i % 12 + 1:02d}-{i % 28 + 1:02d},row note {i}\n"
            for i in range(20_000)
        )
        for _ in range(60_000_000 // len(block)):
            out.write(block)
    validator = CsvValidator(CsvValidator.parse_options({"table_schema": schema}, tmp_path))
    warm_up = tmp_path / "warm-up.csv"  # loads Arrow (imported lazily) before measuring
    warm_up.write_text("id,amount,day,note\n" + block * (3_000_000 // len(block) + 1))
    assert validator.validate(warm_up, warm_up.name).valid
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    verdict = validator.validate(path, path.name)
    grown = process.memory_info().rss - before
    assert verdict.valid, messages(verdict)
    assert verdict.records is not None and verdict.records > 1_000_000
    assert grown < 40 * 1024 * 1024, f"RSS grew by {grown / 1e6:.0f} MB"
