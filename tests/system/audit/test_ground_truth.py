"""The audit commands against ground truth: a real cnitool trail, then a damaged copy of it.

cnitool (libcni) drives bridge + host-local + logger in throw-away namespaces (``tests/harness/cnitool.py``).
host-local's range holds five addresses, so with a dozen containers coming and going addresses are reused
all the time; the logger rotates a small file and gzips the backups. The test keeps its own ground truth
(which container held which address when: from the addresses it finds in each container after cnitool's
ADD, and its own clock around every call), then asks ``who-had`` (at many moments, and without ``--at``),
``leaks``, ``stats`` and ``events``.

On the intact trail every answer must be right. Then a copy is damaged the way real trails are: a
truncated ``.gz``, a line cut short, junk lines, the oldest backup and one in the middle removed, one DEL
line dropped (a lost DEL whose address is reused later), and a copy of a file passed as well. Every answer
must then be right or explicitly qualified: status 3 with every row it is not sure of marked POSSIBLY or
noted, or status 4 ("no evidence") with the reason on stderr. A wrong answer with status 0 or 1 fails.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cni_logger.audit.evidence import GAP_MIN_SECONDS
from tests.harness.audit import Result, cli, now
from tests.harness.cnitool import (
    CniSandbox,
    cnitool_container_id,
    environment_problem,
    ipv4_cidrs,
    opened_sandbox,
    runtime_plugin,
)
from tests.harness.trails import wait_for_compression

pytestmark = pytest.mark.integration

CONTAINERS = 12
STEPS = 80
ADDRESSES = 5
SEED = 1313
PACE = GAP_MIN_SECONDS / 5
"""Seconds between steps. A backup holds about ten events (eight steps), so it spans well over
``evidence.GAP_MIN_SECONDS`` and a missing one is a gap the reader can infer from time alone. Without a
pace a backup spans under a second (cnitool alone is that fast), which docs/audit.md ("Gaps") lists as
undetectable (a backup that held only a short burst), and the damaged-trail test failed whenever the machine
ran fast."""


@dataclass
class Truth:
    """What really happened, from cnitool's answers and this test's clock."""

    addresses: list[str]
    held: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    """(container id, address, before its ADD, after its DEL or None)."""
    marks: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """(moment, {address: container id}) between calls."""
    before: str = ""

    def added(self, cid: str, address: str, before: str) -> int:
        """``cid`` got ``address`` by an ADD that started at ``before``; the holding's index (``deleted``)."""
        self.held.append((cid, address, before, None))
        return len(self.held) - 1

    def deleted(self, index: int) -> None:
        """The holding at ``index`` ended: its DEL has just returned."""
        cid, address, before, _ = self.held[index]
        self.held[index] = (cid, address, before, now())

    def holder(self, address: str, at: str) -> str | None:
        for moment, holders in reversed(self.marks):
            if moment == at:
                return holders.get(address)
        raise AssertionError(at)

    def held_at(self, cid: str, address: str, start: str, end: str | None) -> bool:
        """Did ``cid`` hold ``address`` over [start, end] (end None: to the end)?"""
        for c, a, added, deleted in self.held:
            if (c, a) == (cid, address) and added <= start and (deleted is None or (end is not None and
                                                                                      end <= deleted)):
                return True
        return False

    def ever(self, cid: str, address: str) -> bool:
        return any((c, a) == (cid, address) for c, a, _, _ in self.held)

    def attached_at_end(self) -> set[str]:
        return {c for c, _, _, deleted in self.held if deleted is None}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, cni_logger_cli: Path) -> Iterator[tuple[Path, Truth]]:
    problem = environment_problem()
    if problem:
        pytest.skip(problem)
    tmp = tmp_path_factory.mktemp("ground-truth")
    with opened_sandbox(tmp, runtime_plugin(cni_logger_cli)) as sb:
        yield run_story(sb)


def run_story(sb: CniSandbox) -> tuple[Path, Truth]:
    """Containers come and go at random (seeded) over a five-address range: the log's path, and the truth."""
    net = sb.new_network("truth")
    first = 10
    addresses = [net.host(first + n) for n in range(ADDRESSES)]
    ranges = [[{"subnet": str(net.subnet), "rangeStart": addresses[0], "rangeEnd": addresses[-1]}]]
    sb.write_conflist(net, "1.0.0", [
        net.bridge_plugin(ranges=ranges),
        net.logger_plugin(logOptions={"maxSize": 0.016, "maxBackups": 0, "compress": True}),
    ])
    truth = Truth(addresses)
    truth.before = now()
    rng = random.Random(SEED)
    names = [sb.new_container() for _ in range(CONTAINERS)]
    cids = {name: cnitool_container_id(sb.netns_path(name)) for name in names}
    attached: dict[str, tuple[str, int]] = {}  # name -> (address, index in truth.held)
    for step in range(STEPS):
        free = [n for n in names if n not in attached]
        if len(attached) == ADDRESSES or (attached and rng.random() < 0.45) or step >= STEPS - 6:
            name = rng.choice(sorted(attached))
            if step >= STEPS - 6 and len(attached) <= 2:
                name = ""
            if name:
                proc = sb.cnitool("del", net, name, env={"CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAME={name}"})
                assert proc.rc == 0, proc.describe()
                truth.deleted(attached.pop(name)[1])
        else:
            name = rng.choice(free)
            env = {"CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAME={name}"}
            added = now()
            proc = sb.cnitool("add", net, name, env=env)
            assert proc.rc == 0, proc.describe()
            (cidr,) = ipv4_cidrs(name, "eth0")
            address = cidr.split("/")[0]
            assert address in addresses
            assert address not in {a for a, _ in attached.values()}  # host-local never hands out one twice
            attached[name] = (address, truth.added(cids[name], address, added))
            if rng.random() < 0.3:
                proc = sb.cnitool("check", net, name, env=env)
                assert proc.rc == 0, proc.describe()
        truth.marks.append((now(), {a: cids[n] for n, (a, _) in attached.items()}))
        time.sleep(PACE)
    return net.log_file, truth


# -- files --------------------------------------------------------------------------------------------------


def files_of(log: Path) -> list[Path]:
    """The trail's files, oldest first (backup stamps sort by time; the live file last)."""
    backups = sorted(p for p in log.parent.iterdir() if p.name.startswith(log.name + ".") and ".tmp." not in p.name)
    return backups + ([log] if log.exists() else [])


def read_lines(path: Path) -> list[bytes]:
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    return data.split(b"\n")[:-1]


def write_lines(path: Path, lines: list[bytes]) -> None:
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def independent_events(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """Every complete event in the files, by event.id: what stats and events must count (each once)."""
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            lines = read_lines(path)
        except (EOFError, OSError, gzip.BadGzipFile):
            lines = _readable_prefix(path)
        for line in lines:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and isinstance(doc.get("event"), dict):
                found.setdefault(doc["event"]["id"], doc)
    return found


def _readable_prefix(path: Path) -> list[bytes]:
    import zlib

    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(path.read_bytes())
    except zlib.error:
        data = b""
    return data.split(b"\n")[:-1]  # the cut-short last line is not a complete event


@dataclass
class Damage:
    directory: Path
    log: Path
    copy: Path
    removed: list[Path]
    truncated: Path
    cut: tuple[Path, int]
    junk: tuple[Path, list[int]]
    lost_del: tuple[str, str]
    """(container id, address) whose DEL line was dropped."""

    def args(self) -> list[str]:
        return ["--log-file", str(self.log), "--log-file", str(self.copy)]


def damage(source: Path, target: Path, truth: Truth) -> Damage:
    shutil.copytree(source.parent, target)
    log = target / source.name
    files = files_of(log)
    gz = [p for p in files if p.name.endswith(".gz")]
    assert len(gz) >= 5, files
    # A lost DEL: one whose address another container ADDs later, from a file left whole.
    events = [(p, n, json.loads(line)) for p in files for n, line in enumerate(read_lines(p))]
    chosen = None
    for index, (path, number, doc) in enumerate(events):
        if doc["cni"]["command"] == "DEL" and doc.get("related") and path not in (gz[0], gz[2], gz[-2]):
            address = doc["related"]["ip"][0]
            later = [d for _, _, d in events[index + 1:] if d["cni"]["command"] == "ADD"
                     and address in d.get("related", {}).get("ip", [])]
            if later and index > len(events) // 2:
                chosen = (path, number, doc["cni"]["container_id"], address)
                break
    assert chosen is not None
    lines = read_lines(chosen[0])
    del lines[chosen[1]]
    write_lines(chosen[0], lines)
    # The oldest backup, and one in the middle, gone.
    removed = [gz[0], gz[2]]
    for path in removed:
        path.unlink()
    # A truncated .gz: half of it.
    truncated = gz[-2]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    # A line cut short (its newline kept), in the newest backup.
    plain = [p for p in files if not p.name.endswith(".gz") and p != log and p.exists()]
    newest = plain[-1] if plain else gz[-1]
    lines = read_lines(newest)
    lines[1] = lines[1][:180]
    write_lines(newest, lines)
    # Junk lines in the live file (or the newest backup when rotation just emptied it).
    junk_file = log if log.exists() and log.stat().st_size else newest
    lines = read_lines(junk_file)
    lines[2:2] = [b"Nov 29 05:00:01 node kernel: eth0: link up", b"\x00\x00\x00\x00", b"{\"half\": tru"]
    write_lines(junk_file, lines)
    # A copy of the newest backup passed as well: its events twice.
    copy = target / "copied-by-hand.log"
    shutil.copyfile(newest, copy)
    return Damage(target, log, copy, removed, truncated, (newest, 2), (junk_file, [3, 4, 5]),
                  (chosen[2], chosen[3]))


# -- judging --------------------------------------------------------------------------------------------


@dataclass
class Tally:
    right: int = 0
    qualified: int = 0
    wrong: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def count(self, result: Result) -> None:
        self.statuses[result.rc] = self.statuses.get(result.rc, 0) + 1


def judge_at(tally: Tally, address: str, at: str, truth_holder: str | None, result: Result) -> None:
    """One ``who-had --at`` answer: right, explicitly qualified, or wrong."""
    tally.count(result)
    rows = result.json
    firm = [r["container_id"] for r in rows if r["certainty"] == "held" and not r["conflict"]]
    named = {r["container_id"] for r in rows}
    where = f"who-had {address} --at {at}: truth {truth_holder}, rc {result.rc}, rows {rows}, {result.stderr}"
    if result.rc == 0:
        ok = firm == [truth_holder] and len(rows) == 1
        tally.right += ok
    elif result.rc == 1:
        ok = truth_holder is None and not rows and "nobody held" in result.stderr
        tally.right += ok
    elif result.rc == 3:
        unseen = "others may have held" in result.stderr  # the moment is in damage: all events of one may be lost
        ok = all(c == truth_holder for c in firm) and (truth_holder is None or truth_holder in named or unseen) \
            and all(r["certainty"] == "possibly" or r["notes"] for r in rows if r["container_id"] != truth_holder)
        tally.qualified += ok
    elif result.rc == 4:
        ok = not rows and "no evidence" in result.stderr
        tally.qualified += ok
    else:
        ok = False
    if not ok:
        tally.wrong.append(where)


def judge_subnet_at(tally: Tally, truth: Truth, subnet: str, at: str, result: Result) -> None:
    """``who-had CIDR --at``: every address at once. Certain rows must be the truth; 0 means every holder is listed
    for certain, 1 that nobody held any; 3 that whoever is missing may have been held unseen, or is listed as
    possibly; 4 that nothing is known."""
    tally.count(result)
    rows = result.json
    expected = {a: truth.holder(a, at) for a in truth.addresses} if at != truth.before else {}
    expected = {a: c for a, c in expected.items() if c is not None}
    firm = {(r["address"], r["container_id"]) for r in rows if r["certainty"] == "held" and not r["conflict"]}
    named = {(r["address"], r["container_id"]) for r in rows}
    truly = set(expected.items())
    where = f"who-had {subnet} --at {at}: truth {expected}, rc {result.rc}, rows {rows}, {result.stderr}"
    if result.rc == 0:
        ok = firm == truly and len(rows) == len(truly)
    elif result.rc == 1:
        ok = not truly and not rows and "nobody held" in result.stderr
    elif result.rc == 3:
        unseen = "others may have held" in result.stderr
        ok = firm <= truly and (truly <= named or unseen) and all(
            r["certainty"] == "possibly" or r["notes"] for r in rows if (r["address"], r["container_id"]) not in truly)
    elif result.rc == 4:
        ok = not rows and "no evidence" in result.stderr
    else:
        ok = False
    tally.right += ok and result.rc in (0, 1)
    tally.qualified += ok and result.rc in (3, 4)
    if not ok:
        tally.wrong.append(where)


def judge_listing(tally: Tally, truth: Truth, address: str, result: Result) -> None:
    """``who-had IP``: a row without notes must be a real holding; a noted one a real holder of the address."""
    tally.count(result)
    for row in result.json:
        where = f"who-had {address}: {row}"
        if row["notes"]:
            ok = truth.ever(row["container_id"], address)
            tally.qualified += ok
        else:
            ok = truth.held_at(row["container_id"], address, row["from"], row["until"])
            tally.right += ok
        if not ok:
            tally.wrong.append(where)
    if result.rc == 1 and any(a == address for _, a, _, _ in truth.held):
        tally.wrong.append(f"who-had {address}: nobody, but it was held")


def ask_everything(args: list[str], truth: Truth, tally: Tally) -> None:
    marks = [truth.marks[n] for n in range(0, len(truth.marks), 4)] + [truth.marks[-1]]
    for at, _ in [(truth.before, {}), *marks]:
        for address in truth.addresses:
            expected = None if at == truth.before else truth.holder(address, at)
            judge_at(tally, address, at, expected, cli("who-had", address, "--at", at, "--json", *args))
        subnet = truth.addresses[0].rsplit(".", 1)[0] + ".0/24"
        judge_subnet_at(tally, truth, subnet, at, cli("who-had", subnet, "--at", at, "--json", *args))
    for address in truth.addresses:
        judge_listing(tally, truth, address, cli("who-had", address, "--json", *args))


# -- the tests ------------------------------------------------------------------------------------------


def test_every_answer_on_the_intact_trail_is_right(recorded: tuple[Path, Truth]) -> None:
    log, truth = recorded
    wait_for_compression(log.parent)
    args = ["--log-file", str(log)]
    assert len(files_of(log)) >= 6  # the trail rotated, and its backups were gzipped
    assert len({a for _, a, _, _ in truth.held}) == ADDRESSES  # every address was used...
    assert len(truth.held) > 2 * ADDRESSES  # ...and reused
    tally = Tally()
    ask_everything(args, truth, tally)
    assert tally.wrong == []
    # Before the trail: no evidence (each address, and the subnet); every other moment is answered for certain.
    assert tally.statuses.get(4) == ADDRESSES + 1 and tally.qualified == ADDRESSES + 1 and 3 not in tally.statuses
    print(f"\nintact trail: {tally.right} right, {tally.qualified} qualified, statuses {tally.statuses}")

    # the ones attached at the end still run (the sandbox keeps their namespaces, libcni their results): no leaks
    leaks = cli("leaks", "--json", *args)
    assert leaks.rc == 1, leaks.stderr
    assert {(r["kind"], r["container_id"], r["state"]) for r in leaks.json} == {
        ("never-deleted", c, "running") for c in truth.attached_at_end()}
    events = cli("events", "--json", "--strict", *args)
    assert events.rc == 0 and events.stderr == ""
    (stats,) = cli("stats", "--json", *args).json
    commands = [e["cni"]["command"] for e in events.json]
    assert stats["events"] == len(commands) == len({e["event"]["id"] for e in events.json})
    assert stats["commands"]["ADD"] == len(truth.held) and stats["commands"]["DEL"] == commands.count("DEL")
    assert stats["evidence"]["stretches"] == [] and stats["evidence"]["duplicates_ignored"] == 0


def test_every_answer_on_the_damaged_trail_is_right_or_qualified(recorded: tuple[Path, Truth],
                                                                 tmp_path: Path) -> None:
    log, truth = recorded
    wait_for_compression(log.parent)
    hurt = damage(log, tmp_path / "damaged", truth)
    args = hurt.args()
    tally = Tally()
    ask_everything(args, truth, tally)
    assert tally.wrong == [], "\n".join(tally.wrong)
    print(f"\ndamaged trail: {tally.right} right, {tally.qualified} qualified, statuses {tally.statuses}")
    assert tally.statuses.get(3) and tally.statuses.get(4)  # the damage was felt, and said so
    assert tally.statuses.get(0) and tally.statuses.get(1)  # and where the trail is whole, answers are certain

    # The lost DEL: its holder is superseded by the next ADD of the address, not a co-holder for ever.
    cid, address = hurt.lost_del
    rows = cli("who-had", address, "--json", *args).json
    mine = [r for r in rows if r["container_id"] == cid and r["until"] is None]
    assert mine == []
    superseded = [r for r in rows if r["ended_by"] == "superseded"]
    assert any(r["container_id"] == cid and r["superseded_by"] for r in superseded), rows

    # leaks: the superseded one is listed apart, never as a leak; the real leaks are all there.
    leaks = cli("leaks", "--json", *args)
    assert leaks.rc in (0, 1), leaks.stderr  # 0 only for a DEL without ADD: the ones still attached all run
    assert (leaks.rc == 0) == any(r["kind"] == "del-without-add" for r in leaks.json), leaks.stdout
    kinds: dict[str, set[str]] = {}
    for row in leaks.json:
        kinds.setdefault(row["kind"], set()).add(row["container_id"])
    assert cid in kinds.get("superseded", set())
    assert kinds.get("never-deleted", set()) == truth.attached_at_end()
    remaining = sorted(independent_events(files_of(hurt.log)).values(), key=lambda e: e["@timestamp"])
    for row in leaks.json:
        if row["kind"] == "del-without-add":  # its ADD was in a file now gone or damaged
            before = [e["cni"]["command"] for e in remaining
                      if e["cni"]["container_id"] == row["container_id"] and e["@timestamp"] < row["seen"]]
            assert before[-1:] != ["ADD"], (row, before)

    # stats and events: each event once, though a copy of a file was passed too.
    paths = [*files_of(hurt.log), hurt.copy]
    expected = independent_events(paths)
    events = cli("events", "--json", *args)
    ids = [e["event"]["id"] for e in events.json]
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == set(expected)
    (stats,) = cli("stats", "--json", *args).json
    assert stats["events"] == len(expected)
    assert stats["evidence"]["duplicates_ignored"] == len(independent_events([hurt.copy]))  # its cut line is no event

    # Each damaged stretch is reported with its file and lines; --strict turns it into status 3.
    strict = cli("events", "--strict", *args)
    assert strict.rc == 3
    err = strict.stderr
    assert f"unreadable: {hurt.truncated} from line" in err
    assert f"damaged: {hurt.cut[0]} line {hurt.cut[1]} (" in err
    junk_file, junk_lines = hurt.junk
    assert f"damaged: {junk_file} lines {junk_lines[0]}-{junk_lines[-1]} (" in err
    middle = hurt.removed[1].name.split(".")[-4]  # cni-logger.log.<sequence>.<stamp>.gz: numbered in write order
    assert "gap: between " in err and f"backup {middle} missing from the sequence" in err
    kinds_found = {s["kind"] for s in stats["evidence"]["stretches"]}
    assert {"unreadable", "damaged", "gap"} <= kinds_found
