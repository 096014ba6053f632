"""Maintenance windows (维护窗口, article 27 报备): when a legacy system is announced to be away, its ingest runs are
skipped (Airflow state `skipped`, not failed: no alert), and the first run after the window catches up from the
watermark, which a skipped run never moved.

Two sources of windows, both read in Asia/Shanghai time:
- the mapping file's `maintenance:` list, for the planned ones a department knows in advance:
      maintenance:
        - {from: "2026-12-24 22:00", to: "2026-12-25 06:00", reason: 机房搬迁}      # one-off
        - {day: sun, from: "02:00", to: "04:00", reason: 每周备份}                  # weekly (to < from: past midnight)
- `tongban maintenance add SYSTEM --from … --to … --reason …`, for announced outages (stored in the store,
  tongban.scheduling.maintenance_tables; each one a ledger event `maintenance_announced`).

This module parses and evaluates windows; it knows nothing of Airflow and does not touch the store.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tongban.mapping import MappingFileError
from tongban.scheduling.common import TIMEZONE

ZONE = ZoneInfo(TIMEZONE)
DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
DAY_NAMES = {**DAYS, "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5,
             "sunday": 6}
ONE_OFF_KEYS = {"from", "to", "reason"}
WEEKLY_KEYS = {"day", "from", "to", "reason"}
MAX_REASON = 500


@dataclass(frozen=True)
class Window:
    """One maintenance window. One-off: `start`/`end` (aware datetimes). Weekly: `day` (0 = Monday) and the
    `start_time`/`end_time` of day in Asia/Shanghai; an end before the start runs past midnight."""

    reason: str
    origin: str                      # "mapping file <path>:<line>" or "announced <id>"
    start: datetime | None = None
    end: datetime | None = None
    day: int | None = None
    start_time: time | None = None
    end_time: time | None = None

    @property
    def weekly(self) -> bool:
        return self.day is not None

    def covers(self, at: datetime) -> bool:
        if not self.weekly:
            return self.start <= at < self.end
        local = at.astimezone(ZONE)
        for days_back in (0, 1):  # a window that runs past midnight began the day before
            day = (local - timedelta(days=days_back)).date()
            if day.weekday() != self.day:
                continue
            start = datetime.combine(day, self.start_time, ZONE)
            end = datetime.combine(day, self.end_time, ZONE)
            if end <= start:
                end += timedelta(days=1)
            if start <= local < end:
                return True
        return False

    def describe(self) -> str:
        if self.weekly:
            day = next(name for name, number in DAYS.items() if number == self.day)
            return f"every {day} {self.start_time:%H:%M}–{self.end_time:%H:%M} ({TIMEZONE})"
        return f"{self.start.astimezone(ZONE):%Y-%m-%d %H:%M}–{self.end.astimezone(ZONE):%Y-%m-%d %H:%M} ({TIMEZONE})"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason, "origin": self.origin, "window": self.describe(),
                               "kind": "weekly" if self.weekly else "one-off"}
        if self.weekly:
            out.update(day=self.day, from_time=f"{self.start_time:%H:%M}", to_time=f"{self.end_time:%H:%M}")
        else:
            out.update(start=self.start.isoformat(), end=self.end.isoformat())
        return out


def parse_moment(text: Any) -> datetime:
    """'2026-12-24 22:00' (Asia/Shanghai) or an ISO time with its offset → an aware datetime; ValueError says why."""
    if isinstance(text, datetime):
        value = text
    elif isinstance(text, str):
        try:
            value = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a time like 2026-12-24 22:00 (Asia/Shanghai) "
                             "or 2026-12-24T22:00+08:00") from None
    else:
        raise ValueError(f"{text!r} is not a time like \"2026-12-24 22:00\" (write it in quotes)")
    return value.replace(tzinfo=ZONE) if value.tzinfo is None else value


def _time_of_day(value: Any) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 02:00 as the number 120 (base 60)
        raise ValueError(f"write the time of day in quotes (\"02:00\"); YAML read it as the number {value}")
    try:
        return time.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a time of day like \"02:00\"") from None


def _reason(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("every window needs a reason (the 报备: why the system is away)")
    if len(value) > MAX_REASON:
        raise ValueError(f"reason is longer than {MAX_REASON} characters")
    return value.strip()


def one_off(start: Any, end: Any, reason: Any, origin: str) -> Window:
    """A one-off window; ValueError names the rule (end after start, a reason)."""
    window = Window(reason=_reason(reason), origin=origin, start=parse_moment(start), end=parse_moment(end))
    if window.end <= window.start:
        raise ValueError(f"the window ends ({end}) before it starts ({start})")
    return window


def parse_windows(path: str, doc) -> tuple[Window, ...]:
    """The mapping file's `maintenance:` list; MappingFileError names the file, the line and the rule."""
    given = doc.get("maintenance")
    top_line = (getattr(doc, "key_lines", {}) or {}).get("maintenance")
    if given is None:
        return ()
    if not isinstance(given, list):
        raise MappingFileError(path, top_line, "maintenance: is a list of windows "
                               "({from, to, reason} or {day, from, to, reason})")
    windows = []
    for index, entry in enumerate(given):
        line = getattr(entry, "line", None) or top_line
        where = f"maintenance[{index}]"
        if not isinstance(entry, dict):
            raise MappingFileError(path, line, f"{where} is a mapping {{from, to, reason}} or {{day, from, to, reason}}")
        allowed = WEEKLY_KEYS if "day" in entry else ONE_OFF_KEYS
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise MappingFileError(path, line, f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
        missing = [key for key in ("from", "to") if key not in entry]
        if missing:
            raise MappingFileError(path, line, f"{where}: missing {missing[0]!r}")
        origin = f"mapping file {path}:{line}" if line else f"mapping file {path}"
        try:
            if "day" in entry:
                day = DAY_NAMES.get(str(entry["day"]).strip().lower())
                if day is None:
                    raise ValueError(f"day {entry['day']!r} is not a day of the week (mon, tue, … sun)")
                start, end = _time_of_day(entry["from"]), _time_of_day(entry["to"])
                if start == end:
                    raise ValueError("from and to are the same time of day")
                windows.append(Window(reason=_reason(entry.get("reason")), origin=origin, day=day,
                                      start_time=start, end_time=end))
            else:
                windows.append(one_off(entry["from"], entry["to"], entry.get("reason"), origin))
        except ValueError as exc:
            raise MappingFileError(path, line, f"{where}: {exc}") from None
    return tuple(windows)


def window_at(windows, at: datetime | None = None) -> Window | None:
    """The first window covering `at` (default: now), or None."""
    at = at or datetime.now(ZONE)
    return next((w for w in windows if w.covers(at)), None)
