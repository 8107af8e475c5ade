"""The fast path of the CSV validator: Apache Arrow parses, pyarrow.compute checks.

Arrow's streaming CSV reader turns 256 KB blocks of the file into columns of strings (in
C++, on its own threads); each column is then *proven* clean with vectorized kernels
(digits, number shape, lengths, enum, true/false texts, bounds) or, for columns with few
distinct values (dates, codes), by checking each new distinct value once with the Python
checker. A column that cannot be proven clean this way goes through the Python checker
itself, in the same 600-row batches as the pure-Python path, so every error message, row
and column number and the order of the report are exactly the pure-Python path's.

Arrow and Python's ``csv`` module (``strict=True``) agree only on part of what a file can
hold, so this path raises :class:`FallBack` — and the caller checks the whole file again
the pure-Python way — for: an encoding other than UTF-8; a quote character anywhere in the
file (Python refuses ``"ab"cd`` and an unclosed quote, Arrow accepts them); a blank line
(Python reports it, Arrow reads empty fields) or a row of missing values only; rows of
another width; undecodable bytes; a field longer than ``csv.field_size_limit()``; an empty
file; a first line over a block; a read error. Such files are reported word for word as
before, only not faster. A file refused by a read limit (too large, a decompression bomb)
is not read again: the refusal ends the check.
"""

from __future__ import annotations

import codecs
import csv
import functools
from collections.abc import Sequence
from typing import IO, Any, NoReturn

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from module_system.validation.csv_options import CsvOptions
from module_system.validation.reading import InputRefused
from module_system.validation.table_check import BATCH_ROWS, TableCheck
from module_system.validation.table_schema import FieldCheck

BLOCK_BYTES = 1 << 18
CHECK_ROWS = 12_000  # rows checked together (a multiple of 600 is taken)
DISTINCT_CACHE = 4096  # known-good texts remembered per column
_BOM = codecs.BOM_UTF8
# The arrays this path builds come from malloc, which hands freed blocks back to the OS:
# with Arrow's default pool (mimalloc) the validating process stayed larger (measured:
# +14 MB peak RSS on a 500 MB file). Passed per call, so other Arrow users in the
# process keep their own default pool.
_POOL = pa.system_memory_pool()
_INTEGER = r"^[+-]?[0-9]+$"  # ASCII only: Python's \d also takes other digits (then: slow path)
_NUMBER = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"


class FallBack(Exception):
    """The file holds something this path cannot read exactly as Python's csv does."""


def usable(options: CsvOptions) -> bool:
    """Options the fast path reads exactly like the pure-Python path."""
    special = {options.delimiter, options.quotechar}
    return (
        codecs.lookup(options.encoding).name == "utf-8"
        and options.delimiter != options.quotechar
        and all(c.isascii() and c not in "\r\n" for c in special)
    )


class _Feed:
    """What Arrow reads: the file's bytes, watched for what Arrow reads differently.

    Never raises into Arrow: a problem or a read error ends the stream early and is
    kept in ``problem`` for the caller, which then falls back (or, for a file refused as
    too large or a decompression bomb, raises the refusal: reading it again is no use)."""

    def __init__(self, raw: IO[bytes], first: bytes, quote: bytes) -> None:
        self.raw, self.pending, self.quote = raw, first, quote
        self.problem: str | None = None
        self.refused: InputRefused | None = None
        self.closed = False
        self._scan(first)

    def _scan(self, chunk: bytes) -> None:
        if self.quote in chunk:  # memchr: ~10 GB/s
            self.problem = "a quote character"

    def read(self, size: int = -1) -> bytes:
        size = size if size and size > 0 else BLOCK_BYTES
        if self.problem is not None:
            return b""
        if self.pending:
            chunk, self.pending = self.pending[:size], self.pending[size:]
            return chunk
        try:
            chunk = self.raw.read(size)
        except InputRefused as exc:
            self.refused, self.problem = exc, str(exc)
            return b""
        except Exception as exc:  # the pure-Python path meets it again and reports it
            self.problem = f"a read error ({exc})"
            return b""
        self._scan(chunk)
        return b"" if self.problem else chunk

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def stop(self, problem: str = "") -> NoReturn:
        """End the fast path: with the refusal, else a fall-back for ``problem``."""
        if self.refused is not None:
            raise self.refused
        raise FallBack(self.problem or problem)


def check_stream(raw: IO[bytes], options: CsvOptions, table: TableCheck) -> int:
    """Check the file read from ``raw`` into ``table.issues``; the number of data records.
    Raises :class:`FallBack` when the pure-Python path must check the file instead."""
    try:
        first = raw.read(BLOCK_BYTES)
    except InputRefused:
        raise
    except Exception as exc:  # a corrupt .gz: the pure-Python path reports it
        raise FallBack(f"a read error ({exc})") from exc
    body = first.removeprefix(_BOM)
    line_end = min((i for i in (body.find(b"\n"), body.find(b"\r")) if i >= 0), default=-1)
    if not body or (line_end < 0 and len(first) == BLOCK_BYTES):
        raise FallBack("empty file, or a first line over a block")
    line = body if line_end < 0 else body[:line_end]
    width = line.count(options.delimiter.encode()) + 1
    feed = _Feed(raw, first, options.quotechar.encode())
    if feed.problem is not None:
        feed.stop()
    try:
        reader = pa_csv.open_csv(
            pa.PythonFile(feed, mode="r"),
            read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES, autogenerate_column_names=True),
            parse_options=pa_csv.ParseOptions(
                delimiter=options.delimiter, quote_char=False, ignore_empty_lines=False
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in range(width)},
                null_values=[],
                strings_can_be_null=False,
            ),
            memory_pool=_POOL,
        )
    except pa.ArrowException as exc:
        feed.stop(str(exc))
    try:
        return _Blocks(table, feed).run(reader)
    except pa.ArrowException as exc:  # rows of another width, bytes that are not UTF-8
        feed.stop(str(exc))
    finally:
        reader.close()


class _Blocks:
    """Record batches regrouped into runs of whole 600-row batches of the Python path."""

    def __init__(self, table: TableCheck, feed: _Feed) -> None:
        self.table, self.feed, self.batch_rows = table, feed, BATCH_ROWS
        self.columns: list[tuple[int, _Column]] = []  # once the header is read
        self.limit = csv.field_size_limit()

    def run(self, reader: pa_csv.CSVStreamingReader) -> int:
        table, header = self.table, self.table.options.header
        carry: list[pa.RecordBatch] = []
        done = 0  # data rows checked so far
        started = False
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            self._watch()
            if not batch.num_rows:
                continue
            self._shape(batch)
            if not started:
                started = True
                first = [column[0].as_py() for column in batch.columns]
                if max(len(value.encode()) for value in first) > self.limit:
                    raise FallBack("a field over csv.field_size_limit()")
                if not any(first):
                    raise FallBack("a blank first line")
                if header:
                    table.check_header(first)
                    batch = batch.slice(1)
                else:
                    table.positional(len(first))
                if batch.num_columns != table.width:
                    raise FallBack("rows of another width than the header")
                self.columns = [(position, _Column(check)) for position, check in table.columns]
            carry.append(batch)
            rows = sum(b.num_rows for b in carry)
            ready = rows - rows % self.batch_rows
            if ready >= CHECK_ROWS:  # few, big calls into pyarrow.compute
                block = pa.Table.from_batches(carry)
                self._check(block.slice(0, ready), done)
                done += ready
                carry = [b for b in block.slice(ready).to_batches() if b.num_rows]
        self._watch()
        if not started:
            raise FallBack("no rows")
        if carry:
            block = pa.Table.from_batches(carry)
            self._check(block, done)
            done += block.num_rows
        table.check_row_count(done)
        return done

    def _a_row_of_missing_values(self, block: pa.Table) -> bool:
        missing = pa.array(sorted(self.table.missing), pa.string())
        flags = [pc.is_in(c, value_set=missing, memory_pool=_POOL) for c in block.columns]
        every = functools.reduce(lambda a, b: pc.and_(a, b, memory_pool=_POOL), flags)
        return bool(pc.any(every).as_py())

    def _watch(self) -> None:
        if self.feed.problem is not None:
            self.feed.stop()

    def _shape(self, batch: pa.RecordBatch) -> None:
        if any(column.type != pa.string() for column in batch.columns):
            raise FallBack("the first line was misread")

    def _check(self, block: pa.Table, done: int) -> None:
        sizes = [
            pc.min_max(pc.binary_length(column, memory_pool=_POOL)).as_py()
            for column in block.columns
        ]
        if any(size["max"] > self.limit for size in sizes if size["max"] is not None):
            raise FallBack("a field over csv.field_size_limit()")
        if all(size["min"] == 0 for size in sizes):
            # Arrow reads a blank line as a row of empty fields, Python as a row of none
            lengths = [pc.binary_length(column, memory_pool=_POOL) for column in block.columns]
            if pc.min(pc.max_element_wise(*lengths, memory_pool=_POOL)).as_py() == 0:
                raise FallBack("a blank line (or a row of empty fields)")
        if self.table.missing != {""} and self._a_row_of_missing_values(block):
            raise FallBack("a row of missing values only (a blank row)")
        failing = [
            (position, column)
            for position, column in self.columns
            if not column.ok(block.column(position), sizes[position])
        ]
        if not failing:
            return
        # Exactly what the Python path does: 600-row batches, column by column in each.
        values = {position: block.column(position).to_pylist() for position, _ in failing}
        first = done + (2 if self.table.options.header else 1)
        for start in range(0, block.num_rows, self.batch_rows):
            numbers = range(first + start, first + min(start + self.batch_rows, block.num_rows))
            for position, column in failing:
                batch = values[position][start : start + self.batch_rows]
                if not column.check.column_ok(batch):
                    self.table.explain(column.check, batch, numbers)


class _Column:
    """Proves one schema column of a block clean; False sends it to the Python checker.

    ``ok`` must never say True for a column where the Python checker would find a
    problem; saying False is always safe (only slower)."""

    def __init__(self, check: FieldCheck) -> None:
        self.check = check
        self.good: set[str] = set()  # texts known to pass (non-unique columns)
        missing = sorted(check.missing)
        self.missing = pa.array(missing, pa.string())
        self.vector = self._vectorizable()

    def _vectorizable(self) -> bool:
        check = self.check
        if check.pattern is not None or check.string_rules:
            return False
        if check.type in ("string", "any"):
            return check.bounds == (None, None)
        if check.type in ("integer", "number"):
            enum_ok = check.enum is None or check.type == "integer"
            return check.form is not None and enum_ok  # default decimalChar, groupChar
        if check.type == "boolean":
            return check.truth is not None and not check.need_values
        return False

    def ok(self, column: pa.ChunkedArray, sizes: dict[str, Any]) -> bool:
        """``sizes``: the min and max length in bytes of the column's values."""
        check = self.check
        if self.vector and (not check.unique or check.type in ("integer", "string", "any")):
            present = self._present(column, sizes)
            if present is None or not self._typed_ok(present, sizes):
                return False
            if not check.unique:
                return True
            return check.remember(self._unique_keys(present))
        if not check.unique:
            distinct = pc.unique(column, memory_pool=_POOL)
            if len(distinct) <= max(64, column.length() // 8):
                return self._distinct_ok(distinct.to_pylist())
        return check.column_ok(column.to_pylist())

    def _present(self, column: pa.ChunkedArray, sizes: dict[str, Any]) -> pa.ChunkedArray | None:
        if self.check.missing == {""} and sizes["min"]:
            return column  # no empty value: nothing missing
        missing = pc.is_in(column, value_set=self.missing, memory_pool=_POOL)
        if not pc.any(missing).as_py():
            return column
        if self.check.required:
            return None
        return pc.filter(column, pc.invert(missing, memory_pool=_POOL), memory_pool=_POOL)

    def _typed_ok(self, present: pa.ChunkedArray, sizes: dict[str, Any]) -> bool:
        check = self.check
        if not present.length():
            return True
        low, high = check.length_bounds
        # a text has at most as many characters as bytes: no need to count them then
        if (low is not None and low > 0) or (high is not None and sizes["max"] > high):
            lengths = pc.min_max(pc.utf8_length(present, memory_pool=_POOL)).as_py()
            if (low is not None and lengths["min"] < low) or (
                high is not None and lengths["max"] > high
            ):
                return False
        if check.type in ("string", "any"):
            if check.enum is None:
                return True
            allowed = pa.array(sorted(v for v in check.enum if isinstance(v, str)), pa.string())
            return bool(pc.all(pc.is_in(present, value_set=allowed, memory_pool=_POOL)).as_py())
        if check.type == "boolean":
            assert check.truth is not None
            allowed = pa.array(sorted(check.truth[0] | check.truth[1]), pa.string())
            return bool(pc.all(pc.is_in(present, value_set=allowed, memory_pool=_POOL)).as_py())
        if check.type == "integer":
            shaped = (
                pc.all(pc.ascii_is_decimal(present, memory_pool=_POOL)).as_py()
                or pc.all(pc.match_substring_regex(present, _INTEGER, memory_pool=_POOL)).as_py()
            )
            if not shaped:
                return False
            return not check.need_values or self._values_ok(present, pa.int64())
        # digits with at most one '.' (not '.' alone) are floats; else the full shape
        digits = pc.replace_substring(present, ".", "", max_replacements=1, memory_pool=_POOL)
        if (
            not pc.all(pc.ascii_is_decimal(digits, memory_pool=_POOL)).as_py()
            and not pc.all(pc.match_substring_regex(present, _NUMBER, memory_pool=_POOL)).as_py()
        ):
            return False
        return not check.need_values or self._values_ok(present, pa.float64())

    def _values_ok(self, present: pa.ChunkedArray, kind: pa.DataType) -> bool:
        check = self.check
        try:
            typed = pc.cast(present, kind, memory_pool=_POOL)
        except pa.ArrowException:  # beyond int64, say: the Python checker decides
            return False
        low, high = check.bounds
        extremes = pc.min_max(typed).as_py()
        if low is not None and extremes["min"] < low:
            return False
        if high is not None and extremes["max"] > high:
            return False
        if check.enum is not None:  # integers only (see _vectorizable)
            fits = [v for v in check.enum if isinstance(v, int) and -(2**63) <= v < 2**63]
            allowed = pa.array(sorted(fits), pa.int64())
            return bool(pc.all(pc.is_in(typed, value_set=allowed, memory_pool=_POOL)).as_py())
        return True

    def _unique_keys(self, present: pa.ChunkedArray) -> Sequence[Any]:
        """The Python checker's keys: the text, or an integer's canonical digits."""
        if self.check.type == "integer":
            try:
                return pc.cast(
                    pc.cast(present, pa.int64(), memory_pool=_POOL), pa.string(), memory_pool=_POOL
                ).to_pylist()
            except pa.ArrowException:
                return list(map(str, map(int, present.to_pylist())))
        return present.to_pylist()

    def _distinct_ok(self, distinct: list[str]) -> bool:
        good = self.good
        fresh = [value for value in distinct if value not in good]
        for value in fresh:
            if self.check.problems(value):  # no side effect: the column is not unique
                return False
        if len(good) + len(fresh) > DISTINCT_CACHE:
            good.clear()
        good.update(fresh)
        return True
