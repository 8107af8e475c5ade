"""CSV files checked row by row, optionally against a Frictionless Table Schema.

UTF-8 files first take the Arrow fast path (:mod:`module_system.validation.csv_fast`),
which reports exactly what the pure-Python path below does; files it cannot read exactly
the same way are checked by the pure-Python path (``FAST_PATH = False`` forces it).

The file streams through Python's C ``csv`` reader in batches of rows, so memory stays
flat whatever the file size (only ``unique`` columns remember their values). Each batch
is transposed into columns and checked column-wise (see
:mod:`module_system.validation.table_schema` for why that is fast). Row numbers in the
report count records with the header as row 1, as Frictionless does: a quoted value with
line breaks spans several lines but is one row.

``.csv.gz`` is read through gzip; a UTF-8 BOM is skipped; CRLF and quoted newlines are
handled by the ``csv`` module. Bytes that are not valid in the declared encoding are
reported with their row instead of stopping the check.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from module_system._optional import available
from module_system.growing_file import is_following
from module_system.validation.base import (
    IssueCollector,
    Validator,
    Verdict,
    open_binary,
    read_json_object,
)
from module_system.validation.table_schema import FieldCheck, compile_schema

# False: always the pure-Python path (tests compare the two; without module-system[fast-csv]).
FAST_PATH = available("pyarrow")
# Smaller files take the pure-Python path: for them Arrow's set-up (and its ~70 MB of
# memory once imported) costs more than it saves.
FAST_PATH_MIN_BYTES = 2 * 1024 * 1024
BATCH_ROWS = 600  # under gc gen0 threshold (700): row lists die before a collection
_BAD_BYTES = re.compile("[\udc80-\udcff]")  # what surrogateescape turns undecodable bytes into
_ERRORS = "module_system.csv.flag_undecodable"
_decode_state = threading.local()


def _flag_undecodable(exc: UnicodeError) -> tuple[str | bytes, int]:
    """Decode error handler: count the bad bytes and keep them as surrogates, so the
    check goes on and the rows holding them can be found. Costs nothing on clean data."""
    assert isinstance(exc, UnicodeDecodeError)
    _decode_state.bad = getattr(_decode_state, "bad", 0) + (exc.end - exc.start)
    return codecs.lookup_error("surrogateescape")(exc)


codecs.register_error(_ERRORS, _flag_undecodable)
log = logging.getLogger(__name__)


class CsvOptions(BaseModel):
    """The ``validation: {csv: ...}`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delimiter: str = Field(",", min_length=1, max_length=1)
    quotechar: str = Field('"', min_length=1, max_length=1)
    header: bool = True
    encoding: str = "utf-8"
    table_schema: dict[str, Any] | None = None
    schema_source: str = "inline"
    min_rows: int | None = Field(None, ge=0, description="fewer data rows make the file invalid")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding '{value}'") from None
        return value


class CsvValidator(Validator):
    """``validation: {csv: {table_schema: schemas/sales.json, delimiter: ";"}}``."""

    name = "csv"
    suffixes: ClassVar[tuple[str, ...]] = (".csv", ".tsv")
    options_model = CsvOptions

    @classmethod
    def parse_options(cls, raw: Any, base_dir: Path) -> CsvOptions:
        raw = dict(raw or {})
        schema = raw.get("table_schema")
        if isinstance(schema, str):
            raw["table_schema"] = read_json_object(base_dir / schema, "table_schema")
            raw["schema_source"] = str((base_dir / schema).resolve())
        options = CsvOptions.model_validate(raw)
        if options.table_schema is not None:
            compile_schema(options.table_schema)  # a broken schema fails at config load
        return options

    def validate(self, path: Path, name: str) -> Verdict:
        big = is_following(path) or path.stat().st_size >= FAST_PATH_MIN_BYTES
        if FAST_PATH and big and _csv_fast().usable(self.options):
            verdict = self._validate_fast(path, name)
            if verdict is not None:
                return verdict
        return self._validate_python(path, name)

    def _validate_fast(self, path: Path, name: str) -> Verdict | None:
        """Arrow's reader and vectorized checks; None when the file must be checked the
        pure-Python way instead (see :mod:`module_system.validation.csv_fast`)."""
        options: CsvOptions = self.options
        issues = IssueCollector()
        checks = compile_schema(options.table_schema) if options.table_schema else None
        _decode_state.bad = 0
        csv_fast = _csv_fast()
        try:
            with open_binary(path, name) as raw:
                records = csv_fast.check_stream(raw, options, _TableCheck(options, checks, issues))
        except csv_fast.FallBack as exc:
            log.debug("csv %s: checked the pure-Python way: %s", name, exc)
            return None
        return issues.verdict(self.name, records)

    def _validate_python(self, path: Path, name: str) -> Verdict:
        options: CsvOptions = self.options
        issues = IssueCollector()
        checks = compile_schema(options.table_schema) if options.table_schema else None
        encoding = "utf-8-sig" if codecs.lookup(options.encoding).name == "utf-8" else None
        _decode_state.bad = 0
        try:
            with open_binary(path, name) as raw:
                text = io.TextIOWrapper(
                    raw, encoding=encoding or options.encoding, errors=_ERRORS, newline=""
                )
                reader = csv.reader(
                    text, delimiter=options.delimiter, quotechar=options.quotechar, strict=True
                )
                records = _TableCheck(options, checks, issues).run(reader)
        except (OSError, EOFError) as exc:  # a truncated or corrupt .gz
            issues.add(f"cannot read the file: {exc}", "file")
            records = None
        return issues.verdict(self.name, records)


class _TableCheck:
    """One pass over one file's rows."""

    def __init__(
        self, options: CsvOptions, checks: list[FieldCheck] | None, issues: IssueCollector
    ) -> None:
        self.options, self.checks, self.issues = options, checks, issues
        self.width = 0
        self.columns: list[tuple[int, FieldCheck]] = []  # (position in the row, check)
        self.bad_bytes_found = 0

    def run(self, reader: Iterator[list[str]]) -> int | None:
        try:
            return self._run(reader)
        except csv.Error as exc:
            line = getattr(reader, "line_num", "?")
            self.issues.add(f"malformed CSV, check stopped: {exc}", f"line {line}")
            return None

    def _run(self, reader: Iterator[list[str]]) -> int:
        first = next(reader, None)
        if not first:
            self.issues.add("the file is empty: no header and no rows", "row 1")
            return 0
        pending: list[list[str]] = []
        if self.options.header:
            self._check_header(first)
        else:
            self._positional(len(first))
            pending = [first]
        number = 2 if self.options.header else 1
        records = 0
        while batch := pending + list(itertools.islice(reader, BATCH_ROWS - len(pending))):
            pending = []
            self._check_batch(batch, number)
            number += len(batch)
            records += len(batch)
        self._check_row_count(records)
        return records

    # --- header

    def _check_header(self, header: list[str]) -> None:
        if self._pending_bad_bytes():
            self._find_bad_bytes([header], [1])
        self.width = len(header)
        if self.checks is None:
            return
        expected = [check.name for check in self.checks]
        if header == expected:
            self.columns = list(enumerate(self.checks))
            return
        self.issues.add(
            f"header does not match the schema: expected {', '.join(expected)}; "
            f"found {', '.join(header)}",
            "row 1",
        )
        position = {label: i for i, label in enumerate(header)}
        for check in self.checks:
            if check.name in position:
                self.columns.append((position[check.name], check))
            else:
                self.issues.add(f"column '{check.name}' of the schema is missing", "row 1")
        for label in header:
            if label not in expected:
                self.issues.add(f"column '{label}' is not in the schema", "row 1")

    def _positional(self, first_width: int) -> None:
        self.width = len(self.checks) if self.checks else first_width
        if self.checks:
            self.columns = list(enumerate(self.checks))

    # --- rows

    def _check_batch(self, rows: list[list[str]], first: int) -> None:
        numbers: Sequence[int] = range(first, first + len(rows))
        if self._pending_bad_bytes():
            rows, numbers = self._find_bad_bytes(rows, numbers)
        if set(map(len, rows)) != {self.width}:
            rows, numbers = self._drop_wrong_width(rows, numbers)
        if not rows or not self.columns:
            return
        columns = list(zip(*rows, strict=True))
        for position, check in self.columns:
            values = columns[position]
            if not check.column_ok(values):
                self._explain(check, values, numbers)

    def _explain(self, check: FieldCheck, values: Sequence[str], numbers: Sequence[int]) -> None:
        for number, value in zip(numbers, values, strict=True):
            for problem in check.problems(value):
                self.issues.add(problem, f"row {number}, column '{check.name}'")

    def _drop_wrong_width(
        self, rows: list[list[str]], numbers: Sequence[int]
    ) -> tuple[list[list[str]], list[int]]:
        kept_rows, kept_numbers = [], []
        for row, number in zip(rows, numbers, strict=True):
            if len(row) == self.width:
                kept_rows.append(row)
                kept_numbers.append(number)
            elif not row:
                self.issues.add("blank row", f"row {number}")
            else:
                self.issues.add(
                    f"row has {len(row)} fields, expected {self.width}", f"row {number}"
                )
        return kept_rows, kept_numbers

    def _pending_bad_bytes(self) -> bool:
        return getattr(_decode_state, "bad", 0) > self.bad_bytes_found

    def _find_bad_bytes(
        self, rows: list[list[str]], numbers: Sequence[int]
    ) -> tuple[list[list[str]], list[int]]:
        """Report rows holding undecodable bytes and leave them out of the type checks."""
        kept_rows, kept_numbers = [], []
        for row, number in zip(rows, numbers, strict=True):
            bad = [i for i, value in enumerate(row) if _BAD_BYTES.search(value)]
            if not bad:
                kept_rows.append(row)
                kept_numbers.append(number)
                continue
            self.bad_bytes_found += sum(len(_BAD_BYTES.findall(row[i])) for i in bad)
            self.issues.add(
                f"bytes that are not valid {self.options.encoding} (check the file's encoding)",
                f"row {number}, column {self._column_label(bad[0])}",
            )
        return kept_rows, kept_numbers

    def _column_label(self, position: int) -> str:
        for index, check in self.columns:
            if index == position:
                return f"'{check.name}'"
        return str(position + 1)

    def _check_row_count(self, records: int) -> None:
        minimum = self.options.min_rows
        if minimum is not None and records < minimum:
            what = "header only, no data rows" if records == 0 else f"{records} data rows"
            self.issues.add(f"{what}; at least {minimum} required (min_rows)", "file")


def _csv_fast() -> Any:
    """The Arrow fast path, imported on first use (pyarrow is big)."""
    from module_system.validation import csv_fast

    return csv_fast
