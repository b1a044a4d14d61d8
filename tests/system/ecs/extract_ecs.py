"""Extract the ECS field definitions the ECS tests check against into a small JSON file.

The tests must run from a plain clone, so they carry their own copy of the definitions they need:
every field of the field sets the plugin's events (and the shippers' additions) use, with the
attributes a check needs (type, normalize, allowed values, ...), plus the names of all ECS
top-level fields so that the custom ``cni.*`` namespace can be checked for collisions.

Usage (needs PyYAML, which the project's virtualenv does not install; any Python with it will do)::

    python3 tests/system/ecs/extract_ecs.py /path/to/ecs-9.4.0/ecs_flat.yml > tests/system/ecs/ecs_fields_9.4.0.json

``ecs_flat.yml`` is ``generated/ecs/ecs_flat.yml`` of https://github.com/elastic/ecs at the tag of
the version (Apache License 2.0; the license travels as ``ECS-LICENSE.txt`` beside the JSON).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

FIELD_SETS = ("@timestamp", "message", "ecs", "log", "event", "error", "container", "orchestrator", "network",
              "host", "process", "trace", "related", "data_stream", "tags")
"""Root names whose fields are extracted: what the events emit, plus what the shippers and the ingest
pipeline add (``data_stream``, ``tags``)."""

KEPT_ATTRIBUTES = ("type", "level", "normalize", "short", "ignore_above", "pattern", "expected_values",
                   "required", "object_type", "scaling_factor")

NOTICE = ("Subset of the Elastic Common Schema (ECS) {version} field definitions, extracted by "
          "tests/system/ecs/extract_ecs.py from generated/ecs/ecs_flat.yml of https://github.com/elastic/ecs. "
          "Copyright Elasticsearch B.V., licensed under the Apache License, Version 2.0: see ECS-LICENSE.txt "
          "beside this file. Generated file; do not edit.")


def extract(flat: dict[str, Any], version: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in sorted(flat):
        if name.split(".", 1)[0] not in FIELD_SETS:
            continue
        source = flat[name]
        entry = {key: source[key] for key in KEPT_ATTRIBUTES if key in source}
        if "allowed_values" in source:
            entry["allowed_values"] = [
                {k: v for k, v in (("name", value["name"]),
                                   ("expected_event_types", value.get("expected_event_types"))) if v is not None}
                for value in source["allowed_values"]
            ]
        if "multi_fields" in source:
            entry["multi_fields"] = [{"name": m["name"], "type": m["type"]} for m in source["multi_fields"]]
        fields[name] = entry
    return {
        "NOTICE": NOTICE.format(version=version),
        "ecs_version": version,
        "field_sets": list(FIELD_SETS),
        "top_level_names": sorted({name.split(".", 1)[0] for name in flat}),
        "fields": fields,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("ecs_flat", type=Path, help="path to ecs_flat.yml")
    parser.add_argument("--version", help="ECS version (default: from a parent directory named ecs-X.Y.Z)")
    args = parser.parse_args(argv)
    version = args.version
    if version is None:
        found = re.search(r"ecs-(\d+\.\d+\.\d+)", str(args.ecs_flat.resolve()))
        if not found:
            parser.error("cannot tell the ECS version from the path; pass --version")
        version = found.group(1)
    import yaml  # type: ignore[import-untyped,unused-ignore]  # PyYAML: only this generator needs it

    flat = yaml.safe_load(args.ecs_flat.read_text(encoding="utf-8"))
    json.dump(extract(flat, version), sys.stdout, indent=1, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
