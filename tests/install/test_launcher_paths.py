"""Launchers for interpreters under any path: a blank, quotes, a path longer than the kernel reads of a
``#!`` line. Each ``cni-logger launcher`` here runs as a process, from an interpreter reached through such
a path (a symlink to this virtualenv), and each launcher it writes is executed as a runtime executes it:
VERSION, then ADD into a real log.

Also: ``launcher`` executes the file it wrote before it reports success (a bin dir mounted ``noexec``, in a
private mount namespace), and the self-check's message for an old launcher whose ``#!`` line the kernel
splits at a blank names that, not a removed virtualenv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cni_logger.install import launcher
from cni_logger.install.content import ChainEntry
from cni_logger.install.selfcheck import CheckFailed, check

CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def venv_through(link: Path) -> str:
    """This virtualenv reached through ``link`` (a symlink to it); its python's path under ``link``."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(sys.prefix, target_is_directory=True)
    python = link / "bin" / "python"
    assert python.exists(), python
    return str(python)


def write_launcher(python: str, target: Path) -> subprocess.CompletedProcess[str]:
    """``<python> -m cni_logger launcher TARGET``, as a process (so ``sys.executable`` is ``python``)."""
    return subprocess.run([python, "-m", "cni_logger", "launcher", str(target)], env=CLEAN_ENV, text=True,
                          capture_output=True, timeout=120, check=False)


def plugin(executable: Path, command: str, config: dict[str, object], tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**CLEAN_ENV, "CNI_COMMAND": command, "CNI_CONTAINERID": "ctr-paths", "CNI_NETNS": str(tmp / "netns"),
           "CNI_IFNAME": "eth0", "CNI_PATH": str(executable.parent), "CNI_ARGS": ""}
    return subprocess.run([str(executable)], input=json.dumps(config), env=env, text=True, capture_output=True,
                          timeout=120, check=False, cwd="/")


def assert_runs(target: Path, tmp: Path) -> None:
    """VERSION and ADD through the launcher file, executed by the kernel as a runtime executes it."""
    assert launcher.is_launcher(target.read_bytes()), "uninstall and install must recognise it"
    version = plugin(target, "VERSION", {"cniVersion": "1.0.0"}, tmp)
    assert version.returncode == 0, version
    assert "1.0.0" in json.loads(version.stdout)["supportedVersions"]
    log = tmp / "log" / "events.log"
    add = plugin(target, "ADD", {"cniVersion": "1.0.0", "name": "net", "type": "logger", "logFile": str(log)}, tmp)
    assert add.returncode == 0, add
    assert json.loads(add.stdout)["cniVersion"] == "1.0.0"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["cni"]["command"] for e in events] == ["ADD"]


@pytest.mark.parametrize("name", ["x y", "tab\there", "it's \"quoted\"", "quotes'only\"here", "'''x y'''",
                                  "both ' and \" and $HOME `x` \\n"])
def test_an_interpreter_under_a_path_with_blanks_or_quotes(tmp_path: Path, name: str) -> None:
    python = venv_through(tmp_path / name / "venv")
    target = tmp_path / "bin" / "logger"
    done = write_launcher(python, target)
    if "\\" in name:
        assert done.returncode == 1 and "cannot write" in done.stderr, done
        assert not target.exists()
        return
    assert done.returncode == 0, done
    text = target.read_text()
    assert f"#!{python} -IS" in text or launcher._sh_quote(python) in text, "the path it was reached through"
    assert_runs(target, tmp_path)


def test_an_interpreter_under_a_path_longer_than_the_kernel_reads(tmp_path: Path) -> None:
    python = venv_through(tmp_path / ("d" * 120) / ("e" * 120) / "venv")
    assert len(f"#!{python} -IS") > 256
    target = tmp_path / "bin" / "logger"
    done = write_launcher(python, target)
    assert done.returncode == 0, done
    assert_runs(target, tmp_path)


def test_a_plain_path_keeps_the_plain_interpreter_line(tmp_path: Path) -> None:
    """The node script reads the bundle folder from ``#!<folder>/bin/python3.11 -IS``: unchanged for such paths."""
    text = launcher.render("/opt/cni-logger/b1/bin/python3.11", ["/opt/cni-logger/b1/lib"])
    assert text.startswith("#!/opt/cni-logger/b1/bin/python3.11 -IS\n")


def test_launcher_executes_the_file_before_it_reports_success(tmp_path: Path) -> None:
    """A bin dir mounted noexec: the file cannot execute, so ``launcher`` fails and leaves nothing there."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = ('mount -t tmpfs -o noexec,size=1m tmpfs "$1" || exit 99\n'
              '"$2" -m cni_logger launcher "$1/logger"; status=$?\nls -A "$1"\nexit $status\n')
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(bin_dir),
                           sys.executable], env=CLEAN_ENV, text=True, capture_output=True, timeout=120, check=False)
    assert done.returncode != 99, done
    assert done.returncode == 1, done
    assert "cannot execute" in done.stderr or "VERSION" in done.stderr, done.stderr
    assert done.stdout.strip() == "", "nothing left in the bin dir"


def test_the_check_does_not_blame_a_removed_virtualenv_for_a_split_interpreter_line(tmp_path: Path) -> None:
    """A launcher of an earlier version under a path with a blank: the interpreter exists; the kernel split it."""
    python = venv_through(tmp_path / "x y" / "venv")
    target = tmp_path / "bin" / "logger"
    target.parent.mkdir()
    target.write_text(f"#!{python} -IS\n{launcher.MARKER.decode()}\nimport sys\n")
    target.chmod(0o755)
    with pytest.raises(CheckFailed) as caught:
        check(str(target), [ChainEntry("net.conflist", "net", "1.0.0", {"type": "logger"})], str(target.parent),
              str(tmp_path / "state"), 30)
    message = str(caught.value)
    assert "removed" not in message, message
    assert "blank" in message and python in message, message


def test_install_from_an_environment_under_a_path_with_a_blank(tmp_path: Path) -> None:
    """``install`` run by an interpreter under such a path: the launcher it writes passes its self-check and runs."""
    python = venv_through(tmp_path / "x y" / "venv")
    net_d = tmp_path / "net d"
    net_d.mkdir()
    (net_d / "10-net.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "net",
                                                       "plugins": [{"type": "bridge"}]}))
    bin_dir = tmp_path / "bin dir"
    done = subprocess.run([python, "-m", "cni_logger", "install", "--conf-dir", str(net_d), "--bin-dir", str(bin_dir),
                           "--state-dir", str(tmp_path / "state"), "--log-file", str(tmp_path / "log" / "a.log")],
                          env=CLEAN_ENV, text=True, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "virtualenv" not in done.stderr
    assert_runs(bin_dir / "logger", tmp_path)


def test_the_line_length_limit_is_the_kernels() -> None:
    assert launcher.shebang_limit("4.18.0-553.el8_10.x86_64") == 128
    assert launcher.shebang_limit("5.1.0") == 256 and launcher.shebang_limit("6.18.44-fc-v1272") == 256
    long_python = "/opt/" + "b" * 150 + "/bin/python3.11"          # a 176-byte line: fits since 5.1 only
    assert launcher.render(long_python, []).startswith("#!/bin/sh\n") == (launcher.shebang_limit() < 176)


def test_without_bin_sh_such_a_path_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "SHELL", "/nonexistent/sh")
    with pytest.raises(launcher.LauncherError) as caught:
        launcher.render("/opt/x y/bin/python3.11", [])
    assert "/nonexistent/sh" in str(caught.value) and "absent" in str(caught.value)
    assert launcher.render("/opt/xy/bin/python3.11", []).startswith("#!/opt/xy/bin/python3.11 -IS\n")
