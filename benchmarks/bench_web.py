"""Crawl a real static site on loopback: our full crawl → validate → land job against
Scrapy crawling alone, with the same link-following and robots.txt settings.

The site is Python's HTML documentation (Debian's ``python3-doc``: ``apt-get install -y
python3-doc``), about 530 pages, served by ``python -m http.server`` in a subprocess.
Ours lands every page into a local S3 API server (moto) with HTML validation; Scrapy
(``pip install scrapy``) only downloads and extracts links.

    .venv/bin/python benchmarks/bench_web.py [--docs DIR] [--max-pages N] [--concurrency N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import boto3
import httpx

from module_system.config import load_batch, load_registry
from module_system.demo.servers import DEMO_CREDENTIALS, MotoServer, free_port
from module_system.orchestrator.batch import run_batch
from module_system.state import StateStore

DOC_DIRS = ("/usr/share/doc/python3/html", "/usr/share/doc/python3.11/html")

SCRAPY_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from scrapy.crawler import CrawlerProcess
    from scrapy.linkextractors import LinkExtractor
    from scrapy.spiders import CrawlSpider, Rule

    start, max_pages, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    html_pages = []

    class Docs(CrawlSpider):
        name = "docs"
        allowed_domains = ["127.0.0.1"]
        start_urls = [start]
        rules = (Rule(LinkExtractor(), callback="page", follow=True),)

        def parse_start_url(self, response):
            return self.page(response)

        def page(self, response):
            if b"text/html" in response.headers.get("Content-Type", b""):
                html_pages.append(response.url)
            return []

    process = CrawlerProcess({
        "ROBOTSTXT_OBEY": True, "CONCURRENT_REQUESTS": concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency, "DOWNLOAD_DELAY": 0,
        "CLOSESPIDER_PAGECOUNT": max_pages, "LOG_LEVEL": "ERROR",
        "TELNETCONSOLE_ENABLED": False, "USER_AGENT": "module-system-bench",
    })
    crawler = process.create_crawler(Docs)
    began = time.perf_counter()
    process.crawl(crawler)
    process.start()
    elapsed = time.perf_counter() - began
    stats = crawler.stats.get_stats()
    print(json.dumps({"seconds": elapsed, "html_pages": len(set(html_pages)),
                      "responses": stats.get("response_received_count", 0)}))
    """
)


def find_docs() -> Path:
    for candidate in DOC_DIRS:
        if (Path(candidate) / "index.html").exists():
            return Path(candidate).resolve()
    sys.exit("Python's HTML docs not found: apt-get install -y python3-doc (or pass --docs)")


def serve(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
               "--directory", str(directory)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/index.html"
    for _ in range(100):
        try:
            httpx.get(url, timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    sys.exit("http.server did not start")


def run_scrapy(url: str, max_pages: int, concurrency: int) -> dict[str, Any]:
    began = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", SCRAPY_SCRIPT, url, str(max_pages), str(concurrency)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - began
    return result


def run_ours(url: str, max_pages: int, concurrency: int, work: Path) -> dict[str, Any]:
    with MotoServer(log_path=work / "moto.log") as s3_server:
        boto3.client("s3", endpoint_url=s3_server.url, region_name="us-east-1").create_bucket(
            Bucket="landing"
        )
        registry_path = work / "registry.json"
        registry_path.write_text(json.dumps(_registry(s3_server.url, url, max_pages, concurrency)))
        batch_path = work / "batch.json"
        batch_path.write_text(json.dumps({"jobs": [{"job_id": "bench", "service_id": "docs"}]}))
        registry = load_registry(registry_path)
        batch = load_batch(batch_path, registry)
        state = StateStore(f"sqlite:///{work / 'state.db'}")
        began = time.perf_counter()
        result = run_batch(registry, batch, state, max_workers=1)
        elapsed = time.perf_counter() - began
        state.close()
    job = result.jobs[0]
    counts = job.counts
    return {"seconds": elapsed, "status": job.status.value, "landed": counts.valid,
            "quarantined": counts.invalid, "listed": counts.listed, "error": job.error}  # fmt: skip


def _registry(endpoint: str, url: str, max_pages: int, concurrency: int) -> dict[str, Any]:
    return {
        "landing": {"bucket": "landing", "endpoint_url": endpoint, "region": "us-east-1"},
        "services": {
            "docs": {
                "type": "web",
                "source": {
                    "start_urls": [url], "max_pages": max_pages, "concurrency": concurrency,
                    "user_agent": "module-system-bench",
                },
                "validation": {"html": {"required_selectors": ["title", "body"]}},
                "concurrency": concurrency,
            }
        },
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=Path, default=None)
    parser.add_argument("--max-pages", type=int, default=2000, help="cap for both crawlers")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight, both")
    args = parser.parse_args()
    import os

    os.environ.update(DEMO_CREDENTIALS)
    server, url = serve(args.docs or find_docs())
    try:
        with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
            ours = run_ours(url, args.max_pages, args.concurrency, Path(tmp))
        scrapy = run_scrapy(url, args.max_pages, args.concurrency)
    finally:
        server.terminate()
    pages = ours["landed"] + ours["quarantined"]
    print(f"site: {url}")
    print(f"ours   (crawl+validate+land): {pages} HTML pages landed in {ours['seconds']:.2f}s "
          f"({ours['listed']} URLs listed, status {ours['status']})")  # fmt: skip
    print(f"scrapy (crawl only):          {scrapy['html_pages']} HTML pages in "
          f"{scrapy['seconds']:.2f}s ({scrapy['responses']} responses; "
          f"{scrapy['process_seconds']:.2f}s with interpreter start)")  # fmt: skip
    print(f"ratio ours/scrapy: {ours['seconds'] / scrapy['seconds']:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
