"""Crawl a real static site on loopback: our full crawl → validate → land job against
Scrapy crawling alone and a bare httpx + selectolax loop, with the same link-following.

The site is Python's HTML documentation (Debian's ``python3-doc``: ``apt-get install -y
python3-doc``), about 530 pages, served by ``python -m http.server`` in a subprocess.
Ours obeys robots.txt, validates every page (HTML, required selectors) and lands it into a
local S3 API server (moto), with state and manifest; Scrapy (``pip install scrapy``) obeys
robots.txt, downloads and extracts links; the bare loop (16 threads sharing one
``httpx.Client``, links by selectolax, no robots.txt, no canonical URLs) only downloads
and extracts links: the floor of a Python crawler on this machine.

Each round runs the three one after the other, so a round's ratios share the machine's
load; medians over the rounds are reported with the load average. Scrapy and the bare loop
run in child processes and time themselves from their first request (interpreter start and
imports are not counted); ours is timed around ``run_batch`` in this process. CPU is each
crawler's own process time; the site's and the S3 server's CPU (processes of their own, on
the same cores) are measured during each run too.

    .venv/bin/python benchmarks/bench_web.py [--docs DIR] [--rounds 3] [--max-pages N]
        [--concurrency N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from module_system.config import load_batch, load_registry  # noqa: E402
from module_system.demo.servers import DEMO_CREDENTIALS, MotoServer, free_port  # noqa: E402
from module_system.orchestrator.batch import run_batch  # noqa: E402
from module_system.sources.web import SKIPPED_EXTENSIONS  # noqa: E402
from module_system.state import StateStore  # noqa: E402

DOC_DIRS = ("/usr/share/doc/python3/html", "/usr/share/doc/python3.11/html")
TARGET = 0.25  # ours / Scrapy

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
    began, cpu = time.perf_counter(), time.process_time()
    process.crawl(crawler)
    process.start()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    stats = crawler.stats.get_stats()
    print(json.dumps({"seconds": elapsed, "cpu": cpu, "html_pages": len(set(html_pages)),
                      "responses": stats.get("response_received_count", 0)}))
    """
)

BARE_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
    from urllib.parse import urldefrag, urljoin, urlsplit
    import httpx
    from selectolax.lexbor import LexborHTMLParser

    start, max_pages, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    skipped = tuple("." + extension for extension in sys.argv[4].split())
    host = urlsplit(start).netloc

    def page(client, url):
        response = client.get(url)
        if response.status_code != 200 or "text/html" not in response.headers.get(
            "content-type", ""
        ):
            return [], False
        tree = LexborHTMLParser(response.text)
        links = []
        for node in tree.css("a[href]"):
            link = urldefrag(urljoin(url, node.attributes.get("href") or "")).url
            parts = urlsplit(link)
            if parts.netloc == host and not parts.path.lower().endswith(skipped):
                links.append(link)
        return links, True

    began, cpu = time.perf_counter(), time.process_time()
    seen, pages, responses = {start}, 0, 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(limits=limits, timeout=30) as client, ThreadPoolExecutor(
        concurrency
    ) as pool:
        pending = {pool.submit(page, client, start)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                links, html = future.result()
                responses, pages = responses + 1, pages + html
                for link in links:
                    if link not in seen and len(seen) < max_pages:
                        seen.add(link)
                        pending.add(pool.submit(page, client, link))
    print(json.dumps({"seconds": time.perf_counter() - began, "cpu": time.process_time() - cpu,
                      "html_pages": pages, "responses": responses}))
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


def run_child(script: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_scrapy(url: str, max_pages: int, concurrency: int) -> dict[str, Any]:
    return run_child(SCRAPY_SCRIPT, url, str(max_pages), str(concurrency))


def run_bare(url: str, max_pages: int, concurrency: int) -> dict[str, Any]:
    return run_child(
        BARE_SCRIPT, url, str(max_pages), str(concurrency), " ".join(SKIPPED_EXTENSIONS)
    )


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def child_with_port(port: int) -> psutil.Process:
    return next(p for p in psutil.Process().children() if str(port) in p.cmdline())


def run_ours(url: str, max_pages: int, concurrency: int, work: Path) -> dict[str, Any]:
    with MotoServer(log_path=work / "moto.log") as s3_server:
        s3_process = child_with_port(s3_server.port)
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
        began, cpu, s3_cpu = time.perf_counter(), time.process_time(), cpu_seconds(s3_process)
        result = run_batch(registry, batch, state, max_workers=1)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        s3_cpu = cpu_seconds(s3_process) - s3_cpu
        state.close()
    job = result.jobs[0]
    counts = job.counts
    return {"seconds": elapsed, "cpu": cpu, "s3_cpu": s3_cpu, "status": job.status.value,
            "landed": counts.valid, "quarantined": counts.invalid, "listed": counts.listed,
            "error": job.error}  # fmt: skip


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


def run_round(url: str, site: psutil.Process, args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = {}
    crawlers = {
        "ours": lambda: _ours_in_tmp(url, args),
        "scrapy": lambda: run_scrapy(url, args.max_pages, args.concurrency),
        "bare": lambda: run_bare(url, args.max_pages, args.concurrency),
    }
    for name, crawl in crawlers.items():
        site_cpu = cpu_seconds(site)
        run = runs[name] = crawl()
        run["site_cpu"] = cpu_seconds(site) - site_cpu
        s3 = f", S3 server {run['s3_cpu']:5.2f} s CPU" if "s3_cpu" in run else ""
        print(f"  {name:6}: {run['seconds']:6.2f} s wall, {run['cpu']:6.2f} s CPU, "
              f"{run['html_pages']} HTML pages; site server {run['site_cpu']:5.2f} s CPU{s3}",
              flush=True)  # fmt: skip
    return runs


def _ours_in_tmp(url: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        ours = run_ours(url, args.max_pages, args.concurrency, Path(tmp))
    ours["html_pages"] = ours["landed"] + ours["quarantined"]
    if ours["status"] != "completed":
        print(f"  ours: status {ours['status']}: {ours['error']}")
    return ours


def report(rounds: list[dict[str, Any]], loads: tuple[float, float]) -> None:
    def median(name: str, field: str = "seconds") -> float:
        return statistics.median(r[name][field] for r in rounds)

    def paired(name: str, other: str, field: str = "seconds") -> float:
        return statistics.median(r[name][field] / r[other][field] for r in rounds)

    print(f"median of {len(rounds)} rounds; {os.cpu_count()} CPUs shared with the site and S3 "
          f"servers; load average (1 min) {loads[0]:.1f} before, {loads[1]:.1f} after")  # fmt: skip
    labels = {"ours": "robots + crawl + validate + land", "scrapy": "robots + crawl",
              "bare": "crawl"}  # fmt: skip
    for name, label in labels.items():
        pages = rounds[-1][name]["html_pages"]
        print(f"{name:6} ({label:32}): {median(name):6.2f} s wall, "
              f"{median(name, 'cpu'):5.2f} s CPU, {pages} HTML pages; site server "
              f"{median(name, 'site_cpu'):5.2f} s CPU")  # fmt: skip
    print(f"S3 server during ours: {median('ours', 's3_cpu'):5.2f} s CPU")
    print("ratios (medians of per-round ratios):")
    for field, what in (("seconds", "wall time"), ("cpu", "the crawler's CPU")):
        print(f"{what}: ours/scrapy {paired('ours', 'scrapy', field):.2f} (target <= {TARGET}), "
              f"bare/scrapy {paired('bare', 'scrapy', field):.2f}, "
              f"ours/bare {paired('ours', 'bare', field):.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-pages", type=int, default=2000, help="cap for the crawlers")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight, all")
    args = parser.parse_args()
    os.environ.update(DEMO_CREDENTIALS)
    server, url = serve(args.docs or find_docs())
    load_before = os.getloadavg()[0]
    rounds = []
    try:
        print(f"site: {url}")
        for number in range(1, args.rounds + 1):
            print(f"round {number}:", flush=True)
            rounds.append(run_round(url, psutil.Process(server.pid), args))
    finally:
        server.terminate()
    report(rounds, (load_before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
