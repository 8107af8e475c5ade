"""The Arrow fast path of the CSV validator reports exactly what the pure-Python path does.

A differential test: many random small files, valid and broken in every way the validator
knows, checked both ways; the verdicts must be equal to the last issue.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from module_system.validation import csv as csv_module
from module_system.validation import csv_fast
from module_system.validation.csv import CsvValidator

FIELDS: list[dict[str, Any]] = [
    {"name": "id", "type": "integer", "constraints": {"required": True, "unique": True}},
    {"name": "qty", "type": "integer", "constraints": {"minimum": 0, "maximum": 50}},
    {"name": "code", "type": "integer", "constraints": {"enum": [1, 2, 3]}},
    {"name": "amount", "type": "number", "constraints": {"minimum": 0}},
    {"name": "ratio", "type": "number", "constraints": {"maximum": 1.5}},
    {"name": "day", "type": "date"},
    {"name": "at", "type": "datetime"},
    {"name": "ok", "type": "boolean"},
    {"name": "yes", "type": "boolean", "trueValues": ["Y"], "falseValues": ["N"]},
    {"name": "memo", "type": "string", "constraints": {"maxLength": 12}},
    {"name": "tag", "type": "string", "constraints": {"minLength": 2, "required": True}},
    {"name": "cur", "type": "string", "constraints": {"enum": ["EUR", "USD"]}},
    {"name": "sku", "type": "string", "constraints": {"pattern": "[A-Z]{2}[0-9]", "unique": True}},
    {"name": "mail", "type": "string", "format": "email"},
    {"name": "key", "type": "string", "constraints": {"unique": True}},
    {"name": "n", "type": "number", "constraints": {"unique": True}},
    {"name": "free"},
]

GOOD: dict[str, list[str]] = {
    "qty": ["0", "7", "50", "007", ""],
    "code": ["1", "2", "3", ""],
    "amount": ["0", "1.5", "10.", ".5", "2e3", "0.00", ""],
    "ratio": ["1.5", "-3", "0.1", "1E-3", ""],
    "day": ["2026-01-31", "2024-02-29", ""],
    "at": ["2026-01-01T10:00:00", "2026-01-01T10:00:00Z", ""],
    "ok": ["true", "False", "1", "0", ""],
    "yes": ["Y", "N", ""],
    "memo": ["hello", "été à Paris", "", "x y"],
    "tag": ["ab", "xyz"],
    "cur": ["EUR", "USD", ""],
    "mail": ["a@b.io", ""],
    "free": ["anything", "", " spaced ", "ünï"],
}
BAD: dict[str, list[str]] = {
    "id": ["", "x", "1.0", "+3", "٣", "99999999999999999999999"],
    "qty": ["-1", "51", "+5", "1.5", "abc", "\u0665", "99999999999999999999999"],
    "code": ["4", "0", "01", "x"],
    "amount": ["-0.5", "abc", "1e", ".", "NaN", "-INF", "1,5", "1e999", "--1"],
    "ratio": ["1.6", "INF", "2", "1e400"],
    "day": ["2026-13-01", "2026-02-30", "0000-01-01", "26-01-01", "2026/01/01"],
    "at": ["yesterday", "2026-01-01 10:00", "2026-01-01T25:00:00"],
    "ok": ["yes", "TRUE ", "2"],
    "yes": ["y", "true"],
    "memo": ["a much longer memo than allowed", "ééééééééééééé"],
    "tag": ["", "a"],
    "cur": ["GBP", "eur"],
    "mail": ["nope", "a@b"],
}


def _value(rng: random.Random, name: str, row: int, bad_rate: float) -> str:
    if name in BAD and rng.random() < bad_rate:
        return rng.choice(BAD[name])
    if name == "id":
        return str(row if rng.random() > bad_rate else rng.randrange(1, row + 2))
    if name == "sku":
        return f"{chr(65 + row % 26)}{chr(65 + row // 26 % 26)}{row // 676 % 10}"
    if name == "key":
        return f"k{row if rng.random() > bad_rate else rng.randrange(row + 1)}"
    if name == "n":
        return rng.choice([str(row), f"{row}.0", f"{row}e0"])
    return rng.choice(GOOD[name])


def _random_file(rng: random.Random) -> tuple[bytes, dict[str, Any]]:
    fields = rng.sample(FIELDS, rng.randint(1, 6))
    names = [f["name"] for f in fields]
    schema: dict[str, Any] = {"fields": fields}
    if rng.random() < 0.2:
        schema["missingValues"] = ["", "NA"]
    options: dict[str, Any] = {"table_schema": schema if rng.random() < 0.9 else None}
    delimiter = rng.choice([",", ",", ";", "\t"])
    options["delimiter"] = delimiter
    header = rng.random() < 0.85
    options["header"] = header
    if rng.random() < 0.1:
        options["min_rows"] = rng.randint(0, 5)
    bad_rate = rng.choice([0.0, 0.0, 0.0, 0.001, 0.01, 0.2])
    count = rng.choice([0, 1, 3, 50, 599, 600, 601, 1300, 2500])
    newline = rng.choice(["\n", "\n", "\r\n", "\r"])
    lines = []
    if header:
        shown = list(names)
        if rng.random() < 0.05:
            rng.shuffle(shown)
        if rng.random() < 0.03:
            shown[0] = "renamed"
        lines.append(delimiter.join(shown))
    for row in range(1, count + 1):
        values = [_value(rng, name, row, bad_rate) for name in names]
        if "NA" in schema.get("missingValues", []) and rng.random() < 0.05:
            values[rng.randrange(len(values))] = "NA"
        lines.append(delimiter.join(values))
    for _ in range(rng.choice([0, 0, 0, 1, 2])):  # rare troubles anywhere in the file
        at = rng.randrange(len(lines) + 1)
        trouble = rng.choice(["blank", "ragged", "short", "quoted", "quoted_nl", "bad_quote",
                              "empties", "unclosed"])  # fmt: skip
        if trouble == "blank":
            lines.insert(at, "")
        elif trouble == "ragged":
            lines.insert(at, delimiter.join(["1"] * (len(names) + 1)))
        elif trouble == "short" and len(names) > 1:
            lines.insert(at, delimiter.join(["1"] * (len(names) - 1)))
        elif trouble == "empties":
            lines.insert(at, delimiter * (len(names) - 1))
        elif trouble in ("quoted", "quoted_nl", "bad_quote", "unclosed") and lines:
            at = min(at, len(lines) - 1)
            cells = lines[at].split(delimiter)
            inner = {"quoted": 'say ""hi""', "quoted_nl": "two\r\nlines",
                     "bad_quote": 'x"y', "unclosed": "open"}[trouble]  # fmt: skip
            cells[-1] = {"bad_quote": '"ab"c', "unclosed": '"open'}.get(trouble, f'"{inner}"')
            lines[at] = delimiter.join(cells)
    text = newline.join(lines) + (newline if rng.random() < 0.9 else "")
    data = text.encode()
    if rng.random() < 0.1:
        data = b"\xef\xbb\xbf" + data
    if rng.random() < 0.03 and data:
        at = rng.randrange(len(data))
        data = data[:at] + b"\xff" + data[at:]
    return data, options


@pytest.fixture(autouse=True)
def fast_path_for_every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests compare the two paths on small files, which normally skip Arrow."""
    monkeypatch.setattr(csv_module, "FAST_PATH_MIN_BYTES", 0)


def test_small_files_skip_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_module, "FAST_PATH_MIN_BYTES", 1024)

    def refuse(*args: Any) -> None:
        raise AssertionError("the fast path ran for a small file")

    monkeypatch.setattr(CsvValidator, "_validate_fast", refuse)
    path = tmp_path / "small.csv"
    path.write_text("id\n1\n2\n")
    validator = CsvValidator(CsvValidator.parse_options({}, tmp_path))
    assert validator.validate(path, path.name).valid


def _both(tmp_path: Path, data: bytes, options: dict[str, Any], name: str) -> tuple[Any, Any]:
    path = tmp_path / name
    path.write_bytes(data)
    validator = CsvValidator(CsvValidator.parse_options(options, tmp_path))
    fast = validator.validate(path, name).as_dict()
    csv_module.FAST_PATH = False
    try:
        slow = validator.validate(path, name).as_dict()
    finally:
        csv_module.FAST_PATH = True
    return fast, slow


@pytest.mark.parametrize("small_blocks", [False, True])
def test_fast_path_reports_exactly_what_python_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_blocks: bool
) -> None:
    if small_blocks:  # many Arrow blocks and check runs per file, odd boundaries
        monkeypatch.setattr(csv_fast, "BLOCK_BYTES", 4096)
        monkeypatch.setattr(csv_fast, "CHECK_ROWS", 1200)
    fell_back = 0
    original = CsvValidator._validate_python

    def counting(self: CsvValidator, path: Path, name: str) -> Any:
        nonlocal fell_back
        fell_back += csv_module.FAST_PATH
        return original(self, path, name)

    monkeypatch.setattr(CsvValidator, "_validate_python", counting)
    rng = random.Random(20261128 + small_blocks)
    runs = 300
    for n in range(runs):
        data, options = _random_file(rng)
        fast, slow = _both(tmp_path, data, options, f"f{n}.csv")
        assert fast == slow, (n, options, data[:300])
    assert fell_back < runs * 0.6, "most random files should take the fast path"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n",
        b"\r\n",
        b"id\n\n",
        b"id,amount\n1,2\n\n",
        b"\n\nid,amount\n1,2\n",
        b"id,amount\n,\n",
        b"id\n\n1\n",
        b"id,amount\r\n1,2\r\n\r\n3,4\r\n",
        b"id,amount\r1,2\r\r3,4\r",
        b"\xef\xbb\xbf",
        b"\xef\xbb\xbfid,amount\n1,2\n",
        b"\xef\xbb\xbf\xef\xbb\xbfid,amount\n1,2\n",
        b'id,amount\n"1",2\n',
        b'id,amount\n"1"x,2\n',
        b'id,amount\n1,"2\n',
        b"id,amount\n1,2,3\n",
        b"id,amount\n1\n",
        b"id,amount\n1,\xed\xa0\x80\n",
        b"id,amount\n1,\xc0\x80\n",
        b"id,amount\n1,\xf4\x90\x80\x80\n",
        b"id,amount\n1\x002,3\n",
        b"id,amount\n1,2",
        b"id,amount\n",
        b"id,amount",
    ],
)
def test_edge_cases_agree(tmp_path: Path, content: bytes) -> None:
    schema = {"fields": [{"name": "id", "type": "integer"}, {"name": "amount"}]}
    for options in ({"table_schema": schema}, {"table_schema": None}, {"header": False}):
        fast, slow = _both(tmp_path, content, options, "edge.csv")
        assert fast == slow, (content, options)


def test_a_field_over_the_csv_field_limit_falls_back(tmp_path: Path) -> None:
    content = b"id,amount\n1," + b"x" * 200_000 + b"\n"
    fast, slow = _both(tmp_path, content, {"table_schema": None}, "long.csv")
    assert fast == slow
    assert not fast["valid"]  # Python's csv refuses fields over 131072 characters


def test_a_large_valid_file_takes_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = {"fields": [
        {"name": "id", "type": "integer", "constraints": {"required": True, "unique": True}},
        {"name": "amount", "type": "number", "constraints": {"minimum": 0}},
        {"name": "day", "type": "date"},
        {"name": "memo", "type": "string", "constraints": {"maxLength": 80}},
    ]}  # fmt: skip
    path = tmp_path / "large.csv"
    with path.open("w") as out:
        out.write("id,amount,day,memo\n")
        for start in range(0, 200_000, 20_000):
            out.write("".join(
                f"{i},{i % 9999 / 100:.2f},2026-{i % 12 + 1:02d}-{i % 28 + 1:02d},order {i}\n"
                for i in range(start, start + 20_000)
            ))  # fmt: skip

    def refuse(*args: Any) -> None:
        raise AssertionError("the pure-Python path ran")

    monkeypatch.setattr(CsvValidator, "_validate_python", refuse)
    validator = CsvValidator(CsvValidator.parse_options({"table_schema": schema}, tmp_path))
    verdict = validator.validate(path, path.name)
    assert verdict.valid, verdict.issues[:3]
    assert verdict.records == 200_000
