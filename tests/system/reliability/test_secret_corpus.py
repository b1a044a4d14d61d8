"""The redaction corpus through the real plugin: no secret of ``tests/harness/redaction_corpus.py`` reaches
the log file or stderr, what a case must keep beside its secret is recorded, and every look-alike is
recorded exactly as the runtime sent it.

The cases go in a few at a time (a config of all of them would pass the 16 KiB line limit, and the
shrinking that keeps lines short would hide leaks by dropping ``cni.config``); each run checks that
nothing was dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness.plugin import cni_env
from tests.harness.redaction_corpus import LOOKALIKES, SECRETS
from tests.harness.reliability import audit_log, leaked, net_config, run_proc

CHUNK = 12
CONFIG_CASES = sorted(name for name, case in SECRETS.items() if case.config)
ARGS_CASES = sorted(name for name, case in SECRETS.items() if case.cni_args)
SECRET_CHUNKS = [CONFIG_CASES[i:i + CHUNK] for i in range(0, len(CONFIG_CASES), CHUNK)]
LOOKALIKE_CHUNKS = [sorted(LOOKALIKES)[i:i + CHUNK] for i in range(0, len(LOOKALIKES), CHUNK)]


def run_add(tmp_path: Path, corpus: list[Any], cni_args: str = "") -> tuple[dict[str, Any], bytes]:
    """One real ADD with ``corpus`` in its config; the recorded event and every byte the plugin wrote.

    The cases go in as a list: their names, as keys, would be key names to redact themselves.
    """
    log = tmp_path / "audit.log"
    env = cni_env("ADD", CNI_CONTAINERID="corpus",
                  CNI_ARGS=f"IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web{cni_args}")
    run = run_proc("ADD", net_config(log, corpus=corpus), env=env)
    assert run.rc == 0 and b"Traceback" not in run.stderr, run.stderr[-2000:]
    [event] = audit_log(log).events
    assert [json.loads(json.dumps(e)) for e in run.stderr_events] == [event]
    assert "truncated" not in event["cni"], event["cni"]["truncated"]
    return event, log.read_bytes() + run.stderr


def test_every_case_is_run() -> None:
    assert sum(map(len, SECRET_CHUNKS)) + len(ARGS_CASES) == len(SECRETS) >= 100
    assert sum(map(len, LOOKALIKE_CHUNKS)) == len(LOOKALIKES) >= 50


@pytest.mark.parametrize("chunk", range(len(SECRET_CHUNKS)))
def test_secret_shapes_in_the_config_never_reach_the_log(tmp_path: Path, chunk: int) -> None:
    names = SECRET_CHUNKS[chunk]
    event, written = run_add(tmp_path, [SECRETS[name].config for name in names])
    found = {name: leaked(SECRETS[name].secrets, written) for name in names}
    assert {name: secrets for name, secrets in found.items() if secrets} == {}
    recorded = event["cni"]["config"]["corpus"]
    assert len(recorded) == len(names)
    for name, entry in zip(names, recorded, strict=True):
        assert "[REDACTED]" in json.dumps(entry), (name, entry)
        assert [k for k in SECRETS[name].kept if k not in json.dumps(entry)] == [], (name, entry)


def test_secret_shapes_in_cni_args_never_reach_the_log(tmp_path: Path) -> None:
    pairs = {k: v for name in ARGS_CASES for k, v in SECRETS[name].cni_args.items()}
    event, written = run_add(tmp_path, [], "".join(f";{k}={v}" for k, v in pairs.items()))
    found = {name: leaked(SECRETS[name].secrets, written) for name in ARGS_CASES}
    assert {name: secrets for name, secrets in found.items() if secrets} == {}
    assert {k: event["cni"]["args"][k] for k in pairs} == dict.fromkeys(pairs, "[REDACTED]")
    assert event["cni"]["args"]["K8S_POD_NAME"] == "web" and event["orchestrator"]["namespace"] == "shop"


@pytest.mark.parametrize("chunk", range(len(LOOKALIKE_CHUNKS)))
def test_look_alikes_are_recorded_unchanged(tmp_path: Path, chunk: int) -> None:
    names = LOOKALIKE_CHUNKS[chunk]
    event, _ = run_add(tmp_path, [LOOKALIKES[name] for name in names])
    recorded = dict(zip(names, event["cni"]["config"]["corpus"], strict=True))
    assert {name: entry for name, entry in recorded.items() if entry != LOOKALIKES[name]} == {}
