"""install's self-check: the plugin executed as a runtime would (VERSION, then ADD), and what its failure
message says; and ``install`` refusing, having changed nothing, when the check fails.

The plugins here are real executables: the launcher ``cni-logger launcher`` writes for this virtualenv, and
small shell scripts standing for a broken one. (Damaged bundles under a real chain: tests/system/test_safety.py.)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pytest

from cni_logger.install import launcher
from cni_logger.install.content import ChainEntry
from cni_logger.install.selfcheck import CannotCheck, CheckFailed, check
from tests.harness.nodes import Node

ENTRY = {"type": "logger", "logFile": "/var/log/cni/cni-logger.log"}
VERSION_ANSWER = '{"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0"]}'


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "bin" / "logger"
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def run_check(tmp_path: Path, executable: str, version: str = "1.0.0", timeout: float = 30,
              entries: list[dict[str, object]] | None = None) -> list[str]:
    chain = [ChainEntry("/etc/cni/net.d/10-net.conflist", "net", version, e) for e in entries or [ENTRY]]
    return check(executable, chain, str(tmp_path / "bin"), str(tmp_path / "state"), timeout)


def failure(tmp_path: Path, executable: str, **kwargs: object) -> str:
    with pytest.raises(CheckFailed) as caught:
        run_check(tmp_path, executable, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def test_the_launcher_of_this_environment_passes(tmp_path: Path) -> None:
    target = tmp_path / "bin" / "logger"
    launcher.write(str(target))
    for version in ("0.3.1", "1.0.0"):
        run_check(tmp_path, str(target), version)
    assert [p.name for p in (tmp_path / "bin").iterdir()] == ["logger"], "nothing written beside it"
    scratch = tmp_path / "state" / "check"
    assert scratch.stat().st_mode & 0o777 == 0o700, "root-only"
    assert list(scratch.iterdir()) == [], "each check's directory is removed"


def test_the_scratch_space_is_the_state_dirs_whatever_tmpdir_says(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Any user can fill a shared /tmp; the state dir is root's (and the DaemonSet's only writable place)."""
    target = tmp_path / "bin" / "logger"
    launcher.write(str(target))
    seen = tmp_path / "tmp"
    seen.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(seen))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "check").mkdir(mode=0o777)
    (tmp_path / "state" / "check").chmod(0o777)
    run_check(tmp_path, str(target))
    assert list(seen.iterdir()) == []
    assert (tmp_path / "state" / "check").stat().st_mode & 0o777 == 0o700, "made root-only again"


def test_a_scratch_space_that_cannot_be_made_is_cannot_check(tmp_path: Path) -> None:
    target = tmp_path / "bin" / "logger"
    launcher.write(str(target))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "check").write_text("a file where the scratch directory goes")
    with pytest.raises(CannotCheck) as caught:
        run_check(tmp_path, str(target))
    assert not isinstance(caught.value, CheckFailed)
    assert "cannot check" in str(caught.value)


def test_both_bracket_entries_are_executed_as_written(tmp_path: Path) -> None:
    seen = tmp_path / "stdin"
    body = (f'if [ "$CNI_COMMAND" = VERSION ]; then echo \'{VERSION_ANSWER}\'; '
            f"else cat >> {seen}; echo >> {seen}; exit 1; fi\n")
    attempt = {"type": "logger", "role": "attempt", "logFile": "/var/log/a.log", "redactKeys": ["x"]}
    outcome = {"type": "logger", "role": "outcome", "logFile": "/var/log/a.log", "redactKeys": ["x"]}
    failure(tmp_path, script(tmp_path, body), entries=[attempt, outcome])
    first = json.loads(seen.read_text().splitlines()[0])
    assert first["role"] == "attempt" and first["redactKeys"] == ["x"] and first["name"] == "net"
    assert first["logFile"].startswith(str(tmp_path / "state" / "check")), first["logFile"]


def test_a_strict_entry_with_a_rejected_setting_fails(tmp_path: Path) -> None:
    """failOnLogError + a value the plugin rejects: every ADD fails with code 7, whichever value it is (the
    relocated logFile too, which the scratch ADD would not see)."""
    target = tmp_path / "bin" / "logger"
    launcher.write(str(target))
    for entry in ({"type": "logger", "failOnLogError": True, "logFile": "relative.log"},
                  {"type": "logger", "failOnLogError": True, "logOptions": {"maxSize": -1}}):
        with pytest.raises(CheckFailed) as caught:
            run_check(tmp_path, str(target), entries=[entry])
        assert "failOnLogError" in str(caught.value) and "error 7" in str(caught.value)
    assert run_check(tmp_path, str(target), entries=[{"type": "logger", "logOptions": {"maxSize": -1}}]) == []


def test_a_real_log_that_cannot_be_written(tmp_path: Path) -> None:
    """Probed, never written or created: a warning when the plugin fails open, a failure under failOnLogError."""
    target = tmp_path / "bin" / "logger"
    launcher.write(str(target))
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    warnings = run_check(tmp_path, str(target), entries=[{"type": "logger", "logFile": str(fifo)}])
    assert len(warnings) == 1 and "not a regular file" in warnings[0] and "fails open" in warnings[0], warnings
    with pytest.raises(CheckFailed) as caught:
        run_check(tmp_path, str(target), entries=[{"type": "logger", "logFile": str(fifo), "failOnLogError": True}])
    assert "error 11" in str(caught.value)
    missing = tmp_path / "not-yet" / "deeper" / "cni.log"
    assert run_check(tmp_path, str(target), entries=[{"type": "logger", "logFile": str(missing)}]) == []
    assert not (tmp_path / "not-yet").exists(), "the probe creates nothing"


def test_exit_status_and_stderr_tail_are_reported(tmp_path: Path) -> None:
    message = failure(tmp_path, script(tmp_path, "echo 'ImportError: no module named x' >&2\nexit 3\n"))
    assert "VERSION exited with status 3" in message
    assert "ImportError: no module named x" in message


def test_a_hanging_plugin_is_killed_at_the_timeout(tmp_path: Path) -> None:
    message = failure(tmp_path, script(tmp_path, "echo starting >&2\nsleep 60\n"), timeout=0.5)
    assert "VERSION did not answer within 0.5s (killed)" in message
    assert "starting" in message


def test_a_version_answer_without_the_networks_version_fails(tmp_path: Path) -> None:
    message = failure(tmp_path, script(tmp_path, f"echo '{VERSION_ANSWER}'\n"), version="0.3.1")
    assert "does not list the network's cniVersion '0.3.1'" in message


def test_a_plugin_that_answers_but_records_nothing_fails(tmp_path: Path) -> None:
    body = (f'if [ "$CNI_COMMAND" = VERSION ]; then echo \'{VERSION_ANSWER}\'; '
            "else cat >/dev/null; echo '{\"cniVersion\": \"1.0.0\"}'; fi\n")
    message = failure(tmp_path, script(tmp_path, body))
    assert "ADD succeeded but wrote 0 event lines" in message


def test_a_missing_interpreter_is_named(tmp_path: Path) -> None:
    target = tmp_path / "bin" / "logger"
    launcher.write(str(target), python="/nonexistent/cni-logger/bin/python3.11", paths=[])
    message = failure(tmp_path, str(target))
    assert "cannot execute" in message
    assert "its interpreter /nonexistent/cni-logger/bin/python3.11 does not exist" in message


def test_the_plugin_gets_a_runtimes_clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the installer's: a PYTHONPATH or LD_PRELOAD of the operator's shell must not make it pass."""
    monkeypatch.setenv("PYTHONPATH", "/operator/site")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/operator/lib")
    seen = tmp_path / "env"
    body = f"env >> {seen}\necho broken >&2\nexit 1\n"
    failure(tmp_path, script(tmp_path, body))
    names = {line.split("=", 1)[0] for line in seen.read_text().splitlines()}
    assert names <= {"PATH", "CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH", "CNI_ARGS",
                     "PWD", "SHLVL", "_"}, names
    assert "CNI_COMMAND" in names and "PYTHONPATH" not in names and "LD_LIBRARY_PATH" not in names


def test_the_add_config_is_the_entry_with_a_private_log_file(tmp_path: Path) -> None:
    seen = tmp_path / "stdin"
    body = (f'if [ "$CNI_COMMAND" = VERSION ]; then echo \'{VERSION_ANSWER}\'; '
            f"else cat > {seen}; exit 1; fi\n")
    failure(tmp_path, script(tmp_path, body))
    config = json.loads(seen.read_text())
    assert config["type"] == "logger" and config["cniVersion"] == "1.0.0" and config["name"] == "net"
    assert config["logFile"] != ENTRY["logFile"]
    assert config["logFile"].startswith(str(tmp_path / "state" / "check" / "run-"))
    assert "prevResult" not in config
    assert not Path(config["logFile"]).parent.exists(), "its temporary directory is removed"


# ---------------------------------------------------------------------------------------------------------
# install refuses, changing nothing


def contents(*dirs: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``dirs``: content hash and mode (directory mtimes aside: the check's temporary
    file in the bin dir comes and goes)."""
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
            for d in dirs for p in sorted(d.rglob("*")) if p.is_file()}


def test_a_fresh_install_refuses_a_plugin_that_fails_and_writes_nothing(node: Node) -> None:
    node.put("10-flannel.conflist")
    before = contents(node.net_d, node.bin_dir)
    status, _, err = node.install("--check-timeout", "0.001")     # no interpreter starts that fast
    assert status == 1
    assert "refused: the plugin fails its self-check" in err and "did not answer within 0.001s" in err, err
    assert f"the new {node.launcher}" in err, "names the launcher, not only its temporary name"
    assert "nothing was changed" in err
    assert contents(node.net_d, node.bin_dir) == before
    assert not (node.state_dir / "install.json").exists()


def test_an_update_that_fails_its_check_keeps_the_previous_launcher(node: Node) -> None:
    node.put("10-flannel.conflist")
    assert node.install()[0] == 0
    launcher.write(str(node.launcher), python="/opt/older-build/bin/python3.11", paths=["/opt/older-build/lib"])
    before = contents(node.net_d, node.bin_dir, node.state_dir)
    status, _, err = node.install("--check-timeout", "0.001")
    assert status == 1, err
    assert "self-check" in err and "nothing was changed" in err
    assert contents(node.net_d, node.bin_dir, node.state_dir) == before
    assert "/opt/older-build/bin/python3.11" in node.launcher.read_text()


def test_a_current_launcher_is_checked_too(node: Node) -> None:
    """Nothing to write is no reason to skip the check: install answers for the plugin as it is now."""
    node.put("10-flannel.conflist")
    assert node.install()[0] == 0
    status, _, err = node.install("--check-timeout", "0.001")
    assert status == 1 and "self-check" in err, err
    assert f"{node.launcher} VERSION did not answer" in err


def test_a_bin_dir_made_for_a_launcher_that_fails_is_removed_again(node: Node) -> None:
    node.put("10-flannel.conflist")
    bin_dir = node.bin_dir / "cni" / "bin"
    status, _, err = node.install("--bin-dir", str(bin_dir), "--check-timeout", "0.001")
    assert status == 1 and "self-check" in err, err
    assert list(node.bin_dir.iterdir()) == [], "the directories install made for the launcher are gone"


def test_the_plan_lists_exactly_the_entries_it_writes(node: Node) -> None:
    """Plan.entries: what the chain holds after the plan, each with its file, network and cniVersion."""
    from cni_logger.install.content import logger_entry
    from cni_logger.install.journal import load_journal
    from cni_logger.install.plan import plan_install
    from cni_logger.install.runtimes import RUNTIMES, Options

    doc = json.loads(node.put("10-flannel.conflist").read_text())
    doc["plugins"].append({"type": "logger", "logFile": "/var/log/own.log", "redactKeys": ["token"]})
    path = node.put("10-flannel.conflist", json.dumps(doc))
    opts = Options(runtime=RUNTIMES["containerd"], conf_dir=str(node.net_d), bin_dir=str(node.bin_dir),
                   conf_file=None, network=None, entry=logger_entry("/var/log/cni/cni-logger.log", max_size=5),
                   named=logger_entry(None, max_size=5), state_dir=str(node.state_dir), bracket=True)
    plan = plan_install(opts, load_journal(str(node.state_dir)), [])
    written = json.loads(next(s.data for s in plan.steps if s.path == str(path)))  # type: ignore[union-attr]
    assert [e.entry for e in plan.entries] == [written["plugins"][0], written["plugins"][-1]]
    assert [e.entry["role"] for e in plan.entries] == ["attempt", "outcome"]
    assert plan.entries[1].entry["redactKeys"] == ["token"] and plan.entries[1].entry["logOptions"] == {"maxSize": 5}
    assert {(e.path, e.network, e.cni_version) for e in plan.entries} == {(str(path), doc["name"], doc["cniVersion"])}


def test_a_log_probe_that_blocks_is_bounded_by_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hung network mount cannot be made here: the probe itself is made to block, in the child it runs in."""
    import time

    from cni_logger.install import selfcheck

    target = tmp_path / "bin" / "logger"
    launcher.write(str(target))
    monkeypatch.setattr(selfcheck, "_log_problem", lambda path: time.sleep(120) or "")
    with pytest.raises(CheckFailed) as caught:
        run_check(tmp_path, str(target), timeout=2, entries=[{"type": "logger", "logFile": str(tmp_path / "a.log")}])
    assert "did not answer a probe within 2s" in str(caught.value) and "hang" in str(caught.value)
