"""Demo part: a source bucket of finance exports, some of them broken on purpose."""

from __future__ import annotations

import json

from module_system.demo.context import DemoContext

RECORDS = [
    {"account_id": f"ACC{n:04d}", "date": f"2026-11-{(n % 28) + 1:02d}", "amount": n * 10.5,
     "currency": ["EUR", "USD", "GBP"][n % 3]}
    for n in range(1, 41)
]  # fmt: skip


class S3DemoData:
    """Fills ``finance-exports/daily/`` with valid JSON and NDJSON, one file that breaks
    the schema and one that is not JSON at all."""

    name = "s3"

    def start(self, ctx: DemoContext) -> None:
        s3 = ctx.s3_client()
        s3.create_bucket(Bucket="finance-exports")
        files = {f"daily/2026-11-{n + 1:02d}/record_{n:03d}.json": json.dumps(RECORDS[n])
                 for n in range(10)}  # fmt: skip
        files["daily/2026-11-27/records.ndjson"] = "\n".join(json.dumps(r) for r in RECORDS) + "\n"
        files["daily/2026-11-28/bad_schema.json"] = json.dumps(
            {"account_id": "X1", "date": "28/11/2026", "amount": "lots", "currency": "BTC"}
        )
        files["daily/2026-11-28/truncated.json"] = '{"account_id": "ACC0001", "amount": '
        files["daily/README.txt"] = "not included by the service's patterns"
        for key, body in files.items():
            s3.put_object(Bucket="finance-exports", Key=key, Body=body.encode())

    def stop(self) -> None:
        pass
