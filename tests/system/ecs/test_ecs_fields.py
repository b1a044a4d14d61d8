"""Every field the plugin emits, checked against the ECS definitions of the version the events declare.

The events come from the installed plugin run as a process (tests/system/ecs/conftest.py): every command, both
outcomes, Kubernetes and Podman arguments, a trace context, truncation and a rejected setting. Non-``cni.*``
fields must be ECS fields of a compatible type, with ECS's allowed values, and arrays only where ECS
normalizes the field to an array; ``cni.*`` is the custom namespace and must not collide with ECS.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness.plugin import cni_env, run_plugin
from tests.system.ecs.conftest import Recorded, prev_result
from tests.system.ecs.ecs_schema import (
    DEPLOY,
    OPAQUE_CNI_FIELDS,
    ecs_definitions,
    es_date,
    flatten,
    fluent_bit_time,
    go_rfc3339_time,
    ip_problem,
    value_problem,
)

ECS_VERSION = "9.4.0"
CNI_FIELDS = {"cni.command", "cni.container_id", "cni.netns", "cni.ifname", "cni.role", "cni.path", "cni.version",
              "cni.plugin_type", "cni.warnings", "cni.truncated", *OPAQUE_CNI_FIELDS,
              *(f"cni.coverage.{name}" for name in (
                  "file", "network", "roles", "reason", "since", "detail", "networks", "interval", "dropped", "first",
                  "last", "containers", "containers_truncated", "inventory", "cache_dir", "attachments", "trigger",
                  "complete"))}
"""The custom namespace as documented in cni_logger/events.py and the README; ``cni.coverage.*`` as in
docs/coverage-events.md."""

EXPECTED_FIELDS = {
    "@timestamp", "message", "log.level", "log.logger", "ecs.version",
    "event.kind", "event.category", "event.type", "event.action", "event.outcome", "event.duration", "event.id",
    "event.module", "event.dataset", "event.code", "event.reason", "error.code", "error.message", "error.type",
    "container.id",
    "orchestrator.type", "orchestrator.namespace", "orchestrator.resource.type", "orchestrator.resource.name",
    "orchestrator.resource.id", "orchestrator.resource.ip", "network.name", "host.name", "host.hostname",
    "process.pid", "process.parent.pid", "trace.id", "related.ip", *CNI_FIELDS,
}
"""Every field of the schema: the scenarios must between them emit all of it, or the checks prove little."""


def test_events_declare_the_ecs_version_we_check_against(events: list[dict[str, Any]]) -> None:
    assert {e["ecs"]["version"] for e in events} == {ECS_VERSION}
    assert ecs_definitions(ECS_VERSION)["ecs_version"] == ECS_VERSION


def test_the_scenarios_cover_every_field_of_the_schema(events: list[dict[str, Any]]) -> None:
    emitted = {path for event in events for path in flatten(event)}
    assert EXPECTED_FIELDS - emitted == set(), "scenarios no longer exercise these fields"


def test_every_non_cni_field_is_an_ecs_field_of_a_compatible_type(events: list[dict[str, Any]]) -> None:
    definitions = ecs_definitions(ECS_VERSION)["fields"]
    problems: list[str] = []
    for event in events:
        for path, value in flatten(event).items():
            if path.split(".", 1)[0] == "cni":
                continue
            spec = definitions.get(path)
            if spec is None:
                problems.append(f"{path}: not an ECS {ECS_VERSION} field")
                continue
            values = value if isinstance(value, list) else [value]
            if isinstance(value, list) and "array" not in spec.get("normalize", []):
                problems.append(f"{path}: an array, but ECS does not normalize it to one")
            if isinstance(value, list) and not value:
                problems.append(f"{path}: an empty array")
            for item in values:
                problem = value_problem(item, spec["type"])
                if problem:
                    problems.append(f"{path} ({spec['type']}): {problem}")
                elif isinstance(item, str) and not item.strip():
                    problems.append(f"{path}: empty string")
                elif isinstance(item, str) and len(item) > spec.get("ignore_above", len(item)):
                    problems.append(f"{path}: longer than ignore_above {spec['ignore_above']}: not searchable")
    assert problems == [], "\n".join(sorted(set(problems)))


def test_required_ecs_fields_are_in_every_event(events: list[dict[str, Any]]) -> None:
    definitions = ecs_definitions(ECS_VERSION)["fields"]
    required = {name for name, spec in definitions.items() if spec.get("required")}
    assert {"@timestamp", "ecs.version"} <= required
    for event in events:
        assert required - set(flatten(event)) == set(), event["event"]["action"]


def test_categorization_fields_use_allowed_values(events: list[dict[str, Any]]) -> None:
    definitions = ecs_definitions(ECS_VERSION)["fields"]
    for event in events:
        for path, value in flatten(event).items():
            allowed = definitions.get(path, {}).get("allowed_values")
            if allowed is None:
                continue
            names = {a["name"] for a in allowed}
            for item in value if isinstance(value, list) else [value]:
                assert item in names, f"{path}: {item!r} is not one of ECS's allowed values {sorted(names)}"
    assert {"event.kind", "event.category", "event.type", "event.outcome"} <= {
        name for name, spec in definitions.items() if "allowed_values" in spec}


def test_event_types_are_expected_types_of_the_listed_categories(events: list[dict[str, Any]]) -> None:
    """ECS lists, per category, the event types expected with it: every type we emit must be expected by one
    of the event's categories, and every category must have one of its expected types in the event."""
    allowed = ecs_definitions(ECS_VERSION)["fields"]["event.category"]["allowed_values"]
    expected = {a["name"]: set(a.get("expected_event_types", [])) for a in allowed}
    for event in events:
        categories, types = event["event"]["category"], event["event"]["type"]
        for kind in types:
            assert any(kind in expected[c] for c in categories), (event["event"]["action"], kind, categories)
        for category in categories:
            assert expected[category] & set(types), (event["event"]["action"], category, types)


def test_outcome_matches_the_answer(by_scenario: Callable[[str], dict[str, Any]]) -> None:
    assert by_scenario("check-at-0.3.1-refused")["event"]["outcome"] == "failure"
    assert by_scenario("add-missing-variables")["event"]["outcome"] == "failure"
    assert by_scenario("del-bad-input")["event"]["outcome"] == "success"  # DEL always succeeds
    assert by_scenario("add-k8s")["event"]["outcome"] == "success"


def test_dataset_is_a_valid_data_stream_dataset(events: list[dict[str, Any]]) -> None:
    """event.dataset names the data stream logs-<dataset>-<namespace> that the shippers write to."""
    for event in events:
        dataset = event["event"]["dataset"]
        assert re.fullmatch(r"[a-z0-9_.]{1,100}", dataset) and "-" not in dataset
        assert dataset.startswith(event["event"]["module"] + ".")


def test_cni_is_a_custom_namespace_outside_ecs(events: list[dict[str, Any]]) -> None:
    schema = ecs_definitions(ECS_VERSION)
    assert "cni" not in schema["top_level_names"]
    assert not any(name == "cni" or name.startswith("cni.") for name in schema["fields"])
    emitted = {path for event in events for path in flatten(event) if path.startswith("cni.")}
    assert emitted <= CNI_FIELDS, f"undocumented cni.* fields: {sorted(emitted - CNI_FIELDS)}"


def test_keys_are_nested_never_dotted(events: list[dict[str, Any]]) -> None:
    """Fluent Bit and Vector pass keys literally: a dotted key would collide with the nested object."""

    def walk(doc: dict[str, Any], path: str) -> None:
        for key, value in doc.items():
            assert "." not in key, f"dotted key {path}{key}"
            if isinstance(value, dict) and f"{path}{key}" not in OPAQUE_CNI_FIELDS:
                walk(value, f"{path}{key}.")

    for event in events:
        walk(event, "")


# -- @timestamp as each shipper parses it ---------------------------------------------------------


def _fluent_bit_time_format() -> str:
    text = (DEPLOY / "fluent-bit" / "parsers-cni.conf").read_text(encoding="utf-8")
    [fmt] = re.findall(r"^\s*Time_Format\s+(\S+)\s*$", text, re.MULTILINE)
    return str(fmt)


def test_timestamp_parses_identically_in_every_shipper(events: list[dict[str, Any]]) -> None:
    time_format = _fluent_bit_time_format()
    for event in events:
        stamp = event["@timestamp"]
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", stamp), stamp
        instant = dt.datetime.fromisoformat(stamp)
        assert instant.utcoffset() == dt.timedelta(0)
        assert fluent_bit_time(stamp, time_format) == instant  # Fluent Bit parser (Time_Format, %L)
        assert go_rfc3339_time(stamp) == instant  # Filebeat ndjson: @timestamp parsed as RFC 3339
        assert es_date(stamp) == instant  # Elasticsearch date / Vector: strict_date_optional_time
        # What Fluent Bit's es output writes back (Time_Key_Nanos On): nine digits, microseconds intact.
        rewritten = instant.strftime("%Y-%m-%dT%H:%M:%S") + f".{instant.microsecond * 1000:09d}Z"
        assert es_date(rewritten) == instant


def test_timestamp_is_the_invocation_start(by_scenario: Callable[[str], dict[str, Any]]) -> None:
    event = by_scenario("add-k8s")
    started = dt.datetime.fromisoformat(event["@timestamp"])
    assert abs(dt.datetime.now(dt.UTC) - started) < dt.timedelta(minutes=10)
    assert event["event"]["duration"] > 0


def test_fluent_bit_time_emulation_rejects_other_shapes() -> None:
    time_format = _fluent_bit_time_format()
    for bad in ("2026-11-28 02:20:15.573253Z", "2026-11-28T02:20:15.573253+00:00", "2026-11-28T02:20:15Z"):
        with pytest.raises(ValueError):
            fluent_bit_time(bad, time_format)


# -- addresses that are not addresses -------------------------------------------------------------


@pytest.mark.parametrize("address", ["not-an-ip/24", "300.1.1.1/24", "fe80::1%eth0/64"])
def test_related_ip_holds_only_ip_addresses_whatever_the_prev_result(address: str) -> None:
    """Elasticsearch refuses a document whose ``ip`` field is not an address (unless ignore_malformed)."""
    result = prev_result()
    result["ips"] = [{"interface": 2, "address": address}]
    config = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "logger", "prevResult": result}
    run = run_plugin("ADD", config, env=cni_env("ADD", CNI_ARGS="K8S_POD_NAMESPACE=a;K8S_POD_NAME=b"))
    assert run.rc == 0
    [event] = run.stderr_events
    for path in ("related.ip", "orchestrator.resource.ip"):
        for value in flatten(event).get(path, []):
            assert ip_problem(value) is None, f"{path}: {ip_problem(value)}"


# -- coverage events (docs/coverage-events.md) ----------------------------------------------------


def test_coverage_events_are_classified_as_the_contract_says(recorded: list[Recorded]) -> None:
    coverage = [r.event for r in recorded if r.scenario.startswith("coverage-")]
    assert coverage, "no coverage event among the scenarios"
    for event in coverage:
        action, ev = event["event"]["action"], event["event"]
        assert (ev["module"], ev["dataset"], ev["outcome"]) == ("cni", "cni.coverage", "success")
        assert ev["kind"] == ("state" if action in ("logger-heartbeat", "logger-inventory", "cni-attachment")
                              else "event"), action
        assert ev["category"] == ["configuration"]
        assert ev["type"] == (["change"] if action in ("logger-entered", "logger-left") else ["info"]), action
        assert ev["reason"].strip() and "command" not in event["cni"]
        warning = action == "logger-dropped" or (action == "logger-left"
                                                 and event["cni"]["coverage"]["reason"] != "uninstall")
        assert event["log"] == {"level": "warning" if warning else "info", "logger": "cni-logger"}, action
        if action in ("logger-entered", "logger-left", "cni-attachment"):
            assert event["network"]["name"] == "k8s-pod-network"
    [attachment] = [e for e in coverage if e["event"]["action"] == "cni-attachment"]
    [inventory] = [e for e in coverage if e["event"]["action"] == "logger-inventory"]
    assert attachment["orchestrator"]["namespace"] == "shop"
    assert attachment["related"]["ip"] == ["10.244.1.17", "fd00:10:244:1::11"]
    assert attachment["cni"]["coverage"]["inventory"] == inventory["cni"]["coverage"]["inventory"]
    assert inventory["cni"]["coverage"]["complete"] is False  # the cache held a file being written
    [dropped] = [e for e in coverage if e["event"]["action"] == "logger-dropped"]
    assert dropped["cni"]["coverage"]["commands"] == {"ADD": 2, "DEL": 1}
