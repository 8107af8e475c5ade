"""CSV files checked row by row, optionally against a Frictionless Table Schema.

UTF-8 files first take the Arrow fast path (:mod:`module_system.validation.csv_fast`),
which reports exactly what the pure-Python path below does; files it cannot read exactly
the same way are checked by the pure-Python path (``FAST_PATH = False`` forces it).

The file streams through Python's C ``csv`` reader in batches of rows, so memory stays
flat whatever the file size (only ``unique`` columns remember their values). Each batch
is transposed into columns and checked column-wise (see
:mod:`module_system.validation.table_schema` for why that is fast). Row numbers in the
report count records with the header as row 1, as Frictionless does: a quoted value with
line breaks spans several lines but is one row. As in Frictionless too, a row whose fields
are all missing values (``,,`` or, with ``missingValues``, ``NA,NA``) is a blank row, and a
row of the wrong width is reported for its width (its values are not checked).

``.csv.gz`` is read through gzip; a UTF-8 BOM is skipped; CRLF and quoted newlines are
handled by the ``csv`` module. Bytes that are not valid in the declared encoding are
reported with their row instead of stopping the check.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
from pathlib import Path
from typing import Any, ClassVar

from module_system._optional import available
from module_system.growing_file import is_following
from module_system.validation.base import (
    IssueCollector,
    Validator,
    Verdict,
    open_binary,
    read_json_object,
)
from module_system.validation.csv_options import CsvOptions
from module_system.validation.table_check import (
    BATCH_ROWS,
    DECODE_ERRORS,
    TableCheck,
    reset_undecodable_count,
)
from module_system.validation.table_schema import compile_schema

# False: always the pure-Python path (tests compare the two; without module-system[fast-csv]).
FAST_PATH = available("pyarrow")
# Smaller files take the pure-Python path: for them Arrow's set-up (and its ~70 MB of
# memory once imported) costs more than it saves.
FAST_PATH_MIN_BYTES = 2 * 1024 * 1024
log = logging.getLogger(__name__)

__all__ = ["BATCH_ROWS", "CsvOptions", "CsvValidator"]


class CsvValidator(Validator):
    """``validation: {csv: {table_schema: schemas/sales.json, delimiter: ";"}}``."""

    name = "csv"
    suffixes: ClassVar[tuple[str, ...]] = (".csv", ".tsv")
    options_model = CsvOptions
    reads_growing_files = True  # reads only through open_binary

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
        reset_undecodable_count()
        csv_fast = _csv_fast()
        try:
            with open_binary(path, name, options.read_limits()) as raw:
                records = csv_fast.check_stream(raw, options, TableCheck(options, checks, issues))
        except csv_fast.FallBack as exc:
            log.debug("csv %s: checked the pure-Python way: %s", name, exc)
            return None
        return issues.verdict(self.name, records)

    def _validate_python(self, path: Path, name: str) -> Verdict:
        options: CsvOptions = self.options
        issues = IssueCollector()
        checks = compile_schema(options.table_schema) if options.table_schema else None
        encoding = "utf-8-sig" if codecs.lookup(options.encoding).name == "utf-8" else None
        reset_undecodable_count()
        try:
            with open_binary(path, name, options.read_limits()) as raw:
                text = io.TextIOWrapper(
                    raw, encoding=encoding or options.encoding, errors=DECODE_ERRORS, newline=""
                )
                reader = csv.reader(
                    text, delimiter=options.delimiter, quotechar=options.quotechar, strict=True
                )
                records = TableCheck(options, checks, issues).run(reader)
        except (OSError, EOFError) as exc:  # a truncated or corrupt .gz
            issues.add(f"cannot read the file: {exc}", "file")
            records = None
        return issues.verdict(self.name, records)


def _csv_fast() -> Any:
    """The Arrow fast path, imported on first use (pyarrow is big)."""
    from module_system.validation import csv_fast

    return csv_fast
