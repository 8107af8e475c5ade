"""Scheduled runs: ``module-system serve`` runs each service with a ``schedule:`` when due.

:class:`Scheduler` decides what is due (a pure function of the clock, the schedules and what
is running); :func:`serve_schedules` runs it in a background thread; :func:`current` is the
hook other parts of the same process (the dashboard) read upcoming runs from.
"""

from module_system.scheduler.clock import Clock, SystemClock
from module_system.scheduler.scheduler import ScheduledJob, Scheduler, current, serve_schedules

__all__ = ["Clock", "ScheduledJob", "Scheduler", "SystemClock", "current", "serve_schedules"]
