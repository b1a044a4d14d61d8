"""The audit event: one ECS-shaped JSON object per invocation, built by structlog processors.

structlog's ``BoundLogger`` runs the chain below for every event: plain functions that take and
return an event dict, in the order they run. The first ones read the invocation (bound under
``_request``, ``_outcome`` and friends) and lay out the Elastic Common Schema fields plus the CNI
specifics under ``cni.*``; the last ones drop that raw context, mask secrets, cap sizes and render
one line. Nested objects, never dotted keys, so the line can be indexed unchanged by Filebeat,
Fluent Bit or Vector.

The renamer and the renderer are written here rather than taken from ``structlog.processors``:
that module imports the standard library's ``logging`` bridge and traceback machinery, which costs
a plugin process about a third of its start-up for two functions of a few lines.

The fields and their meaning are documented once, in ``docs/events.md``, and checked against
the ECS field definitions by ``tests/system/ecs``; ``cni_logger.ECS_VERSION`` is the one place the schema
version is named (the diagnostics follow it too).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

# From structlog's submodule, never ``from structlog import ...``: with the package's __init__
# deferred (cni_logger.deferred) only the processor-chain runner is loaded.
try:
    from structlog._generic import BoundLogger
except ImportError:  # pragma: no cover - a structlog that moved it: the public name, at full import cost
    from structlog import BoundLogger

from cni_logger import ECS_VERSION, jsonio, redact, results
from cni_logger.skel import CNIError, Outcome, Request, parse_cni_args

if TYPE_CHECKING:
    from collections.abc import MutableMapping
    from typing import Any

    from cni_logger.settings import Settings

    EventDict = MutableMapping[str, Any]

LOGGER_NAME = "cni-logger"
MAX_EVENT_BYTES = 16 * 1024
"""One line stays below Fluent Bit's default 32 KiB tail buffer (Vector: 100 KiB, Filebeat: 10 MiB)."""

_CLASSIFICATION: dict[str, tuple[list[str], list[str]]] = {
    "ADD": (["network", "configuration"], ["start", "creation"]),
    "DEL": (["network", "configuration"], ["end", "deletion"]),
    "CHECK": (["network"], ["info"]),
    "STATUS": (["network"], ["info"]),
    "VERSION": (["configuration"], ["info"]),
    "GC": (["configuration"], ["deletion"]),
}
_ATTACHMENT_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")
CAPABILITY_FIELDS: dict[str, tuple[str, ...]] = {
    "portMappings": ("hostPort", "containerPort", "protocol", "hostIP"),
    "ipRanges": ("subnet", "rangeStart", "rangeEnd", "gateway"),
    "bandwidth": ("ingressRate", "ingressBurst", "egressRate", "egressBurst"),
    "dns": ("servers", "searches", "options"),
}
"""The fields of the conventions' capability arguments, in the conventions' spelling (see
``conventional_runtime_config``)."""
_TOP_LEVEL_ORDER = ("@timestamp", "message", "log", "ecs", "event", "error", "container", "orchestrator",
                    "network", "host", "process", "trace", "related", "cni")


def iso_utc(epoch_ns: int) -> str:
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1000:06d}Z"


def new_event_id() -> str:
    """A random (version 4) UUID, without importing ``uuid`` (which pulls in ``platform``)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def summarize_result(prev: dict[str, Any]) -> dict[str, Any]:
    """Interfaces, addresses, routes and DNS of a result, in the 1.x shape whatever its version."""
    try:
        uniform = results.convert(prev, "1.1.0")
    except CNIError:
        uniform = prev
    summary: dict[str, Any] = {"cni_version": prev.get("cniVersion", "")}
    for key in ("interfaces", "ips", "routes", "dns"):
        if key in uniform:
            summary[key] = uniform[key]
    return summary


def conventional_runtime_config(runtime_config: dict[str, Any]) -> dict[str, Any]:
    """``runtimeConfig`` with the capability arguments' fields spelt as the CNI conventions spell them.

    containerd's go-cni marshals its structs without JSON tags, so it sends ``HostPort``,
    ``ContainerPort``, ``Protocol``, ``HostIP`` (and ``Subnet``, ``IngressRate``, ``Servers``...);
    Podman and CRI-O send the conventions' ``hostPort``... Plugins read both alike (Go's decoder
    matches field names case-insensitively), so the spelling carries no meaning — but a query on one
    spelling would miss the other runtime's events. The raw spelling is not kept: it would double
    the bytes to record only which runtime sent the call. Fields the conventions do not name are
    kept as sent.
    """
    out = dict(runtime_config)
    for capability, names in CAPABILITY_FIELDS.items():
        if capability in out:
            out[capability] = _respell(out[capability], {name.lower(): name for name in names})
    return out


def _respell(value: Any, names: dict[str, str]) -> Any:
    """Rename keys of the objects in ``value`` (an object or lists of them) found in ``names``, ignoring case."""
    if isinstance(value, list):
        return [_respell(item, names) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = names.get(key.lower(), key) if isinstance(key, str) else key
        out[key if name in value and name != key else name] = item
    return out


def plain_ip(address: str) -> str:
    """``address`` without prefix length or zone index, or ``""`` if it is not an IP address.

    ``related.ip`` and ``orchestrator.resource.ip`` are ECS ``ip`` fields: Elasticsearch refuses the
    whole document if one value does not parse, so junk must not reach them (it stays visible in
    ``cni.prev_result``). ``_socket.inet_pton`` checks in C what ``ipaddress`` would cost milliseconds
    to import for; where it is missing, ``ipaddress`` does the same check.
    """
    candidate = address.split("/", 1)[0].split("%", 1)[0]
    family_v6 = ":" in candidate
    try:
        import _socket

        _socket.inet_pton(_socket.AF_INET6 if family_v6 else _socket.AF_INET, candidate)
    except ImportError:  # pragma: no cover - a Python without the _socket accelerator
        import ipaddress

        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            return ""
    except (OSError, ValueError):
        return ""
    return candidate


def result_addresses(summary: dict[str, Any]) -> list[str]:
    ips = summary.get("ips")
    if not isinstance(ips, list):
        return []
    found = []
    for ip in ips:
        address = ip.get("address") if isinstance(ip, dict) else None
        plain = plain_ip(address) if isinstance(address, str) else ""
        if plain:
            found.append(plain)
    return list(dict.fromkeys(found))


# -- processors, in pipeline order ---------------------------------------------------------------


def rename_event_to_message(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """structlog keeps the log message under ``event``; ECS needs ``message`` (and ``event.*``)."""
    event_dict["message"] = event_dict.pop("event", "")
    return event_dict


def add_base_fields(_: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """Timestamp, ECS version, log level, and where the event happened (host, process)."""
    request: Request = event_dict["_request"]
    event_dict["@timestamp"] = iso_utc(request.started_ns)
    event_dict["ecs"] = {"version": ECS_VERSION}
    event_dict["log"] = {"level": method_name, "logger": LOGGER_NAME}
    caller = request.caller  # thick mode: the shim the runtime started, not the agent serving it
    node = os.uname().nodename if caller is None else caller.node
    event_dict["host"] = {"name": node, "hostname": node}
    pid, parent = (os.getpid(), os.getppid()) if caller is None else (caller.pid, caller.parent_pid)
    event_dict["process"] = {"pid": pid, "parent": {"pid": parent}}
    trace_id = _trace_id(request.traceparent)
    if trace_id:
        event_dict["trace"] = {"id": trace_id}
    return event_dict


def _trace_id(traceparent: str) -> str:
    """The trace id of a W3C ``TRACEPARENT`` (``00-<32 hex>-<16 hex>-<2 hex>``), if well-formed."""
    parts = traceparent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and all(c in "0123456789abcdef" for c in parts[1]):
        return parts[1]
    return ""


def add_event_fields(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """The ECS ``event.*`` classification of a CNI command and its outcome."""
    request: Request = event_dict["_request"]
    outcome: Outcome = event_dict["_outcome"]
    category, kind_of = _CLASSIFICATION.get(request.command, (["configuration"], ["info"]))
    event: dict[str, Any] = {
        "kind": "event",
        "category": category,
        "type": kind_of,
        "action": f"cni-{request.command.lower()}" if request.command in _CLASSIFICATION else "cni-unknown",
        "outcome": "success" if outcome.ok else "failure",
        "duration": event_dict["_duration_ns"],
        "id": new_event_id() if request.caller is None else request.caller.event_id,
        "module": "cni",
        "dataset": "cni.audit",
    }
    if outcome.error is not None:
        event["code"] = str(outcome.error.code)
    event_dict["event"] = event
    return event_dict


def add_error_fields(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """``error.*``: why the invocation failed, or what a DEL tolerated while succeeding."""
    outcome: Outcome = event_dict["_outcome"]
    error = outcome.error or outcome.suppressed
    if error is not None:
        event_dict["error"] = {"code": str(error.code), "message": str(error), "type": "CNIError"}
    return event_dict


def add_cni_fields(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """``cni.*``: the invocation as the runtime made it, with the parsed (not yet redacted) config."""
    request: Request = event_dict["_request"]
    outcome: Outcome = event_dict["_outcome"]
    config = request.config or {}
    cni: dict[str, Any] = {
        "command": request.command,
        "container_id": request.container_id,
        "netns": request.netns,
        "ifname": request.ifname,
    }
    role = event_dict.get("_role")
    if role:  # right after ifname: the audit reads it from the line without decoding it (audit.attempts)
        cni["role"] = role
    cni["path"] = [p for p in request.path.split(":") if p]
    cni["args"] = parse_cni_args(request.args)
    cni["version"] = request.cni_version
    if request.command == "VERSION" and outcome.result:
        cni["version"] = outcome.result.get("cniVersion", request.cni_version)
    if isinstance(config.get("type"), str):
        cni["plugin_type"] = config["type"]
    if config:
        cni["config"] = {k: v for k, v in config.items() if k != "prevResult" and k not in _ATTACHMENT_KEYS}
        if isinstance(config.get("runtimeConfig"), dict):
            cni["config"]["runtimeConfig"] = conventional_runtime_config(config["runtimeConfig"])
    prev = config.get("prevResult")
    if isinstance(prev, dict):
        cni["prev_result"] = summarize_result(prev)
    for key in _ATTACHMENT_KEYS:
        if key in config:
            cni["valid_attachments"] = config[key]
            break
    warnings = event_dict.get("_warnings")
    if warnings:
        cni["warnings"] = list(warnings)
    caller = request.caller
    if caller is not None:  # thick mode: which path answered (the plain launcher records neither field)
        cni["served_by"] = caller.served_by
        if caller.reason:
            cni["fallback_reason"] = caller.reason
    event_dict["cni"] = cni
    return event_dict


def add_ecs_context(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Container, network, orchestrator and related-IP fields derived from ``cni.*``."""
    cni = event_dict["cni"]
    if cni["container_id"]:
        event_dict["container"] = {"id": cni["container_id"]}
    network = (event_dict["_request"].config or {}).get("name")
    if isinstance(network, str) and network:
        event_dict["network"] = {"name": network}
    addresses = result_addresses(cni.get("prev_result", {}))
    if addresses:
        event_dict["related"] = {"ip": addresses}
    orchestrator = kubernetes_fields(cni["args"], addresses)
    if orchestrator:
        event_dict["orchestrator"] = orchestrator
    return event_dict


def kubernetes_fields(args: dict[str, str], addresses: list[str]) -> dict[str, Any]:
    """``orchestrator.*`` from the ``K8S_POD_*`` arguments kubelet's runtimes put in CNI_ARGS.

    Podman sends only ``K8S_POD_NAME`` (the container name), so the type is "kubernetes" only when a
    namespace or pod UID shows that Kubernetes is really behind the call.
    """
    namespace, name, uid = (args.get(k, "") for k in ("K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_UID"))
    if not (namespace or name or uid):
        return {}
    kubernetes = bool(namespace or uid)
    resource: dict[str, Any] = {"type": "pod"} if kubernetes else {}
    if name:
        resource["name"] = name
    if uid:
        resource["id"] = uid
    if addresses:
        resource["ip"] = addresses
    orchestrator: dict[str, Any] = {"type": "kubernetes"} if kubernetes else {}
    if namespace:
        orchestrator["namespace"] = namespace
    orchestrator["resource"] = resource
    return orchestrator


def drop_context(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Remove the raw inputs bound for the processors above; they are not part of the event."""
    for key in [k for k in event_dict if k.startswith("_")]:
        del event_dict[key]
    return event_dict


_FROM_CONFIG = ("config", "args", "prev_result", "valid_attachments")
"""The ``cni.*`` parts that carry operator- or runtime-supplied data, where secrets hide by key name."""


def redactor(secret_keys: tuple[str, ...]) -> Any:
    """A processor that masks secrets, caps sizes and makes every string encodable.

    Key-name masking applies to what came from the config and CNI_ARGS; every other field (which the
    logger itself laid out) is still checked for secret-shaped values, capped and made encodable.
    """

    by_key, by_shape = redact.Scrubber(secret_keys), redact.Scrubber(())

    def scrub_event(_: Any, __: str, event_dict: EventDict) -> EventDict:
        for key, value in list(event_dict.items()):
            if key == "cni" and isinstance(value, dict):
                event_dict[key] = {k: (by_key if k in _FROM_CONFIG else by_shape).value(v, 0)
                                   for k, v in value.items()}
            else:
                event_dict[key] = by_shape.value(value, 0)
        return event_dict

    return scrub_event


_SHRINK_ORDER: tuple[tuple[str, ...], ...] = (
    ("cni", "config"), ("cni", "prev_result", "routes"), ("cni", "prev_result", "dns"), ("cni", "args"),
    ("cni", "valid_attachments"), ("cni", "prev_result", "interfaces"), ("cni", "prev_result"), ("cni", "path"),
    ("orchestrator", "resource", "ip"), ("related", "ip"), ("cni", "warnings"),
)
"""What ``serialize`` drops, in this order, until a line fits: bulky detail first, identity never."""


def _dumps(event: dict[str, Any]) -> str:
    return jsonio.dumps_text(event)


def render_json(_: Any, __: str, event_dict: EventDict) -> str:
    """The final processor: the event as one line of compact JSON (see ``serialize``)."""
    return serialize(dict(event_dict))


def serialize(event_dict: dict[str, Any]) -> str:
    """Compact JSON in a stable key order, shrunk until it fits in ``MAX_EVENT_BYTES``.

    Shrinking drops the bulkiest detail first (``_SHRINK_ORDER``) and lists what went in
    ``cni.truncated``; the identifying fields (time, command, container, network, outcome) stay.
    """
    ordered = {k: event_dict[k] for k in _TOP_LEVEL_ORDER if k in event_dict}
    ordered.update((k, v) for k, v in event_dict.items() if k not in ordered)
    line = _dumps(ordered)
    for path in _SHRINK_ORDER:
        if len(line.encode("utf-8")) <= MAX_EVENT_BYTES:
            return line
        parent: Any = ordered
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and path[-1] in parent:
            del parent[path[-1]]
            truncated = ordered.setdefault("cni", {}).setdefault("truncated", [])
            truncated.append(".".join(path))
            line = _dumps(ordered)
    if len(line.encode("utf-8")) > MAX_EVENT_BYTES and isinstance(ordered.get("error"), dict):
        ordered["error"]["message"] = str(ordered["error"].get("message", ""))[:1024]
        line = _dumps(ordered)
    return line


class _Rendered:
    """structlog's final "logger": hands back the rendered line instead of writing it anywhere.

    The plugin writes the same bytes to each sink itself, so that a sink failure can change the
    answer (strict audit) and be reported without touching the other sinks.
    """

    def _return(self, line: str) -> str:
        return line

    info = warning = error = _return


def message_for(request: Request, outcome: Outcome, role: str | None = None) -> str:
    where = f" {request.ifname}" if request.ifname else ""
    if request.container_id:
        where += f" of container {request.container_id}"
    if request.network_name:
        where += f" on network {request.network_name}"
    if role == "attempt":
        # The first entry of a bracketed chain: on ADD it runs before every other plugin, so its
        # success says only that the chain was started (the outcome entry, last, says how it ended).
        where += " (attempt entry)"
        if request.command == "ADD" and outcome.ok and outcome.suppressed is None:
            return f"CNI ADD{where} attempted"
    if outcome.error is not None:
        return f"CNI {request.command or '(no command)'}{where} failed: {outcome.error}"
    if outcome.suppressed is not None:
        return f"CNI {request.command}{where} succeeded despite: {outcome.suppressed}"
    return f"CNI {request.command}{where} succeeded"


def render(request: Request, outcome: Outcome, settings: Settings, warnings: list[str]) -> bytes:
    """The event line for one invocation, ready to append (UTF-8, newline-terminated)."""
    processors: list[Any] = [
        rename_event_to_message,  # first: ECS needs the "event" key for the event.* object
        add_base_fields, add_event_fields, add_error_fields, add_cni_fields, add_ecs_context,
        drop_context, redactor(settings.redact_keys), render_json,
    ]
    log = BoundLogger(_Rendered(), processors, {})
    level = "error" if not outcome.ok else "warning" if (warnings or outcome.suppressed) else "info"
    duration_ns = time.monotonic_ns() - request.started_monotonic_ns
    line: str = getattr(log, level)(message_for(request, outcome, settings.role), _request=request,
                                    _outcome=outcome, _duration_ns=duration_ns, _warnings=warnings,
                                    _role=settings.role)
    return (line.replace("\n", "\\n") + "\n").encode("utf-8")


# -- coverage events (docs/coverage-events.md) -----------------------------------------------------

COVERAGE_DATASET = "cni.coverage"
_STATE_ACTIONS = ("logger-heartbeat", "logger-inventory", "cni-attachment")
_CHANGE_ACTIONS = ("logger-entered", "logger-left")


def coverage_event(action: str, message: str, reason: str, coverage: dict[str, Any], *, level: str = "info",
                   network: str | None = None, now_ns: int | None = None) -> dict[str, Any]:
    """The common fields of a coverage event (the trail's record of its own coverage), ``cni.coverage`` last.

    Here, beside the invocation event's processors, because both the installer (``cni_logger.install
    .coverage``) and the plugin (``cni_logger.dropped``, which may not import the installer) write them.
    Callers add what their action needs (``container``, ``orchestrator``, ``related``, more of ``cni``),
    then ``render_coverage`` masks, caps and renders the line.
    """
    node = os.uname().nodename
    event: dict[str, Any] = {
        "@timestamp": iso_utc(time.time_ns() if now_ns is None else now_ns),
        "message": message,
        "log": {"level": level, "logger": LOGGER_NAME},
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "state" if action in _STATE_ACTIONS else "event",
            "category": ["configuration"],
            "type": ["change"] if action in _CHANGE_ACTIONS else ["info"],
            "action": action,
            "outcome": "success",
            "id": new_event_id(),
            "module": "cni",
            "dataset": COVERAGE_DATASET,
            "reason": reason,
        },
        "host": {"name": node, "hostname": node},
        "process": {"pid": os.getpid(), "parent": {"pid": os.getppid()}},
        "cni": {"coverage": coverage},
    }
    if network:
        event["network"] = {"name": network}
    return event


def render_coverage(event: dict[str, Any], secret_keys: tuple[str, ...] = ()) -> bytes:
    """A coverage event as one line (masked as invocation events are, within ``MAX_EVENT_BYTES``)."""
    scrubbed = redactor(redact.DEFAULT_REDACT_KEYS + secret_keys)(None, "", event)
    return (serialize(dict(scrubbed)).replace("\n", "\\n") + "\n").encode("utf-8")
