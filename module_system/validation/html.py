"""HTML pages checked for structure: required and forbidden elements (CSS selectors) and
a minimum amount of visible text. Parsed with selectolax's Lexbor backend (HTML5, in C).

    validation:
      html:
        required_selectors: ["title", "article h1"]
        forbidden_selectors: [".error-page"]
        min_text_length: 200

The page is decoded as the crawler decodes it (BOM, ``<meta charset>``, UTF-8, detection);
the text counted is what a reader sees: ``<script>``, ``<style>`` and ``<template>`` are left out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from selectolax.lexbor import LexborHTMLParser

from module_system.text_encoding import decode_html
from module_system.validation.base import IssueCollector, Validator, Verdict, open_binary
from module_system.validation.reading import DECOMPRESSION_RATIO, DEFAULT_MAX_RATIO, ReadLimits

INVISIBLE_TAGS = ["script", "style", "noscript", "template"]
DEFAULT_MAX_PAGE_BYTES = 64 * 1024 * 1024  # the page and its parsed tree are held whole
_SPACE = re.compile(r"\s+")


class HtmlOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    required_selectors: list[str] = Field(
        default_factory=list, description="CSS selectors that must each match at least once"
    )
    forbidden_selectors: list[str] = Field(
        default_factory=list, description="CSS selectors that must not match"
    )
    min_text_length: int = Field(0, ge=0, description="visible characters, whitespace collapsed")
    max_file_bytes: int | None = Field(DEFAULT_MAX_PAGE_BYTES, gt=0, description="read whole")
    max_decompression_ratio: float | None = Field(
        DEFAULT_MAX_RATIO, gt=1, description=DECOMPRESSION_RATIO
    )

    @field_validator("required_selectors", "forbidden_selectors")
    @classmethod
    def _selectors_parse(cls, selectors: list[str]) -> list[str]:
        probe = LexborHTMLParser("<p></p>")
        for selector in selectors:
            try:
                probe.css(selector)
            except Exception as exc:  # selectolax raises plain exceptions for bad CSS
                raise ValueError(f"invalid CSS selector {selector!r}: {exc}") from None
        return selectors


class HtmlValidator(Validator):
    """``validation: {html: {required_selectors: [...], min_text_length: N}}``."""

    name = "html"
    suffixes: ClassVar[tuple[str, ...]] = (".html", ".htm")
    options_model = HtmlOptions
    reads_growing_files = True  # reads only through open_binary
    options: HtmlOptions

    def validate(self, path: Path, name: str) -> Verdict:
        options = self.options
        limits = ReadLimits(options.max_file_bytes, options.max_decompression_ratio)
        with open_binary(path, name, limits) as fh:
            body = fh.read()
        issues = IssueCollector()
        if not body.strip():
            issues.add("empty document")
            return issues.verdict(self.name)
        tree = LexborHTMLParser(decode_html(body)[0])
        for selector in self.options.required_selectors:
            if tree.css_first(selector) is None:
                issues.add(f"required element missing: {selector}", selector)
        for selector in self.options.forbidden_selectors:
            found = len(tree.css(selector))
            if found:
                issues.add(f"forbidden element present {found} time(s): {selector}", selector)
        self._check_text(tree, issues)
        return issues.verdict(self.name)

    def _check_text(self, tree: LexborHTMLParser, issues: IssueCollector) -> None:
        minimum = self.options.min_text_length
        if not minimum:
            return
        length = visible_text_length(tree)
        if length < minimum:
            issues.add(f"visible text is {length} characters, below min_text_length {minimum}")


def visible_text_length(tree: LexborHTMLParser) -> int:
    """Characters of text a reader sees in ``<body>`` (whitespace runs count as one)."""
    tree.strip_tags(INVISIBLE_TAGS)
    root = tree.body or tree.root
    if root is None:
        return 0
    return len(_SPACE.sub(" ", root.text(separator=" ")).strip())
