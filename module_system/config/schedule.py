"""A service's ``schedule:``: when ``module-system serve`` runs it.

``schedule: {cron: "0 2 * * *", timezone: Europe/Berlin}`` runs the service at 02:00 Berlin
time every day. Cron has five fields (minute hour day-of-month month day-of-week) with the
usual ``*``, lists, ranges, steps, names (``mon``, ``jan``) and ``L``; slots are computed
in the given time zone the way cron does across daylight-saving changes (a time skipped by
the change runs when the clocks have moved on, a repeated one runs once).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator


class ScheduleConfig(BaseModel):
    """When ``module-system serve`` runs the service: a cron expression in a time zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: str = Field(
        description="five fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * *'"
    )
    timezone: str = Field("UTC", description="IANA time zone the cron fields are read in")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}' (an IANA name such as UTC)") from None
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        try:
            CronSim(value, datetime.now(UTC))
        except CronSimError as exc:
            raise ValueError(f"not a cron expression: {exc}") from None
        return value

    def next_after(self, moment: datetime) -> datetime:
        """The first slot strictly after ``moment`` (an aware datetime), in UTC."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        return next(CronSim(self.cron, local)).astimezone(UTC)

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        """The latest slot at or before ``moment``, in UTC (None if there is none)."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        slot = next(CronSim(self.cron, local, reverse=True), None)
        if slot is None:
            return None
        after = self.next_after(slot)  # reverse iteration excludes ``moment`` itself
        return after if after <= moment else slot.astimezone(UTC)
