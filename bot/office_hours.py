"""Office hours: when the call centre takes live chats, and the call-back slots it can offer.

Windows are local wall times in one time zone, so "08:00" stays 08:00 across daylight-saving
changes; every comparison is made in UTC, because aware datetimes sharing a ``tzinfo``
compare by wall time and would get the repeated or skipped hour wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from bot.settings import Settings

# How far ahead openings are looked for: a year and a bit covers any weekly schedule and
# a run of holidays, and bounds the search when the schedule never opens.
HORIZON_DAYS = 370

_DAYS = {
    name: index
    for index, names in enumerate(
        (
            ("mon", "monday"),
            ("tue", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
            ("sun", "sunday"),
        )
    )
    for name in names
}
_PART = re.compile(r"(?P<days>\S.*?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})")
_TIME = re.compile(r"(?P<hour>\d{1,2}):(?P<minute>\d{2})")
# A window ending at "24:00" is stored with this end: the following midnight.
END_OF_DAY = time.max

Window = tuple[time, time]


def _parse_time(text: str, part: str, *, end: bool) -> time:
    match = _TIME.fullmatch(text)
    hour, minute = (int(match["hour"]), int(match["minute"])) if match else (-1, -1)
    if end and (hour, minute) == (24, 0):
        return END_OF_DAY
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ValueError(f"office hours {part!r}: {text!r} is not a time (HH:MM, 00:00-24:00)")
    return time(hour, minute)


def _parse_days(text: str, part: str) -> list[int]:
    days: list[int] = []
    for item in text.lower().split(","):
        first, sep, last = (bound.strip() for bound in item.partition("-"))
        if first not in _DAYS or (sep and last not in _DAYS):
            raise ValueError(
                f"office hours {part!r}: {item.strip()!r} is not a day or a day range "
                "(mon, tue, wed, thu, fri, sat, sun; e.g. mon-fri, sat,sun, fri-mon)"
            )
        start = _DAYS[first]
        length = (_DAYS[last] - start) % 7 + 1 if sep else 1  # "fri-mon" wraps over the weekend
        days.extend((start + offset) % 7 for offset in range(length))
    return days


@dataclass(frozen=True, slots=True)
class OfficeHours:
    """A weekly schedule of local opening windows, closed on holidays."""

    # Weekday (0 = Monday) → (start, end) local wall times, sorted; END_OF_DAY is 24:00.
    windows: Mapping[int, tuple[Window, ...]]
    holidays: frozenset[date]
    zone: ZoneInfo

    @classmethod
    def parse(cls, spec: str, holidays: Iterable[date], timezone: str) -> OfficeHours:
        """Read "mon-fri 08:00-18:00; sat 09:00-12:00"; "" or "closed" is never open.

        Raises ValueError naming the malformed part, so a bad setting stops start-up.
        """
        try:
            zone = ZoneInfo(timezone)
        except (ValueError, KeyError) as error:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {timezone!r}") from error
        windows: dict[int, list[Window]] = {}
        if spec.strip().lower() not in ("", "closed"):
            for raw in spec.split(";"):
                part = raw.strip()
                if not part:
                    continue  # a trailing ";" is harmless
                match = _PART.fullmatch(part)
                if match is None:
                    raise ValueError(
                        f"office hours {part!r}: expected '<days> HH:MM-HH:MM', "
                        "e.g. 'mon-fri 08:00-18:00'"
                    )
                start = _parse_time(match["start"], part, end=False)
                end = _parse_time(match["end"], part, end=True)
                if start >= end:
                    raise ValueError(f"office hours {part!r}: the start must be before the end")
                for day in _parse_days(match["days"], part):
                    windows.setdefault(day, []).append((start, end))
        return cls(
            windows=MappingProxyType({day: tuple(sorted(spans)) for day, spans in windows.items()}),
            holidays=frozenset(holidays),
            zone=zone,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OfficeHours:
        return cls.parse(settings.office_hours, settings.holidays, settings.timezone)

    def is_open(self, now: datetime) -> bool:
        """Whether a live chat is taken at ``now`` (aware, any zone); start in, end out."""
        instant = _utc(now)
        day = instant.astimezone(self.zone).date()
        return any(start <= instant < end for start, end in self._day_spans(day))

    def next_opening(self, now: datetime) -> datetime | None:
        """``now`` when open, else the next opening; None when none within the horizon."""
        instant = _utc(now)
        for start, end in self._spans(instant):
            if end > instant:
                return max(start, instant).astimezone(self.zone)
        return None

    def closes_at(self, now: datetime) -> datetime | None:
        """When the current opening ends (None when closed now).

        Touching or overlapping windows count as one, across midnight too
        ("fri 18:00-24:00; sat 00:00-02:00" closes Saturday 02:00); a schedule that
        never closes reports the end of the search horizon.
        """
        instant = _utc(now)
        for start, end in self._spans(instant):
            if end > instant:
                return end.astimezone(self.zone) if start <= instant else None
        return None

    def callback_slots(
        self,
        now: datetime,
        count: int = 4,
        length: timedelta = timedelta(hours=1),
        lead: timedelta = timedelta(minutes=30),
    ) -> list[tuple[datetime, datetime]]:
        """The next ``count`` call-back slots a citizen can choose, earliest first.

        Slots last ``length``, start at least ``lead`` after ``now``, lie wholly inside an
        opening (never on a holiday) and do not overlap. Each starts at an opening's start
        or on the local grid: whole hours, or multiples of ``length`` when it divides an
        hour (a 30-minute slot may start at :00 or :30), so the times read naturally.
        """
        if length <= timedelta(0) or lead < timedelta(0):
            raise ValueError("a slot needs a positive length and a non-negative lead")
        step = length if timedelta(hours=1) % length == timedelta(0) else timedelta(hours=1)
        earliest = _utc(now) + lead
        slots: list[tuple[datetime, datetime]] = []
        for start, end in self._spans(earliest):
            begin = max(start, earliest)
            while len(slots) < count:
                if begin != start:
                    begin = self._align(begin, step)
                if begin + length > end:
                    break
                slots.append((begin.astimezone(self.zone), (begin + length).astimezone(self.zone)))
                begin += length
            if len(slots) >= count:
                break
        return slots

    def _align(self, instant: datetime, step: timedelta) -> datetime:
        """Round up to the next local multiple of ``step`` (a divisor of an hour)."""
        local = instant.astimezone(self.zone)
        into_hour = timedelta(
            minutes=local.minute, seconds=local.second, microseconds=local.microsecond
        )
        rest = into_hour % step
        return instant + (step - rest) if rest else instant

    def _day_spans(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's windows as UTC instants (none on a holiday)."""
        if day in self.holidays:
            return []
        return [
            (self._at(day, start), self._at(day, end))
            for start, end in self.windows.get(day.weekday(), ())
        ]

    def _spans(self, instant: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Openings from the local day of ``instant`` on, merged where they touch."""
        if not self.windows:
            return
        first = instant.astimezone(self.zone).date()
        pending: tuple[datetime, datetime] | None = None
        for offset in range(HORIZON_DAYS + 1):
            for start, end in self._day_spans(first + timedelta(days=offset)):
                if pending is not None and start <= pending[1]:
                    pending = (pending[0], max(pending[1], end))
                    continue
                if pending is not None:
                    yield pending
                pending = (start, end)
        if pending is not None:
            yield pending

    def _at(self, day: date, wall: time) -> datetime:
        """A local wall time on ``day`` as a UTC instant; END_OF_DAY is the next midnight."""
        if wall == END_OF_DAY:
            day, wall = day + timedelta(days=1), time(0)
        return datetime.combine(day, wall, tzinfo=self.zone).astimezone(UTC)


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("office hours need a timezone-aware datetime")
    return now.astimezone(UTC)
