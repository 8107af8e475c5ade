"""The values the Prometheus metrics show, as plain data: the state store's queries fill
them in without needing ``prometheus_client`` (an extra); :mod:`.metrics` exposes them."""

from __future__ import annotations

from dataclasses import dataclass, field

# Job durations, in seconds: from a quick API pull to a nightly bulk copy.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
# File outcomes, as the state store's job counts name them.
OUTCOME_COUNTS = {
    "landed": "valid",
    "quarantined": "invalid",
    "skipped": "skipped",
    "ignored": "ignored",
    "vanished": "vanished",
    "failed": "failed",
}


@dataclass
class DurationStats:
    """One service's finished jobs: cumulative counts per bucket bound, sum and count."""

    buckets: list[int]  # len(DURATION_BUCKETS), cumulative
    total_seconds: float
    count: int


@dataclass
class MetricsSnapshot:
    files: dict[tuple[str, str, str], int] = field(default_factory=dict)  # service, type, outcome
    bytes: dict[str, int] = field(default_factory=dict)  # by service
    jobs: dict[tuple[str, str], int] = field(default_factory=dict)  # service, status
    durations: dict[str, DurationStats] = field(default_factory=dict)  # by service
    last_success: dict[str, float] = field(default_factory=dict)  # unix time, by service
    runs: dict[str, int] = field(default_factory=dict)  # by status
