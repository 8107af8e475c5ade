"""The row checker both CSV paths share: one pass over one file's rows, its report.

The pure-Python path (:mod:`module_system.validation.csv`) feeds it rows from Python's
``csv`` reader; the Arrow fast path (:mod:`module_system.validation.csv_fast`) calls its
header, explain and row-count steps so both paths word every issue the same way.

Bytes that are not valid in the declared encoding are decoded with the
:data:`DECODE_ERRORS` handler, which keeps them as surrogates and counts them (per
thread), so the checker can report their rows instead of stopping.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import re
import threading
from collections.abc import Iterator, Sequence
from operator import itemgetter

from module_system.validation.base import IssueCollector
from module_system.validation.csv_options import CsvOptions
from module_system.validation.table_schema import FieldCheck

BATCH_ROWS = 600  # under gc gen0 threshold (700): row lists die before a collection
DECODE_ERRORS = "module_system.csv.flag_undecodable"
_BAD_BYTES = re.compile("[\udc80-\udcff]")  # what surrogateescape turns undecodable bytes into
_decode_state = threading.local()


def _flag_undecodable(exc: UnicodeError) -> tuple[str | bytes, int]:
    """Decode error handler: count the bad bytes and keep them as surrogates, so the
    check goes on and the rows holding them can be found. Costs nothing on clean data."""
    assert isinstance(exc, UnicodeDecodeError)
    _decode_state.bad = getattr(_decode_state, "bad", 0) + (exc.end - exc.start)
    return codecs.lookup_error("surrogateescape")(exc)


# A new, namespaced handler name: registering it changes nothing for other code.
codecs.register_error(DECODE_ERRORS, _flag_undecodable)


def reset_undecodable_count() -> None:
    """Call before decoding a file with :data:`DECODE_ERRORS` in this thread."""
    _decode_state.bad = 0


class TableCheck:
    """One pass over one file's rows, issues into ``issues``."""

    def __init__(
        self, options: CsvOptions, checks: list[FieldCheck] | None, issues: IssueCollector
    ) -> None:
        self.options, self.checks, self.issues = options, checks, issues
        # a row of missing values only is a blank row (Frictionless: blank-row)
        self.missing = checks[0].missing if checks else frozenset({""})
        self.width = 0
        self.columns: list[tuple[int, FieldCheck]] = []  # (position in the row, check)
        self.bad_bytes_found = 0

    def run(self, reader: Iterator[list[str]]) -> int | None:
        """Check every row of ``reader`` (Python's csv reader); the number of data rows,
        or None when the CSV is malformed and the check stopped."""
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
            self.check_header(first)
        else:
            self.positional(len(first))
            pending = [first]
        number = 2 if self.options.header else 1
        records = 0
        while batch := pending + list(itertools.islice(reader, BATCH_ROWS - len(pending))):
            pending = []
            self._check_batch(batch, number)
            number += len(batch)
            records += len(batch)
        self.check_row_count(records)
        return records

    # --- header

    def check_header(self, header: list[str]) -> None:
        """The first row of a file with a header: its width and the schema's columns."""
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

    def positional(self, first_width: int) -> None:
        """No header: the schema's fields are the columns in order."""
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
        if rows and not self.missing.isdisjoint(map(itemgetter(0), rows)):  # cheap first look
            rows, numbers = self._drop_blank_rows(rows, numbers)
        if not rows or not self.columns:
            return
        columns = list(zip(*rows, strict=True))
        for position, check in self.columns:
            values = columns[position]
            if not check.column_ok(values):
                self.explain(check, values, numbers)

    def explain(self, check: FieldCheck, values: Sequence[str], numbers: Sequence[int]) -> None:
        """Report each problem of a column's ``values`` (of rows ``numbers``), in order."""
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
            elif self.missing.issuperset(row):  # no fields, or missing values only
                self.issues.add("blank row", f"row {number}")
            else:
                self.issues.add(
                    f"row has {len(row)} fields, expected {self.width}", f"row {number}"
                )
        return kept_rows, kept_numbers

    def _drop_blank_rows(
        self, rows: list[list[str]], numbers: Sequence[int]
    ) -> tuple[list[list[str]], list[int]]:
        kept_rows, kept_numbers = [], []
        for row, number in zip(rows, numbers, strict=True):
            if self.missing.issuperset(row):
                self.issues.add("blank row", f"row {number}")
            else:
                kept_rows.append(row)
                kept_numbers.append(number)
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

    def check_row_count(self, records: int) -> None:
        """After the last row: the ``min_rows`` option."""
        minimum = self.options.min_rows
        if minimum is not None and records < minimum:
            what = "header only, no data rows" if records == 0 else f"{records} data rows"
            self.issues.add(f"{what}; at least {minimum} required (min_rows)", "file")
