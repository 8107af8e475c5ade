"""Structured records from a page: one record per match of ``records`` (a CSS selector),
one value per field.

A field is ``css``, ``css::text`` (the element's text, trimmed, whitespace collapsed) or
``css::attr(name)`` (an attribute), the first match inside the record; an empty ``css``
(``::attr(id)``) means the record element itself. A field with no match is null::

    extract:
      records: "article"
      fields: {title: "h1::text", published: "time::attr(datetime)", body: ".content::text"}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from module_system.errors import ConfigError

_FIELD = re.compile(r"^(?P<css>.*?)(?:::(?:(?P<text>text)|attr\((?P<attr>[^()]+)\)))?$", re.S)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class FieldSpec:
    css: str
    attr: str | None  # None: the text

    @classmethod
    def parse(cls, spec: str) -> FieldSpec:
        match = _FIELD.match(spec.strip())
        if match is None:  # pragma: no cover - the pattern matches any string
            raise ValueError(spec)
        return cls(match["css"].strip(), match["attr"].strip() if match["attr"] else None)

    def value(self, record: LexborNode) -> str | None:
        node = record.css_first(self.css) if self.css else record
        if node is None:
            return None
        if self.attr is not None:
            return node.attributes.get(self.attr)
        return _SPACE.sub(" ", node.text(deep=True)).strip()


class Extractor:
    def __init__(self, records: str, fields: dict[str, str]) -> None:
        self.records_selector = records
        self.fields = {name: FieldSpec.parse(spec) for name, spec in fields.items()}
        self._check_selectors()

    @classmethod
    def from_config(cls, config: Any) -> Extractor:
        """From the service's ``extract:`` block (records + fields)."""
        return cls(config.records, dict(config.fields))

    def _check_selectors(self) -> None:
        probe = LexborHTMLParser("<p>probe</p>")
        for where, css in [("records", self.records_selector)] + [
            (f"fields.{name}", spec.css) for name, spec in self.fields.items() if spec.css
        ]:
            try:
                probe.css(css)
            except Exception as exc:  # selectolax raises plain exceptions for bad CSS
                raise ConfigError(f"extract.{where}: invalid CSS selector {css!r}: {exc}") from None

    def extract(self, tree: LexborHTMLParser) -> list[dict[str, str | None]]:
        return [
            {name: spec.value(node) for name, spec in self.fields.items()}
            for node in tree.css(self.records_selector)
        ]
