"""The shipping configurations in deploy/: Elasticsearch index template and ingest pipeline against ECS and
the real events, and the Filebeat, Fluent Bit and Vector configs against the plugin's real file names
(rotation, compression) and line sizes. Nothing here needs the shippers or Elasticsearch installed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cni_logger import events as cni_events
from cni_logger import redact
from cni_logger.filesink import RotatingFile, compress_backup
from cni_logger.redact import DEFAULT_REDACT_KEYS
from tests.system.ecs.conftest import Recorded
from tests.system.ecs.ecs_schema import (
    DEPLOY,
    OPAQUE_CNI_FIELDS,
    ecs_definitions,
    flatten,
    mapped_leaves,
    mapping_of,
    object_depth,
)
from tests.system.ecs.shippers import (
    LOG_DIR,
    filebeat_config,
    filebeat_reads,
    fluent_bit_excludes,
    fluent_bit_reads,
    fluent_bit_section,
    fluent_bit_sections,
    vector_config,
    vector_reads,
)

ECS_VERSION = "9.4.0"
DATASET = "cni.audit"
DATA_STREAM = f"logs-{DATASET}-default"
PIPELINE_NAME = f"logs-{DATASET}@custom"


def load_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "elasticsearch" / name).read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_json("index-template.json")


@pytest.fixture(scope="module")
def pipeline() -> dict[str, Any]:
    return load_json("ingest-pipeline.json")


@pytest.fixture(scope="module")
def properties(template: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = template["template"]["mappings"]["properties"]
    return props


# -- index template -------------------------------------------------------------------------------


def test_template_targets_the_data_stream_and_runs_the_pipeline(template: dict[str, Any]) -> None:
    assert template["index_patterns"] == [f"logs-{DATASET}-*"]
    assert template["data_stream"] == {}
    assert template["priority"] > 100, "must win over Elastic's built-in logs-*-* template (priority 100)"
    assert template["template"]["settings"]["index.default_pipeline"] == PIPELINE_NAME
    assert set(template.get("composed_of", [])) <= set(template.get("ignore_missing_component_templates", []))
    assert template["_meta"]["ecs_version"] == ECS_VERSION


def test_every_emitted_field_is_mapped_with_its_ecs_type(events: list[dict[str, Any]],
                                                         properties: dict[str, Any]) -> None:
    definitions = ecs_definitions(ECS_VERSION)["fields"]
    problems = []
    for path in sorted({p for event in events for p in flatten(event)}):
        mapping = mapping_of(properties, path)
        if mapping is None:
            problems.append(f"{path}: not mapped")
        elif not path.startswith("cni."):
            spec = definitions[path]
            if mapping.get("type") != spec["type"]:
                problems.append(f"{path}: mapped {mapping.get('type')}, ECS says {spec['type']}")
            if mapping.get("ignore_above") != spec.get("ignore_above"):
                problems.append(f"{path}: ignore_above {mapping.get('ignore_above')}, ECS {spec.get('ignore_above')}")
    assert problems == [], "\n".join(problems)


def test_every_mapped_ecs_field_has_its_ecs_type(properties: dict[str, Any]) -> None:
    """Also the fields the pipeline and the shippers add (event.ingested, log.file.path, data_stream.*)."""
    definitions = ecs_definitions(ECS_VERSION)["fields"]
    for path, mapping in mapped_leaves(properties).items():
        if path.startswith("cni."):
            continue
        assert path in definitions, f"{path} is mapped but is not an ECS field"
        assert mapping["type"] == definitions[path]["type"], path


def test_the_issue_mappings(properties: dict[str, Any]) -> None:
    for path in ("cni.command", "cni.ifname", "cni.netns", "cni.container_id", "cni.version", "cni.plugin_type",
                 "cni.path"):
        assert mapping_of(properties, path) == {"type": "keyword", "ignore_above": 1024}, path
    for path in ("related.ip", "orchestrator.resource.ip"):
        assert mapping_of(properties, path) == {"type": "ip"}, path
    assert mapping_of(properties, "event.duration") == {"type": "long"}
    assert mapping_of(properties, "@timestamp") == {"type": "date"}


def test_free_form_cni_objects_are_flattened_deep_enough(recorded: list[Recorded],
                                                         properties: dict[str, Any]) -> None:
    """A flattened field refuses the whole document beyond its depth_limit (default 20); the plugin lets
    objects nest up to redact.MAX_DEPTH levels."""
    for path in OPAQUE_CNI_FIELDS:
        mapping = mapping_of(properties, path)
        assert mapping is not None and mapping["type"] == "flattened", path
        assert mapping["depth_limit"] > redact.MAX_DEPTH, path
        for record in recorded:
            value = flatten(record.event).get(path)
            if value is not None:
                assert object_depth(value) <= mapping["depth_limit"], (record.scenario, path)
    deep = [r for r in recorded if r.scenario == "add-deeply-nested"]
    assert object_depth(deep[0].event["cni"]["config"]) > 20, "the scenario no longer nests past ES's default"


# -- ingest pipeline ------------------------------------------------------------------------------


def _processors(pipeline: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [p[kind] for p in pipeline["processors"] if kind in p]


def test_pipeline_stamps_ingest_time_and_indexes_under_event_id(pipeline: dict[str, Any]) -> None:
    sets = {p["field"]: p for p in _processors(pipeline, "set")}
    assert sets["event.ingested"]["value"] == "{{{_ingest.timestamp}}}"
    assert sets["_id"]["value"] == "{{{event.id}}}"
    assert "ctx.event.id" in sets["_id"]["if"]
    assert PIPELINE_NAME in pipeline["description"]
    assert {"set", "append"} >= {kind for p in pipeline["on_failure"] for kind in p}


def test_pipeline_masks_the_same_keys_as_the_plugin(pipeline: dict[str, Any]) -> None:
    [script] = _processors(pipeline, "script")
    assert script["lang"] == "painless"
    # The same word lists as the plugin's key-name rules (cni_logger.redact), ported to painless.
    params = script["params"]
    assert tuple(params["anywhere"]) == redact.ANYWHERE and tuple(params["last_word"]) == redact.LAST_WORD
    assert set(params["anywhere"]) | set(params["last_word"]) <= set(DEFAULT_REDACT_KEYS)
    for name in ("descriptors", "carriers", "key_not_secret", "glued_qualifiers"):
        assert set(params[name]) == getattr(redact, name.upper()), name
    assert tuple(script["params"]["scrubbed"]) == cni_events._FROM_CONFIG
    assert "'[REDACTED]'" in script["source"] and redact.MASK == "[REDACTED]"
    for name in re.findall(r"params\.(\w+)", script["source"]):
        assert name in script["params"], name


def test_pipeline_writes_only_mapped_fields(pipeline: dict[str, Any], properties: dict[str, Any]) -> None:
    known = {"dot_expander", "set", "append", "script", "remove", "date"}
    assert {kind for p in pipeline["processors"] + pipeline["on_failure"] for kind in p} <= known
    written = [p["field"] for kind in ("set", "append") for p in _processors(pipeline, kind)]
    written += [p[kind]["field"] for p in pipeline["on_failure"] for kind in p]
    written += ["data_stream.type", "data_stream.dataset", "data_stream.namespace"]  # by the script
    for field in written:
        if not field.startswith("_"):
            assert mapping_of(properties, field) is not None, field


# -- the shippers: which files they read ----------------------------------------------------------


@pytest.fixture(scope="module")
def log_dir_names(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bool]:
    """File names the plugin really produces (live file, timestamped backups, a .gz, a compression in
    progress) plus logrotate's numbered ones, each with whether a shipper must read it to the end."""
    directory = tmp_path_factory.mktemp("cni-log-dir")
    live = directory / "cni-logger.log"
    sink = RotatingFile(str(live), max_bytes=1, max_backups=0, compress=False)
    for n in range(3):
        sink.append(b'{"n":%d}\n' % n)  # each append passes max_bytes: rotated every time
    RotatingFile(str(live), max_bytes=1 << 20, max_backups=0).append(b'{"n":3}\n')  # the live file
    stems = sink.backups()
    assert len(stems) >= 3
    assert compress_backup(stems[0])
    names = {p.name: True for p in directory.iterdir()}
    assert live.name in names
    names[Path(stems[0]).name + ".gz"] = False
    names[Path(stems[1]).name + ".gz.tmp.4242"] = False  # the shape compress_backup writes through
    names[Path(stems[1]).name + "-1"] = True  # a second rotation within the same microsecond
    names["cni-logger.log.1"] = True  # logrotate (external rotation), delaycompress
    names["cni-logger.log.2.gz"] = False
    names["cni-logger.log.2"] = True  # logrotate: shifted, about to be compressed
    return names


def test_filebeat_reads_live_files_and_uncompressed_backups_only(log_dir_names: dict[str, bool]) -> None:
    assert filebeat_config()["paths"] == [f"{LOG_DIR}/*.log", f"{LOG_DIR}/*.log.[0-9]*"]
    assert {name: filebeat_reads(name) for name in log_dir_names} == log_dir_names


def test_vector_reads_live_files_and_uncompressed_backups_only(log_dir_names: dict[str, bool]) -> None:
    assert {name: vector_reads(name) for name in log_dir_names} == log_dir_names


def test_fluent_bit_reads_live_files_only(log_dir_names: dict[str, bool]) -> None:
    """tail follows a renamed file by its inode; a Path that matched the backups would read them again."""
    assert {name for name in log_dir_names if fluent_bit_reads(name)} == {"cni-logger.log"}
    for name in log_dir_names:
        if name.endswith(".gz") or ".gz.tmp." in name:
            assert fluent_bit_excludes(name), name


# -- the shippers: lines, parsing, document ids ---------------------------------------------------


def _unit_size(text: str) -> int:
    found = re.fullmatch(r"(\d+)([kKmM]?)", text)
    assert found, text
    return int(found.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[found.group(2).lower()]


def test_every_line_fits_every_shipper(recorded: list[Recorded]) -> None:
    longest = max(len(r.line) + 1 for r in recorded)
    assert longest <= cni_events.MAX_EVENT_BYTES
    tail = fluent_bit_section("fluent-bit.conf", "INPUT", "tail")
    assert _unit_size(tail["buffer_max_size"]) == 64 * 1024 > cni_events.MAX_EVENT_BYTES
    assert tail["skip_long_lines"] == "On"
    assert vector_config()["sources"]["cni_audit_files"]["max_line_bytes"] > cni_events.MAX_EVENT_BYTES


def test_filebeat_fingerprint_is_shorter_than_any_event_line(recorded: list[Recorded]) -> None:
    """Filebeat ships a file only once it is longer than the fingerprint: one event must be enough, and
    the fingerprinted bytes must differ between files (they hold the microsecond @timestamp)."""
    length = filebeat_config()["fingerprint_length"]
    assert 64 <= length < min(len(r.line) + 1 for r in recorded)
    assert all(r.line.index(b'"@timestamp"') + len(b'"@timestamp":"2026-11-28T02:20:15.573253Z"') < length
               for r in recorded)


def test_filebeat_parses_json_at_the_root_and_sets_the_document_id() -> None:
    text = filebeat_config()["text"]
    assert re.search(r"^\s*id: \S+", text, re.MULTILINE), "filestream needs a stable id"
    for setting in ('target: ""', "overwrite_keys: true", "add_error_key: true", "expand_keys: true"):
        assert setting in text, setting
    assert re.search(r"- from: event\.id\n\s+to: \"@metadata\._id\"", text)
    assert f'index: "{DATA_STREAM}"' in text


def record_accessor(pattern: str, record: dict[str, Any]) -> Any:
    """Evaluate a Fluent Bit record accessor of the form $key['sub']['subsub'] (no functions)."""
    found = re.fullmatch(r"\$(\w+)((?:\['[^']+'\])*)", pattern)
    if not found:
        return None  # Fluent Bit treats anything else as a literal top-level key name
    value: Any = record.get(found.group(1))
    for key in re.findall(r"\['([^']+)'\]", found.group(2)):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def test_fluent_bit_parses_our_timestamp_and_ids_documents_by_event_id(events: list[dict[str, Any]]) -> None:
    tail = fluent_bit_section("fluent-bit.conf", "INPUT", "tail")
    parser = fluent_bit_section("parsers-cni.conf", "PARSER", tail["parser"])
    assert (parser["format"], parser["time_key"], parser["time_keep"]) == ("json", "@timestamp", "Off")
    service = fluent_bit_sections("fluent-bit.conf")[0][1]
    assert service["parsers_file"] == "parsers-cni.conf"
    assert tail["db"] and tail["key"] == "message"
    output = fluent_bit_section("fluent-bit.conf", "OUTPUT", "es")
    assert output["index"] == DATA_STREAM and output["write_operation"] == "create"
    assert (output["time_key"], output["time_key_nanos"]) == ("@timestamp", "On")
    for event in events:
        assert record_accessor(output["id_key"], event) == event["event"]["id"]
    assert record_accessor("event.id", events[0]) is None  # why the plain dotted form would not do


def test_vector_parses_json_and_ids_documents_by_event_id(events: list[dict[str, Any]]) -> None:
    config = vector_config()
    source = config["sources"]["cni_audit_files"]
    assert source["read_from"] == "beginning"
    assert source["fingerprint"] == {"strategy": "checksum", "lines": 1, "ignored_header_bytes": 0}
    remap = config["transforms"]["cni_audit_events"]
    assert remap["type"] == "remap" and "parse_json(" in remap["source"]
    sink = config["sinks"]["elasticsearch"]
    assert sink["mode"] == "data_stream" and sink["api_version"] in {"auto", "v6", "v7", "v8"}
    assert sink["data_stream"] == {"type": "logs", "dataset": DATASET, "namespace": "default"}
    assert sink["acknowledgements"]["enabled"] is True
    for event in events:
        value: Any = event
        for part in sink["id_key"].split("."):
            value = value[part]
        assert value == event["event"]["id"]
        # Coverage events (docs/coverage-events.md) share the trail, hence the stream, told apart by their dataset.
        assert event["event"]["dataset"] in (DATASET, "cni.coverage")


def test_deploy_readme_explains_rotation_for_every_shipper() -> None:
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for needle in ("Filebeat", "Fluent Bit", "Vector", "event.id", ".gz", "*.log.[0-9]*", "copytruncate",
                   PIPELINE_NAME, "logs-cni.audit"):
        assert needle in text, needle



def test_filebeat_yaml_structure() -> None:
    """Parsed as YAML where PyYAML happens to be installed (it is not a test dependency)."""
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((DEPLOY / "filebeat" / "filebeat.yml").read_text(encoding="utf-8"))
    [stream] = doc["filebeat.inputs"]
    assert stream["type"] == "filestream" and stream["id"]
    assert stream["paths"] == filebeat_config()["paths"]
    assert stream["prospector.scanner.exclude_files"] == filebeat_config()["exclude_files"]
    assert stream["prospector.scanner.fingerprint"]["length"] == filebeat_config()["fingerprint_length"]
    [parser] = stream["parsers"]
    assert parser["ndjson"] == {"target": "", "overwrite_keys": True, "add_error_key": True, "expand_keys": True}
    [processor] = stream["processors"]
    assert processor["copy_fields"]["fields"] == [{"from": "event.id", "to": "@metadata._id"}]
    assert doc["output.elasticsearch"]["index"] == DATA_STREAM
    assert doc["setup.template.enabled"] is False
