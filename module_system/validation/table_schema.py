"""Frictionless Table Schema fields compiled into fast column checks.

Speed comes from checking a *column of a batch* of rows at a time with C-level
operations instead of calling Python code per cell: one regular expression over the
batch's values joined by newlines proves every value has the type's lexical form,
``map(int, ...)``/``map(date.fromisoformat, ...)`` convert them, and ``min``/``max``/set
operations check constraints. Only a batch that fails a check is walked cell by cell to
name the row and column of each problem. This keeps clean files near the speed of the
``csv`` module itself; a per-cell closure design measured about 3x slower.

Supported: types string, integer, number, boolean, date, datetime, time, year, any;
formats (``default``, ``any``, ``%``-patterns for dates, ``email``/``uri``/``uuid`` for
strings); ``trueValues``/``falseValues``, ``missingValues``, ``decimalChar``,
``groupChar``, ``bareNumber``; constraints required, unique, minimum, maximum, pattern,
enum, minLength, maxLength; ``primaryKey`` (unique and required).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

Parse = Callable[[str], Any]

NUMBER_WORDS = {"NaN", "INF", "-INF", "+INF"}
SUPPORTED_TYPES = {"string", "integer", "number", "boolean", "date", "datetime", "time", "year",
                   "any"}  # fmt: skip
DEFAULT_TRUE = ("true", "True", "TRUE", "1")
DEFAULT_FALSE = ("false", "False", "FALSE", "0")

# Lexical forms (one value); the batch check wraps them as (?:FORM\n)* over joined values.
_FORMS = {
    "integer": r"[+-]?\d+",
    "number": r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]?INF",
    "date": r"\d{4}-\d{2}-\d{2}",
    "datetime": r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})?",
    "time": r"\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})?",
    "year": r"[+-]?\d{4}",
}
_STRING_FORMATS = {
    "email": r"[^@\s]+@[^@\s]+\.[^@\s]+",
    "uri": r"[A-Za-z][A-Za-z0-9+.\-]*:\S+",
    "uuid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
}
KNOWN_VALUES = 4096  # typed values remembered per column (dates, booleans, ...)
# Characters a number may be written with; float() then checks the shape (1e5, .5, -2).
_NUMBER_CHARS = str.maketrans("", "", "0123456789.eE+-")
_ANY_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d", "%d.%m.%Y", "%Y%m%d")


class SchemaError(ValueError):
    """The table schema itself is invalid (reported at config load)."""


@dataclass
class FieldCheck:
    """One schema field, ready to check a column of values.

    ``form`` is the lexical form of one value as a regex (``None``: no lexical check);
    ``parse`` turns text into a typed value, raising ValueError. ``need_values`` says if
    constraints (bounds, enum) need the typed values of a clean batch at all.
    """

    name: str
    type: str
    parse: Parse | None  # None: the text is the value (string, any)
    form: re.Pattern[str] | None
    required: bool = False
    unique: bool = False
    missing: frozenset[str] = frozenset({""})
    string_rules: list[tuple[Callable[[str], bool], str]] = field(default_factory=list)
    bounds: tuple[Any, Any] = (None, None)  # minimum, maximum on typed values
    length_bounds: tuple[int | None, int | None] = (None, None)
    enum: frozenset[Any] | None = None
    pattern: re.Pattern[str] | None = None
    # A dict, not a set: a dict of strings and numbers is not tracked by the cyclic
    # garbage collector, so a million remembered keys do not slow every collection.
    seen: dict[Any, None] = field(default_factory=dict)
    _known: dict[str, Any] = field(default_factory=dict)  # text -> typed, recent values
    _canonical: bool = False  # the last integer batch was plain digits, no leading zeros
    truth: tuple[frozenset[str], frozenset[str]] | None = None  # a boolean's texts (true, false)
    exact: Parse | None = None  # a number's exact value (Decimal): its key when unique

    @property
    def need_values(self) -> bool:
        return self.bounds != (None, None) or self.enum is not None

    # --- the fast path: True when the whole column of a batch is clean

    def column_ok(self, values: Sequence[str]) -> bool:
        present = self._present(values)
        if present is None:
            return False
        if not present:
            return True
        if not self._text_ok(present):
            return False
        try:
            typed = self._typed(present)
        except (ValueError, TypeError, OverflowError, IndexError):
            return False
        return typed is not None and self._values_ok(typed, present)

    def _present(self, values: Sequence[str]) -> Sequence[str] | None:
        if self.missing == {""}:
            if "" not in values:
                return values
            return None if self.required else [v for v in values if v]
        present = [v for v in values if v not in self.missing]
        if self.required and len(present) != len(values):
            return None
        return present

    def _text_ok(self, present: Sequence[str]) -> bool:
        if self.pattern is not None and not all(map(self.pattern.fullmatch, present)):
            return False
        low, high = self.length_bounds
        if low is not None or high is not None:
            lengths = list(map(len, present))
            if (low is not None and min(lengths) < low) or (
                high is not None and max(lengths) > high
            ):
                return False
        if self.string_rules:
            distinct = set(present)
            return all(rule(v) for rule, _ in self.string_rules for v in distinct)
        return True

    def _typed(self, present: Sequence[str]) -> Sequence[Any] | None:
        """Prove every value has the type; return typed values when constraints need
        them (else an empty tuple), None when some value is not of the type."""
        parse = self.parse
        if parse is None:
            return present if self.need_values else ()
        if self.type == "integer" and self.form is not None:
            joined = "".join(present)
            if joined.isdecimal() and joined.isascii():  # unsigned digits only
                self._canonical = "\n0" not in "\n" + "\n".join(present)
                return list(map(int, present)) if self.need_values else ()
        self._canonical = False
        number = self.type == "number" and self.form is not None
        if number and not "".join(present).translate(_NUMBER_CHARS):  # float() checks shape
            values = list(map(float, present))
            return values if self.need_values else ()
        distinct = set(present)
        if len(distinct) * 4 <= len(present) or self.form is None:  # few distinct values
            return self._typed_distinct(distinct)
        if not self.form.fullmatch("\n".join(present) + "\n"):
            return None
        return list(map(parse, present))

    def _typed_distinct(self, distinct: set[str]) -> list[Any]:
        """Typed values of a batch's distinct texts, remembering recent ones: a date
        column repeats the same few hundred days across millions of rows."""
        known = self._known
        for value in distinct.difference(known):
            if len(known) >= KNOWN_VALUES:
                known.clear()
            known[value] = self._strict(value)
        return list(map(known.__getitem__, distinct)) if self.need_values else []

    def _strict(self, value: str) -> Any:
        if self.form is not None and not self.form.fullmatch(value + "\n"):
            raise ValueError(value)
        return self.parse(value) if self.parse else value

    def _values_ok(self, typed: Sequence[Any], present: Sequence[str]) -> bool:
        low, high = self.bounds
        if typed:
            if self.type == "number" and self.bounds != (None, None) and "NaN" in present:
                return False  # NaN is within no bounds (min and max would skip it)
            if low is not None and min(typed) < low:
                return False
            if high is not None and max(typed) > high:
                return False
            if self.enum is not None and not self.enum.issuperset(typed):
                return False
        # last: only a column that passed everything else is remembered
        return not self.unique or self.remember(self._unique_keys(present))

    def remember(self, keys: Sequence[Any]) -> bool:
        """Add a clean batch's unique keys; on a repeat, forget them all and say False."""
        before = len(self.seen)
        self.seen.update(dict.fromkeys(keys))
        added = len(self.seen) - before
        if added != len(keys):  # a repeat: forget this batch (newest keys come last)
            for key in list(itertools.islice(reversed(self.seen), added)):
                del self.seen[key]
            return False
        return True

    def _unique_keys(self, present: Sequence[str]) -> Sequence[Any]:
        # Keys are the typed values, except integers: their canonical digits (cheaper).
        if self.parse is None or (self.type == "integer" and self._canonical):
            return present
        if self.type == "integer":
            return list(map(str, map(int, present)))
        return list(map(self.exact or self.parse, present))

    # --- the slow path: what is wrong with one value

    def problems(self, value: str) -> list[str]:
        if value in self.missing:
            return ["constraint required: value is missing"] if self.required else []
        problems = [msg for rule, msg in self.string_rules if not rule(value)]
        if self.pattern is not None and not self.pattern.fullmatch(value):
            problems.append(f"constraint pattern: {_show(value)} does not match")
        low, high = self.length_bounds
        if low is not None and len(value) < low:
            problems.append(f"constraint minLength: {_show(value)} is shorter than {low}")
        if high is not None and len(value) > high:
            problems.append(f"constraint maxLength: {_show(value)} is longer than {high}")
        try:
            parsed = self._strict(value)
        except (ValueError, TypeError, OverflowError):
            return [*problems, f"type: {_show(value)} is not a valid {self.type}"]
        return problems + self._value_problems(value, parsed)

    def _value_problems(self, value: str, parsed: Any) -> list[str]:
        problems = []
        low, high = self.bounds
        try:  # "not >=": NaN compares false with everything, so it is within no bounds
            if low is not None and not parsed >= low:
                problems.append(f"constraint minimum: {_show(value)} is below {low}")
            if high is not None and not parsed <= high:
                problems.append(f"constraint maximum: {_show(value)} is above {high}")
        except TypeError:
            problems.append(f"type: {_show(value)} cannot be compared with the bounds")
        if self.enum is not None and parsed not in self.enum:
            problems.append(f"constraint enum: {_show(value)} is not one of the allowed values")
        if self.unique:
            key = str(parsed) if self.type == "integer" else self._exact_key(value, parsed)
            if key in self.seen:
                problems.append(f"constraint unique: {_show(value)} repeats an earlier row")
            else:
                self.seen[key] = None
        return problems

    def _exact_key(self, value: str, parsed: Any) -> Any:
        return parsed if self.exact is None else self.exact(value)


def _show(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def compile_schema(schema: dict[str, Any]) -> list[FieldCheck]:
    """Turn a Table Schema mapping into one :class:`FieldCheck` per field."""
    fields = schema.get("fields")
    if not isinstance(fields, list) or not fields:
        raise SchemaError("table_schema: 'fields' must be a non-empty list")
    missing = schema.get("missingValues", [""])
    if not isinstance(missing, list) or not all(isinstance(m, str) for m in missing):
        raise SchemaError("table_schema: 'missingValues' must be a list of strings")
    primary = schema.get("primaryKey") or []
    primary = [primary] if isinstance(primary, str) else list(primary)
    checks = [_compile_field(f, i, frozenset(missing)) for i, f in enumerate(fields)]
    names = [c.name for c in checks]
    if len(set(names)) != len(names):
        raise SchemaError("table_schema: field names must be unique")
    for key in primary:
        if key not in names:
            raise SchemaError(f"table_schema: primaryKey names unknown field '{key}'")
    if len(primary) == 1:  # a composite key's uniqueness needs whole rows: not checked
        check = checks[names.index(primary[0])]
        check.required = check.unique = True
    for key in primary:
        checks[names.index(key)].required = True
    return checks


def _compile_field(spec: Any, index: int, missing: frozenset[str]) -> FieldCheck:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise SchemaError(f"table_schema: field #{index + 1} needs a 'name'")
    name, kind = spec["name"], spec.get("type", "string")
    if kind not in SUPPORTED_TYPES:
        raise SchemaError(f"table_schema: field '{name}': unsupported type '{kind}'")
    fmt = spec.get("format", "default")
    parse, form = _type_parser(name, kind, fmt, spec)
    check = FieldCheck(name=name, type=kind, parse=parse, form=form, missing=missing)
    if kind == "number":
        check.exact = _exact_number(spec)
    if kind == "boolean":  # for the Arrow fast path (module_system.validation.csv_fast)
        texts = [spec.get("trueValues", DEFAULT_TRUE), spec.get("falseValues", DEFAULT_FALSE)]
        true_texts, false_texts = (frozenset(v for v in t if isinstance(v, str)) for t in texts)
        check.truth = (true_texts, false_texts)
    if kind == "string" and fmt in _STRING_FORMATS:
        rx = re.compile(_STRING_FORMATS[fmt])
        check.string_rules.append((lambda v: bool(rx.fullmatch(v)), f"format: not a valid {fmt}"))
    _apply_constraints(check, spec.get("constraints") or {}, name)
    return check


def _type_parser(name: str, kind: str, fmt: str, spec: dict[str, Any]) -> tuple[Parse | None, Any]:
    if kind in ("string", "any"):
        return None, None
    if kind == "boolean":
        true_values = set(spec.get("trueValues", DEFAULT_TRUE))
        false_values = set(spec.get("falseValues", DEFAULT_FALSE))
        return _boolean_parser(true_values, false_values), None
    if kind in ("integer", "number"):
        return _numeric_parser(kind, spec)
    return _temporal_parser(name, kind, fmt)


def _boolean_parser(true_values: set[str], false_values: set[str]) -> Parse:
    def parse(value: str) -> bool:
        if value in true_values:
            return True
        if value in false_values:
            return False
        raise ValueError(value)

    return parse


def _numeric_parser(kind: str, spec: dict[str, Any]) -> tuple[Parse, Any]:
    convert: Parse = int if kind == "integer" else float
    plain = _plain_number(kind, spec)
    if plain is None:
        return convert, _batch_form(_FORMS[kind])
    return (lambda value: convert(plain(value))), None


def _exact_number(spec: dict[str, Any]) -> Parse:
    """A number's exact value, the key of a ``unique`` column: ``1e400`` is no ``INF``,
    ``0.1`` no ``0.10000000000000001`` (as floats they are)."""
    plain = _plain_number("number", spec)
    return Decimal if plain is None else (lambda value: Decimal(plain(value)))


def _plain_number(kind: str, spec: dict[str, Any]) -> Callable[[str], str] | None:
    """The text of a number written with ``decimalChar``, ``groupChar`` or not bare, as
    Python reads numbers (ValueError when it is none); None when written that way already."""
    decimal, group = spec.get("decimalChar", "."), spec.get("groupChar", "")
    bare = spec.get("bareNumber", True)
    if decimal == "." and not group and bare:
        return None
    strip = None if bare else re.compile(r"^[^\d+\-.]*|[^\d]*$")

    def plain(value: str) -> str:
        if strip is not None:
            value = strip.sub("", value)
        if group:
            value = value.replace(group, "")
        if decimal != ".":
            value = value.replace(".", "\x00").replace(decimal, ".")
        if not re.fullmatch(_FORMS[kind], value):
            raise ValueError(value)
        return value

    return plain


def _temporal_parser(name: str, kind: str, fmt: str) -> tuple[Parse, Any]:
    if fmt == "default":
        iso: dict[str, Parse] = {
            "date": date.fromisoformat,
            "datetime": datetime.fromisoformat,
            "time": time.fromisoformat,
            "year": int,
        }
        return iso[kind], _batch_form(_FORMS[kind])
    if fmt == "any":
        return _any_format_parser(kind), None
    if "%" not in fmt:
        raise SchemaError(f"table_schema: field '{name}': unsupported {kind} format '{fmt}'")

    def parse(value: str) -> Any:
        parsed = datetime.strptime(value, fmt)
        return parsed.date() if kind == "date" else parsed.time() if kind == "time" else parsed

    return parse, None


def _any_format_parser(kind: str) -> Parse:
    def parse(value: str) -> Any:
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            for pattern in _ANY_DATE_FORMATS:
                try:
                    stamp = datetime.strptime(value, pattern)
                    break
                except ValueError:
                    continue
            else:
                raise
        return stamp.date() if kind == "date" else stamp.time() if kind == "time" else stamp

    return parse


def _batch_form(form: str) -> re.Pattern[str]:
    # Atomic: once a value matched, never re-split its digits. Without it one bad value
    # after a few dozen numbers backtracked exponentially (10 numbers: 19 s). Each form's
    # greedy match is its longest, so the language is the same.
    return re.compile(f"(?:(?>{form})\n)*")


def _apply_constraints(check: FieldCheck, constraints: dict[str, Any], name: str) -> None:
    known = {"required", "unique", "minimum", "maximum", "pattern", "enum", "minLength",
             "maxLength"}  # fmt: skip
    unknown = set(constraints) - known
    if unknown:
        raise SchemaError(f"table_schema: field '{name}': unsupported constraint {sorted(unknown)}")
    check.required = bool(constraints.get("required", False))
    check.unique = bool(constraints.get("unique", False))
    check.bounds = (_bound(check, constraints, "minimum"), _bound(check, constraints, "maximum"))
    check.length_bounds = (constraints.get("minLength"), constraints.get("maxLength"))
    if "pattern" in constraints:
        try:
            check.pattern = re.compile(constraints["pattern"])
        except re.error as exc:
            raise SchemaError(f"table_schema: field '{name}': bad pattern ({exc})") from None
    if "enum" in constraints:
        check.enum = frozenset(_typed(check, value, name, "enum") for value in constraints["enum"])


def _bound(check: FieldCheck, constraints: dict[str, Any], key: str) -> Any:
    if key not in constraints:
        return None
    return _typed(check, constraints[key], check.name, key)


def _typed(check: FieldCheck, value: Any, name: str, what: str) -> Any:
    """A constraint value from JSON, as the field's type (dates given as strings)."""
    if check.parse is None or (isinstance(value, int | float) and check.type == "number"):
        return value  # ints compare with floats; the report shows the schema's number
    if isinstance(value, int | float) and check.type in ("integer", "year"):
        return int(value)
    text = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        return check.parse(text)
    except (ValueError, TypeError) as exc:
        raise SchemaError(
            f"table_schema: field '{name}': {what} value {value!r} is not a {check.type}"
        ) from exc
