"""What demo parts share: the working folder, the environment they add to, an S3 client."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3


@dataclass
class DemoContext:
    workdir: Path
    s3_endpoint: str
    env: dict[str, str] = field(default_factory=dict)

    def s3_client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1")
