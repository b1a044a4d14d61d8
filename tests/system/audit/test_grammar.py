"""One grammar across the audit commands: a pod as the POD column prints it (``NS/NAME``) or with ``-n``, times
as the outputs print them or as people say them, and arguments that are wrong rejected, not half-read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cni_logger.audit.timeparse import from_datetime, to_epoch
from tests.harness.audit import cli
from tests.harness.trails import Trail


def ids_of(trail: Trail, *argv: str) -> list[str]:
    result = cli("events", "--json", *argv, *trail.args())
    assert result.rc in (0, 1), result.stderr
    return [e["event"]["id"] for e in result.json]


def of_container(trail: Trail, *containers: str) -> list[str]:
    return [e["event"]["id"] for e in trail.events if e["cni"]["container_id"] in containers]


# -- pods -----------------------------------------------------------------------------------------


def test_events_and_stats_take_the_pod_as_the_pod_column_prints_it(trail: Trail) -> None:
    web_b = of_container(trail, "ctr-b")
    assert ids_of(trail, "--pod", "shop/web-b") == web_b
    assert ids_of(trail, "--pod", "web-b", "-n", "shop") == web_b
    assert ids_of(trail, "--pod", "shop/web-b", "--namespace", "shop") == web_b
    assert ids_of(trail, "--pod", "shop/web-*") == of_container(trail, "ctr-a", "ctr-b", "ctr-f")
    assert ids_of(trail, "--pod", "batch/web-b") == []
    stats = cli("stats", "--json", "--pod", "shop/web-b", *trail.args())
    assert stats.rc == 0, stats.stderr
    assert stats.json[0]["events"] == len(web_b)


def test_timeline_takes_the_namespace_with_n_too(trail: Trail) -> None:
    slash = cli("timeline", "--pod", "shop/web-b", "--json", *trail.args())
    assert slash.rc == 0, slash.stderr
    with_n = cli("timeline", "--pod", "web-b", "-n", "shop", "--json", *trail.args())
    assert (with_n.rc, with_n.json) == (0, slash.json)
    assert [a["container_id"] for a in with_n.json] == ["ctr-b"]
    assert cli("timeline", "--pod", "web-b", "-n", "batch", *trail.args()).rc == 1


@pytest.mark.parametrize("argv", [
    ["events", "--pod", "shop/web-b", "-n", "batch"], ["timeline", "--pod", "shop/web-b", "-n", "batch"],
    ["events", "--pod", "shop/"], ["timeline", "--pod", "a/b/c"], ["stats", "--pod", "/web-b"],
])
def test_a_pod_that_cannot_be_is_a_usage_error(argv: list[str], trail: Trail) -> None:
    result = cli(*argv, *trail.args())
    assert (result.rc, result.stdout) == (2, ""), result.stderr
    assert "--pod" in result.stderr


# -- times ----------------------------------------------------------------------------------------


def test_times_as_the_csv_prints_them_and_relative_ones(trail: Trail) -> None:
    m = trail.marks
    between = [e["event"]["id"] for e in trail.events if m["t2"] <= e["@timestamp"] < m["t5"]]
    assert ids_of(trail, "--since", f"{to_epoch(m['t2']):.6f}", "--until", f"{to_epoch(m['t5']):.6f}") == between
    for recent in ("-5min", "5m", "1h ago", "5 min ago", "yesterday"):
        assert ids_of(trail, "--since", recent) == trail.ids, recent
    assert ids_of(trail, "--until", "-5min") == []
    assert ids_of(trail, "--until", "now") == trail.ids
    assert ids_of(trail, "--since", "now") == []


def test_a_time_without_offset_is_utc_today_and_says_so(trail: Trail) -> None:
    m = trail.marks
    hhmm = m["t3"][11:16]
    minute = m["t3"][:16] + ":00.000000Z"
    result = cli("events", "--json", "--since", hhmm, *trail.args())
    assert result.rc == 0, result.stderr
    assert [e["event"]["id"] for e in result.json] == [e["event"]["id"] for e in trail.events
                                                         if e["@timestamp"] >= minute]
    assert (f"cni-logger events: reading {hhmm} as {m['t3'][:16]}:00Z (UTC; give an offset for another zone)\n"
            in result.stderr)
    naive = m["t3"][:19]
    said = cli("who-had", "10.1.0.5", "--at", naive, *trail.args()).stderr
    assert f"cni-logger who-had: reading {naive} as {naive}Z (UTC; give an offset for another zone)\n" in said
    assert "reading" not in cli("events", "--since", m["t3"], *trail.args()).stderr  # Z: nothing to say


def test_who_had_in_the_future_is_no_evidence(trail: Trail) -> None:
    later = from_datetime(datetime.now(UTC) + timedelta(hours=1))
    for ip in ("10.1.0.7", "10.1.0.0/24"):
        result = cli("who-had", ip, "--at", later, *trail.args())
        assert (result.rc, result.stdout) == (4, ""), result.stderr
        assert "is in the future" in result.stderr


@pytest.mark.parametrize("command", ["events", "stats", "report"])
def test_since_after_until_is_a_usage_error(command: str, trail: Trail) -> None:
    m = trail.marks
    result = cli(command, "--since", m["t5"], "--until", m["t2"], *trail.args())
    assert (result.rc, result.stdout) == (2, ""), result.stderr
    assert "--since" in result.stderr and "after --until" in result.stderr


# -- addresses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "bad"), [
    (["who-had", "10.0.0.0/99"], "/99"), (["who-had", "10.0.0.1/abc"], "/abc"), (["who-had", "fd00::1/129"], "/129"),
    (["events", "--ip", "10.1.0.5/33"], "/33"), (["who-had", "10.0.0.1/"], "/"),
])
def test_a_bad_prefix_is_rejected_not_dropped(argv: list[str], bad: str, trail: Trail) -> None:
    result = cli(*argv, *trail.args())
    assert (result.rc, result.stdout) == (2, ""), result.stderr
    assert f"prefix {bad!r}" in result.stderr


def test_an_interface_address_is_still_that_address(trail: Trail) -> None:
    plain = cli("who-had", "10.1.0.5", "--json", *trail.args())
    with_prefix = cli("who-had", "10.1.0.5/24", "--json", *trail.args())
    assert plain.rc == with_prefix.rc == 0
    assert plain.stdout == with_prefix.stdout
