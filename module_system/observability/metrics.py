"""Prometheus metrics of what the state store records.

The values come from the state store at scrape time (through a snapshot function the
caller passes in), not from counters kept in one process: the dashboard, a
``module-system run --metrics-port`` and any number of workers sharing a PostgreSQL store
all expose the same numbers, and a restart loses nothing. ``prune`` lowers them, which
Prometheus reads as a counter reset.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from module_system.observability.metric_values import DURATION_BUCKETS, MetricsSnapshot
from module_system.observability.redaction import redact

log = logging.getLogger(__name__)


class StateCollector(Collector):
    """Turns a :class:`MetricsSnapshot` into metric families on every scrape.

    A snapshot is reused for ``ttl`` seconds, so several scrapers do not each query the
    store; a store that cannot be read gives ``module_system_state_up 0``.
    """

    def __init__(self, snapshot: Callable[[], MetricsSnapshot], ttl: float = 2.0) -> None:
        self._snapshot = snapshot
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, MetricsSnapshot] | None = None

    def describe(self) -> list[Metric]:
        return []  # nothing to query at registration time

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("module_system_state_up", "1 when the state store was readable")
        try:
            snap = self._current()
        except Exception as exc:  # a scrape must answer even when the store is down
            log.error("metrics: cannot read the state store: %s", redact(str(exc)))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _families(snap)

    def _current(self) -> MetricsSnapshot:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self._ttl:
                self._cached = (now, self._snapshot())
            return self._cached[1]


def _families(snap: MetricsSnapshot) -> Iterator[Metric]:
    yield _family(CounterMetricFamily, "module_system_files", "Files by job outcome",
                  ["service", "source_type", "outcome"], snap.files)  # fmt: skip
    yield _family(CounterMetricFamily, "module_system_bytes", "Bytes landed",
                  ["service"], {(k,): v for k, v in snap.bytes.items()})  # fmt: skip
    yield _family(CounterMetricFamily, "module_system_jobs", "Jobs by status",
                  ["service", "status"], snap.jobs)  # fmt: skip
    yield _family(CounterMetricFamily, "module_system_runs", "Runs by status",
                  ["status"], {(k,): v for k, v in snap.runs.items()})  # fmt: skip
    yield _durations(snap)
    last_success = {(k,): v for k, v in snap.last_success.items()}
    yield _family(GaugeMetricFamily, "module_system_last_success_timestamp_seconds",
                  "When the service's last job completed", ["service"], last_success)  # fmt: skip


def _family(
    kind: Callable[..., Any], name: str, doc: str, labels: list[str], values: Mapping[Any, float]
) -> Metric:
    family = kind(name, doc, labels=labels)
    for label_values, value in sorted(values.items()):
        family.add_metric(list(label_values), value)
    return cast(Metric, family)


def _durations(snap: MetricsSnapshot) -> Metric:
    family = HistogramMetricFamily("module_system_job_duration_seconds",
                                   "Duration of finished jobs", labels=["service"])  # fmt: skip
    for service, stats in sorted(snap.durations.items()):
        buckets: list[tuple[str, float]] = [
            (_bound(b), n) for b, n in zip(DURATION_BUCKETS, stats.buckets, strict=True)
        ]
        buckets.append(("+Inf", stats.count))
        family.add_metric([service], buckets, stats.total_seconds)
    return family


def _bound(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def metrics_registry(snapshot: Callable[[], MetricsSnapshot]) -> CollectorRegistry:
    """A registry holding only the state store's metrics (not the process defaults)."""
    registry = CollectorRegistry()
    registry.register(StateCollector(snapshot))
    return registry


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> Callable[[], None]:
    """Serve ``/metrics`` on ``host:port`` in a thread; returns the function stopping it."""
    server: Any
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
