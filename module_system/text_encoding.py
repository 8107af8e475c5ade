"""Bytes of an HTML page to text, in the HTML standard's order: byte-order mark, the
declared charset (``Content-Type`` header), ``<meta charset>`` in the first bytes, then
UTF-8 if the bytes are valid UTF-8, then detection (charset-normalizer)."""

from __future__ import annotations

import codecs
import re

import charset_normalizer

META_SCAN_BYTES = 4096
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.I)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.I)
# The HTML standard decodes these labels as windows-1252, a superset.
_WINDOWS_1252_LABELS = frozenset(
    {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "ascii", "us-ascii"}
)


def charset_from_content_type(content_type: str | None) -> str | None:
    match = _HEADER_CHARSET.search(content_type or "")
    return match.group(1) if match else None


def detect_encoding(body: bytes, declared: str | None = None) -> str:
    """The Python codec name to decode ``body`` with."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name
    for candidate in (declared, _meta_charset(body)):
        codec = _codec(candidate)
        if codec:
            return codec
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(body).best()
    return _codec(best.encoding if best else None) or "cp1252"


def decode_html(body: bytes, declared: str | None = None) -> tuple[str, str]:
    """``(text, codec)``; undecodable bytes become U+FFFD rather than failing."""
    codec = detect_encoding(body, declared)
    text = body.decode(codec, errors="replace")
    return text.removeprefix("\ufeff"), codec


def _meta_charset(body: bytes) -> str | None:
    match = _META_CHARSET.search(body[:META_SCAN_BYTES])
    return match.group(1).decode("ascii") if match else None


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().lower()
    if label in _WINDOWS_1252_LABELS:
        return "cp1252"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None
