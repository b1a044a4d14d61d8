"""CNI results: pass a ``prevResult`` through in the config's version, converting between families.

The spec has three result families: 0.1.0/0.2.0 (``ip4``/``ip6``), 0.3.0/0.3.1/0.4.0 (``interfaces``,
``ips`` with ``version``) and 1.0.0/1.1.0 (``ips`` without ``version``). Within a family a result is
only relabelled. Across families the fields are converted the way the Go ``types`` packages of the
reference library convert them, but working on the raw JSON so keys this plugin does not know about
survive the trip: a chained plugin must not change the network it is told about.

Standard library only; used on the ADD path and by the event builder.
"""

from __future__ import annotations

from cni_logger.skel import ERR_DECODING_FAILURE, ERR_INCOMPATIBLE_VERSION, SUPPORTED_VERSIONS, CNIError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any

# Fields the 1.1.0 spec added that the 0.3/0.4 family cannot express (Go drops them the same way).
_V1_ONLY_INTERFACE_KEYS = ("mtu", "socketPath", "pciID")
_V1_ONLY_ROUTE_KEYS = ("mtu", "advmss", "priority", "table", "scope")


def family(version: str) -> str:
    """``"020"``, ``"040"`` or ``"100"``: the result format a spec version uses."""
    if version in ("0.1.0", "0.2.0"):
        return "020"
    if version in ("0.3.0", "0.3.1", "0.4.0"):
        return "040"
    return "100"


def empty_result(version: str) -> dict[str, Any]:
    """A minimal valid result, for ADD with no ``prevResult`` (the logger alone on a network)."""
    return {"cniVersion": version, "dns": {}}


def _ip_version(address: str) -> str:
    """``"4"`` or ``"6"`` from a CIDR or bare address; code 6 when it is neither."""
    import ipaddress  # only cross-family conversions need it; keep it off the common ADD path

    try:
        return str(ipaddress.ip_interface(address).version)
    except ValueError as exc:
        raise CNIError(ERR_DECODING_FAILURE, "could not parse prevResult", f"invalid IP address {address!r}") from exc


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _to_040_from_100(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    if "interfaces" in result:
        out["interfaces"] = [
            {k: v for k, v in iface.items() if k not in _V1_ONLY_INTERFACE_KEYS}
            for iface in _dicts(result["interfaces"])
        ]
    if "ips" in result:
        out["ips"] = [
            {"version": _ip_version(str(ip.get("address", ""))), **ip} for ip in _dicts(result["ips"])
        ]
    if "routes" in result:
        out["routes"] = [
            {k: v for k, v in route.items() if k not in _V1_ONLY_ROUTE_KEYS} for route in _dicts(result["routes"])
        ]
    return out


def _to_100_from_040(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    ips = result.get("ips", result.get("ip"))  # the 0.3.0 document spelt the key "ip"
    out.pop("ip", None)
    if ips is not None:
        out["ips"] = [{k: v for k, v in ip.items() if k != "version"} for ip in _dicts(ips)]
    return out


def _to_040_from_020(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k not in ("ip4", "ip6")}
    ips: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    for key, version in (("ip4", "4"), ("ip6", "6")):
        block = result.get(key)
        if not isinstance(block, dict) or not block.get("ip"):
            continue
        ip: dict[str, Any] = {"version": version, "address": block["ip"]}
        if block.get("gateway"):
            ip["gateway"] = block["gateway"]
        ips.append(ip)
        for route in _dicts(block.get("routes")):
            routes.append({k: v for k, v in route.items() if k in ("dst", "gw") and v})
    out["ips"] = ips
    if routes:
        out["routes"] = routes
    out.setdefault("dns", {})
    return out


def _to_020_from_040(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k not in ("interfaces", "ips", "ip", "routes")}
    routes = _dicts(result.get("routes"))
    for ip in _dicts(result.get("ips", result.get("ip"))):
        address = str(ip.get("address", ""))
        key = "ip4" if _ip_version(address) == "4" else "ip6"
        if key in out:
            continue  # the 0.2.0 format holds one address per family, as in the Go conversion
        block: dict[str, Any] = {"ip": address}
        if ip.get("gateway"):
            block["gateway"] = ip["gateway"]
        family_routes = [
            {k: v for k, v in route.items() if k in ("dst", "gw")}
            for route in routes
            if _ip_version(str(route.get("dst", ""))) == key[-1]
        ]
        if family_routes:
            block["routes"] = family_routes
        out[key] = block
    if "ip4" not in out and "ip6" not in out:
        raise CNIError(
            ERR_INCOMPATIBLE_VERSION, "cannot convert prevResult to the config's cniVersion",
            f'a {out.get("cniVersion", "")} result without IP addresses has no 0.1.0/0.2.0 form',
        )
    out.setdefault("dns", {})
    return out


def convert(result: dict[str, Any], to_version: str) -> dict[str, Any]:
    """Return ``result`` expressed in ``to_version``; unknown keys are kept."""
    from_version = result.get("cniVersion") or to_version
    if not isinstance(from_version, str) or from_version not in SUPPORTED_VERSIONS:
        raise CNIError(
            ERR_INCOMPATIBLE_VERSION, "unsupported prevResult version",
            f"prevResult cniVersion is {from_version!r}, plugin supports {list(SUPPORTED_VERSIONS)}",
        )
    source, target = family(from_version), family(to_version)
    out = dict(result)
    if source != target:
        # Go the long way round through the 0.3/0.4 family, which every other family converts to.
        if source == "020":
            out = _to_040_from_020(out)
        elif source == "100":
            out = _to_040_from_100(out)
        if target == "020":
            out = _to_020_from_040(out)
        elif target == "100":
            out = _to_100_from_040(out)
    elif source == "040" and "ip" in out and "ips" not in out:
        out["ips"] = out.pop("ip")
    out["cniVersion"] = to_version
    return out


def prev_result(config: dict[str, Any]) -> dict[str, Any] | None:
    """The config's ``prevResult`` as an object, ``None`` when absent; code 6 when unusable."""
    prev = config.get("prevResult")
    if prev is None:
        return None
    if not isinstance(prev, dict):
        raise CNIError(ERR_DECODING_FAILURE, "could not parse prevResult",
                       f"expected a JSON object, got {type(prev).__name__}")
    return prev


def pass_through(config: dict[str, Any], cni_version: str) -> dict[str, Any]:
    """The ADD answer of a plugin that changes nothing: prevResult in the config's version."""
    prev = prev_result(config)
    return empty_result(cni_version) if prev is None else convert(prev, cni_version)
