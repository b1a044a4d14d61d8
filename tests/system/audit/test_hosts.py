"""Many nodes: trails of several nodes merged, each answer naming its host.

Two nodes run the same network (``pod-net``) with the same host-local range, as every node of a cluster
does: the same address is held on both at once, and a CNI GC on one node says nothing about the other's
attachments. Their trails are real files given together (``--log-file`` twice), read by the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cni_logger.audit.timeparse import from_epoch, to_epoch
from tests.harness.audit import Result, cli
from tests.harness.node_lines import invocation, line
from tests.harness.plugin import cni_env, run_plugin

NET = "pod-net"
T0 = "2026-01-02T10:00:00.000000Z"


def at(seconds: float) -> str:
    return from_epoch(to_epoch(T0) + seconds)


def write(path: Path, docs: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(line(d) + b"\n" for d in docs))
    return path


@pytest.fixture
def nodes(tmp_path: Path) -> list[str]:
    """Node A holds 10.88.0.5 (a1) then is garbage-collected down to nothing; node B holds 10.88.0.5 (b1) and
    10.88.0.9 (b2) throughout. The GC on A comes while B's attachments are open."""
    a = write(tmp_path / "node-a.log", [
        invocation("ADD", at(0), "node-a", network=NET, cid="ctr-a1", address="10.88.0.5", pod="a1", namespace="shop"),
        invocation("GC", at(30), "node-a", network=NET, valid=[]),
        invocation("ADD", at(40), "node-a", network=NET, cid="ctr-a2", address="10.88.0.6", pod="a2",
                   namespace="shop"),
        invocation("DEL", at(50), "node-a", network=NET, cid="ctr-a2", address="10.88.0.6", pod="a2",
                   namespace="shop"),
    ])
    b = write(tmp_path / "node-b.log", [
        invocation("ADD", at(10), "node-b", network=NET, cid="ctr-b1", address="10.88.0.5", pod="b1", namespace="shop"),
        invocation("ADD", at(20), "node-b", network=NET, cid="ctr-b2", address="10.88.0.9", pod="b2", namespace="web"),
        invocation("CHECK", at(60), "node-b", network=NET, cid="ctr-b2", address="10.88.0.9", pod="b2",
                   namespace="web"),
    ])
    return ["--log-file", str(a), "--log-file", str(b)]


def test_node_lines_are_laid_out_as_the_plugin_lays_them_out(tmp_path: Path) -> None:
    """The harness's lines have the real plugin's keys, in its order (the audit's fast paths rely on it)."""
    config = {"cniVersion": "1.0.0", "name": NET, "type": "logger", "logFile": str(tmp_path / "x.log"),
              "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.5/24"}]}}
    env = cni_env("ADD", CNI_CONTAINERID="ctr-x", CNI_ARGS="K8S_POD_NAMESPACE=shop;K8S_POD_NAME=x")
    assert run_plugin("ADD", config, env=env).rc == 0
    real = json.loads((tmp_path / "x.log").read_bytes().splitlines()[0])
    ours = invocation("ADD", T0, "node-a", network=NET, cid="ctr-x", address="10.88.0.5", pod="x", namespace="shop")

    def shape(doc: object) -> object:
        if isinstance(doc, dict):
            return [(k, shape(v)) for k, v in doc.items() if k not in ("config", "prev_result", "error")]
        return None

    assert shape(ours) == shape(real)


def test_a_gc_on_one_node_leaves_the_other_nodes_attachments_open(nodes: list[str]) -> None:
    answer = cli("who-had", "10.88.0.5", "--at", at(45), "--json", *nodes)
    assert answer.rc == 0, answer
    assert [(r["container_id"], r["pod"]) for r in answer.json] == [("ctr-b1", "b1")]
    answer = cli("who-had", "10.88.0.5", "--json", *nodes)
    rows = {r["container_id"]: r for r in answer.json}
    assert rows["ctr-a1"]["ended_by"] == "GC" and rows["ctr-b1"]["until"] is None, answer
    leaks = cli("leaks", "--json", *nodes)
    assert leaks.rc == 3, leaks  # open on node B: only node B can tell running from leaked
    assert sorted(r["container_id"] for r in leaks.json if r["kind"] == "never-deleted") == ["ctr-b1", "ctr-b2"]
    assert {r["state"] for r in leaks.json if r["kind"] == "never-deleted"} == {"unknown"}


def test_a_gc_on_one_node_leaves_the_other_nodes_holdings_in_the_subnet_form(nodes: list[str]) -> None:
    answer = cli("who-had", "10.88.0.0/24", "--at", at(45), "--json", *nodes)
    assert answer.rc == 0, answer
    assert sorted(r["container_id"] for r in answer.json) == ["ctr-a2", "ctr-b1", "ctr-b2"]


def _status(result: Result) -> str:
    return f"rc={result.rc}\n{result.stdout}\n{result.stderr}"


def test_every_answer_names_its_host(nodes: list[str]) -> None:
    """JSON and CSV rows carry ``host``; the tables a HOST column, whatever the number of hosts."""
    who = cli("who-had", "10.88.0.5", "--json", *nodes)
    assert [(r["host"], r["container_id"]) for r in who.json] == [("node-a", "ctr-a1"), ("node-b", "ctr-b1")]
    table = cli("who-had", "10.88.0.5", *nodes)
    assert table.stdout.splitlines()[0].split()[:4] == ["FROM", "UNTIL", "HOST", "NETWORK"]
    assert [r[2] for r in table.rows] == ["node-a", "node-b"]
    subnet = cli("who-had", "10.88.0.0/24", "--format", "csv", *nodes)
    header, *rows = subnet.stdout.splitlines()
    assert header.split(",")[:3] == ["address", "host", "network"]
    assert {row.split(",")[1] for row in rows} == {"node-a", "node-b"}
    leaks = cli("leaks", "--json", *nodes)
    assert {(r["host"], r["container_id"]) for r in leaks.json} == {("node-b", "ctr-b1"), ("node-b", "ctr-b2")}
    assert [r[4] for r in cli("leaks", *nodes).rows] == ["node-b", "node-b"]
    events = cli("events", "--format", "csv", "--container", "ctr-a1", *nodes)
    assert [dict(zip(events.stdout.splitlines()[0].split(","), row.split(","), strict=True))["host"]
            for row in events.stdout.splitlines()[1:]] == ["node-a"]
    assert cli("events", "--container", "ctr-b2", *nodes).rows[0][4] == "node-b"
    timeline = cli("timeline", "ctr-b1", "--json", *nodes)
    assert [a["host"] for a in timeline.json] == ["node-b"]
    assert "host node-b" in cli("timeline", "ctr-b1", *nodes).stdout
    report = json.loads(cli("report", "--json", *nodes).stdout)
    assert {(h["host"], h["container_id"]) for h in report["leaks"]["never_deleted"]["listed"]} == {
        ("node-b", "ctr-b1"), ("node-b", "ctr-b2")}
    text = cli("report", *nodes).stdout
    assert any(line.split()[3:5] == ["node-b", NET] for line in text.splitlines() if "ctr-b2" in line), text


@pytest.mark.parametrize("host, expected", [("node-b", ["ctr-b1"]), ("node-?", ["ctr-a1", "ctr-b1"]),
                                            ("node-a", ["ctr-a1"]), ("other", [])])
def test_host_filters_who_had(nodes: list[str], host: str, expected: list[str]) -> None:
    answer = cli("who-had", "10.88.0.5", "--host", host, "--json", *nodes)
    assert [r["container_id"] for r in answer.json] == expected
    assert answer.rc == (0 if expected else 1), answer


def test_host_filters_every_command(nodes: list[str]) -> None:
    events = cli("events", "--host", "node-a", "--json", *nodes)
    assert {r["host"]["name"] for r in events.json} == {"node-a"} and len(events.json) == 4
    assert cli("events", "--host", "node-b", "--command", "ADD", "--json", *nodes).rc == 0
    stats = json.loads(cli("stats", "--host", "node-b", "--json", *nodes).stdout)
    assert stats["events"] == 3
    leaks = cli("leaks", "--host", "node-b", "--json", *nodes)
    assert sorted(r["container_id"] for r in leaks.json) == ["ctr-b1", "ctr-b2"]
    assert cli("leaks", "--host", "node-a", *nodes).rc == 1
    at45 = cli("who-had", "10.88.0.0/24", "--at", at(45), "--host", "node-a", "--json", *nodes)
    assert [r["container_id"] for r in at45.json] == ["ctr-a2"] and at45.rc == 0, at45
    timeline = cli("timeline", "--pod", "shop/b1", "--host", "node-a", *nodes)
    assert timeline.rc == 1
    report = json.loads(cli("report", "--json", "--host", "node-a", *nodes).stdout)
    assert report["leaks"]["never_deleted"]["count"] == 0 and report["stats"]["events"] == 4


# -- exports of the shipped events ------------------------------------------------------------------------------

QUESTIONS = [
    ["who-had", "10.88.0.5", "--json"],
    ["who-had", "10.88.0.5", "--at", at(45), "--json"],
    ["who-had", "10.88.0.5", "--at", at(5), "--json"],
    ["who-had", "10.88.0.0/24", "--json"],
    ["who-had", "10.88.0.0/24", "--at", at(45), "--json"],
    ["who-had", "10.88.0.9", "--at", at(55), "--host", "node-b", "--json"],
    ["leaks", "--json"],
    ["events", "--format", "csv", "--host", "node-a"],
    ["stats", "--json"],
    ["timeline", "--pod", "shop/b1", "--json"],
]


def fed(*args: str, stdin: bytes = b"") -> Result:
    """``cni-logger ARGS`` with ``stdin`` on standard input."""
    import subprocess

    from tests.harness.audit import CLI

    proc = subprocess.run([CLI, *args], input=stdin, capture_output=True, timeout=60, check=False)
    out, err = (stream.decode().replace("\r\n", "\n") for stream in (proc.stdout, proc.stderr))  # as text mode reads
    assert "Traceback" not in err, err
    return Result(proc.returncode, out, err)


def comparable(question: list[str], result: Result) -> object:
    """An answer without what differs by the reading itself (a leak's age, stats' files and evidence)."""
    if question[0] == "leaks":
        return result.rc, [{k: v for k, v in r.items() if k != "age_seconds"} for r in result.json]
    if question[0] == "stats":
        summary = json.loads(result.stdout)
        return result.rc, {k: v for k, v in summary.items() if k not in ("evidence",)}
    return result.rc, result.stdout


def scrambled(value: object, seed: int) -> object:
    """Keys in another order at every level, as an ingest pipeline's re-serialisation leaves them."""
    import random

    if isinstance(value, dict):
        items = list(value.items())
        random.Random(seed).shuffle(items)
        return {k: scrambled(v, seed + 1) for k, v in items}
    if isinstance(value, list):
        return [scrambled(v, seed + 1) for v in value]
    return value


def shipped(doc: dict[str, object], number: int) -> dict[str, object]:
    """What the ingest pipeline in deploy/elasticsearch and a shipper add to an event, keys scrambled."""
    copy = json.loads(json.dumps(doc))
    copy["event"]["ingested"] = "2026-01-03T00:00:00.000000000Z"
    copy["data_stream"] = {"type": "logs", "dataset": "cni.audit", "namespace": "default"}
    copy["agent"] = {"type": "filebeat", "version": "8.15.0", "name": "shipper"}
    copy["log"]["file"] = {"path": "/var/log/cni/cni-logger.log"}
    copy["log"]["offset"] = number * 1000
    copy["host"]["os"] = {"kernel": "6.1"}
    return scrambled(copy, number)  # type: ignore[return-value]


def node_docs(nodes: list[str]) -> list[dict[str, object]]:
    return [json.loads(raw) for path in nodes[1::2] for raw in Path(path).read_bytes().splitlines()]


def test_ndjson_of_elasticsearch_documents_on_stdin_gives_the_node_files_answers(nodes: list[str]) -> None:
    export = b"".join(json.dumps(shipped(d, n)).encode() + b"\n" for n, d in enumerate(node_docs(nodes)))
    for question in QUESTIONS:
        assert comparable(question, fed(*question, "--log-file", "-", stdin=export)) == \
            comparable(question, cli(*question, *nodes)), question


@pytest.mark.parametrize("form", ["search-response", "hits", "filebeat-message", "filebeat-decoded", "fluent-bit",
                                  "kubectl"])
def test_every_export_form_gives_the_node_files_answers(nodes: list[str], tmp_path: Path, form: str) -> None:
    docs = node_docs(nodes)
    lines = [line(d) for d in docs]
    if form == "search-response":
        hits = [{"_index": ".ds-logs-cni.audit-default", "_id": d["event"]["id"], "_score": None,  # type: ignore[index]
                 "_source": shipped(d, n)} for n, d in enumerate(docs)]
        text = json.dumps({"took": 3, "timed_out": False, "hits": {"total": {"value": len(hits)}, "hits": hits}},
                          indent=2).encode()
    elif form == "hits":
        text = b"\n".join(json.dumps({"_index": "x", "_id": str(n), "_source": shipped(d, n)}).encode()
                          for n, d in enumerate(docs))
    elif form == "filebeat-message":
        text = b"\n".join(json.dumps({"@timestamp": "2026-01-03T00:00:00.000Z", "@metadata": {"beat": "filebeat"},
                                      "agent": {"type": "filebeat"}, "log": {"offset": n},
                                      "message": raw.decode()}).encode() for n, raw in enumerate(lines))
    elif form == "filebeat-decoded":
        text = b"\n".join(json.dumps({"@metadata": {"beat": "filebeat", "_id": d["event"]["id"]},  # type: ignore[index]
                                      **shipped(d, n)}).encode() for n, d in enumerate(docs))
    elif form == "fluent-bit":  # its parser keeps the time apart (Time_Keep Off): the record has no @timestamp
        text = b"\n".join(b"cni.audit: " + json.dumps(
            [to_epoch(d["@timestamp"]), {k: v for k, v in d.items() if k != "@timestamp"}]).encode()  # type: ignore[arg-type]
            for d in docs)
    else:
        text = b"\n".join(b"2026-01-03T00:00:0%d.123456789Z " % (n % 10) + raw for n, raw in enumerate(lines))
        text += b"\n2026-01-03T00:00:09.000000000Z cni-logger install --watch: ready\n"
    export = tmp_path / "export.txt"
    export.write_bytes(text + b"\n")
    for question in QUESTIONS:
        answer = cli(*question, "--log-file", str(export))
        assert comparable(question, answer) == comparable(question, cli(*question, *nodes)), (question, answer)
        if form == "kubectl":
            assert "skipped 1 line" in answer.stderr, answer  # the watch's own line: not an event, counted


def test_a_document_that_is_not_an_event_is_skipped_and_counted(nodes: list[str]) -> None:
    docs = node_docs(nodes)
    export = b"".join(json.dumps(shipped(d, n)).encode() + b"\n" for n, d in enumerate(docs))
    export += b'{"@timestamp":"2026-01-02T10:00:01Z","message":"kubelet said hello","event":{"dataset":"k8s"}}\n'
    export += b"not json at all\n"
    answer = fed("stats", "--json", "--log-file", "-", stdin=export)
    assert json.loads(answer.stdout)["events"] == len(docs)
    assert "skipped 2 lines" in answer.stderr, answer


def test_redacted_fields_stay_redacted_in_an_export(nodes: list[str]) -> None:
    doc = node_docs(nodes)[0]
    doc["cni"]["config"]["password"] = "[REDACTED]"  # type: ignore[index]
    answer = fed("events", "--json", "--log-file", "-", stdin=json.dumps(shipped(doc, 0)).encode() + b"\n")
    assert answer.json[0]["cni"]["config"]["password"] == "[REDACTED]"
    assert list(answer.json[0]) == [k for k in doc if k in answer.json[0]]  # the plugin's order again


def test_follow_says_an_export_on_stdin_cannot_be_followed(nodes: list[str]) -> None:
    answer = fed("follow", "--log-file", "-", "--timeout", "1", stdin=b"")
    assert answer.rc == 2 and "cannot be followed" in answer.stderr, answer


@pytest.mark.parametrize("packed", [False, True])
def test_node_files_on_stdin_give_the_same_answers(nodes: list[str], packed: bool) -> None:
    """``cat node-a.log node-b.log | cni-logger ... --log-file -`` (or ``zcat``'s input, gzipped): the same answers."""
    import gzip

    data = b"".join(Path(path).read_bytes() for path in nodes[1::2])
    for question in QUESTIONS:
        mine = fed(*question, "--log-file", "-", stdin=gzip.compress(data) if packed else data)
        assert comparable(question, mine) == comparable(question, cli(*question, *nodes)), (question, mine)


def test_report_names_the_hosts_it_covers(nodes: list[str]) -> None:
    report = json.loads(cli("report", "--json", *nodes).stdout)
    assert report["hosts"] == {"node-a": 4, "node-b": 3}
    assert json.loads(cli("report", "--json", "--since", at(35), *nodes).stdout)["hosts"] == {"node-a": 2,
                                                                                              "node-b": 1}
    assert "hosts: node-a (4 events), node-b (3 events)" in cli("report", *nodes).stdout.splitlines()


def test_an_empty_export_is_an_empty_trail() -> None:
    answer = fed("events", "--log-file", "-", stdin=b"")
    assert (answer.rc, answer.stdout) == (1, "") and "the trail has no events" in answer.stderr, answer


@pytest.fixture
def same_ids(tmp_path: Path) -> list[str]:
    """Two nodes whose attachments share container id, interface and network (a merged trail: runtimes that name
    sandboxes, a restored node, or ids reused): node A's ``ctr-same`` holds 10.88.0.5 throughout, node B's
    ``ctr-same`` is added and deleted meanwhile; node A's ``ctr-two`` is still open when node B records a DEL of
    its own ``ctr-two`` (with the cached result, and no ADD on node B)."""
    a = write(tmp_path / "node-a.log", [
        invocation("ADD", at(0), "node-a", network=NET, cid="ctr-same", address="10.88.0.5", pod="a", namespace="x"),
        invocation("ADD", at(1), "node-a", network=NET, cid="ctr-two", address="10.88.0.6", pod="a2", namespace="x"),
        invocation("CHECK", at(40), "node-a", network=NET, cid="ctr-same", address="10.88.0.5", pod="a",
                   namespace="x"),
    ])
    b = write(tmp_path / "node-b.log", [
        invocation("ADD", at(10), "node-b", network=NET, cid="ctr-same", address="10.88.0.7", pod="b", namespace="x"),
        invocation("DEL", at(15), "node-b", network=NET, cid="ctr-two", address="10.88.0.8", pod="b2", namespace="x"),
        invocation("DEL", at(20), "node-b", network=NET, cid="ctr-same", address="10.88.0.7", pod="b", namespace="x"),
    ])
    return ["--log-file", str(a), "--log-file", str(b)]


def test_attachments_of_two_nodes_with_the_same_ids_are_never_paired_across_nodes(same_ids: list[str]) -> None:
    """An attachment's identity includes its node: node B's ADD of ``ctr-same`` does not end node A's (as a
    re-ADD without DEL would), node B's DELs close nothing of node A's, and node A's attachments are still open
    at the end of the trail."""
    held = cli("who-had", "10.88.0.5", "--at", at(30), "--json", *same_ids)
    assert held.rc == 0, held  # certain: node A's ctr-same holds it, its DEL was never missing
    assert [(r["host"], r["container_id"], r["certainty"], r["until"]) for r in held.json] == [
        ("node-a", "ctr-same", "held", None)]
    assert held.json[0]["notes"] == []
    six = cli("who-had", "10.88.0.6", "--json", *same_ids)
    assert [(r["host"], r["until"], r["ended_by"]) for r in six.json] == [("node-a", None, None)], six
    leaks = cli("leaks", "--json", *same_ids)
    rows = sorted((r["kind"], r["host"], r["container_id"]) for r in leaks.json)
    assert rows == [("del-without-add", "node-b", "ctr-two"), ("never-deleted", "node-a", "ctr-same"),
                    ("never-deleted", "node-a", "ctr-two")], leaks
    timeline = cli("timeline", "ctr-same", "--json", *same_ids)
    periods = {(r["host"], p["detached"]) for r in timeline.json for p in r["periods"]}
    assert periods == {("node-a", None), ("node-b", at(20))}, timeline.stdout
    report = json.loads(cli("report", "--json", *same_ids).stdout)
    assert sorted((h["host"], h["container_id"]) for h in report["leaks"]["never_deleted"]["listed"]) == [
        ("node-a", "ctr-same"), ("node-a", "ctr-two")], report["leaks"]


def test_report_occupancy_is_per_network_and_host(nodes: list[str]) -> None:
    """The same network name and range on two nodes are two sets of addresses: ``report`` counts addresses,
    holdings, peaks and what is still held per network *and host*, never added across nodes (10.88.0.5 is held on
    both: two addresses, one per node); one node's trail reads as before, by network alone."""
    report = json.loads(cli("report", "--json", *nodes).stdout)
    assert report["networks"] == {
        f"{NET} on node-a": {"network": NET, "host": "node-a", "addresses": 2, "holdings": 2, "peak": 1,
                             "conflicts": 0, "still_held": 0},
        f"{NET} on node-b": {"network": NET, "host": "node-b", "addresses": 2, "holdings": 2, "peak": 2,
                             "conflicts": 0, "still_held": 2}}
    text = cli("report", *nodes).stdout.splitlines()
    heading = text.index("address occupancy per network and host (holdings that overlap the window)")
    assert text[heading + 1].split() == ["NETWORK", "HOST", "ADDRESSES", "HOLDINGS", "PEAK", "CONFLICTS", "STILL",
                                         "HELD"]
    assert text[heading + 3].split() == [NET, "node-b", "2", "2", "2", "0", "2"]
    counts = cli("report", "-o", "csv", *nodes).stdout.splitlines()
    assert f"network {NET} on node-b,still_held,2" in counts
    one = json.loads(cli("report", "--json", *nodes[:2]).stdout)  # node A's trail alone
    assert one["networks"] == {NET: {"addresses": 2, "holdings": 2, "peak": 1, "conflicts": 0, "still_held": 0}}
    assert "address occupancy per network (holdings that overlap the window)" in cli("report", *nodes[:2]).stdout
