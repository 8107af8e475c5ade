"""The options of the CSV validator (the ``validation: {csv: ...}`` block)."""

from __future__ import annotations

import codecs
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from module_system.validation.reading import DECOMPRESSION_RATIO, DEFAULT_MAX_RATIO, ReadLimits


class CsvOptions(BaseModel):
    """The ``validation: {csv: ...}`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delimiter: str = Field(
        ",", min_length=1, max_length=1, description='the field separator ("\\t": TSV)'
    )
    quotechar: str = Field(
        '"', min_length=1, max_length=1, description="the character quoting a value"
    )
    header: bool = Field(
        True, description="the first row names the columns; false: the schema's fields do, in order"
    )
    encoding: str = Field("utf-8", description="of the file; a UTF-8 byte-order mark is skipped")
    table_schema: dict[str, Any] | None = Field(
        None, description="a Frictionless Table Schema of the columns; unset: shape checks only"
    )
    schema_source: str = "inline"
    min_rows: int | None = Field(None, ge=0, description="fewer data rows make the file invalid")
    max_decompression_ratio: float | None = Field(
        DEFAULT_MAX_RATIO, gt=1, description=DECOMPRESSION_RATIO
    )

    def read_limits(self) -> ReadLimits:
        return ReadLimits(max_ratio=self.max_decompression_ratio)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding '{value}'") from None
        return value
