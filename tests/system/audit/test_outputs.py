"""The audit tool's outputs as an operator and an auditor get them: formats, subnets, pods, the report page.

The trail is the audit tests' story (``tests.harness.trails.build``: rotated, gzipped, damaged), written
by the real plugin, plus an address given to a second sandbox while the first one's DEL is missing
(the first is *superseded*, not a co-holder: an IPAM hands an address to one attachment at a time), a
conflict (a superseded sandbox's DEL still carries the address: both held it at once), and a pod whose
name an attacker chose (a terminal escape, markup, a spreadsheet formula). Expected answers are
computed here from the events the plugin wrote, not by the tool's code.

The report page is rendered by a real headless Chromium (Debian's ``chromium``): its DOM after the
page's script ran must show what the trail holds, and a screenshot is taken (kept next to the trail
for a person to look at; the test checks it is a PNG of the window's size).
"""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
import re
import shutil
import struct
import subprocess
import tempfile
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.harness.audit import CLI, cli
from tests.harness.node_lines import invocation, line
from tests.harness.trails import DAMAGED, NET, Trail, Writer, build

HOSTILE = "=HYPERLINK(1)<b>x</b>\x1b[31mred"
"""A pod name: a formula for spreadsheets, markup for the page, a colour escape for the terminal."""
SUPERSEDED_ADDRESS = "10.1.0.40"
CONFLICT_ADDRESS = "10.1.0.42"


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Trail:
    built = build(tmp_path_factory.mktemp("outputs-trail"))
    w = Writer(built)
    w.run("ADD", "ctr-x", address=SUPERSEDED_ADDRESS, pod="dup-x")
    w.run("ADD", "ctr-y", address=SUPERSEDED_ADDRESS, pod="dup-y")  # the same address: ctr-x's DEL was lost
    w.run("DEL", "ctr-y", address=SUPERSEDED_ADDRESS, pod="dup-y")
    w.run("ADD", "ctr-p", address=CONFLICT_ADDRESS, pod="dup-p")
    w.run("ADD", "ctr-q", address=CONFLICT_ADDRESS, pod="dup-q")  # supersedes ctr-p...
    w.run("DEL", "ctr-p", address=CONFLICT_ADDRESS, pod="dup-p")  # ...which still held it: a conflict
    w.run("DEL", "ctr-q", address=CONFLICT_ADDRESS, pod="dup-q")
    w.run("ADD", "ctr-h", address="10.1.0.41", pod=HOSTILE, namespace="evil")
    return built


def epoch(stamp: str) -> float:
    return round(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp(), 6)


def successful_adds(trail: Trail) -> list[dict[str, Any]]:
    return [e for e in trail.events if e["cni"]["command"] == "ADD" and e["event"]["outcome"] == "success"]


def deleted(trail: Trail) -> set[tuple[str, str]]:
    """(container id, ifname) of every successful DEL, what the GC collected, and every attachment whose
    address a later successful ADD on the same network gave to another container before its DEL (superseded)."""
    found = {(e["cni"]["container_id"], e["cni"]["ifname"]) for e in trail.events
             if e["cni"]["command"] == "DEL" and e["event"]["outcome"] == "success"}
    for e in trail.events:
        if e["cni"]["command"] == "GC":
            keep = {(a["containerID"], a["ifname"]) for a in e["cni"]["valid_attachments"]}
            found |= {(a["cni"]["container_id"], a["cni"]["ifname"]) for a in successful_adds(trail)
                      if a["@timestamp"] < e["@timestamp"] and a["network"]["name"] == e["network"]["name"]
                      and (a["cni"]["container_id"], a["cni"]["ifname"]) not in keep}
    return found | superseded(trail)


def superseded(trail: Trail) -> set[tuple[str, str]]:
    """Attachments whose address another container's successful ADD took while they held it (no DEL between)."""
    held: dict[tuple[str, str], tuple[str, str]] = {}
    found = set()
    for e in trail.events:
        if e["event"]["outcome"] != "success" or e["cni"]["command"] not in ("ADD", "DEL"):
            continue
        attachment = (e["cni"]["container_id"], e["cni"]["ifname"])
        if e["cni"]["command"] == "DEL":
            held = {k: v for k, v in held.items() if v != attachment}
            continue
        for address in e["related"]["ip"]:
            place = (e["network"]["name"], address)
            if place in held and held[place][0] != attachment[0]:
                found.add(held[place])
            held[place] = attachment
    return found


# -- formats --------------------------------------------------------------------------------------------


def test_json_flag_is_format_json(trail: Trail) -> None:
    for argv in (["events"], ["stats"], ["who-had", "10.1.0.5"], ["who-had", "10.1.0.0/24"], ["timeline", "ctr-a"]):
        assert cli(*argv, "--json", *trail.args()).stdout == cli(*argv, "--format", "json", *trail.args()).stdout


def test_csv_is_rfc4180_with_a_row_per_answer_and_defused_formulas(trail: Trail) -> None:
    proc = subprocess.run([CLI, "events", "--format", "csv", *trail.args()], capture_output=True, check=False,
                          timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.count(b"\r\n") == len(trail.events) + 1 and proc.stdout.count(b"\n") == len(trail.events) + 1
    rows = list(csv.DictReader(io.StringIO(proc.stdout.decode(), newline="")))
    assert [r["event_id"] for r in rows] == trail.ids
    assert [float(r["epoch"]) for r in rows] == [epoch(e["@timestamp"]) for e in trail.events]
    hostile = [r for r in rows if r["container_id"] == "ctr-h"]
    assert [r["pod"] for r in hostile] == ["'" + HOSTILE]  # a spreadsheet shows it as text, not a formula
    failure = next(r for r in rows if r["outcome"] == "failure")
    assert '"' in failure["error"]  # the error quotes the version: quoted and doubled in the file, exact here
    assert all(not r["pod"].startswith(("=", "+", "-", "@")) for r in rows)


def test_tsv_and_csv_hold_the_same_answers_as_json(trail: Trail) -> None:
    as_json = cli("leaks", "--json", *trail.args()).json
    as_csv = list(csv.DictReader(io.StringIO(cli("leaks", "--format", "csv", *trail.args()).stdout, newline="")))
    tsv_lines = cli("leaks", "--format", "tsv", *trail.args()).stdout.splitlines()
    header = tsv_lines[0].split("\t")
    as_tsv = [dict(zip(header, line.split("\t"), strict=True)) for line in tsv_lines[1:]]
    # ctr-c, ctr-h never deleted; apart: ctr-orphan (a clean-up DEL), ctr-x (superseded: its DEL lost)
    assert len(as_json) == len(as_csv) == len(as_tsv) == 4
    for doc, row, tab in zip(as_json, as_csv, as_tsv, strict=True):
        assert {**row, "age_seconds": ""} == {**tab, "age_seconds": ""}  # the age grows between the runs
        assert row["container_id"] == doc["container_id"] and row["kind"] == doc["kind"]
        assert row["addresses"] == " ".join(doc["addresses"])
        if doc["from"]:
            assert float(row["from_epoch"]) == epoch(doc["from"])


def test_stats_csv(trail: Trail) -> None:
    rows = list(csv.DictReader(io.StringIO(cli("stats", "--format", "csv", *trail.args()).stdout, newline="")))
    assert rows[0]["group"] == "events" and int(rows[0]["count"]) == len(trail.events)
    commands = {r["name"]: int(r["count"]) for r in rows if r["group"] == "command"}
    assert commands == {c: sum(e["cni"]["command"] == c for e in trail.events) for c in commands}
    latency = {r["name"]: r for r in rows if r["group"] == "latency"}
    assert int(latency["all"]["count"]) == len(trail.events) and float(latency["all"]["p50_ms"]) > 0


def test_tables_show_control_characters_escaped_json_stays_exact(trail: Trail) -> None:
    table = cli("events", "--container", "ctr-h", *trail.args())
    assert "\x1b" not in table.stdout
    assert "evil/=HYPERLINK(1)<b>x</b>\\x1b[31mred" in table.stdout
    (event,) = [json.loads(line) for line in cli("events", "--json", "-c", "ctr-h", *trail.args()).stdout.splitlines()]
    assert event["orchestrator"]["resource"]["name"] == HOSTILE
    report = cli("report", *trail.args())
    assert "\x1b" not in report.stdout and "\x1b" not in report.stderr


def test_container_column_fits_cnitool_ids(trail: Trail, tmp_path: Path) -> None:
    cid = "cnitool-20c433bb2b1d6ede56d6"
    docker = "f" * 64
    lines = []
    for number, event in enumerate(trail.by_container("ctr-a")[:1] * 2):
        copy = json.loads(json.dumps(event))
        copy["cni"]["container_id"] = copy["container"]["id"] = (cid, docker)[number]
        copy["event"]["id"] += f"-{number}"  # two events, not one event twice (the reader drops a repeated id)
        lines.append(json.dumps(copy))
    log = tmp_path / "ids.log"
    log.write_text("\n".join(lines) + "\n")
    rows = cli("events", "--log-file", str(log)).rows
    assert [r[7] for r in rows] == [cid, docker[:12]]


# -- who-had CIDR ---------------------------------------------------------------------------------------


def test_who_had_a_subnet_lists_every_holding_with_conflicts(trail: Trail) -> None:
    result = cli("who-had", "10.1.0.0/24", "--json", *trail.args())
    assert result.rc == 3  # qualified: ctr-x's DEL is missing, and ctr-p was in conflict
    got = sorted((h["address"], h["container_id"], h["until"] is None) for h in result.json)
    gone = deleted(trail)
    expected = sorted((a["related"]["ip"][0], a["cni"]["container_id"],
                       (a["cni"]["container_id"], a["cni"]["ifname"]) not in gone)
                      for a in successful_adds(trail) if a["related"]["ip"][0].startswith("10.1.0."))
    assert got == expected
    conflicts = {h["container_id"]: h["conflicts_with"] for h in result.json if h["address"] == CONFLICT_ADDRESS}
    assert conflicts == {"ctr-p": ["ctr-q"], "ctr-q": ["ctr-p"]}
    assert all(not h["conflicts_with"] for h in result.json if h["address"] != CONFLICT_ADDRESS)
    (x,) = [h for h in result.json if h["container_id"] == "ctr-x"]
    (y_add,) = [e for e in trail.by_container("ctr-y") if e["cni"]["command"] == "ADD"]
    assert (x["ended_by"], x["until"], x["superseded_by"]["container_id"]) == ("superseded", y_add["@timestamp"],
                                                                               "ctr-y")
    assert x["notes"] and not x["conflict"]
    (p,) = [h for h in result.json if h["container_id"] == "ctr-p"]
    (p_del,) = [e for e in trail.by_container("ctr-p") if e["cni"]["command"] == "DEL"]
    assert (p["conflict"], p["until"], p["ended_by"]) == (True, p_del["@timestamp"], "DEL")
    table = cli("who-had", "10.1.0.0/24", *trail.args())
    assert table.rc == 3
    assert table.stdout.splitlines()[0].split()[:2] == ["ADDRESS", "FROM"]
    assert any(r[0] == CONFLICT_ADDRESS and r[-1] == "with ctr-q" for r in table.rows)
    assert any(r[0] == SUPERSEDED_ADDRESS and "superseded by ctr-y" in r[-2] for r in table.rows)


def test_who_had_a_subnet_at_a_time_and_an_interface_address_stays_an_address(trail: Trail) -> None:
    at = trail.marks["t1"]  # ctr-a holds 10.1.0.5, nothing else yet
    held = cli("who-had", "10.1.0.0/16", "--at", at, "--json", *trail.args())
    assert [(h["address"], h["container_id"], h["certainty"]) for h in held.json] == [("10.1.0.5", "ctr-a", "held")]
    assert held.rc == 0  # certain, although the trail has damage elsewhere...
    assert cli("who-had", "10.1.0.0/16", "--at", at, "--strict", *trail.args()).rc == 3  # ...which --strict counts
    nobody = cli("who-had", "10.2.0.0/24", "--at", at, *trail.args())
    assert nobody.rc == 1 and "nobody held 10.2.0.0/24" in nobody.stderr  # the trail covers t1
    # between ctr-x's last evidence (its ADD) and ctr-y's ADD, ctr-x only possibly held its address
    (x_add,) = [e for e in trail.by_container("ctr-x") if e["cni"]["command"] == "ADD"]
    (y_add,) = [e for e in trail.by_container("ctr-y") if e["cni"]["command"] == "ADD"]
    middle = (epoch(x_add["@timestamp"]) + epoch(y_add["@timestamp"])) / 2
    between = datetime.fromtimestamp(middle, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert x_add["@timestamp"] < between < y_add["@timestamp"]
    possibly = cli("who-had", SUPERSEDED_ADDRESS + "/31", "--at", between, "--json", *trail.args())
    assert possibly.rc == 3
    assert [(h["container_id"], h["certainty"]) for h in possibly.json] == [("ctr-x", "possibly")]
    before = cli("who-had", "10.1.0.0/24", "--at", "2000-01-01T00:00:00Z", *trail.args())
    assert before.rc == 4 and "before the trail" in before.stderr
    single = cli("who-had", "10.1.0.5/24", "--json", *trail.args()).json  # host bits set: the address
    assert {h["container_id"] for h in single} == {"ctr-a", "ctr-b"}


# -- timeline --pod -------------------------------------------------------------------------------------


def test_timeline_of_a_pod(trail: Trail) -> None:
    result = cli("timeline", "--pod", "shop/multi", "--json", *trail.args())
    assert result.rc == 0
    assert {(a["container_id"], a["network"], a["ifname"]) for a in result.json} == {
        ("ctr-m", NET, "eth0"), ("ctr-m", "storage-net", "net1")}
    assert cli("timeline", "--pod", "other/multi", *trail.args()).rc == 1
    assert [a["container_id"] for a in cli("timeline", "--pod", "job-e", "--json", *trail.args()).json] == ["ctr-e"]
    # every sandbox of pods matching a glob, and a DEL without CNI_ARGS still belongs to its sandbox
    web = cli("timeline", "--pod", "shop/web-*", "--json", *trail.args()).json
    assert [a["container_id"] for a in web] == ["ctr-a", "ctr-b", "ctr-f"]
    assert [s["command"] for s in web[1]["events"]] == ["ADD", "DEL", "DEL"]
    table = cli("timeline", "--pod", "shop/web-a", *trail.args()).stdout
    assert "EPOCH" in table.splitlines()[1]
    assert str(int(epoch(trail.by_container("ctr-a")[0]["@timestamp"]))) in table


def test_timeline_needs_a_container_or_a_pod(trail: Trail) -> None:
    result = cli("timeline", *trail.args())
    assert result.rc == 2 and "--pod" in result.stderr


# -- report ---------------------------------------------------------------------------------------------


def test_report_text_and_json(trail: Trail) -> None:
    (data,) = cli("report", "--json", *trail.args()).json
    assert data["trail"]["events_in_window"] == len(trail.events)
    assert data["trail"]["skipped_lines"] == DAMAGED
    assert sum(d["lines"] for d in data["trail"]["damaged"]["listed"]) == DAMAGED
    assert len(data["trail"]["files"]) == len(list(trail.directory.iterdir()))
    assert sum(d["lost_events_possible"] for d in data["trail"]["damaged"]["listed"]) == 1  # as stderr says
    assert data["trail"]["possible_gaps"]["count"] == 0 and data["trail"]["quiet_periods"]["count"] == 0
    assert data["conflicts"]["count"] == 1
    assert [(c["container_id"], c["other_container_id"]) for c in data["conflicts"]["listed"]] == [("ctr-p", "ctr-q")]
    assert {h["container_id"] for h in data["leaks"]["never_deleted"]["listed"]} == {"ctr-c", "ctr-h"}
    assert [h["container_id"] for h in data["leaks"]["superseded"]["listed"]] == ["ctr-x"]
    assert data["leaks"]["superseded"]["listed"][0]["notes"]
    # ctr-orphan's DEL has no cached result: the clean-up of a failed ADD, listed apart as leaks lists it
    assert data["leaks"]["del_without_add"]["count"] == 0
    assert [o["container_id"] for o in data["leaks"]["cleanup_del"]["listed"]] == ["ctr-orphan"]
    assert data["failures"]["count"] == sum(e["event"]["outcome"] == "failure" for e in trail.events)
    # the failed ADDs: ctr-f's failed in the logger (recorded), ctr-orphan's is inferred from its clean-up DEL
    failed_adds = data["failed_adds"]
    assert (failed_adds["count"], failed_adds["inferred"], failed_adds["bracket"]) == (2, 1, False)
    assert [(i["container"], i["how"], bool(i["error"])) for i in failed_adds["items"]] == [
        ("ctr-orphan", "cleanup-del", False), ("ctr-f", "add-failed", True)]
    assert data["networks"][NET]["holdings"] == sum(a["network"]["name"] == NET for a in successful_adds(trail))
    text = cli("report", *trail.args())
    assert text.rc == 0
    assert cli("report", "--strict", *trail.args()).rc == 3  # the trail is damaged
    assert "conflicts (an address held by two attachments at once): 1" in text.stdout
    assert "superseded (their DEL was lost; not leaks): 1" in text.stdout
    window = cli("report", "--json", "--since", trail.marks["t2"], "--until", trail.marks["t5"], *trail.args()).json
    assert window[0]["trail"]["events_in_window"] == 4


def test_report_quiet_periods_are_the_pauses_of_at_least_the_gap(tmp_path: Path) -> None:
    """Pauses just under and just over a minute, within one minute of the clock and across two, and hours long:
    each is a quiet period exactly when it lasts ``--gap`` or longer."""
    times = ["2026-11-28T10:00:00.500000Z", "2026-11-28T10:00:59.900000Z",  # 59.4 s, within one minute
             "2026-11-28T10:02:00.000000Z",                                 # 60.1 s, across two
             "2026-11-28T10:02:00.700000Z", "2026-11-28T12:00:00.000000Z"]  # 0.7 s, then almost two hours
    log = tmp_path / "cni.log"
    log.write_bytes(b"".join(line(invocation("CHECK", t, "node-a", network=NET, cid=f"c{n}")) + b"\n"
                             for n, t in enumerate(times)))
    pauses = [(a, b, round(epoch(b) - epoch(a), 3)) for a, b in itertools.pairwise(times)]
    for gap, flag in [(30, "30s"), (60, "60s"), (3600, "1h")]:
        (data,) = cli("report", "--json", "--gap", flag, "--log-file", str(log)).json
        found = [(q["from"], q["until"], q["seconds"]) for q in data["trail"]["quiet_periods"]["listed"]]
        assert found == [p for p in pauses if p[2] >= gap], flag
        assert data["trail"]["quiet_periods"]["count"] == len(found)


class _Dom(HTMLParser):
    """The elements of a dumped DOM that the assertions need."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: list[dict[str, str]] = []
        self.counts: dict[str, str] = {}
        self.drawn: dict[str, str] = {}
        self.urls: list[str] = []
        self._count: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.urls += [v for k, v in found.items() if k in ("src", "href", "xlink:href", "action") and v]
        if tag == "rect" and "bar" in found.get("class", "").split():
            self.bars.append(found)
        if found.get("id", "").startswith("count-"):
            self._count = found["id"][6:]
        if found.get("id") == "drawn":
            self.drawn = found

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._count is not None:
            self.counts[self._count] = data
            self._count = None


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("chromium is not installed (scripts/setup-system.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="cnil-chromium-") as profile:
        return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120, check=False)


def test_report_page_in_chromium_shows_the_trail(trail: Trail) -> None:
    page = trail.directory.parent / "report.html"
    result = cli("report", "--html", str(page), *trail.args())
    assert result.rc == 0, result.stderr
    source = page.read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:[a-z]+:)?//""", source, re.IGNORECASE)
    assert "http://" not in source and "https://" not in source
    assert "default-src 'none'" in source
    assert "\x1b" not in source and "<b>x</b>" not in source  # the hostile name is text, not markup

    dumped = chromium("--dump-dom", page.as_uri())
    assert dumped.returncode == 0, dumped.stderr
    dom = _Dom()
    dom.feed(dumped.stdout)
    assert dom.urls == []
    gone = deleted(trail)
    expected = sorted((a["related"]["ip"][0], a["cni"]["container_id"],
                       "" if (a["cni"]["container_id"], a["cni"]["ifname"]) not in gone else "closed")
                      for a in successful_adds(trail))
    drawn = sorted((b["data-address"], b["data-container"], "closed" if b["data-until"] else "") for b in dom.bars)
    assert drawn == expected
    assert dom.drawn.get("data-rendered") == str(len(expected))  # the page's script ran
    pods = {b["data-container"]: b["data-pod"] for b in dom.bars}
    assert pods["ctr-a"] == "shop/web-a" and pods["ctr-e"] == "job-e"
    assert pods["ctr-h"] == "evil/" + HOSTILE.replace("\x1b", "\\x1b")
    assert {b["data-container"] for b in dom.bars if "conflict" in b["class"].split()} == {"ctr-p", "ctr-q"}
    assert {b["data-container"] for b in dom.bars if "open" in b["class"].split()} == {"ctr-c", "ctr-h"}
    assert {b["data-container"] for b in dom.bars if "superseded" in b["class"].split()} == {"ctr-x"}
    assert dom.counts["events"] == str(len(trail.events))
    assert dom.counts["conflicts"] == "1"
    assert dom.counts["never-deleted"] == "2"
    assert dom.counts["superseded"] == "1"
    assert dom.counts["del-without-add"] == "0"  # ctr-orphan is a clean-up DEL (no cached result)
    assert dom.counts["damaged"] == str(DAMAGED)
    assert dom.counts["failures"] == str(sum(e["event"]["outcome"] == "failure" for e in trail.events))

    shot = trail.directory.parent / "report.png"
    taken = chromium("--screenshot=" + str(shot), "--window-size=1280,1000", page.as_uri())
    assert taken.returncode == 0, taken.stderr
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1280, 1000)


CHECKS = """<script>
(function () {
  function all(selector) { return Array.prototype.slice.call(document.querySelectorAll(selector)); }
  function text(id) { var found = document.getElementById(id); return found ? found.textContent : null; }
  var out = {innerWidth: window.innerWidth,
             scrollWidth: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)};
  out.header = {hosts: text('hosts'), window: text('window'), trail: text('trail'), made: text('made'),
                timezone: text('timezone')};
  out.alarms = all('.cards.alarms .card').map(function (c) {
    return [c.dataset.card, c.querySelector('.n').textContent, c.classList.contains('alarm')]; });
  out.alarming = all('.card.alarm').map(function (c) { return c.dataset.card; });
  out.ticks = all('text.tl').map(function (t) {
    return [parseFloat(t.dataset.epoch), parseFloat(t.dataset.step), t.textContent]; });
  out.labels = all('text.bl').map(function (t) {
    return [t.textContent, t.getComputedTextLength(), parseFloat(t.previousElementSibling.getAttribute('width'))]; });
  out.titles = all('svg title').map(function (t) { return t.textContent; });
  out.headings = all('h2').map(function (h) { return h.textContent; });
  out.nothing = text('nothing-found');
  out.conflicts = all('table[data-section=conflicts] tbody tr').map(function (r) { return r.textContent; });
  function find(wanted) {
    var box = document.getElementById('search');
    box.value = wanted;
    box.dispatchEvent(new Event('input'));
    return {rows: all('table.list tbody tr').filter(function (r) { return !r.hidden; })
                    .map(function (r) { return r.textContent; }),
            hidden: all('table.list tbody tr').filter(function (r) { return r.hidden; }).length,
            bars: all('rect.bar').filter(function (b) { return !b.classList.contains('dim'); })
                    .map(function (b) { return b.dataset.container; })};
  }
  out.search = {pod: find('db-c'), address: find('10.1.0.42'), namespace: find('EVIL'), none: find('')};
  var pre = document.createElement('pre');
  pre.id = 'checks';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""
"""Run in the page after its own script, at a window 1400 pixels wide: what a responder sees, measured."""

ROUND_STEPS = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800,
               3600, 7200, 10800, 21600, 43200, 86400}


def test_report_page_stands_alone_in_a_ticket(trail: Trail, tmp_path: Path) -> None:
    """Issue 18: the page as an artefact in an incident ticket, measured in Chromium at a 1400 pixel window."""
    from cni_logger.cli import version

    page = tmp_path / "report.html"
    cache = tmp_path / "results"  # libcni's result cache on this node: empty, and the pods' netns paths are gone
    cache.mkdir()
    result = cli("report", "--html", str(page), "--results-cache", str(cache), *trail.args())
    assert result.rc == 0, result.stderr
    source = page.read_text()
    assert "\\x0a" not in source  # the titles' lines are real lines
    probe = tmp_path / "probe.html"
    probe.write_text(source.replace("</body>", CHECKS + "</body>"))
    dumped = chromium("--dump-dom", "--window-size=1400,1000", probe.as_uri())
    assert dumped.returncode == 0, dumped.stderr
    found = re.search(r"<pre id=\"checks\">(.*?)</pre>", dumped.stdout, re.DOTALL)
    assert found, dumped.stdout[-2000:]
    checks = json.loads(html.unescape(found[1]))

    assert checks["innerWidth"] == 1400
    assert checks["scrollWidth"] <= 1400, checks["scrollWidth"]  # no horizontal scrollbar
    header = checks["header"]
    hosts = sorted({e["host"]["name"] for e in trail.events})
    assert all(host in header["hosts"] for host in hosts), header
    assert header["window"] == "the whole trail"
    assert f"cni-logger {version()}" in header["made"] and re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", header["made"])
    assert "UTC" in header["timezone"]
    # the alarms: failed ADDs (a failed ADD, and the clean-up DEL of one that failed before the logger), conflicts, and
    # the still-held attachments (ctr-c, ctr-h) as leaked: the trail is this node's, and their netns paths are gone
    failed_adds = sum(e["cni"]["command"] == "ADD" and e["event"]["outcome"] == "failure" for e in trail.events) + 1
    assert checks["alarms"] == [["failed-adds", str(failed_adds), True], ["conflicts", "1", True],
                                ["leaked", "2", True]]
    assert "never-deleted" not in checks["alarming"]
    # ticks at round times, labelled as precisely as their step
    step = checks["ticks"][0][1]
    assert step in ROUND_STEPS and 4 <= len(checks["ticks"]) <= 10, checks["ticks"]
    first, last = epoch(trail.events[0]["@timestamp"]), epoch(trail.events[-1]["@timestamp"])
    for seconds, tick_step, label in checks["ticks"]:
        assert tick_step == step and abs(seconds / step - round(seconds / step)) < 1e-3, (seconds, step)
        assert first - 1e-3 <= seconds <= last + 1e-3
        assert label == datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S.%f")[:len(label)]
    # labels only on bars wide enough to hold them
    assert checks["labels"], "no bar holds its label"
    assert all(length <= width for _, length, width in checks["labels"]), checks["labels"]
    assert not any("\\x0a" in title for title in checks["titles"])
    assert any(title.count("\n") >= 2 for title in checks["titles"])
    # empty sections folded into one line
    assert not any(h.endswith(": 0") for h in checks["headings"]), checks["headings"]
    assert checks["nothing"].startswith("Nothing found in: ")
    for name in ("DELs without ADD", "Gaps", "Quiet periods"):
        assert name in checks["nothing"]
    # conflicts named by pod
    (conflict,) = checks["conflicts"]
    assert "shop/dup-p" in conflict and "shop/dup-q" in conflict
    # the search box filters the rows and the bars
    pod, address, namespace, none = (checks["search"][k] for k in ("pod", "address", "namespace", "none"))
    assert pod["rows"] and all("db-c" in row for row in pod["rows"]) and pod["hidden"]
    assert set(pod["bars"]) == {"ctr-c"}
    assert set(address["bars"]) == {"ctr-p", "ctr-q"} and any("10.1.0.42" in row for row in address["rows"])
    assert set(namespace["bars"]) == {"ctr-h"}
    assert none["hidden"] == 0 and len(none["bars"]) == len(successful_adds(trail))

    for name, size in (("report-1400.png", "1400,1000"), ("report-1400-long.png", "1400,2400")):
        shot = tmp_path / name
        print(shot)
        taken = chromium("--screenshot=" + str(shot), "--hide-scrollbars", f"--window-size={size}", page.as_uri())
        assert taken.returncode == 0, taken.stderr
        header_bytes = shot.read_bytes()[:24]
        assert header_bytes[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", header_bytes[16:24]) == tuple(int(n) for n in size.split(","))
