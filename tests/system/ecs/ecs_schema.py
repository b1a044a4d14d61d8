"""Helpers for the ECS tests: the extracted ECS definitions, event flattening, value/type checks, and the
timestamp parsers of the shippers (emulated: Fluent Bit's Time_Format, Go's RFC 3339, Elasticsearch's
strict_date_optional_time)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DEPLOY = REPO / "deploy"

OPAQUE_CNI_FIELDS = ("cni.args", "cni.config", "cni.prev_result", "cni.valid_attachments", "cni.coverage.commands")
"""Free-form ``cni.*`` objects (runtime- and operator-supplied; a dropped-events count per CNI command): mapped
``flattened``, never walked."""


@cache
def ecs_definitions(version: str) -> dict[str, Any]:
    path = HERE / f"ecs_fields_{version}.json"
    if not path.exists():
        raise AssertionError(f"events declare ecs.version {version}, but {path.name} is missing: generate it "
                             "with tests/system/ecs/extract_ecs.py from that version's ecs_flat.yml")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaf paths of a nested event: objects are walked, anything else (lists included) is a leaf.

    The opaque ``cni.*`` objects are leaves too: they are indexed as ``flattened`` fields.
    """
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in OPAQUE_CNI_FIELDS:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


# -- values against ECS types ---------------------------------------------------------------------

_STRING_TYPES = {"keyword", "constant_keyword", "wildcard", "match_only_text", "text"}
_INTEGER_RANGES = {"long": 63, "integer": 31, "short": 15, "byte": 7, "unsigned_long": 64}
STRICT_DATE_OPTIONAL_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}(T\d{2}(:\d{2}(:\d{2}([.,]\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$")
"""Elasticsearch's default ``date`` format ``strict_date_optional_time`` (the ``epoch_millis`` alternative
is not a string form we emit)."""


def value_problem(value: Any, ecs_type: str) -> str | None:
    """Why one (scalar) value does not fit an ECS field of ``ecs_type``, or None if it does."""
    if ecs_type in _STRING_TYPES:
        return None if isinstance(value, str) else f"{value!r} is not a string"
    if ecs_type in _INTEGER_RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{value!r} is not an integer"
        bits = _INTEGER_RANGES[ecs_type]
        low = 0 if ecs_type == "unsigned_long" else -(2**bits)
        high = 2**bits - 1
        return None if low <= value <= high else f"{value} is out of range for {ecs_type}"
    if ecs_type in {"float", "double", "scaled_float", "half_float"}:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"{value!r} is not a number"
    if ecs_type == "boolean":
        return None if isinstance(value, bool) else f"{value!r} is not a boolean"
    if ecs_type == "date":
        if not isinstance(value, str) or not STRICT_DATE_OPTIONAL_TIME.match(value):
            return f"{value!r} is not an ISO-8601 date (strict_date_optional_time)"
        return None
    if ecs_type == "ip":
        return ip_problem(value)
    if ecs_type in {"object", "flattened", "nested"}:
        return None if isinstance(value, dict) else f"{value!r} is not an object"
    return f"no check for ECS type {ecs_type!r}"


def ip_problem(value: Any) -> str | None:
    """Elasticsearch's ``ip`` type takes an IPv4 or IPv6 literal: no prefix length, no zone index."""
    if not isinstance(value, str):
        return f"{value!r} is not a string"
    if "%" in value or "/" in value or value != value.strip():
        return f"{value!r} is not a plain IP address literal"
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    return None


# -- timestamps as the shippers parse them --------------------------------------------------------

_FLB_CONVERSIONS = {"Y": r"(?P<Y>\d{4})", "m": r"(?P<m>\d{2})", "d": r"(?P<d>\d{2})", "H": r"(?P<H>\d{2})",
                    "M": r"(?P<M>\d{2})", "S": r"(?P<S>\d{2})", "L": r"(?P<L>\d{1,9})"}


def fluent_bit_time(value: str, time_format: str) -> dt.datetime:
    """Parse ``value`` the way a Fluent Bit parser with ``Time_Format`` does (no %z: UTC).

    Only the conversions our format can need are emulated; ``%L`` is Fluent Bit's fractional-second
    conversion (up to nine digits).
    """
    pattern = ""
    i = 0
    while i < len(time_format):
        char = time_format[i]
        if char == "%":
            conversion = time_format[i + 1]
            if conversion not in _FLB_CONVERSIONS:
                raise ValueError(f"conversion %{conversion} is not emulated")
            pattern += _FLB_CONVERSIONS[conversion]
            i += 2
        else:
            pattern += re.escape(char)
            i += 1
    found = re.fullmatch(pattern, value)
    if not found:
        raise ValueError(f"{value!r} does not match Time_Format {time_format!r}")
    part = found.groupdict()
    nanos = int((part.get("L") or "0").ljust(9, "0"))
    return dt.datetime(int(part["Y"]), int(part["m"]), int(part["d"]), int(part["H"]), int(part["M"]),
                       int(part["S"]), nanos // 1000, tzinfo=dt.UTC)


_GO_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


def go_rfc3339_time(value: str) -> dt.datetime:
    """Parse like Go's ``time.Parse(time.RFC3339, value)`` (Filebeat's JSON @timestamp): a fraction after
    the seconds is accepted even though the layout has none."""
    found = _GO_RFC3339.match(value)
    if not found:
        raise ValueError(f"{value!r} is not RFC 3339")
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    tz = dt.UTC if zone == "Z" else dt.timezone(
        (1 if zone[0] == "+" else -1) * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    micros = int((fraction or "0").ljust(9, "0")) // 1000
    return dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=tz)


def es_date(value: str) -> dt.datetime:
    """Elasticsearch/Vector: ``strict_date_optional_time``; the instant via ``datetime.fromisoformat``."""
    if not STRICT_DATE_OPTIONAL_TIME.match(value):
        raise ValueError(f"{value!r} is not strict_date_optional_time")
    return dt.datetime.fromisoformat(value)


# -- Elasticsearch mappings -----------------------------------------------------------------------


def mapping_of(properties: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The mapping of a dotted field path in an index template's ``properties``, or None."""
    node: dict[str, Any] | None = None
    current = properties
    parts = path.split(".")
    for index, part in enumerate(parts):
        node = current.get(part)
        if node is None:
            return None
        if index < len(parts) - 1:
            current = node.get("properties", {})
    return node


def mapped_leaves(properties: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, node in properties.items():
        path = f"{prefix}{name}"
        if "properties" in node and "type" not in node:
            out.update(mapped_leaves(node["properties"], path + "."))
        else:
            out[path] = node
    return out


def object_depth(value: Any) -> int:
    """How deeply JSON objects nest inside ``value`` (an object holding scalars has depth 1)."""
    if isinstance(value, dict):
        return 1 + max((object_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max((object_depth(v) for v in value), default=0)
    return 0
