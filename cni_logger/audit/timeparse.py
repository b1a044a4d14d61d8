"""Times and durations as operators type them, and the one timestamp form the trail is compared in.

The plugin writes ``@timestamp`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, always 27 characters), so
two timestamps in that form compare correctly as plain strings. Every time an operator gives is
turned into that form once, and the scans compare strings: no datetime per event line.

Accepted times:

* ISO-8601 with ``Z`` or an offset (``2026-11-28T02:20:15Z``, ``2026-11-28T03:20:15+01:00``),
  a date alone (``2026-11-28``: midnight UTC), or without an offset (taken as UTC, the trail's zone);
* a time of day, ``HH:MM`` or ``HH:MM:SS`` (today; UTC unless an offset follows: ``02:20+01:00``);
* relative: ``90s``, ``30m``, ``5min``, ``2h``, ``7d``, ``1w``, combinations like ``1h30m``, optionally
  preceded by ``-`` or followed by ``ago``: that long before now; ``now``, ``today`` and ``yesterday``
  (midnight UTC);
* epoch seconds as the CSV and JSON outputs print them (``1764989100.25``: nine digits or more before
  the point, so that a bare ``5`` is not taken for 1970), or ``@SECONDS`` (as ``date -d @...`` takes them).

A time written without an offset names a different instant in every zone: ``read_time`` says which
instant it took (``Time.note``), and the commands print that on stderr.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from cni_logger.audit import TIME_HELP

_UNIT_WORDS = {1.0: "seconds second secs sec s", 60.0: "minutes minute mins min m", 3600.0: "hours hour hrs hr h",
               86400.0: "days day d", 604800.0: "weeks week w"}
_UNITS = {word: seconds for seconds, words in _UNIT_WORDS.items() for word in words.split()}
_UNIT = "|".join(sorted(_UNITS, key=len, reverse=True))  # the longest spelling first: 5mins is not 5m + "ins"
_DURATION = re.compile(rf"(?:\d+(?:\.\d+)?\s*(?:{_UNIT})\s*)+")
_PART = re.compile(rf"(\d+(?:\.\d+)?)\s*({_UNIT})")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME_OF_DAY = re.compile(r"(\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)\s*(z|[+-]\d{2}(?::?\d{2})?)?", re.IGNORECASE)
_EPOCH = re.compile(r"\d{9,}(?:\.\d*)?")
_NUMBER = re.compile(r"\d+(?:\.\d*)?")
_ZONE_NOTE = "(UTC; give an offset for another zone)"


class Time(str):
    """A canonical trail timestamp that remembers, in ``note``, the assumption made in reading it (a zone), if any:
    what the command says on stderr about the instant it answers for."""

    note: str = ""


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``30m``, ``5min``, ``2h``, ``7d``, ``1w``, ``1h30m``, ``1 hour`` or a plain number of
    seconds."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        if not _DURATION.fullmatch(value):
            raise ValueError(f"invalid duration {text!r}: expected e.g. 90s, 30m, 2h, 7d or seconds") from None
        seconds = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(value))
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"invalid duration {text!r}: expected a finite length of time >= 0")
    return seconds


def parse_time(text: str, now: float | None = None) -> str:
    """The time ``text`` names, as a canonical trail timestamp; ``now`` is epoch seconds (default: now)."""
    return str(read_time(text, now))


def read_time(text: str, now: float | None = None) -> Time:
    """The time ``text`` names (see the module docstring), with a note when it was read as UTC for want of an
    offset; ``now`` is epoch seconds (default: now). ``ValueError`` says what is accepted."""
    value = text.strip()
    lowered = value.lower()
    relative = lowered[:-3].strip() if lowered.endswith("ago") else lowered
    if now is None:
        now = time.time()
    if relative == "now":
        return Time(from_epoch(now))
    if relative in ("today", "yesterday"):
        day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return _assumed(value, from_datetime(day - timedelta(days=1 if relative == "yesterday" else 0)))
    if relative.startswith("@"):
        try:
            return Time(from_epoch(float(relative[1:])))
        except (ValueError, OverflowError):
            raise ValueError(f"invalid time {text!r}: expected @ followed by epoch seconds") from None
    if _EPOCH.fullmatch(relative):
        return Time(from_epoch(float(relative)))
    if _NUMBER.fullmatch(relative):
        raise ValueError(f"invalid time {text!r}: a bare number is read as epoch seconds (e.g. 1764989100.25); "
                         f"for that long ago give a unit ({relative}s, {relative}m)")
    if _DURATION.fullmatch(relative.removeprefix("-").strip()):
        return Time(from_epoch(now - parse_duration(relative.removeprefix("-").strip())))
    of_day = _TIME_OF_DAY.fullmatch(value)
    if of_day is not None:
        return _time_of_day(text, of_day, now)
    try:
        if _DATE_ONLY.fullmatch(value):
            moment = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
            return _assumed(value, from_datetime(moment))
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"invalid time {text!r}: expected {TIME_HELP}") from None
    if moment.tzinfo is None:
        return _assumed(value, from_datetime(moment.replace(tzinfo=UTC)))
    return Time(from_datetime(moment))


def _time_of_day(text: str, found: re.Match[str], now: float) -> Time:
    """``HH:MM[:SS[.ffffff]]`` today, in UTC or in the zone of the offset that follows."""
    clock, offset = found.group(1), found.group(2) or ""
    if len(clock.split(":", 1)[0]) == 1:
        clock = "0" + clock
    try:
        probe = datetime.fromisoformat(f"2000-01-01T{clock}{offset.upper()}")
    except ValueError:
        raise ValueError(f"invalid time {text!r}: expected {TIME_HELP}") from None
    zone = probe.tzinfo or UTC
    today = datetime.fromtimestamp(now, zone)
    moment = probe.replace(year=today.year, month=today.month, day=today.day, tzinfo=zone)
    if offset:
        return Time(from_datetime(moment))
    return _assumed(text.strip(), from_datetime(moment))


def _assumed(given: str, stamp: str) -> Time:
    """``stamp``, read from ``given`` as UTC for want of an offset, and the note that says so."""
    moment = Time(stamp)
    moment.note = f"reading {given} as {spoken(stamp)} {_ZONE_NOTE}"
    return moment


def spoken(stamp: str) -> str:
    """A canonical timestamp as people write it: ``2026-12-06T02:20:00Z``, fractions only when there are any."""
    if not is_canonical(stamp):
        return stamp
    fraction = stamp[20:26].rstrip("0")
    return stamp[:19] + ("." + fraction if fraction else "") + "Z"


def from_datetime(moment: datetime) -> str:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC."""
    utc = moment.astimezone(UTC)
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
            f".{utc.microsecond:06d}Z")


def from_epoch(seconds: float) -> str:
    try:
        return from_datetime(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds))
    except OverflowError:
        raise ValueError(f"time out of range: {seconds} seconds since the epoch") from None


_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def is_canonical(stamp: str) -> bool:
    """Whether ``stamp`` is already in the form the plugin writes (and so compares as a string). One match: tables ask
    it of every time they print (``short``)."""
    return _CANONICAL.fullmatch(stamp) is not None


def normalize(stamp: str) -> str | None:
    """A timestamp from an event line in canonical form; ``None`` if it is not a time at all."""
    if is_canonical(stamp):
        return stamp
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return from_datetime(moment)


_MINUTES: dict[str, float] = {}
"""Epoch seconds of the minutes ``to_epoch`` has seen lately."""


def to_epoch(stamp: str) -> float:
    """Epoch seconds of a canonical timestamp.

    Some questions ask it of every event, and consecutive events share their minute: its epoch is
    remembered and the seconds added (a third of the cost of parsing the whole timestamp).
    """
    if len(stamp) != 27 or stamp[26] != "Z":
        return datetime.fromisoformat(stamp).timestamp()
    minute = stamp[:16]
    base = _MINUTES.get(minute)
    if base is None:
        if len(_MINUTES) >= 1024:
            _MINUTES.clear()
        base = _MINUTES[minute] = datetime.fromisoformat(minute + ":00+00:00").timestamp()
    return base + float(stamp[17:26])


def epoch(stamp: str | None) -> float | None:
    """A trail timestamp as epoch seconds (microseconds kept), for tools that count in seconds; ``None`` if it
    is not one."""
    return round(to_epoch(stamp), 6) if stamp and is_canonical(stamp) else None


def short(stamp: str) -> str:
    """A canonical timestamp to the millisecond, for tables: ``2026-11-28T02:20:15.573Z``."""
    return stamp[:23] + "Z" if is_canonical(stamp) else stamp


def human_duration(seconds: float) -> str:
    """``3d4h``, ``2h05m``, ``4m09s``, ``12.5s``, ``71.6ms``: two units at most."""
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"
