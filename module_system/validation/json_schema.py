"""JSON and NDJSON files checked against a JSON Schema (draft 2020-12, 2019-09, 7, 6, 4).

Uses jsonschema-rs (Rust) with format checks on: it validates tens of times faster than
the pure-Python ``jsonschema`` package, which matters for NDJSON files of millions of
records. NDJSON (``.ndjson``, ``.jsonl``) is streamed line by line, so memory stays flat;
a ``.json`` document is parsed whole (with orjson), so very large data should be NDJSON.

With ``records_path`` the schema describes one record, not the document: it is applied to
each element of the list found at that dotted path (``$`` = the document itself), and every
error's location names the record, e.g. ``$.data.items[3].temperature``. A document that is
not JSON, or has no list at ``records_path``, is invalid with that reason. This is how API
responses are checked: the API source fills ``records_path`` in from its own ``source:``
block (see :meth:`ApiSource.adapt_validation`), so the path is written once in the registry.
An API batch (NDJSON, one response a line) is checked the same way: the source also says
where a line holds its response (``line_document``), and records_path applies within it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, ClassVar

import jsonschema_rs
import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from module_system import json_path
from module_system.validation import json_text
from module_system.validation.base import (
    InputRefused,
    IssueCollector,
    Validator,
    Verdict,
    open_binary,
    read_json_object,
)
from module_system.validation.reading import DECOMPRESSION_RATIO, DEFAULT_MAX_RATIO, ReadLimits

LINE_DELIMITED = (".ndjson", ".jsonl")
BATCH_LINES = 1000
LINE_CHUNK = 1024 * 1024
# orjson holds a document in memory several times over as Python objects: a cap by default.
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
LIMIT_OPTIONS = {"max_file_bytes", "max_decompression_ratio"}
# What a huge integer rounded to a float may change the verdict of (see _compares_numbers).
BOUND_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
VALUE_KEYWORDS = ("enum", "const")
EXACT_KEYWORDS = ("multipleOf", "uniqueItems")
SAFE_BOUND = 2**53  # bounds below this in magnitude are exact doubles, far from 2**63


class JsonSchemaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: dict[str, Any] = Field(
        alias="schema", description="the JSON Schema: a file (relative to the registry) or inline"
    )
    source: str = "inline"
    records_path: str | None = Field(
        None,
        description="dotted path to a list whose every record the schema checks ($: the "
        "document itself); unset: the whole document (API services: the source's records_path)",
    )
    max_file_bytes: int | None = Field(
        DEFAULT_MAX_FILE_BYTES, gt=0,
        description="the largest JSON text parsed at once (a .json document, decompressed, "
        "or one NDJSON line); a bigger one makes the file invalid (too_large)",
    )  # fmt: skip
    max_decompression_ratio: float | None = Field(
        DEFAULT_MAX_RATIO, gt=1, description=DECOMPRESSION_RATIO
    )
    # NDJSON: where each line holds the document records_path is in. Set by the API source
    # for its batches (a line is a response, its body under "body"); not a registry key.
    line_document: SkipJsonSchema[str | None] = None


class JsonSchemaValidator(Validator):
    """``validation: {json_schema: path/to/schema.json}`` or an inline mapping, or
    ``{json_schema: {schema: path-or-mapping, records_path: data.items}}`` to check each
    record of a document."""

    name = "json_schema"
    suffixes: ClassVar[tuple[str, ...]] = (".json", *LINE_DELIMITED)
    options_model = JsonSchemaOptions
    reads_growing_files = True  # reads only through open_binary

    def __init__(self, options: JsonSchemaOptions) -> None:
        super().__init__(options)
        self._validator = jsonschema_rs.validator_for(options.schema_, validate_formats=True)
        self._batch_validator = _array_validator(options.schema_)
        self._exact = _compares_numbers(options.schema_)

    @classmethod
    def parse_options(cls, raw: Any, base_dir: Path) -> JsonSchemaOptions:
        if isinstance(raw, dict) and "schema" in raw:  # "schema" is no JSON Schema keyword
            extra = sorted(set(raw) - {"schema", "records_path", *LIMIT_OPTIONS})
            if extra:
                raise ValueError(f"unknown option(s) {', '.join(extra)}")
            options = cls.parse_options(raw["schema"], base_dir)
            given = {k: v for k, v in raw.items() if k != "schema"}
            return JsonSchemaOptions.model_validate({**options.model_dump(), **given})
        if isinstance(raw, str):
            schema_path = (base_dir / raw).resolve()
            schema = read_json_object(schema_path, "schema")
            options = JsonSchemaOptions.model_validate(
                {"schema": schema, "source": str(schema_path)}
            )
        elif isinstance(raw, dict):
            options = JsonSchemaOptions.model_validate({"schema": raw})
        else:
            raise ValueError("expected a schema file path or an inline schema mapping")
        try:
            jsonschema_rs.validator_for(options.schema_, validate_formats=True)
        except (ValueError, jsonschema_rs.ValidationError) as exc:
            raise ValueError(f"not a valid JSON Schema: {exc}") from None
        return options

    def validate(self, path: Path, name: str) -> Verdict:
        issues = IssueCollector()
        if name.lower().removesuffix(".gz").endswith(LINE_DELIMITED):
            records = self._validate_lines(path, name, issues)
        else:
            records = self._validate_document(path, name, issues)
        return issues.verdict(self.name, records)

    def _validate_document(self, path: Path, name: str, issues: IssueCollector) -> int:
        options: JsonSchemaOptions = self.options
        limits = ReadLimits(options.max_file_bytes, options.max_decompression_ratio)
        try:
            with open_binary(path, name, limits) as fh:
                data = fh.read()
        except (OSError, EOFError) as exc:  # a truncated or corrupt .gz
            issues.add(f"cannot read the file: {exc}", "file")
            return 0
        try:
            instance = json_text.parse(data, self._exact)
        except json_text.NotJson as exc:
            issues.add(str(exc), "$")
            return 0
        found = IssueCollector(issues.limit)
        records = self._validate_instance(instance, found)
        if found.count and (exact := self._as_reasons_show(data)) is not None:
            found = IssueCollector(issues.limit)  # the same verdict, with every digit
            records = self._validate_instance(exact, found)
        issues.extend(found)
        return records

    def _validate_instance(self, instance: Any, issues: IssueCollector) -> int:
        if self.options.records_path is None:
            self._check(instance, "$", issues)
            return 1
        return self._validate_records(instance, self.options.records_path, issues)

    def _as_reasons_show(self, text: bytes) -> Any | None:
        """``text`` read again with exact integers, for reasons that quote a number: when
        the schema cannot tell a huge integer from its rounding (see :func:`_compares_numbers`)
        it was read fast, and the reasons would show ``1e+20`` for ``100000000000000000001``.
        The verdict is the same either way. None when the fast read was already exact, or
        when an exact read is refused (too many digits): then the reasons show the rounding."""
        if self._exact or not json_text.may_need_exact([text]):
            return None
        try:
            return json_text.parse(text, exact=True)
        except json_text.NotJson:
            return None

    def _validate_records(
        self, document: Any, path: str, issues: IssueCollector, where: str | None = None
    ) -> int:
        records = _records_at(document, path)
        where = where or json_path.display(path)
        if records is json_path.MISSING:
            issues.add(f"no records: the response has no '{path}'", where)
            return 0
        if not isinstance(records, list):
            issues.add(f"records_path '{path}' is a {type(records).__name__}, not a list", where)
            return 0
        for index, record in enumerate(records):
            self._check(record, f"{where}[{index}]", issues)
        return len(records)

    def _validate_lines(self, path: Path, name: str, issues: IssueCollector) -> int:
        records = done = 0
        limits = ReadLimits(max_ratio=self.options.max_decompression_ratio)
        try:
            with open_binary(path, name, limits) as fh:
                for batch in _line_batches(fh, self.options.max_file_bytes):
                    found = self._batch_records(batch)
                    if found is None:  # find and report the problems line by line
                        found = self._check_lines(batch, done, issues)
                    records += found
                    done += len(batch)
        except (OSError, EOFError) as exc:  # a truncated or corrupt .gz
            issues.add(f"cannot read the file after line {done}: {exc}", "file")
        return records

    def _batch_records(self, lines: list[bytes]) -> int | None:
        """The records in a batch of lines when every one is valid, checked in one call into
        the Rust validator: ~1.3x faster than one call a line. None when a line is blank,
        broken or invalid: then they are checked one by one."""
        if self._batch_validator is None:
            return None
        if self._exact and json_text.may_need_exact(lines):  # checked line by line, exactly
            return None
        try:
            instances = list(map(orjson.loads, lines))
        except orjson.JSONDecodeError:
            return None
        records = instances if self.options.line_document is None else self._in_lines(instances)
        if records is None or not self._batch_validator.is_valid(records):
            return None
        return len(records)

    def _in_lines(self, lines: list[Any]) -> list[Any] | None:
        """The records of each line's document, together; None when one has none."""
        path = self.options.records_path or json_path.ROOT
        found: list[Any] = []
        for line in lines:
            records = _records_at(json_path.lookup(line, self.options.line_document), path)
            if not isinstance(records, list):
                return None
            found += records
        return found

    def _check_lines(self, lines: list[bytes], before: int, issues: IssueCollector) -> int:
        records = 0
        for number, line in enumerate(lines, start=before + 1):
            if not line.strip():
                continue
            records += self.options.line_document is None
            try:
                instance = json_text.parse(line, self._exact)
            except json_text.NotJson as exc:
                issues.add(f"line {number}: {exc}", f"line {number}")
                continue
            exact = self._as_reasons_show(line)  # lines of a batch with a problem only
            instance = instance if exact is None else exact
            if self.options.line_document is None:
                self._check(instance, f"line {number}: $", issues)
            else:
                records += self._check_line_document(instance, number, issues)
        return records

    def _check_line_document(self, line: Any, number: int, issues: IssueCollector) -> int:
        inside, path = self.options.line_document, self.options.records_path or json_path.ROOT
        shown = json_path.display(".".join([*json_path.split(inside), *json_path.split(path)]))
        document = json_path.lookup(line, inside)
        return self._validate_records(document, path, issues, f"line {number}: {shown}")

    def _check(self, instance: Any, root: str, issues: IssueCollector) -> None:
        if self._validator.is_valid(instance):  # fast path: no error objects built
            return
        try:
            for error in self._validator.iter_errors(instance):
                issues.add(error.message, root + _json_path(error.instance_path))
        except ValueError as exc:  # jsonschema-rs lists errors only to a nesting depth (255)
            issues.add(f"not valid against the schema; its errors cannot be listed: {exc}", root)


def _compares_numbers(schema: dict[str, Any]) -> bool:
    """Whether the schema's verdict may change when an integer beyond 64 bits is rounded to
    a float, as orjson does (``json_text``): then numbers are read exactly, at a cost (the
    scan for long digit runs is a fifth of an NDJSON file's validation).

    It may with ``multipleOf`` or ``uniqueItems``; with ``enum`` or ``const`` listing a
    number; with a bound (``minimum``, ``maximum``, the exclusive ones) of 2**53 or more in
    magnitude; and with draft 4's "integer" type (a float is no integer there). A smaller
    bound cannot: an integer orjson rounds is at least 2**63 in magnitude, and so is its
    rounding, both beyond the bound on the same side. Keywords are looked for in every
    object of the schema, so a property merely named like one counts too: slower, never
    wrong."""
    text = json.dumps(schema)
    if '"integer"' in text and ("draft-04" in text or "draft-03" in text):
        return True
    return any(_compares_exactly(node) for node in _objects(schema))


def _compares_exactly(node: dict[str, Any]) -> bool:
    if any(keyword in node for keyword in EXACT_KEYWORDS):
        return True
    if any(_holds_number(node[keyword]) for keyword in VALUE_KEYWORDS if keyword in node):
        return True
    bounds = [node[keyword] for keyword in BOUND_KEYWORDS if _is_number(node.get(keyword))]
    return any(abs(bound) >= SAFE_BOUND for bound in bounds)


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in ``value``, itself included."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def _holds_number(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_holds_number(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_number(item) for item in value)
    return _is_number(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _array_validator(schema: dict[str, Any]) -> Any:
    """A validator of a list of records, for batches; None when the schema cannot be
    wrapped safely (its ``$ref``s resolve against its own root)."""
    if "$ref" in json.dumps(schema):
        return None
    record = {k: v for k, v in schema.items() if k != "$schema"}
    wrapper: dict[str, Any] = {"type": "array", "items": record}
    if "$schema" in schema:
        wrapper["$schema"] = schema["$schema"]
    try:
        return jsonschema_rs.validator_for(wrapper, validate_formats=True)
    except (ValueError, jsonschema_rs.ValidationError):
        return None


def _line_batches(fh: IO[bytes], limit: int | None) -> Iterator[list[bytes]]:
    """The lines of ``fh`` (without their ``\\n``) in lists of at most ``BATCH_LINES``,
    none longer than ``limit`` bytes: a line is held whole, so a file of one endless line
    must not be. Read in chunks and split in C (iterating over the file would hold any
    line whole)."""
    pending: list[bytes] = []  # the start of a line that has not ended yet
    waiting = number = 0
    while chunk := fh.read(LINE_CHUNK):
        if b"\n" not in chunk:
            pending.append(chunk)
            waiting += len(chunk)
            _check_line_length(waiting, number + 1, limit)
            continue
        lines = chunk.split(b"\n")
        if pending:
            lines[0] = b"".join([*pending, lines[0]])
        last = lines.pop()
        if limit is not None and limit < waiting + len(chunk):  # a line may be too long
            longest = max(range(len(lines)), key=lambda i: len(lines[i]))
            _check_line_length(len(lines[longest]), number + longest + 1, limit)
        pending, waiting = ([last], len(last)) if last else ([], 0)
        number += len(lines)
        for start in range(0, len(lines), BATCH_LINES):
            yield lines[start : start + BATCH_LINES]
    if pending:
        yield [b"".join(pending)]


def _check_line_length(size: int, number: int, limit: int | None) -> None:
    if limit is not None and size > limit:
        raise InputRefused(
            f"line {number} is longer than {limit:,} bytes (max_file_bytes); not read further",
            reason="too_large",
        )


def _records_at(document: Any, path: str) -> Any:
    """What is at ``path``: a list of records, MISSING, or something else (not records)."""
    records = json_path.lookup(document, path)
    if path in ("", json_path.ROOT) and isinstance(records, dict):
        return [records]  # a single object at the root is one record
    return records


def _json_path(parts: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
