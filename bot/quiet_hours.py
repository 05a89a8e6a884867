"""Quiet hours: proactive messages wait for the morning in the citizens' time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


def is_quiet(local: time, start: time, end: time) -> bool:
    """Within [start, end), where the window may cross midnight (21:00-08:00)."""
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def send_after(now: datetime, start: time, end: time, zone: str) -> datetime:
    """``now`` outside quiet hours, else the (UTC) moment they end."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    if not is_quiet(local.time(), start, end):
        return now
    morning = datetime.combine(local.date(), end, tzinfo=tz)
    if morning <= local:
        morning = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=tz)
    return morning.astimezone(UTC)
