"""One job per service at a time, across threads, processes and machines.

A lease is a row of ``ms_leases`` with an expiry. It is taken with one atomic upsert that
succeeds only when no row exists, the row has expired, or its holder is a process of this
host that no longer exists (a killed run need not wait for the expiry). The running job
renews it on a timer; a lease left by a crashed process on another machine expires after
``ttl`` seconds. Timestamps come from each machine's clock: keep clocks in sync (NTP);
the TTL (60 s by default) absorbs small skews.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from module_system.errors import FatalError, JobCancelled, TerminalError
from module_system.state import schema

log = logging.getLogger(__name__)
DEFAULT_TTL = 60.0
# Leases this process holds now: a row naming this process but not in here is stale
# (its release failed, e.g. while the state store was down), so it may be taken over.
_ACTIVE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()


class LeaseHeld(TerminalError):
    """Another run holds the service's lease."""

    default_reason = "lease_held"


@dataclass(frozen=True)
class LeaseInfo:
    service_id: str
    run_id: str
    job_id: str
    holder: str
    acquired_at: datetime
    expires_at: datetime

    def describe(self) -> str:
        since = self.acquired_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (
            f"service {self.service_id} is being run by run {self.run_id} "
            f"(job {self.job_id}) since {since}"
        )


def _holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ServiceLease:
    """The lease of one service for one job; use :meth:`acquire`, then :meth:`release`."""

    def __init__(
        self, store: Any, service_id: str, run_id: str, job_id: str, ttl: float = DEFAULT_TTL
    ) -> None:
        self.store, self.service_id, self.run_id, self.job_id = store, service_id, run_id, job_id
        self.ttl = ttl
        self.holder = _holder_id()
        self.lost = threading.Event()  # set when renewal finds the lease taken by another
        self.replaced: LeaseInfo | None = None  # a dead holder's lease this one took over
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self, wait: bool = False, cancel: threading.Event | None = None) -> None:
        """Take the lease, or raise :class:`LeaseHeld` (``wait``: poll until it is free)."""
        cancel = cancel or threading.Event()
        while not self._try_take():
            held = self.current()
            if held is None:
                continue  # released between our attempt and the read: try again
            if not wait:
                raise LeaseHeld(held.describe())
            log.info("%s; waiting for it to finish", held.describe())
            if cancel.wait(min(2.0, self.ttl / 4)):
                raise JobCancelled(f"cancelled while waiting for the lease of {self.service_id}")
        with _ACTIVE_LOCK:
            _ACTIVE.add(self.holder)
        self._renewer = threading.Thread(
            target=self._renew_loop, name=f"lease-{self.service_id}", daemon=True
        )
        self._renewer.start()

    def release(self) -> None:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self.holder)
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        table = schema.leases
        try:
            with self.store._writing() as conn:
                conn.execute(delete(table).where(table.c.service_id == self.service_id,
                                                 table.c.holder == self.holder))  # fmt: skip
        except Exception as exc:  # it expires by itself
            log.warning("could not release the lease of %s: %s", self.service_id, exc)

    def current(self) -> LeaseInfo | None:
        table = schema.leases
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(table).where(table.c.service_id == self.service_id)
            ).mappings().first()  # fmt: skip
        if row is None:
            return None
        return LeaseInfo(**{k: _aware(row[k]) for k in LeaseInfo.__dataclass_fields__})

    def check(self) -> None:
        """Raise if the lease was lost (another run took it after we failed to renew)."""
        if self.lost.is_set():
            raise FatalError(f"lost the lease of service {self.service_id}", reason="lease_lost")

    # ---------------------------------------------------------------------------------
    def _try_take(self) -> bool:
        before = self.current()  # if taken over: whose job died holding it
        if self._take():
            if before is not None and before.holder != self.holder:
                self.replaced = before
            return True
        return False

    def _take(self) -> bool:
        now = datetime.now(UTC)
        row = {
            "service_id": self.service_id, "run_id": self.run_id, "job_id": self.job_id,
            "holder": self.holder, "acquired_at": now,
            "expires_at": now + timedelta(seconds=self.ttl),
        }  # fmt: skip
        table = schema.leases
        stmt = schema.upsert_insert(self.store.engine)(table).values(row)
        stmt = stmt.on_conflict_do_update(
            index_elements=["service_id"],
            set_={k: stmt.excluded[k] for k in row if k != "service_id"},
            where=table.c.expires_at < now,
        ).returning(table.c.holder)
        with self.store._writing() as conn:
            if conn.execute(stmt).scalar() == self.holder:
                return True
            held = conn.execute(select(table.c.holder).where(
                table.c.service_id == self.service_id)).scalar()  # fmt: skip
            if held is None or not _stale_local_holder(held):
                return False
            # The holder was killed on this very host: take the lease over at once.
            log.warning("taking over the lease of %s from a stale holder (%s)",
                        self.service_id, held)  # fmt: skip
            taken = conn.execute(
                update(table)
                .where(table.c.service_id == self.service_id, table.c.holder == held)
                .values({k: v for k, v in row.items() if k != "service_id"})
            )
            return bool(taken.rowcount)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self._renew():
                    log.error("the lease of %s was taken by another run", self.service_id)
                    self.lost.set()
                    return
            except Exception as exc:  # the state store is down: keep trying until expiry
                log.warning("could not renew the lease of %s: %s", self.service_id, exc)

    def _renew(self) -> bool:
        table = schema.leases
        expires = datetime.now(UTC) + timedelta(seconds=self.ttl)
        with self.store._writing() as conn:
            done = conn.execute(
                update(table)
                .where(table.c.service_id == self.service_id, table.c.holder == self.holder)
                .values(expires_at=expires)
            )
        return bool(done.rowcount)


def _stale_local_holder(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        with _ACTIVE_LOCK:
            return holder not in _ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _aware(value: Any) -> Any:
    # SQLite returns naive datetimes for timezone-aware columns: they were stored in UTC.
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
