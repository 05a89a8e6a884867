"""Quiet hours: a proactive message due at night waits for the morning (local time)."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from bot.quiet_hours import is_quiet, send_after

NIGHT = (time(21, 0), time(8, 0))


@pytest.mark.parametrize(
    ("local", "window", "quiet"),
    [
        (time(20, 59), NIGHT, False),
        (time(21, 0), NIGHT, True),
        (time(23, 30), NIGHT, True),
        (time(3, 0), NIGHT, True),
        (time(7, 59), NIGHT, True),
        (time(8, 0), NIGHT, False),
        (time(13, 0), (time(12, 0), time(14, 0)), True),  # a window inside one day
        (time(14, 0), (time(12, 0), time(14, 0)), False),
        (time(3, 0), (time(0, 0), time(0, 0)), False),  # start == end: no quiet hours
    ],
)
def test_quiet_window(local: time, window: tuple[time, time], quiet: bool) -> None:
    assert is_quiet(local, *window) is quiet


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 15:00 in Toronto (EST, UTC-5): sent now.
        (datetime(2026, 1, 15, 20, 0, tzinfo=UTC), datetime(2026, 1, 15, 20, 0, tzinfo=UTC)),
        # 23:00 in Toronto: held until 08:00 the next morning = 13:00 UTC.
        (datetime(2026, 1, 16, 4, 0, tzinfo=UTC), datetime(2026, 1, 16, 13, 0, tzinfo=UTC)),
        # 02:00 in Toronto: held until 08:00 the same morning.
        (datetime(2026, 1, 16, 7, 0, tzinfo=UTC), datetime(2026, 1, 16, 13, 0, tzinfo=UTC)),
        # Summer time (EDT, UTC-4): 06:30 local → 08:00 local = 12:00 UTC.
        (datetime(2026, 7, 1, 10, 30, tzinfo=UTC), datetime(2026, 7, 1, 12, 0, tzinfo=UTC)),
    ],
)
def test_send_after_holds_night_messages_for_the_morning(now: datetime, expected: datetime) -> None:
    assert send_after(now, *NIGHT, "America/Toronto") == expected
