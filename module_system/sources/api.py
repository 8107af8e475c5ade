"""REST API source: paginated JSON responses, landed one file a page or in NDJSON batches.

``list_items`` requests the pages one after the other (the next page depends on the last)
and yields each response as an item carrying its body; the pipeline's pool validates and
uploads page N while page N+1 is being fetched. Once a GET's ``page_number`` or ``offset``
pagination has read a total, every remaining request is known: once the API is slow enough
for it to pay (:class:`LatencyGate`), up to ``read_ahead`` of them are in flight at once
(:class:`PageReadAhead`), and the pages still come in order.
Items are keyed
``{run date}/{job id}/{run id}/page-000001.json``, so runs never overwrite each other and a
page retried within a run lands under the same key. Because every run has its own keys,
an identical body in a later run is landed again rather than skipped: each run's folder is
a complete answer of the API, and the incremental cursor, not content hashing, is what
keeps runs from re-reading old data.

With ``batch_pages: N`` up to N pages land together as ``pages-000001-000100.ndjson``, one
line a response (see :mod:`.http.batching`): one PUT, one state record and one validator
call for N pages. Each page is still validated on its own terms (the validator is told that
a line's records sit in its ``body``), and a page that fails lands alone, in quarantine,
as ``page-000042.ndjson``: the batch lists its pages as parts, and the pipeline splits it.

Pages are fetched with the service's retry settings (Retry-After honoured), through the
host's shared rate limit, within the service's egress policy: redirects and pagination links
stay on the configured origin unless ``allowed_origins`` names more, and credentials go only
to the configured origin (and the token URL) unless ``auth.origins`` names more. See
docs/sources/api.md for every key and docs/security.md for the policy.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import shutil
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import ConfigDict, Field, field_validator

from module_system import json_path
from module_system.config.models import StrictModel
from module_system.observability.redaction import mask_url
from module_system.plugins import VALIDATORS
from module_system.sources.base import RemoteItem, Source, SourceContext
from module_system.sources.http.auth import AuthConfig
from module_system.sources.http.batching import SPOOL_BYTES, PageBatch, response_line
from module_system.sources.http.client import (
    DEFAULT_MAX_RESPONSE_BYTES,
    ApiClient,
    ResponseTooLarge,
)
from module_system.sources.http.egress import EgressPolicy, OriginList
from module_system.sources.http.incremental import IncrementalConfig, IncrementalCursor
from module_system.sources.http.pagination import (
    BasePaginator,
    NoPagination,
    NumberedPaginator,
    Page,
    PageRequest,
    PaginationConfig,
)
from module_system.sources.http.ratelimit import RateLimitConfig, bucket_for
from module_system.sources.http.transport import DEFAULT_CONNECTIONS, make_client

DEFAULT_BATCH_BYTES = 64 * 1024 * 1024
BATCH_FIELD = "body"  # where a batch line holds its response's body


class ApiSourceConfig(StrictModel):
    """The ``source:`` block of an ``api`` service."""

    model_config = ConfigDict(populate_by_name=True)

    url: str = Field(description="http:// or https:// URL of the first page")
    method: Literal["GET", "POST"] = Field("GET", description="HTTP method of every request")
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="query parameters of every request (pagination and incremental add theirs)",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="extra request headers, sent only where the credentials go (use auth for "
        "credentials)",
    )
    json_body: Any = Field(
        None, alias="json", description="JSON body sent with every request (POST searches)"
    )
    auth: AuthConfig | None = Field(
        None, description="credentials: api_key, basic, bearer or oauth2_client_credentials"
    )
    pagination: PaginationConfig = Field(
        NoPagination(),
        description="how the next page is asked for: none, page_number, offset, cursor, "
        "next_url or link_header",
    )
    records_path: str | None = Field(
        None,
        description="dotted path to the list of records in a response, e.g. data.items; "
        "unset: the body is the list (or one record)",
    )
    incremental: IncrementalConfig | None = None
    rate_limit: RateLimitConfig | None = None
    timeout: float = Field(30.0, gt=0, description="seconds to connect, read and write, each")
    max_pages: int | None = Field(
        None, ge=1, description="stop after this many pages (with a warning); unset: no cap"
    )
    read_ahead: int = Field(
        4,
        ge=1,
        le=32,
        description="pages requested in parallel ahead of need when their addresses are known "
        "(GET with page_number or offset pagination and a total_path) and the API takes 2 ms "
        "or more to answer; 1: one page at a time",
    )
    max_response_bytes: int = Field(
        DEFAULT_MAX_RESPONSE_BYTES,
        ge=1024,
        description="largest response body read, decompressed; a larger page fails the job",
    )
    allowed_origins: OriginList = Field(
        default_factory=list, description="more origins redirects and page links may go to"
    )
    batch_pages: int = Field(
        1, ge=1, description="pages landed together in one NDJSON object (1: a JSON file a page)"
    )
    batch_bytes: int = Field(
        DEFAULT_BATCH_BYTES, ge=1024,
        description="a batch object ends before it passes this many bytes",
    )  # fmt: skip

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
            raise ValueError("expected an http:// or https:// URL")
        return value

    def egress_policy(self) -> EgressPolicy:
        """Requests may go to the URL's origin, the token URL, ``allowed_origins`` and
        ``auth.origins``; credentials to all of these but ``allowed_origins``."""
        token_url = getattr(self.auth, "token_url", None)
        credentialed = [self.url, *([token_url] if token_url else [])]
        credentialed += self.auth.origins if self.auth else []
        return EgressPolicy.build([*credentialed, *self.allowed_origins], credentialed)


class ApiSource(Source):
    """Every page of one endpoint under ``responses/``: each response as received, or
    ``batch_pages`` of them a line each in one NDJSON object."""

    type_name = "api"
    config_model = ApiSourceConfig
    landing_area = "responses"

    def __init__(
        self,
        config: ApiSourceConfig,
        client: ApiClient,
        context: SourceContext,
        key_prefix: str,
    ) -> None:
        self.config, self.client, self.context = config, client, context
        self.key_prefix = key_prefix
        self.paginator: BasePaginator = config.pagination.build()
        self.cursor = (
            IncrementalCursor(config.incremental, context.cursors, context.full_refresh)
            if config.incremental
            else None
        )
        self.retrier = context.make_retrier()
        self.unreadable_pages = 0
        self._spool: tempfile.TemporaryDirectory[str] | None = None
        self._spooled = itertools.count()
        self._base: tuple[str, httpx.URL, str] | None = None  # see _base_url
        self._ahead: PageReadAhead | None = None  # while _pages reads ahead

    @classmethod
    def from_config(cls, config: ApiSourceConfig, context: SourceContext) -> Self:
        policy = config.egress_policy()
        client = ApiClient(
            # a connection for every page read ahead, and one for the page in hand
            make_client(
                policy,
                timeout=config.timeout,
                connections=max(DEFAULT_CONNECTIONS, config.read_ahead + 1),
            ),
            bucket_for(urlsplit(config.url).netloc, config.rate_limit),
            policy,
            auth=config.auth.build() if config.auth else None,
            headers=config.headers,
            cancel=context.cancel,
            deadline=context.deadline,
            max_bytes=config.max_response_bytes,
        )
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        prefix = f"{day}/{context.job_id}/{context.run_id}"
        return cls(config, client, context, prefix)

    @classmethod
    def adapt_validation(cls, config: Any, validation: dict[str, Any]) -> dict[str, Any]:
        """Check each record at ``records_path``, and always check that a response is JSON
        with records where expected: without a configured schema, an empty one is used.
        In batches, each line's response body is the document ``records_path`` is in.

        The validator is named through the registry, as the config loader does: sources
        never import validators."""
        options = validation.get("json_schema")
        if options is None:
            options = VALIDATORS.get("json_schema").options_model(schema={}, source="api")
        update: dict[str, Any] = {}
        if options.records_path is None:
            update["records_path"] = config.records_path or json_path.ROOT
        if config.batch_pages > 1:
            update["line_document"] = BATCH_FIELD
        return {**validation, "json_schema": options.model_copy(update=update)}

    def list_items(self) -> Iterator[RemoteItem]:
        with contextlib.closing(self._pages()) as pages:  # closed early: read-ahead ends
            if self.config.batch_pages == 1:
                for page in pages:
                    yield page if isinstance(page, RemoteItem) else self._item(page)
            else:
                yield from self._batches(pages)

    def _pages(self) -> Generator[Page | RemoteItem]:
        """Every page, in order: the next is requested after the last arrived, or, once its
        request is known in advance, already in flight (see :class:`PageReadAhead`). A page too
        large to read comes as a failed item and ends pagination."""
        request = PageRequest(self.config.url, dict(self.config.params))
        if self.cursor is not None:
            self.cursor.apply(request)
        self.paginator.init_request(request)
        cfg, paginator = self.config, self.paginator
        if cfg.method == "GET" and cfg.read_ahead > 1 and isinstance(paginator, NumberedPaginator):
            self._ahead = PageReadAhead(self, paginator, cfg.read_ahead)
        try:
            for number in itertools.count(1):
                if cfg.max_pages and number > cfg.max_pages:
                    self.context.logger.warning("stopped at max_pages=%d", cfg.max_pages)
                    return
                try:
                    if self._ahead is not None:
                        page = self._ahead.take(number, request)
                    else:
                        page = self._fetch(request, number)
                except ResponseTooLarge as exc:  # a failed page in the manifest; no next page
                    self.unreadable_pages += 1
                    yield self._failed_item(number, request, exc)
                    return
                if paginator.is_repeat(page):
                    self.context.logger.warning(
                        "page %d repeats page %d: treating it as the end", number, number - 1
                    )
                    return
                yield page
                if not self._advance(page, request):
                    return
        finally:  # the end, an error, or the consumer gone: pages read ahead are dropped
            if self._ahead is not None:
                self._ahead.close()
                self._ahead = None

    def _fetch(self, request: PageRequest, number: int) -> Page:
        """Page ``number``, with the service's retries; called from read-ahead threads too."""
        return self.retrier.call(
            functools.partial(self._get, request, number),
            f"page {number} of {self._base_url(request.url)[1]}",
        )

    def _batches(self, pages: Iterator[Page | RemoteItem]) -> Iterator[RemoteItem]:
        """Pages as NDJSON batches of up to ``batch_pages`` lines and ``batch_bytes`` bytes
        (a bigger page is a batch of its own). A page that is not JSON, or could not be
        read, cannot be a line: it comes alone, as with ``batch_pages: 1``."""
        cfg = self.config
        batch = PageBatch(self.key_prefix, self._spool_path)
        try:
            for page in pages:
                if isinstance(page, RemoteItem) or page.data is json_path.MISSING:
                    if batch:
                        yield batch.take()
                    yield page if isinstance(page, RemoteItem) else self._item(page)
                    continue
                line, part = self._line(page)
                if batch and batch.size + len(line) > cfg.batch_bytes:
                    yield batch.take()
                batch.add(page.number, line, part)
                if len(batch) == cfg.batch_pages:
                    yield batch.take()
            if batch:
                yield batch.take()
        finally:
            batch.close()

    def _line(self, page: Page) -> tuple[bytes, RemoteItem]:
        """Page ``page`` as a batch line, and as the item it becomes when it lands alone."""
        url, fetched_at = mask_url(page.url), page.fetched_at.isoformat(timespec="milliseconds")
        line = response_line(url, page.response.status_code, fetched_at, page.response.content)
        details = {**self._details(page, url), "fetched_at": fetched_at}
        key = f"{self.key_prefix}/page-{page.number:06d}.ndjson"
        return line, RemoteItem(key=key, uri=url, size=len(line), extra={"details": details})

    def _advance(self, page: Page, request: PageRequest) -> bool:
        """Move ``request`` to the next page; False when there is none."""
        if page.records is None:
            self.unreadable_pages += 1
            self.context.logger.warning(
                "page %d: %s; pagination stops here", page.number, page.problem
            )
            return False
        if self.cursor is not None:
            self.cursor.observe(page.records)
        if not page.records and self.paginator.stop_on_empty_page:
            return False
        self.paginator.update_state(page)
        if self.paginator.has_next_page:
            before = request.url
            self.paginator.update_request(request)
            if request.url != before:  # every request is checked; this names the link
                self.client.policy.check_origin(request.url, f"the link to page {page.number + 1},")
        return self.paginator.has_next_page

    def _base_url(self, url: str) -> tuple[httpx.URL, str]:
        """``url`` parsed, and masked, once while it stays the same: page numbers, offsets
        and cursors change only the query parameters, which are kept apart. (Read once into
        a local: read-ahead threads call this too.)"""
        base = self._base
        if base is None or base[0] != url:
            base = self._base = (url, httpx.URL(url), mask_url(url))
        return base[1], base[2]

    def _get(self, request: PageRequest, number: int) -> Page:
        cfg = self.config
        http_request = self.client.build_request(
            cfg.method, self._base_url(request.url)[0], request.params, cfg.json_body
        )
        url = str(http_request.url)  # before auth: an api key in the query is not in it
        response = self.client.send(http_request)
        return read_page(number, url, response, cfg.records_path)

    def _item(self, page: Page) -> RemoteItem:
        body = page.response.content
        url = mask_url(page.url)
        extra: dict[str, Any] = {"details": self._details(page, url)}
        if len(body) > SPOOL_BYTES:
            extra["spooled"] = self._spool_path()
            extra["spooled"].write_bytes(body)
        else:
            extra["body"] = body
        return RemoteItem(
            key=f"{self.key_prefix}/page-{page.number:06d}.json",
            uri=url,
            size=len(body),
            extra=extra,
        )

    def _details(self, page: Page, masked_url: str) -> dict[str, Any]:
        details = {
            "page": page.number,
            "request_url": masked_url,
            "http_status": page.response.status_code,
            "records": None if page.records is None else len(page.records),
        }
        if page.problem:
            details["problem"] = page.problem
        return details

    def _failed_item(self, number: int, request: PageRequest, error: Exception) -> RemoteItem:
        details = {"page": number, "request_url": mask_url(request.url)}
        return RemoteItem(
            key=f"{self.key_prefix}/page-{number:06d}.json",
            uri=mask_url(request.url),
            extra={"error": error, "details": details},
        )

    def _spool_path(self) -> Path:
        """A new file name in this source's spool folder, for a body that waits on disk."""
        if self._spool is None:
            self._spool = tempfile.TemporaryDirectory(prefix="ms-api-")
        return Path(self._spool.name) / f"{next(self._spooled):08d}"

    def fetch(self, item: RemoteItem, dest: Path) -> None:
        if "error" in item.extra:
            raise item.extra["error"]
        if "spooled" in item.extra:
            shutil.move(item.extra["spooled"], dest)
        else:
            dest.write_bytes(item.extra["body"])

    def commit(self) -> None:
        if self.cursor is None:
            return
        if self.unreadable_pages:
            self.context.logger.warning(
                "cursor %s not advanced: %d page(s) could not be read",
                self.cursor.name,
                self.unreadable_pages,
            )
            return
        value = self.cursor.save()
        self.context.logger.info("cursor %s is now %s", self.cursor.name, value)

    def close(self) -> None:
        if self._ahead is not None:  # a listing left unfinished and not closed
            self._ahead.close()
        self.client.close()
        if self._spool is not None:
            self._spool.cleanup()


T = TypeVar("T")
READ_AHEAD_WAIT = 0.002  # seconds: see LatencyGate


class LatencyGate:
    """Whether the API is slow enough for read-ahead to pay. Handing a page to another
    thread costs ~0.25 ms of CPU here (threads, futures, the GIL changing hands), so against
    an API that answers in well under a millisecond (one on the same machine) read-ahead
    only burns CPU: measured on the two-core benchmark, +35 % CPU for no gain in time. So
    pages are fetched in the caller's thread until the median wait of the last ``window``
    (wall time not spent on this thread's CPU: the server, the network) reaches
    ``threshold``; from then on, for the rest of the listing, they are read ahead. The wait
    also holds time spent waiting for the GIL while files are validated in other threads
    (a burst of a few milliseconds every batch): the median of many pages, at least
    ``least`` of them, is not moved by such a burst, nor by a slow first connection."""

    def __init__(
        self, threshold: float = READ_AHEAD_WAIT, window: int = 16, least: int = 3
    ) -> None:
        self.threshold, self.least = threshold, least
        self.waits: deque[float] = deque(maxlen=window)
        self.open = False

    def timed(self, fetch: Callable[[], T]) -> T:
        """``fetch()``, its wait observed."""
        wall, cpu = time.perf_counter(), time.thread_time()
        result = fetch()
        self.observe((time.perf_counter() - wall) - (time.thread_time() - cpu))
        return result

    def observe(self, wait: float) -> None:
        self.waits.append(wait)
        if len(self.waits) >= self.least:
            self.open = self.open or statistics.median(self.waits) >= self.threshold


class PageReadAhead:
    """The pages of a numbered pagination whose values the paginator knows (it has read a
    total), requested by up to ``width`` threads before they are needed and taken strictly
    in page order.

    Each fetch is :meth:`ApiSource._fetch`, as without read-ahead: retries, the host's rate
    limit, the egress policy and the body cap apply to every request. Queued pages are
    always the ones right after the page taken last, never past ``max_pages``; a page
    whose value is not known yet (the first, or after a page without a total) is fetched
    in the caller's thread, and so is every page until the :class:`LatencyGate` opens.
    What the pagination does with a page (stop rules, loop guard, cursor) is left to the
    caller, page by page; pages fetched past where it stops are dropped by :meth:`close`.
    """

    def __init__(self, source: ApiSource, paginator: NumberedPaginator, width: int) -> None:
        self.source, self.paginator, self.width = source, paginator, width
        self.max_pages = source.config.max_pages
        self.pool = ThreadPoolExecutor(width, f"{source.context.job_id}-read-ahead")
        self.window: deque[tuple[int, Future[Page]]] = deque()  # consecutive page numbers
        self.last_queued = 0
        self.gate = LatencyGate(READ_AHEAD_WAIT)  # read here: tests set the module constant

    def take(self, number: int, request: PageRequest) -> Page:
        """Page ``number``, whose request ``request`` is (the paginator's value is its
        value); an error of its fetch is raised here. Pages after it are queued, up to
        ``width`` of them, before this returns."""
        gate = self.gate
        if not gate.open:
            page = gate.timed(lambda: self.source._fetch(request, number))
            if gate.open:
                self.source.context.logger.info(
                    "reading up to %d pages ahead from page %d on: pages wait %.1f ms on the API",
                    self.width, number + 1, 1000 * statistics.median(gate.waits),
                )  # fmt: skip
            return page
        self._queue(number, request)
        if self.window and self.window[0][0] == number:
            page = self.window.popleft()[1].result()
        else:  # not known in advance: fetched now, as without read-ahead
            page = self.source._fetch(request, number)
        self._queue(number, request)
        return page

    def _queue(self, number: int, request: PageRequest) -> None:
        """Queue the known pages from ``number`` on that are not yet, while fewer than
        ``width`` are waiting to be taken."""
        values = self.paginator.remaining_values()  # page number + i has the i-th value
        if values is None:
            return
        param = self.paginator.param
        for page_number in itertools.count(max(number, self.last_queued + 1)):
            # Not values[i] or len(values): a total may be past what they accept.
            value = values.start + (page_number - number) * values.step
            if value >= values.stop or len(self.window) >= self.width:
                return
            if self.max_pages and page_number > self.max_pages:
                return
            page_request = PageRequest(request.url, {**request.params, param: value})
            run = contextvars.copy_context().run  # keeps the job's log context
            future = self.pool.submit(run, self.source._fetch, page_request, page_number)
            self.window.append((page_number, future))
            self.last_queued = page_number

    def close(self) -> None:
        """Cancel the queued fetches, wait for the ones in flight and drop every page."""
        for _, future in self.window:
            future.cancel()
        self.window.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)


def read_page(number: int, url: str, response: httpx.Response, records_path: str | None) -> Page:
    """Parse a response and find its records; an unreadable one says why in ``problem``."""
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        return Page(number, url, response, problem=f"the response is not JSON ({exc})")
    records = json_path.lookup(data, records_path or json_path.ROOT)
    if records_path is None and isinstance(records, dict):
        records = [records]
    if records is json_path.MISSING:
        return Page(number, url, response, data, problem=f"no '{records_path}' in the response")
    if not isinstance(records, list):
        kind = type(records).__name__
        return Page(number, url, response, data, problem=f"'{records_path}' is a {kind}")
    return Page(number, url, response, data, records)
