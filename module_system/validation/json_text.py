"""JSON text to Python values for the JSON Schema validator: fast, and exact for numbers.

orjson parses tens of times faster than the standard library but rounds integers beyond
64 bits to floats (``100000000000000000001`` becomes ``1e20``: a ``maximum`` of ``1e20``
would pass it, and draft 4 would call it no integer) and refuses numbers beyond a double
(``1e400``) as unparseable. So when numbers must be exact (``exact=True``: the schema
compares numbers), a text holding an integer orjson may round (20 digits, or 19 after a
minus sign) is parsed again by the standard library, with exact integers; so is a text
orjson refused that holds a long run of digits or a 3-digit exponent. Numbers that cannot
be checked at all make the text fail with :class:`NotJson` naming them, rather than a
crash or a wrong verdict: integers longer than Python converts from text by default
(4,300 digits, a guard against quadratic conversion time) and numbers beyond a double.
Nesting deeper than orjson's 1,024 levels is refused by orjson with its own message.
"""

from __future__ import annotations

import codecs
import json
import math
import re
import sys
from typing import Any

import orjson

# Integers of 19+ digits may pass 64 bits; exponents of 3+ digits may pass a double.
_MAY_NEED_EXACT = re.compile(rb"[0-9]{19}|[eE][+-]?[0-9]{3}")
# What orjson may round: an integer beyond [-2**63, 2**64 - 1], so one of 20+ digits or a
# negative one of 19 (positive 19-digit ids stay fast). Found ~15x faster than by regular
# expression (which tries every digit): digits become NUL, which JSON text never holds,
# then substring searches.
_DIGITS_AS_NUL = bytes.maketrans(b"0123456789", bytes(10))
_LONG_RUNS = (bytes(20), b"-" + bytes(19))


class NotJson(ValueError):
    """The text is not JSON this validator can check; the message says why."""


class _Uncheckable(Exception):
    """A number no schema check could judge (raised from inside the parser)."""


def parse(text: bytes, exact: bool) -> Any:
    """The value of a JSON text; :class:`NotJson` when it is not one (or not checkable).
    ``exact``: integers beyond 64 bits must keep every digit."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if _MAY_NEED_EXACT.search(text) and not text.startswith(codecs.BOM_UTF8):
            return _parse_refused(text, f"not parseable JSON: {exc}")
        raise NotJson(f"not parseable JSON: {exc}") from None
    return _parse_exact(text) if exact and _has_long_digit_run(text) else value


def may_need_exact(texts: list[bytes]) -> bool:
    """True when any of ``texts`` has an integer orjson may round (see :func:`parse`)."""
    return _has_long_digit_run(b"\n".join(texts))


def _has_long_digit_run(text: bytes) -> bool:
    digits = text.translate(_DIGITS_AS_NUL)
    return any(run in digits for run in _LONG_RUNS)


def _parse_exact(text: bytes) -> Any:
    """A text orjson took: the same value, with its numbers exact."""
    try:
        return _exact(text)
    except _Uncheckable as exc:
        raise NotJson(f"not checkable JSON: {exc}") from None
    except RecursionError:  # orjson took it (depth <= 1,024) but Python's stack did not
        raise NotJson("not checkable JSON: nested too deeply to read its numbers exactly") from None


def _parse_refused(text: bytes, refusal: str) -> Any:
    """A text orjson refused, maybe for a number beyond a double alone (``1e400``,
    ``10**400``). The standard library is laxer in two more ways, which keep orjson's
    refusal: a UTF-8 BOM (checked by the caller) and unpaired surrogate escapes."""
    try:
        value = _exact(text)
    except _Uncheckable as exc:
        raise NotJson(f"not checkable JSON: {exc}") from None
    except (ValueError, RecursionError):  # not JSON for another reason: orjson says which
        raise NotJson(refusal) from None
    try:  # an unpaired surrogate cannot be encoded; paired ones were joined by the parser
        json.dumps(value, ensure_ascii=False).encode()
    except (UnicodeEncodeError, RecursionError):
        raise NotJson(refusal) from None
    return value


def _exact(text: bytes) -> Any:
    return json.loads(text, parse_int=_integer, parse_float=_float, parse_constant=_constant)


def _integer(digits: str) -> int:
    try:
        return int(digits)
    except ValueError:  # over sys.get_int_max_str_digits()
        count = len(digits.lstrip("-"))
        limit = sys.get_int_max_str_digits()
        raise _Uncheckable(
            f"an integer of {count:,} digits: too long to check (at most {limit:,})"
        ) from None


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise _Uncheckable(f"the number {shown} is beyond the range of a 64-bit float")
    return value


def _constant(name: str) -> float:
    raise _Uncheckable(f"{name} is not a JSON number")
