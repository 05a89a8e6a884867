"""Office hours: live chats and call-back slots follow local time, holidays and DST."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from bot.office_hours import OfficeHours
from bot.settings import Settings

TORONTO = ZoneInfo("America/Toronto")
WEEKDAYS = "mon-fri 08:00-18:00"
SPLIT = "mon 08:00-12:00; mon 13:00-17:00"
ALWAYS = "mon-sun 00:00-24:00"
CHRISTMAS = (date(2026, 12, 25), date(2026, 12, 28))  # a Friday and the Monday after
# 2026-01-12 is a Monday; Toronto is on EST (UTC-5) then.
# 2026-03-08 (Sunday) 02:00 EST → 03:00 EDT; 2026-11-01 (Sunday) 02:00 EDT → 01:00 EST.


def local(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=TORONTO, fold=fold)  # type: ignore[misc]


def in_utc(moments: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Aware datetimes in the repeated hour never equal one in another zone (PEP 495)."""
    return [(start.astimezone(UTC), end.astimezone(UTC)) for start, end in moments]


def hours(spec: str, holidays: tuple[date, ...] = ()) -> OfficeHours:
    return OfficeHours.parse(spec, holidays, "America/Toronto")


def window(start: int, end: int) -> tuple[time, time]:
    return (time(start), time.max if end == 24 else time(end))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (WEEKDAYS, {day: (window(8, 18),) for day in range(5)}),
        (
            "MON-Fri 08:00-18:00; sat 09:00-12:00",
            {**{day: (window(8, 18),) for day in range(5)}, 5: (window(9, 12),)},
        ),
        (SPLIT, {0: (window(8, 12), window(13, 17))}),
        ("mon 13:00-17:00; mon 08:00-12:00", {0: (window(8, 12), window(13, 17))}),
        ("sat,sun 10:00-14:00", {5: (window(10, 14),), 6: (window(10, 14),)}),
        ("sat, sun 10:00-14:00", {5: (window(10, 14),), 6: (window(10, 14),)}),
        ("fri-mon 09:00-17:00", {day: (window(9, 17),) for day in (4, 5, 6, 0)}),
        ("monday 8:00 - 9:00;", {0: (window(8, 9),)}),
        (ALWAYS, {day: (window(0, 24),) for day in range(7)}),
        ("", {}),
        ("closed", {}),
        ("  Closed ", {}),
    ],
)
def test_parse_valid_specs(spec: str, expected: dict[int, tuple[tuple[time, time], ...]]) -> None:
    assert dict(hours(spec).windows) == expected


@pytest.mark.parametrize(
    ("spec", "bad_part"),
    [
        ("funday 08:00-18:00", "funday 08:00-18:00"),
        ("mon-fry 08:00-18:00", "mon-fry 08:00-18:00"),
        ("mon- 08:00-09:00", "mon- 08:00-09:00"),
        (",mon 08:00-09:00", ",mon 08:00-09:00"),
        ("mon 18:00-08:00", "mon 18:00-08:00"),
        ("mon 08:00-08:00", "mon 08:00-08:00"),
        ("mon 25:00-26:00", "mon 25:00-26:00"),
        ("mon 08:60-09:00", "mon 08:60-09:00"),
        ("mon 24:00-24:00", "mon 24:00-24:00"),
        ("mon", "mon"),
        ("08:00-18:00", "08:00-18:00"),
        ("mon 0800-1800", "mon 0800-1800"),
        ("mon 08:00-18:00 sharp", "mon 08:00-18:00 sharp"),
        ("mon-fri 08:00-18:00; sat", "sat"),
        ("always", "always"),
    ],
)
def test_parse_refuses_malformed_specs_naming_the_part(spec: str, bad_part: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad_part))):
        hours(spec)


def test_parse_refuses_an_unknown_time_zone() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        OfficeHours.parse(WEEKDAYS, (), "Mars/Olympus")


@pytest.mark.parametrize(
    ("spec", "holidays", "now", "expected"),
    [
        # Window edges: the start is inside, the end is not.
        (WEEKDAYS, (), local(2026, 1, 12, 7, 59, 59), False),
        (WEEKDAYS, (), local(2026, 1, 12, 8, 0), True),
        (WEEKDAYS, (), local(2026, 1, 12, 17, 59, 59), True),
        (WEEKDAYS, (), local(2026, 1, 12, 18, 0), False),
        # Any zone in, Toronto's wall clock out: 13:00 UTC is 08:00 EST.
        (WEEKDAYS, (), datetime(2026, 1, 12, 12, 59, tzinfo=UTC), False),
        (WEEKDAYS, (), datetime(2026, 1, 12, 13, 0, tzinfo=UTC), True),
        # Weekend.
        (WEEKDAYS, (), local(2026, 1, 17, 12, 0), False),
        (WEEKDAYS, (), local(2026, 1, 18, 12, 0), False),
        # Holidays (local date), and the day before is a normal day.
        (WEEKDAYS, CHRISTMAS, local(2026, 12, 25, 10, 0), False),
        (WEEKDAYS, CHRISTMAS, local(2026, 12, 24, 10, 0), True),
        # 2026-12-25 15:00 UTC is 10:00 in Toronto: a holiday there.
        (WEEKDAYS, CHRISTMAS, datetime(2026, 12, 25, 15, 0, tzinfo=UTC), False),
        # Several windows a day: closed over lunch.
        (SPLIT, (), local(2026, 1, 12, 11, 59), True),
        (SPLIT, (), local(2026, 1, 12, 12, 0), False),
        (SPLIT, (), local(2026, 1, 12, 12, 59), False),
        (SPLIT, (), local(2026, 1, 12, 13, 0), True),
        (SPLIT, (), local(2026, 1, 13, 10, 0), False),
        # "fri-mon" wraps over the weekend.
        ("fri-mon 09:00-17:00", (), local(2026, 1, 16, 10, 0), True),
        ("fri-mon 09:00-17:00", (), local(2026, 1, 17, 10, 0), True),
        ("fri-mon 09:00-17:00", (), local(2026, 1, 18, 10, 0), True),
        ("fri-mon 09:00-17:00", (), local(2026, 1, 19, 10, 0), True),
        ("fri-mon 09:00-17:00", (), local(2026, 1, 20, 10, 0), False),
        ("fri-mon 09:00-17:00", (), local(2026, 1, 22, 10, 0), False),
        # Always open, through midnight; never open.
        (ALWAYS, (), local(2026, 1, 18, 23, 59, 59), True),
        (ALWAYS, (), local(2026, 1, 19, 0, 0), True),
        (ALWAYS, (), local(2026, 3, 8, 3, 0), True),
        ("closed", (), local(2026, 1, 12, 10, 0), False),
        # Spring forward: 08:00 EDT is 12:00 UTC, not 13:00.
        ("sun 08:00-18:00", (), datetime(2026, 3, 8, 11, 59, tzinfo=UTC), False),
        ("sun 08:00-18:00", (), datetime(2026, 3, 8, 12, 0, tzinfo=UTC), True),
        ("sun 08:00-18:00", (), datetime(2026, 3, 8, 21, 59, tzinfo=UTC), True),
        ("sun 08:00-18:00", (), datetime(2026, 3, 8, 22, 0, tzinfo=UTC), False),
        # A window over the skipped hour: 01:00 EST to 04:00 EDT, two real hours.
        ("sun 01:00-04:00", (), datetime(2026, 3, 8, 6, 30, tzinfo=UTC), True),  # 01:30 EST
        ("sun 01:00-04:00", (), datetime(2026, 3, 8, 7, 30, tzinfo=UTC), True),  # 03:30 EDT
        ("sun 01:00-04:00", (), datetime(2026, 3, 8, 8, 0, tzinfo=UTC), False),  # 04:00 EDT
        # Fall back: 08:00 EST is 13:00 UTC, not 12:00.
        ("sun 08:00-18:00", (), datetime(2026, 11, 1, 12, 59, tzinfo=UTC), False),
        ("sun 08:00-18:00", (), datetime(2026, 11, 1, 13, 0, tzinfo=UTC), True),
        ("sun 08:00-18:00", (), datetime(2026, 11, 1, 22, 59, tzinfo=UTC), True),
        ("sun 08:00-18:00", (), datetime(2026, 11, 1, 23, 0, tzinfo=UTC), False),
        # The repeated hour: "01:30" is its first occurrence (EDT), so the second 01:15
        # (EST) is after the end, though its wall time is earlier.
        ("sun 00:30-01:30", (), local(2026, 11, 1, 1, 15), True),
        ("sun 00:30-01:30", (), local(2026, 11, 1, 1, 15, fold=1), False),
    ],
)
def test_is_open(spec: str, holidays: tuple[date, ...], now: datetime, expected: bool) -> None:
    assert hours(spec, holidays).is_open(now) is expected


@pytest.mark.parametrize(
    ("spec", "holidays", "now", "expected"),
    [
        # Friday evening → Monday 08:00 (13:00 UTC).
        (WEEKDAYS, (), local(2026, 1, 16, 18, 30), local(2026, 1, 19, 8, 0)),
        (WEEKDAYS, (), local(2026, 1, 16, 18, 0), local(2026, 1, 19, 8, 0)),
        (WEEKDAYS, (), local(2026, 1, 17, 12, 0), local(2026, 1, 19, 8, 0)),
        (WEEKDAYS, (), local(2026, 1, 12, 7, 0), local(2026, 1, 12, 8, 0)),
        # Open now: now.
        (WEEKDAYS, (), local(2026, 1, 12, 10, 0), local(2026, 1, 12, 10, 0)),
        (WEEKDAYS, (), local(2026, 1, 12, 8, 0), local(2026, 1, 12, 8, 0)),
        # Holidays on Friday and Monday are skipped: Thursday evening → Tuesday.
        (WEEKDAYS, CHRISTMAS, local(2026, 12, 24, 18, 0), local(2026, 12, 29, 8, 0)),
        # After lunch.
        (SPLIT, (), local(2026, 1, 12, 12, 30), local(2026, 1, 12, 13, 0)),
        (SPLIT, (), local(2026, 1, 12, 17, 0), local(2026, 1, 19, 8, 0)),
        # Friday evening before the spring change → Monday 08:00 EDT, 12:00 UTC.
        (WEEKDAYS, (), local(2026, 3, 6, 19, 0), datetime(2026, 3, 9, 12, 0, tzinfo=UTC)),
        # Friday evening before the autumn change → Monday 08:00 EST, 13:00 UTC.
        (WEEKDAYS, (), local(2026, 10, 30, 19, 0), datetime(2026, 11, 2, 13, 0, tzinfo=UTC)),
        (ALWAYS, (), local(2026, 1, 17, 3, 0), local(2026, 1, 17, 3, 0)),
        ("closed", (), local(2026, 1, 12, 10, 0), None),
        ("", (), local(2026, 1, 12, 10, 0), None),
    ],
)
def test_next_opening(
    spec: str, holidays: tuple[date, ...], now: datetime, expected: datetime | None
) -> None:
    opening = hours(spec, holidays).next_opening(now)
    assert opening == expected
    if opening is not None:
        assert opening.tzinfo is TORONTO
        assert opening.utcoffset() == expected.astimezone(TORONTO).utcoffset()  # type: ignore[union-attr]


def test_next_opening_is_none_when_every_open_day_is_a_holiday() -> None:
    office = hours("mon 08:00-09:00", (date(2026, 1, 12),))
    assert office.next_opening(local(2026, 1, 12, 7, 0)) == local(2026, 1, 19, 8, 0)
    mondays = tuple(date(2026, 1, 12) + timedelta(weeks=week) for week in range(60))
    assert hours("mon 08:00-09:00", mondays).next_opening(local(2026, 1, 12, 7, 0)) is None


@pytest.mark.parametrize(
    ("spec", "now", "expected"),
    [
        (WEEKDAYS, local(2026, 1, 12, 10, 0), local(2026, 1, 12, 18, 0)),
        (WEEKDAYS, local(2026, 1, 12, 8, 0), local(2026, 1, 12, 18, 0)),
        (WEEKDAYS, local(2026, 1, 12, 18, 0), None),
        (WEEKDAYS, local(2026, 1, 17, 10, 0), None),
        (SPLIT, local(2026, 1, 12, 11, 0), local(2026, 1, 12, 12, 0)),
        (SPLIT, local(2026, 1, 12, 12, 30), None),
        # Touching windows are one opening, across midnight too.
        ("mon 08:00-12:00; mon 12:00-17:00", local(2026, 1, 12, 11, 0), local(2026, 1, 12, 17, 0)),
        ("fri 18:00-24:00; sat 00:00-02:00", local(2026, 1, 16, 23, 0), local(2026, 1, 17, 2, 0)),
        # Over the skipped hour: 04:00 EDT is 08:00 UTC.
        ("sun 00:00-04:00", local(2026, 3, 8, 1, 0), datetime(2026, 3, 8, 8, 0, tzinfo=UTC)),
        ("closed", local(2026, 1, 12, 10, 0), None),
    ],
)
def test_closes_at(spec: str, now: datetime, expected: datetime | None) -> None:
    assert hours(spec).closes_at(now) == expected


def test_closes_at_of_an_always_open_schedule_is_far_away() -> None:
    closes = hours(ALWAYS).closes_at(local(2026, 1, 12, 10, 0))
    assert closes is not None
    assert closes - local(2026, 1, 12, 10, 0) > timedelta(days=365)


def slot(start: datetime, length: timedelta = timedelta(hours=1)) -> tuple[datetime, datetime]:
    return (start, start + length)


@pytest.mark.parametrize(
    ("spec", "holidays", "now", "options", "expected"),
    [
        # 09:10 + 30 minutes' lead = 09:40: the next whole hour.
        (
            WEEKDAYS,
            (),
            local(2026, 1, 12, 9, 10),
            {},
            [slot(local(2026, 1, 12, hour)) for hour in (10, 11, 12, 13)],
        ),
        # 09:30 + lead = 10:00 exactly.
        (
            WEEKDAYS,
            (),
            local(2026, 1, 12, 9, 30),
            {},
            [slot(local(2026, 1, 12, hour)) for hour in (10, 11, 12, 13)],
        ),
        # No slot runs past closing: 17:00-18:00, then the next morning.
        (
            WEEKDAYS,
            (),
            local(2026, 1, 12, 16, 0),
            {},
            [slot(local(2026, 1, 12, 17))] + [slot(local(2026, 1, 13, h)) for h in (8, 9, 10)],
        ),
        # 17:01 + lead is too late for a whole slot on Friday: Monday morning.
        (
            WEEKDAYS,
            (),
            local(2026, 1, 16, 17, 1),
            {"count": 2},
            [slot(local(2026, 1, 19, hour)) for hour in (8, 9)],
        ),
        # Never on a holiday: Thursday evening → Tuesday.
        (
            WEEKDAYS,
            CHRISTMAS,
            local(2026, 12, 24, 17, 0),
            {"count": 2},
            [slot(local(2026, 12, 29, hour)) for hour in (8, 9)],
        ),
        # A longer lead, a different count.
        (
            WEEKDAYS,
            (),
            local(2026, 1, 12, 9, 0),
            {"lead": timedelta(hours=3), "count": 3},
            [slot(local(2026, 1, 12, hour)) for hour in (12, 13, 14)],
        ),
        # No lead: a slot may start now, if now is on the hour.
        (
            WEEKDAYS,
            (),
            local(2026, 1, 12, 10, 0),
            {"lead": timedelta(0), "count": 1},
            [slot(local(2026, 1, 12, 10))],
        ),
        # Half-hour slots sit on the half-hour grid.
        (
            WEEKDAYS,
            (),
            local(2026, 1, 12, 9, 10),
            {"length": timedelta(minutes=30), "count": 3},
            [slot(local(2026, 1, 12, 10, minute), timedelta(minutes=30)) for minute in (0, 30)]
            + [slot(local(2026, 1, 12, 11, 0), timedelta(minutes=30))],
        ),
        # A window starting off the hour offers its start, then whole hours.
        (
            "mon 08:30-11:00",
            (),
            local(2026, 1, 11, 12, 0),
            {"count": 3},
            [
                slot(local(2026, 1, 12, 8, 30)),
                slot(local(2026, 1, 12, 10)),
                slot(local(2026, 1, 19, 8, 30)),
            ],
        ),
        # Lunch splits the day.
        (
            SPLIT,
            (),
            local(2026, 1, 12, 10, 0),
            {"count": 3},
            [slot(local(2026, 1, 12, hour)) for hour in (11, 13, 14)],
        ),
        # Spring forward: Monday 08:00 EDT is 12:00 UTC.
        (
            WEEKDAYS,
            (),
            local(2026, 3, 6, 17, 30),
            {"count": 2},
            [slot(datetime(2026, 3, 9, hour, tzinfo=UTC)) for hour in (12, 13)],
        ),
        # Through the skipped hour: slots start at 00:00, 01:00, 03:00, 04:00 local and each
        # lasts one real hour (01:00 EST to 03:00 EDT).
        (
            ALWAYS,
            (),
            local(2026, 3, 7, 23, 30),
            {},
            [slot(datetime(2026, 3, 8, hour, tzinfo=UTC)) for hour in (5, 6, 7, 8)],
        ),
        # Through the repeated hour: 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST.
        (
            ALWAYS,
            (),
            local(2026, 10, 31, 23, 30),
            {},
            [slot(datetime(2026, 11, 1, hour, tzinfo=UTC)) for hour in (4, 5, 6, 7)],
        ),
        ("closed", (), local(2026, 1, 12, 9, 0), {}, []),
        (WEEKDAYS, (), local(2026, 1, 12, 9, 0), {"count": 0}, []),
    ],
)
def test_callback_slots(
    spec: str,
    holidays: tuple[date, ...],
    now: datetime,
    options: dict[str, object],
    expected: list[tuple[datetime, datetime]],
) -> None:
    office = hours(spec, holidays)
    slots = office.callback_slots(now, **options)  # type: ignore[arg-type]
    assert in_utc(slots) == in_utc(expected)
    lead = options.get("lead", timedelta(minutes=30))
    length = options.get("length", timedelta(hours=1))
    for start, end in slots:
        assert start.tzinfo is TORONTO and end.tzinfo is TORONTO
        assert start >= now + lead  # type: ignore[operator]
        # Same-zone subtraction is by wall clock: measure the real duration in UTC.
        assert end.astimezone(UTC) - start.astimezone(UTC) == length
        assert office.is_open(start) and office.is_open(end - timedelta(microseconds=1))


@pytest.mark.parametrize(
    ("now", "local_starts"),
    [
        (local(2026, 3, 7, 23, 30), [(0, 0), (1, 0), (3, 0), (4, 0)]),  # 02:00 never happens
        (local(2026, 10, 31, 23, 30), [(0, 0), (1, 0), (1, 1), (2, 0)]),  # 01:00 twice
    ],
)
def test_callback_slots_read_as_local_whole_hours_over_dst(
    now: datetime, local_starts: list[tuple[int, int]]
) -> None:
    slots = hours(ALWAYS).callback_slots(now)
    assert [(start.hour, start.fold) for start, _ in slots] == local_starts


@pytest.mark.parametrize("options", [{"length": timedelta(0)}, {"lead": timedelta(minutes=-1)}])
def test_callback_slots_refuse_nonsense(options: dict[str, timedelta]) -> None:
    with pytest.raises(ValueError, match="slot"):
        hours(WEEKDAYS).callback_slots(local(2026, 1, 12, 9, 0), **options)  # type: ignore[arg-type]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        hours(WEEKDAYS).is_open(datetime(2026, 1, 12, 10, 0))


def test_settings_refuse_a_bad_office_hours_spec() -> None:
    with pytest.raises(ValidationError, match="25:00"):
        Settings(_env_file=None, office_hours="mon 25:00-26:00")  # type: ignore[call-arg]


def test_settings_build_office_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFICE_HOURS", "mon-fri 09:00-17:00; sat 10:00-12:00")
    monkeypatch.setenv("HOLIDAYS", '["2026-12-25", "2026-12-28"]')
    monkeypatch.setenv("TIMEZONE", "America/Toronto")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.holidays == CHRISTMAS
    office = OfficeHours.from_settings(settings)
    assert office.zone == TORONTO
    assert office.holidays == frozenset(CHRISTMAS)
    assert office.is_open(local(2026, 1, 17, 11, 0))
    assert not office.is_open(local(2026, 12, 25, 11, 0))


def test_default_settings_are_weekdays_eight_to_six(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OFFICE_HOURS", "HOLIDAYS"):
        monkeypatch.delenv(name, raising=False)
    office = OfficeHours.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert dict(office.windows) == {day: ((time(8), time(18)),) for day in range(5)}
