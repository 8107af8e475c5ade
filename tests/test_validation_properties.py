"""Property tests of the validators (hypothesis).

- The CSV validator against Frictionless as an oracle, on small random tables and Table
  Schemas: the same verdict, and the same failing rows; its Arrow fast path and its
  pure-Python path give the same report.
- The JSON Schema validator on deep nesting and on numbers beyond 64 bits or a double:
  always a verdict (never a crash), and the right one where the number can be checked.

The runs are short by default; ``FUZZ_EXAMPLES=20000 pytest -m fuzz`` runs long ones.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from module_system.validation import csv as csv_module
from module_system.validation.base import Verdict
from module_system.validation.csv import CsvValidator
from module_system.validation.json_schema import JsonSchemaValidator

LONG_RUN = "FUZZ_EXAMPLES" in os.environ
pytestmark = [pytest.mark.fuzz, *([pytest.mark.timeout(0)] if LONG_RUN else [])]

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "50")),
    deadline=None,
    database=None,  # no .hypothesis/ folder in the shared checkout; failures print a seed
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- CSV against Frictionless ----------------------------------------------------------------

# Values on both sides of each type's lexical rules. Left out: what Frictionless takes
# beyond the Table Schema spec, which we refuse on purpose (spec: "NaN", "INF", "-INF"
# only; no digit-group "_"; ISO dates with two-digit months and days; no surrounding
# blanks): "inf", "Infinity", "1_000", "2026-1-5", " 1".
CELLS: dict[str, list[str]] = {
    "integer": ["0", "1", "-5", "42", "+3", "-0", "007", "1.0", "1e3", "x", "\u0663",
                "99999999999999999999", "-99999999999999999999", ""],
    "number": ["0", "1.5", "-2", ".5", "5.", "1e5", "1E-3", "NaN", "INF", "-INF", "1,5", "x",
               "1e400", "+1.5", "0x10", "0.1", "0.10000000000000001", ""],
    "string": ["a", "ab", "abc", "x y", "a,b", 'q"t', "ABC", "019", "\u00e9", "line\nbreak", ""],
    "boolean": ["true", "false", "True", "FALSE", "1", "0", "yes", "t", ""],
    "date": ["2026-01-31", "2024-02-29", "2026-13-01", "2026-02-30", "20260101",
             "2026/01/01", "0000-01-01", "0001-01-01", "9999-12-31", ""],
}  # fmt: skip
BOUNDS: dict[str, list[Any]] = {
    "integer": [-3, 0, 1, 10],
    "number": [-3, 0, 1, 10.5],
    "date": ["2025-01-01", "2026-06-30"],
}
GENERATED: dict[str, st.SearchStrategy[str]] = {
    "integer": st.integers().map(str),
    "number": st.floats(allow_nan=False, allow_infinity=False).map(repr),
    "string": st.text(alphabet='abcxyz019 ,"\n', max_size=4),
    "boolean": st.sampled_from(["true", "false"]),
    "date": st.dates().map(str),
}
PATTERNS = ["[a-c]+", "a.*", "[0-9]{2,}", "x y|ab"]
ENUMS: dict[str, list[Any]] = {"integer": [0, 1, 42, -5], "string": ["a", "ab", "abc", "x y"]}


@st.composite
def table_fields(draw: st.DrawFn, index: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(CELLS)))
    constraints: dict[str, Any] = {}
    if draw(st.booleans()):
        constraints["required"] = True
    if draw(st.integers(0, 4)) == 0:
        constraints["unique"] = True
    if kind in BOUNDS and draw(st.booleans()):
        constraints[draw(st.sampled_from(["minimum", "maximum"]))] = draw(
            st.sampled_from(BOUNDS[kind])
        )
    if kind == "string" and draw(st.booleans()):
        constraints["pattern"] = draw(st.sampled_from(PATTERNS))
    if kind == "string" and draw(st.booleans()):
        constraints[draw(st.sampled_from(["minLength", "maxLength"]))] = draw(st.integers(1, 3))
    if kind in ENUMS and draw(st.integers(0, 3)) == 0:
        constraints["enum"] = draw(st.lists(st.sampled_from(ENUMS[kind]), min_size=1, unique=True))
    field: dict[str, Any] = {"name": f"f{index}", "type": kind}
    return {**field, "constraints": constraints} if constraints else field


@st.composite
def tables(draw: st.DrawFn) -> tuple[dict[str, Any], list[list[str]]]:
    """A Table Schema and the rows of a CSV file for it, header first."""
    width = draw(st.integers(1, 3))
    fields = [draw(table_fields(i)) for i in range(width)]
    schema: dict[str, Any] = {"fields": fields}
    extra_missing = draw(st.booleans())
    if extra_missing:
        schema["missingValues"] = ["", "NA"]
    rows = [[f["name"] for f in fields]]
    for _ in range(draw(st.integers(0, 6))):
        row = [draw(cells(f["type"], extra_missing)) for f in fields]
        shape = draw(st.sampled_from(["same"] * 12 + ["longer", "shorter", "blank"]))
        rows.append({"same": row, "longer": [*row, "x"], "shorter": row[:-1], "blank": []}[shape])
    return schema, rows


def cells(kind: str, extra_missing: bool) -> st.SearchStrategy[str]:
    listed = st.sampled_from(CELLS[kind] + ["NA"] * extra_missing)
    return st.one_of(listed, listed, GENERATED[kind])


def csv_text(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def frictionless_verdict(data: bytes, schema: dict[str, Any]) -> tuple[bool, set[int]]:
    from frictionless import Dialect, Resource, Schema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # frictionless warns about its own deprecations
        resource = Resource(
            data=data,
            format="csv",
            dialect=Dialect(header_rows=[1]),  # else it guesses, e.g. a wide row below
            schema=Schema.from_descriptor(schema),
        )
        report = resource.validate()
    assert not report.errors, report.errors  # the oracle itself had no trouble
    rows = {getattr(error, "row_number", None) or 1 for error in report.tasks[0].errors}
    return report.valid, rows


def failing_rows(verdict: Verdict) -> set[int]:
    found = (re.match(r"row (\d+)", issue.location) for issue in verdict.issues)
    return {int(match.group(1)) if match else -1 for match in found}


def our_verdicts(tmp_path: Path, data: bytes, schema: dict[str, Any]) -> tuple[Verdict, Verdict]:
    """Our verdict by the Arrow fast path (with its fall-backs) and the pure-Python path."""
    path = tmp_path / "table.csv"
    path.write_bytes(data)
    validator = CsvValidator(CsvValidator.parse_options({"table_schema": schema}, tmp_path))
    saved = csv_module.FAST_PATH_MIN_BYTES, csv_module.FAST_PATH
    try:
        csv_module.FAST_PATH_MIN_BYTES = 0  # small files too
        fast = validator.validate(path, path.name)
        csv_module.FAST_PATH = False
        slow = validator.validate(path, path.name)
    finally:
        csv_module.FAST_PATH_MIN_BYTES, csv_module.FAST_PATH = saved
    return fast, slow


@FUZZ
@given(tables())
@example(  # a row of empty fields is a blank row (it was checked as values)
    ({"fields": [{"name": "f0", "type": "integer"}, {"name": "f1", "type": "string"}]},
     [["f0", "f1"], ["", ""], ["1", "a"]]),
)  # fmt: skip
@example(  # so is a row of missing values only, with missingValues
    ({"fields": [{"name": "f0", "type": "number"}], "missingValues": ["", "NA"]},
     [["f0"], ["NA"], ["1"]]),
)  # fmt: skip
@example(  # NaN is within no bounds
    ({"fields": [{"name": "f0", "type": "number", "constraints": {"maximum": 10.5}}]},
     [["f0"], ["NaN"]]),
)  # fmt: skip
@example(  # 1e400 is a number, no INF; 0.1 is not 0.10000000000000001
    ({"fields": [{"name": "f0", "type": "number", "constraints": {"unique": True}}]},
     [["f0"], ["INF"], ["1e400"], ["0.1"], ["0.10000000000000001"]]),
)  # fmt: skip
def test_csv_verdicts_agree_with_frictionless(
    tmp_path: Path, table: tuple[dict[str, Any], list[list[str]]]
) -> None:
    schema, rows = table
    data = csv_text(rows)
    fast, slow = our_verdicts(tmp_path, data, schema)
    assert fast.as_dict() == slow.as_dict()
    valid, rows_failing = frictionless_verdict(data, schema)
    assert slow.valid is valid, (data, slow.issues)
    if _rows_comparable(schema, rows):
        assert failing_rows(slow) == rows_failing, (data, slow.issues)


def _rows_comparable(schema: dict[str, Any], rows: list[list[str]]) -> bool:
    """Whether the failing rows can be compared, beyond the verdict: not when a row of
    the wrong width comes with a unique column. We report such a row for its width alone
    and check none of its values; Frictionless checks them by position, so a value seen
    there makes a later row a repeat for it only."""
    unique = any(f.get("constraints", {}).get("unique") for f in schema["fields"])
    return not (unique and any(row and len(row) != len(schema["fields"]) for row in rows[1:]))


@FUZZ
@given(tables(), st.sampled_from(["reversed", "renamed"]))
def test_a_header_unlike_the_schema_is_invalid_for_both(
    tmp_path: Path, table: tuple[dict[str, Any], list[list[str]]], change: str
) -> None:
    """Frictionless checks columns by position and we by name, so only the verdicts are
    compared when the header does not match."""
    schema, rows = table
    header = rows[0][::-1] if change == "reversed" else ["zz", *rows[0][1:]]
    assume(header != rows[0])
    data = csv_text([header, *rows[1:]])
    fast, slow = our_verdicts(tmp_path, data, schema)
    assert fast.as_dict() == slow.as_dict()
    assert not slow.valid and not frictionless_verdict(data, schema)[0]


# --- JSON: deep nesting ------------------------------------------------------------------------

ORJSON_MAX_DEPTH = 1024
JSON_SCHEMAS: dict[str, tuple[dict[str, Any], Callable[[str, int], bool]]] = {
    # name: (schema, is a document nested `depth` deep in `kind` containers valid?)
    "anything": ({}, lambda kind, depth: True),
    "an object": ({"type": "object"}, lambda kind, depth: kind == "object"),
    "arrays all the way": (
        {"type": "array", "items": {"$ref": "#"}},
        lambda kind, depth: kind == "array",
    ),
    "no empty array": (
        {"type": "array", "items": {"$ref": "#"}, "minItems": 1},
        lambda kind, depth: False,  # the innermost array is empty
    ),
}


def nested(kind: str, depth: int) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def json_verdict(tmp_path: Path, name: str, data: bytes, schema: dict[str, Any]) -> Verdict:
    path = tmp_path / name
    path.write_bytes(data)
    validator = JsonSchemaValidator(JsonSchemaValidator.parse_options(schema, tmp_path))
    return validator.validate(path, name)


@FUZZ
@given(
    depth=st.integers(1, 3 * ORJSON_MAX_DEPTH) | st.sampled_from([255, 256, 1024, 1025, 10_000]),
    kind=st.sampled_from(["array", "object"]),
    schema_name=st.sampled_from(sorted(JSON_SCHEMAS)),
    lines=st.booleans(),
)
@example(depth=10_000, kind="array", schema_name="anything", lines=False)
@example(depth=300, kind="array", schema_name="no empty array", lines=False)  # it crashed
def test_deep_nesting_gets_a_verdict(
    tmp_path: Path, depth: int, kind: str, schema_name: str, lines: bool
) -> None:
    schema, expected_valid = JSON_SCHEMAS[schema_name]
    text = nested(kind, depth)
    name = "deep.ndjson" if lines else "deep.json"
    verdict = json_verdict(tmp_path, name, text + b"\n" if lines else text, schema)
    if depth > ORJSON_MAX_DEPTH:
        assert not verdict.valid and verdict.error_count == 1
        assert "depth limit exceeded" in verdict.issues[0].message
        return
    assert verdict.valid is expected_valid(kind, depth), verdict.issues
    if not verdict.valid:
        assert verdict.error_count >= 1 and verdict.issues[0].message


# --- JSON: numbers ----------------------------------------------------------------------------

MAX_DIGITS = 4300  # what Python converts from text by default (sys.get_int_max_str_digits)
big_integers = (
    st.integers()
    | st.integers(-(10**40), 10**40)
    | st.builds(
        lambda k, d: 10**k + d,
        st.sampled_from([18, 19, 20, 30, 308, 400, 4299]),
        st.integers(-2, 2),
    )
    | st.builds(lambda n: -n, st.sampled_from([2**63, 2**63 + 1, 2**64, 10**20 + 1]))
)
bounds = st.none() | big_integers


def integer_schema(draft: str, low: int | None, high: int | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"$schema": draft, "type": "integer"}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema


DRAFTS = ["http://json-schema.org/draft-04/schema#", "https://json-schema.org/draft/2020-12/schema"]


@FUZZ
@given(number=big_integers, low=bounds, high=bounds, draft=st.sampled_from(DRAFTS),
       lines=st.booleans())  # fmt: skip
@example(number=10**20 + 1, low=None, high=10**20, draft=DRAFTS[1], lines=False)
@example(number=10**20, low=None, high=None, draft=DRAFTS[0], lines=True)
@example(number=10**20 + 1, low=0, high=100, draft=DRAFTS[1], lines=True)  # small bounds:
@example(number=-(10**20) - 1, low=-5, high=None, draft=DRAFTS[1], lines=False)  # read fast
@example(number=2**63, low=None, high=2**53, draft=DRAFTS[1], lines=True)  # exactly
def test_integers_of_any_size_are_compared_exactly(
    tmp_path: Path, number: int, low: int | None, high: int | None, draft: str, lines: bool
) -> None:
    schema = integer_schema(draft, low, high)
    name = "n.ndjson" if lines else "n.json"
    text = f'{{"n": {number}}}\n'.encode()
    verdict = json_verdict(tmp_path, name, text, {"type": "object", "properties": {"n": schema}})
    within = (low is None or number >= low) and (high is None or number <= high)
    assert verdict.valid is within, (number, low, high, verdict.issues)


@pytest.mark.parametrize("lines", [False, True])
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1e400", "not checkable JSON: the number 1e400 is beyond the range of a 64-bit float"),
        ("-1e400", "not checkable JSON: the number -1e400 is beyond the range of a 64-bit float"),
        ("1" + "0" * 5000, "not checkable JSON: an integer of 5,001 digits: too long to check "
                           f"(at most {MAX_DIGITS:,})"),
        ("NaN", "not parseable JSON: unexpected character"),  # no JSON number
        ("-Infinity", "not parseable JSON: no digit after sign"),
    ],
)  # fmt: skip
def test_numbers_that_cannot_be_checked_get_a_clear_verdict(
    tmp_path: Path, text: str, message: str, lines: bool
) -> None:
    name = "n.ndjson" if lines else "n.json"
    document = f'{{"id": 1, "n": {text}}}\n'.encode()
    verdict = json_verdict(tmp_path, name, document, {"type": "object"})
    assert not verdict.valid and verdict.error_count == 1
    prefix = "line 1: " if lines else ""
    assert verdict.issues[0].message.startswith(prefix + message), verdict.issues


@FUZZ
@given(st.floats(allow_nan=False, allow_infinity=False), st.floats(-1e300, 1e300))
def test_floats_compare_as_floats(tmp_path: Path, number: float, high: float) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "number", "maximum": high}}}
    verdict = json_verdict(tmp_path, "f.json", json.dumps({"n": number}).encode(), schema)
    assert verdict.valid is (number <= high)


def test_only_integers_orjson_may_round_are_parsed_again() -> None:
    """64-bit ids (19 digits) stay on the fast path; what orjson rounds does not."""
    from module_system.validation import json_text

    assert not json_text.may_need_exact([b'{"id": 1234567890123456789, "x": 18446744073709551]'])
    assert json_text.may_need_exact([b'{"id": 1}', b'{"id": 18446744073709551616}'])
    assert json_text.may_need_exact([b'{"id": -9223372036854775809}'])
    assert json_text.parse(b"[18446744073709551616]", exact=True) == [2**64]
    assert json_text.parse(b"[18446744073709551616]", exact=False) == [2.0**64]  # no bounds


@pytest.mark.parametrize(
    ("schema", "exact"),
    [
        ({"type": "object", "properties": {"n": {"minimum": 0, "maximum": 100}}}, False),
        ({"properties": {"n": {"exclusiveMaximum": 2**53 - 1}}}, False),
        ({"properties": {"n": {"maximum": 2**53}}}, True),
        ({"properties": {"n": {"minimum": -1e300}}}, True),
        ({"$defs": {"n": {"multipleOf": 3}}}, True),
        ({"items": {"uniqueItems": True}}, True),
        ({"properties": {"kind": {"enum": ["a", "b"]}, "c": {"const": {"x": "y"}}}}, False),
        ({"properties": {"kind": {"enum": ["a", 7]}}}, True),
        ({"properties": {"c": {"const": {"x": [1]}}}}, True),
        ({"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer"}, True),
        ({"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 5,
          "exclusiveMaximum": True}, False),
        ({"properties": {"multipleOf": {"type": "string"}}}, True),  # only a name: slower, safe
    ],
)  # fmt: skip
def test_numbers_are_read_exactly_only_where_rounding_may_change_the_verdict(
    schema: dict[str, Any], exact: bool
) -> None:
    from module_system.validation.json_schema import _compares_numbers

    assert _compares_numbers(schema) is exact


@pytest.mark.parametrize("lines", [False, True])
@pytest.mark.parametrize(
    ("schema", "valid"),
    [
        ({"enum": [10**20]}, False),  # 10**20 + 1 would round to 1e20
        ({"const": 10**20}, False),
        ({"multipleOf": 10}, False),  # 1e20 is a multiple of 10
        ({"maximum": 10**20}, False),
        ({"minimum": 0, "maximum": 100}, False),  # small bounds, fast path, same verdict
        ({"minimum": 0}, True),
    ],
)
def test_a_huge_integer_gets_its_exact_verdict_whichever_path_reads_it(
    tmp_path: Path, schema: dict[str, Any], valid: bool, lines: bool
) -> None:
    name = "n.ndjson" if lines else "n.json"
    text = f'{{"n": {10**20 + 1}}}\n'.encode()
    wrapped = {"type": "object", "properties": {"n": schema}}
    verdict = json_verdict(tmp_path, name, text, wrapped)
    assert verdict.valid is valid, verdict.issues


@pytest.mark.parametrize("lines", [False, True])
def test_a_reason_quotes_a_huge_integer_with_every_digit(tmp_path: Path, lines: bool) -> None:
    """Small bounds read numbers fast (rounded) for the verdict; the reason still shows the
    number as the file has it, and a valid huge integer next to it stays valid."""
    huge = 10**20 + 1
    schema = {"type": "object", "properties": {"n": {"minimum": 0, "maximum": 100}}}
    name = "n.ndjson" if lines else "n.json"
    text = (
        f'{{"n": 5}}\n{{"n": {huge}}}\n{{"n": {-huge}}}\n'.encode()
        if lines
        else f'{{"n": {huge}}}'.encode()
    )
    verdict = json_verdict(tmp_path, name, text, schema)
    assert not verdict.valid
    messages = [issue.message for issue in verdict.issues]
    assert any(str(huge) in message for message in messages), messages
    assert not any("e+20" in message for message in messages), messages
    if lines:
        assert verdict.error_count == 2
        assert any(str(-huge) in message for message in messages), messages
        assert [issue.location.split(":")[0] for issue in verdict.issues] == ["line 2", "line 3"]


def test_a_records_document_quotes_huge_integers_and_counts_its_records(tmp_path: Path) -> None:
    huge = 10**20 + 1
    schema = {"type": "object", "properties": {"n": {"maximum": 100}}}
    text = f'{{"items": [{{"n": 1}}, {{"n": {huge}}}, {{"n": 2}}]}}'.encode()
    verdict = json_verdict(tmp_path, "d.json", text, {"schema": schema, "records_path": "items"})
    assert not verdict.valid and verdict.error_count == 1 and verdict.records == 3
    assert str(huge) in verdict.issues[0].message, verdict.issues
