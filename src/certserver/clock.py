"""Time in one place: now (aware UTC, read only at the edges), how it is written, days left."""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime) -> str:
    """The one way certserver writes a time: ``2026-12-03T11:20:02Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def days_left(not_after: dt.datetime, now: dt.datetime) -> int:
    """Whole days until ``not_after``, rounded (negative once expired)."""
    return round((not_after - now) / dt.timedelta(days=1))
