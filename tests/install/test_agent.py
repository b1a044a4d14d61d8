"""cni_logger.install.agent: where the agent may listen, and what it leaves behind."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from cni_logger.install.agent import Agent, AgentRefusal


def test_the_socket_is_root_only_in_a_root_only_directory(tmp_path: Path) -> None:
    directory = tmp_path / "agent"
    directory.mkdir(mode=0o755)  # made too open by someone: tightened
    agent = Agent(str(directory / "agent.sock"))
    agent.start()
    try:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        st = (directory / "agent.sock").lstat()
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
        assert sorted(p.name for p in directory.iterdir()) == ["agent.sock"]  # no temporary name left
    finally:
        agent.stop()
    assert not (directory / "agent.sock").exists()


def test_a_directory_someone_else_owns_or_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(AgentRefusal, match="not root"):
        Agent(str(theirs / "agent.sock")).start()
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    (ours / "agent.sock").write_text("not a socket")
    with pytest.raises(AgentRefusal, match="not a socket"):
        Agent(str(ours / "agent.sock")).start()


def test_a_stale_socket_is_replaced_and_a_live_agent_is_not(tmp_path: Path) -> None:
    path = tmp_path / "agent" / "agent.sock"
    path.parent.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a killed agent's socket file: nobody listens
    first = Agent(str(path))
    first.start()
    try:
        with pytest.raises(AgentRefusal, match="another agent"):
            Agent(str(path)).start()
    finally:
        first.stop()


def test_stop_leaves_a_socket_that_is_no_longer_its_own(tmp_path: Path) -> None:
    path = tmp_path / "agent" / "agent.sock"
    agent = Agent(str(path))
    agent.start()
    path.unlink()
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(path))  # another agent's, made since
    try:
        agent.stop()
        assert path.exists()
    finally:
        other.close()
