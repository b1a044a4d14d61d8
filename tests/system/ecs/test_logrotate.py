"""External rotation: the shipped deploy/logrotate/cni-logger, run by the real logrotate against a file the
installed plugin appends to with ``"logOptions": {"rotation": "external"}``. Every event survives two
rotations (one of them compressed), the new file is created 0640, and the shippers' globs cover the
names logrotate produces."""

from __future__ import annotations

import grp
import gzip
import json
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.harness.plugin import cni_env, run_plugin
from tests.system.ecs.ecs_schema import DEPLOY
from tests.system.ecs.shippers import LOG_DIR, filebeat_reads, fluent_bit_reads, vector_reads

LOGROTATE = shutil.which("logrotate", path="/usr/sbin:/usr/bin:/sbin:/bin")
pytestmark = pytest.mark.skipif(LOGROTATE is None, reason="logrotate is not installed (Debian package logrotate)")


def logrotate_config(log_dir: Path) -> str:
    """deploy/logrotate/cni-logger pointed at ``log_dir``; owned by the current user when not root."""
    text = (DEPLOY / "logrotate" / "cni-logger").read_text(encoding="utf-8")
    assert f"{LOG_DIR}/*.log {{" in text
    text = text.replace(f"{LOG_DIR}/*.log", f"{log_dir}/*.log")
    if os.geteuid() != 0:
        user, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
        text = text.replace("create 0640 root root", f"create 0640 {user} {group}")
    return text


def rotate(config: Path, state: Path) -> None:
    assert LOGROTATE is not None
    done = subprocess.run([LOGROTATE, "--force", "--state", str(state), str(config)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def add(log: Path, n: int) -> str:
    config = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "logger", "logFile": str(log),
              "logToStderr": False,
              # A tiny maxSize that "size" rotation would act on at once: external mode must ignore it.
              "logOptions": {"rotation": "external", "maxSize": 0.0001}}
    run = run_plugin("ADD", config, env=cni_env("ADD", CNI_CONTAINERID=f"ctr-{n:04d}"))
    assert run.rc == 0, run.stderr
    return f"ctr-{n:04d}"


def events_in(path: Path) -> list[dict[str, Any]]:
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    return [json.loads(line) for line in data.splitlines()]


def test_logrotate_create_keeps_every_event(tmp_path: Path) -> None:
    log_dir = tmp_path / "cni"
    log = log_dir / "cni-logger.log"
    config = tmp_path / "logrotate.conf"
    config.write_text(logrotate_config(log_dir), encoding="utf-8")
    state = tmp_path / "logrotate.state"

    containers = [add(log, n) for n in range(3)]
    assert sorted(p.name for p in log_dir.iterdir()) == ["cni-logger.log"], "external mode must not rotate"

    rotate(config, state)
    fresh = log.stat()
    assert fresh.st_size == 0 and stat.S_IMODE(fresh.st_mode) == 0o640
    assert (fresh.st_uid, fresh.st_gid) == (os.geteuid(), os.getegid())
    containers += [add(log, n) for n in range(3, 5)]
    assert log.stat().st_ino == fresh.st_ino, "the plugin appends to the file logrotate created"

    rotate(config, state)
    containers.append(add(log, 5))

    names = sorted(p.name for p in log_dir.iterdir())
    assert names == ["cni-logger.log", "cni-logger.log.1", "cni-logger.log.2.gz"]  # delaycompress
    recorded = [e for name in reversed(names) for e in events_in(log_dir / name)]
    assert [e["container"]["id"] for e in recorded] == containers, "every event, once, in order"
    assert len({e["event"]["id"] for e in recorded}) == len(containers)
    assert stat.S_IMODE(log.stat().st_mode) == 0o640

    for name in names:  # what each shipper reads of logrotate's names
        plain = not name.endswith(".gz")
        assert filebeat_reads(name, str(log_dir)) == plain, name
        assert vector_reads(name, str(log_dir)) == plain, name
        assert fluent_bit_reads(name, str(log_dir)) == (name == "cni-logger.log"), name


def test_logrotate_leaves_an_empty_or_missing_file_alone(tmp_path: Path) -> None:
    log_dir = tmp_path / "cni"
    log_dir.mkdir()
    config = tmp_path / "logrotate.conf"
    config.write_text(logrotate_config(log_dir), encoding="utf-8")
    state = tmp_path / "logrotate.state"
    rotate(config, state)  # missingok: no file yet, no error
    (log_dir / "cni-logger.log").touch(mode=0o640)
    rotate(config, state)  # notifempty
    assert sorted(p.name for p in log_dir.iterdir()) == ["cni-logger.log"]


def test_logrotate_config_is_rename_based() -> None:
    """copytruncate would lose the lines written between the copy and the truncation."""
    directives = [line.split()[0] for line in (DEPLOY / "logrotate" / "cni-logger").read_text().splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    assert "copytruncate" not in directives and "nocopytruncate" in directives
    assert {"create", "compress", "delaycompress", "missingok", "notifempty", "nodateext"} <= set(directives)
    assert not {"postrotate", "prerotate", "sharedscripts"} & set(directives)
