"""The committed ECS subset: licensed, complete for what the events and deploy/ use, and reproducible."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.system.ecs import extract_ecs
from tests.system.ecs.ecs_schema import HERE, REPO

VERSION = "9.4.0"
JSON_PATH = HERE / f"ecs_fields_{VERSION}.json"


def test_subset_carries_its_license_notice() -> None:
    data = json.loads(JSON_PATH.read_text(encoding="utf-8"))
    assert "Apache License, Version 2.0" in data["NOTICE"] and "ECS-LICENSE.txt" in data["NOTICE"]
    license_text = (HERE / "ECS-LICENSE.txt").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert data["ecs_version"] == VERSION


def test_subset_holds_whole_field_sets() -> None:
    data = json.loads(JSON_PATH.read_text(encoding="utf-8"))
    assert data["field_sets"] == list(extract_ecs.FIELD_SETS)
    roots = {name.split(".", 1)[0] for name in data["fields"]}
    assert roots == set(extract_ecs.FIELD_SETS)
    assert set(extract_ecs.FIELD_SETS) <= set(data["top_level_names"])
    assert data["fields"]["event.type"]["normalize"] == ["array"]
    assert all("type" in spec for spec in data["fields"].values())


def _source() -> Path | None:
    configured = os.environ.get("ECS_FLAT_YML")
    candidate = Path(configured) if configured else REPO.parent / "shared" / "data" / f"ecs-{VERSION}" / "ecs_flat.yml"
    return candidate if candidate.exists() else None


def test_subset_is_what_the_generator_makes_of_ecs_flat_yml() -> None:
    source = _source()
    if source is None:
        pytest.skip("ecs_flat.yml not available (set ECS_FLAT_YML to check the committed subset against it)")
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read ecs_flat.yml (not a test dependency)")
    flat = yaml.safe_load(source.read_text(encoding="utf-8"))
    regenerated = extract_ecs.extract(flat, VERSION)
    assert json.loads(JSON_PATH.read_text(encoding="utf-8")) == json.loads(json.dumps(regenerated))
