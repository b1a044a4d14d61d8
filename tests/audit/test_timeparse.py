"""Times and durations as operators type them, and the canonical form the trail is compared in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cni_logger.audit.timeparse import (
    from_epoch,
    human_duration,
    is_canonical,
    normalize,
    parse_duration,
    parse_time,
    read_time,
    short,
    spoken,
    to_epoch,
)

NOW = 1_795_400_000.25  # 2026-11-23T02:13:20.250000Z


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-28T02:20:15Z", "2026-11-28T02:20:15.000000Z"),
    ("2026-11-28T02:20:15.573253Z", "2026-11-28T02:20:15.573253Z"),
    ("2026-11-28T03:20:15+01:00", "2026-11-28T02:20:15.000000Z"),
    ("2026-11-27T21:20:15.5-05:00", "2026-11-28T02:20:15.500000Z"),
    ("2026-11-28", "2026-11-28T00:00:00.000000Z"),
    ("2026-11-28T02:20:15", "2026-11-28T02:20:15.000000Z"),  # no offset: UTC, the trail's zone
    ("2026-11-28 02:20", "2026-11-28T02:20:00.000000Z"),
    (" 2026-11-28T02:20:15Z ", "2026-11-28T02:20:15.000000Z"),
    ("@0", "1970-01-01T00:00:00.000000Z"),
    ("@1795400000", "2026-11-23T02:13:20.000000Z"),
])
def test_absolute_times(text: str, expected: str) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize(("text", "seconds_ago"), [
    ("90s", 90), ("30m", 1800), ("2h", 7200), ("7d", 7 * 86400), ("1w", 604800), ("1h30m", 5400),
    ("2h ago", 7200), ("-2h", 7200), ("0s", 0), ("1.5h", 5400), ("now", 0), ("NOW", 0), ("2H", 7200),
])
def test_relative_times_mean_that_long_ago(text: str, seconds_ago: float) -> None:
    assert parse_time(text, NOW) == from_epoch(NOW - seconds_ago)


@pytest.mark.parametrize(("text", "seconds_ago"), [
    ("-5min", 300), ("5 min ago", 300), ("5mins", 300), ("1 hour ago", 3600), ("2 hours", 7200), ("1h 30m", 5400),
    ("10sec", 10), ("3 days ago", 3 * 86400), ("1 week", 604800),
])
def test_relative_times_in_words(text: str, seconds_ago: float) -> None:
    moment = read_time(text, NOW)
    assert moment == from_epoch(NOW - seconds_ago)
    assert moment.note == ""  # an instant: nothing was assumed


@pytest.mark.parametrize(("text", "expected"), [
    ("1764989100.25", "2025-12-06T02:45:00.250000Z"),  # as the CSV prints epoch seconds
    ("1795400000", "2026-11-23T02:13:20.000000Z"),
    ("02:20+01:00", "2026-11-23T01:20:00.000000Z"),
    ("02:20Z", "2026-11-23T02:20:00.000000Z"),
    ("2026-11-28T02:20:15Z", "2026-11-28T02:20:15.000000Z"),
])
def test_instants_need_no_note(text: str, expected: str) -> None:
    moment = read_time(text, NOW)
    assert (moment, moment.note) == (expected, "")


@pytest.mark.parametrize(("text", "expected"), [
    ("02:20", "2026-11-23T02:20:00Z"), ("2:20:15", "2026-11-23T02:20:15Z"), ("23:59:59.5", "2026-11-23T23:59:59.5Z"),
    ("today", "2026-11-23T00:00:00Z"), ("yesterday", "2026-11-22T00:00:00Z"), ("Yesterday", "2026-11-22T00:00:00Z"),
    ("2026-11-28", "2026-11-28T00:00:00Z"), ("2026-11-28T02:20:15", "2026-11-28T02:20:15Z"),
])
def test_times_without_offset_are_utc_today_and_say_so(text: str, expected: str) -> None:
    moment = read_time(text, NOW)
    assert spoken(moment) == expected
    assert moment.note == f"reading {text} as {expected} (UTC; give an offset for another zone)"


def test_an_offset_on_a_time_of_day_takes_today_in_that_zone() -> None:
    late = 1_795_478_400.0 - 1800  # 2026-11-23T23:30:00Z: already the 24th at +01:00
    assert read_time("00:10+01:00", late) == "2026-11-23T23:10:00.000000Z"
    assert read_time("23:40-01:00", 1_795_478_400.0 + 600) == "2026-11-24T00:40:00.000000Z"


def test_relative_times_default_to_the_clock() -> None:
    import time

    before = from_epoch(time.time() - 3600)
    got = parse_time("1h")
    after = from_epoch(time.time() - 3600)
    assert before <= got <= after


@pytest.mark.parametrize("text", ["", "tomorrowish", "2h30", "h", "12", "2026-13-01", "2026-11-28T25:00:00Z",
                                  "@x", "1y", "--2h", "2026/11/28", "25:00", "10:99", "1:2", "ago", "-", "99999999"])
def test_invalid_times_are_rejected_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="invalid time"):
        parse_time(text, NOW)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("30m", 1800), ("2h", 7200), ("7d", 604800), ("1h30m", 5400), ("45", 45), ("0", 0),
    ("2.5m", 150), (" 10S ", 10), ("5min", 300), ("1 hour", 3600), ("2 days", 172800),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5", "m", "5x", "nan", "inf", "1h-5m"])
def test_invalid_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_canonical_form_and_helpers() -> None:
    assert is_canonical("2026-11-28T02:20:15.573253Z")
    assert not is_canonical("2026-11-28T02:20:15Z")
    assert normalize("2026-11-28T02:20:15Z") == "2026-11-28T02:20:15.000000Z"
    assert normalize("2026-11-28T03:20:15+01:00") == "2026-11-28T02:20:15.000000Z"
    assert normalize("not a time") is None
    assert short("2026-11-28T02:20:15.573253Z") == "2026-11-28T02:20:15.573Z"
    assert to_epoch("1970-01-01T00:01:00.500000Z") == 60.5
    assert [human_duration(s) for s in (0.0716, 12.5, 249, 7500, 3 * 86400 + 4 * 3600)] == [
        "71.6ms", "12.5s", "4m09s", "2h05m", "3d4h"]


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31)))
def test_canonical_strings_sort_like_the_times_they_name(moment: datetime) -> None:
    a = parse_time(moment.isoformat() + "Z", NOW)
    later = moment + timedelta(microseconds=1)
    b = parse_time(later.replace(tzinfo=UTC).isoformat(), NOW)
    assert is_canonical(a) and is_canonical(b)
    assert a < b
    assert parse_time(a, NOW) == a


def test_to_epoch_with_remembered_minutes_equals_parsing_the_whole_time() -> None:
    stamps = ["2026-11-28T02:20:15.573000Z", "2026-11-28T02:20:59.999999Z", "2026-11-28T02:21:00.000000Z",
              "2028-02-29T23:59:59.000001Z", "1970-01-01T00:00:00.000000Z", "2026-11-28T02:20:15.573000Z"]
    stamps += [f"2026-{m:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{us:06d}Z" for m, d, h, mi, s, us in
               [(m, 1 + m, m, 7 * m % 60, 11 * m % 60, 123457 * m % 1000000) for m in range(1, 13)]]
    for stamp in stamps:
        assert to_epoch(stamp) == datetime.fromisoformat(stamp).timestamp(), stamp
    assert to_epoch("2026-11-28T02:20:15+00:00") == datetime.fromisoformat("2026-11-28T02:20:15+00:00"
                                                                                      ).timestamp()
