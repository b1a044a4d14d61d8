"""Coverage events as ``docs/coverage-events.md`` specifies them, for the audit's tests.

The real writer (``cni_logger.install.coverage``, run by ``install``, ``uninstall`` and ``install --watch``)
writes at the current time; these functions write lines at the times a scenario needs, exactly per the
contract (``tests/system/audit/test_coverage_real.py`` checks that the audit reads the real writer's lines,
written by a real failsafe and uninstall, the same way): the invocation events' key order
(``@timestamp``, ``message``, ``log``, ``ecs``, ``event``, ``container``, ``orchestrator``, ``network``,
``host``, ``process``, ``related``, ``cni``), ``event.dataset`` ``cni.coverage``, details under
``cni.coverage``, no ``cni.command``. The API is kept narrow on purpose: ``coverage_line`` for one
event, ``inventory_lines`` for a checkpoint (its ``cni-attachment`` lines, then the
``logger-inventory``), ``append`` to add lines to a trail through the plugin's own rotating sink.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from cni_logger.filesink import RotatingFile

HOST = os.uname().nodename
"""The plugin writes ``host.name`` from the node's name: coverage lines of the same node name it too."""
WARNING_ACTIONS = ("logger-dropped", "cni-logger")
STATE_ACTIONS = ("logger-heartbeat", "logger-inventory", "cni-attachment")


def _level(action: str, coverage: dict[str, Any]) -> str:
    if action in WARNING_ACTIONS or (action == "logger-left" and coverage.get("reason") != "uninstall"):
        return "warning"
    return "info"


def _message(action: str, network: str, coverage: dict[str, Any]) -> str:
    where = f"network {network} in {coverage.get('file', '?')}"
    why = coverage.get("reason", "")
    if coverage.get("detail"):
        why += f": {coverage['detail']}"
    if action == "logger-entered":
        return f"cni-logger entered the chain of {where} ({why})"
    if action == "logger-left":
        return f"cni-logger left the chain of {where} ({why})"
    if action == "logger-heartbeat":
        return f"cni-logger is in the chains of {', '.join(coverage.get('networks', [])) or 'no network'}"
    if action == "logger-dropped":
        return f"cni-logger could not write {coverage.get('dropped', 0)} events"
    if action == "logger-inventory":
        return f"cni-logger inventory of {coverage.get('attachments', 0)} attachments"
    return f"cni-logger inventory: attachment {coverage.get('container_id', '')}"


def coverage_line(action: str, time: str, host: str = HOST, network: str = "", *, why: str = "",
                  extra: dict[str, Any] | None = None, **coverage: Any) -> bytes:
    """One coverage event (without newline). ``coverage``: the ``cni.coverage`` fields (``reason`` among them);
    ``why``: ``event.reason``, in words (defaults to ``cni.coverage.reason`` and ``detail``); ``extra``: top-level
    fields of a ``cni-attachment`` (``container``, ``orchestrator``, ``related``, ``cni``)."""
    if network and action in ("logger-entered", "logger-left"):
        coverage.setdefault("network", network)
    entered_or_left = action in ("logger-entered", "logger-left")
    event: dict[str, Any] = {
        "kind": "state" if action in STATE_ACTIONS else "event",
        "category": ["configuration"],
        "type": ["change"] if entered_or_left else ["info"],
        "action": action,
        "outcome": "success",
        "id": str(uuid.uuid4()),
        "module": "cni",
        "dataset": "cni.coverage",
        "reason": why or ": ".join(str(coverage[k]) for k in ("reason", "detail") if coverage.get(k)) or action,
    }
    doc: dict[str, Any] = {
        "@timestamp": time,
        "message": _message(action, network, coverage),
        "log": {"level": _level(action, coverage), "logger": "cni-logger"},
        "ecs": {"version": "9.4.0"},
        "event": event,
    }
    extra = dict(extra or {})
    for key in ("container", "orchestrator"):
        if key in extra:
            doc[key] = extra.pop(key)
    if network:
        doc["network"] = {"name": network}
    doc["host"] = {"name": host, "hostname": host}
    doc["process"] = {"pid": os.getpid(), "parent": {"pid": os.getppid()}}
    if "related" in extra:
        doc["related"] = extra.pop("related")
    cni = dict(extra.pop("cni", {}))
    cni["coverage"] = coverage
    doc["cni"] = cni
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def attachment(container_id: str, address: str, *, network: str, ifname: str = "eth0", pod: str = "",
               namespace: str = "") -> dict[str, Any]:
    """One attachment of libcni's result cache, as ``inventory_lines`` takes it."""
    return {"container_id": container_id, "address": address, "network": network, "ifname": ifname, "pod": pod,
            "namespace": namespace}


def inventory_lines(time: str, attachments: list[dict[str, Any]], networks: list[str], host: str = HOST, *,
                    trigger: str = "rotation", complete: bool = True, inventory: str = "",
                    count: int | None = None) -> list[bytes]:
    """A checkpoint: one ``cni-attachment`` per attachment (``attachment``), then the ``logger-inventory``.
    ``count``: the ``attachments`` count the summary claims (default: how many are listed)."""
    inventory = inventory or str(uuid.uuid4())
    lines = []
    for item in attachments:
        cid, address, ifname = item["container_id"], item["address"], item.get("ifname", "eth0")
        args = {k: v for k, v in (("K8S_POD_NAMESPACE", item.get("namespace", "")),
                                  ("K8S_POD_NAME", item.get("pod", ""))) if v}
        extra: dict[str, Any] = {"container": {"id": cid}}
        if args:
            resource: dict[str, Any] = {"type": "pod"} if item.get("namespace") else {}
            if item.get("pod"):
                resource["name"] = item["pod"]
            if address:
                resource["ip"] = [address]
            orchestrator: dict[str, Any] = {"type": "kubernetes"} if item.get("namespace") else {}
            if item.get("namespace"):
                orchestrator["namespace"] = item["namespace"]
            orchestrator["resource"] = resource
            extra["orchestrator"] = orchestrator
        if address:
            extra["related"] = {"ip": [address]}
        cni: dict[str, Any] = {"container_id": cid, "ifname": ifname, "args": args}
        if address:
            cni["prev_result"] = {"cniVersion": "1.0.0",
                                  "interfaces": [{"name": ifname, "sandbox": f"/run/netns/{cid}"}],
                                  "ips": [{"interface": 0, "address": f"{address}/24"}]}
        extra["cni"] = cni
        lines.append(coverage_line("cni-attachment", time, host, item["network"], why=f"inventory ({trigger})",
                                   extra=extra, inventory=inventory))
    lines.append(coverage_line("logger-inventory", time, host, why=f"inventory ({trigger})", inventory=inventory,
                               cache_dir="/var/lib/cni/results",
                               attachments=len(attachments) if count is None else count,
                               networks=list(networks), trigger=trigger, complete=complete))
    return lines


def append(log: str | os.PathLike[str], lines: list[bytes], *, max_bytes: int = 1 << 30, max_backups: int = 0,
           compress: bool = False) -> None:
    """Append lines to a trail through the plugin's rotating sink (as the writer does)."""
    sink = RotatingFile(os.fspath(log), max_bytes, max_backups, compress=compress)
    for line in lines:
        sink.append(line + b"\n")
