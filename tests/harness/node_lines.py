"""Invocation events of a chosen node at chosen times, laid out as the plugin lays them out.

The plugin (``cni_logger.events``) writes ``host.name`` from the node's own name and ``@timestamp`` from
its clock, so a test that needs two nodes' trails at known moments writes their lines here: the same
keys in the same order as ``cni_logger.events.render`` (top level per ``events._TOP_LEVEL_ORDER``; ``event``,
``orchestrator``, ``cni`` as its processors build them), compact JSON, so the audit's slicing fast paths
read them exactly as they read the plugin's. ``tests/system/audit/test_hosts.py`` also checks one of them
against a line of the real plugin, key for key.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.harness.trails import prev_result


def invocation(command: str, time: str, host: str, *, network: str, cid: str = "", address: str = "",
               ifname: str = "eth0", pod: str = "", namespace: str = "", ok: bool = True,
               valid: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """One invocation event (``valid``: a GC's valid attachments, as (container id, ifname))."""
    verb = "succeeded" if ok else "failed: boom"
    where = (f" {ifname}" if cid else "") + (f" of container {cid}" if cid else "") + f" on network {network}"
    event: dict[str, Any] = {
        "kind": "event", "category": ["network"], "type": ["info"], "action": f"cni-{command.lower()}",
        "outcome": "success" if ok else "failure", "duration": 1000000, "id": str(uuid.uuid4()), "module": "cni",
        "dataset": "cni.audit"}
    args = {k: v for k, v in (("K8S_POD_NAMESPACE", namespace), ("K8S_POD_NAME", pod)) if v}
    cni: dict[str, Any] = {"command": command, "container_id": cid, "netns": f"/run/netns/{cid}" if cid else "",
                           "ifname": ifname if cid else "", "path": ["/opt/cni/bin"], "args": args,
                           "version": "1.1.0" if command == "GC" else "1.0.0", "plugin_type": "logger",
                           "config": {"cniVersion": "1.0.0", "name": network, "type": "logger"}}
    if address:
        cni["prev_result"] = prev_result(address, ifname, f"/run/netns/{cid}")
    if valid is not None:
        cni["valid_attachments"] = [{"containerID": c, "ifname": i} for c, i in valid]
    doc: dict[str, Any] = {"@timestamp": time, "message": f"CNI {command}{where} {verb}",
                           "log": {"level": "info" if ok else "error", "logger": "cni-logger"},
                           "ecs": {"version": "9.4.0"}, "event": event}
    if not ok:
        doc["error"] = {"code": "999", "message": "boom", "type": "CNIError"}
    if cid:
        doc["container"] = {"id": cid}
    if pod:
        resource: dict[str, Any] = {"type": "pod", "name": pod} if namespace else {"name": pod}
        if address:
            resource["ip"] = [address]
        doc["orchestrator"] = {"type": "kubernetes", "namespace": namespace, "resource": resource} if namespace \
            else {"resource": resource}
    doc["network"] = {"name": network}
    doc["host"] = {"name": host, "hostname": host}
    doc["process"] = {"pid": 4242, "parent": {"pid": 4241}}
    if address:
        doc["related"] = {"ip": [address]}
    doc["cni"] = cni
    return doc


def line(doc: dict[str, Any]) -> bytes:
    """The event as the plugin writes it (without the newline)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
