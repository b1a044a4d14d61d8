"""The thick-mode shim on its own (shim/cni-logger-shim.c, configured by cni_logger.install.shim).

Each test configures the shim built from the working tree (tests.harness.shim) with a socket path the test
controls and, as the fallback, ``/usr/bin/python3 -IS -c DUMP``: a program that writes what it was given (its
arguments ID REASON MAYBE PREFIX, /proc/self/environ, fd 0 and fd 3) into a JSON file. The agent side is a
fake written here, so the shim's half of the contract is tested against hostile peers too: one that never
greets, refuses, dies mid-request, hangs, or answers garbage. (The real agent is tested on its own.)
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cni_logger.install import Refusal
from cni_logger.install.shim import CONFIG_SIZE, MARKER, ShimError, configure, is_shim, read_config, shim_path
from tests.harness import shim as harness
from tests.harness.waiting import wait_for

PYTHON = "/usr/bin/python3"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
NOT_CONFIGURED = (b'{"cniVersion":"1.1.0","code":100,"msg":"cni-logger shim not configured",'
                  b'"details":"write it with cni-logger install --agent"}\n')
MAX_STDIN = 16 * 1024 * 1024 + 1
MAX_OUT = 64 * 1024 * 1024
GENEROUS_MS = 20_000
"""Timeouts the shim must not reach where a test expects the agent to answer (a loaded machine is slow)."""

DUMP = r'''
import json, os, sys

def read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)

def link(fd):
    try:
        return os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        return None

seen = {"argv": sys.argv[1:], "stdin_link": link(0), "fd3_link": link(3), "tty": os.isatty(0), "uid": os.getuid()}
with open(OUT + ".started", "w") as f:
    json.dump(seen, f)
seen["prefix"] = read_all(3).hex() if sys.argv[4] == "3" else None
seen["stdin"] = None if seen["tty"] else read_all(0).hex()
with open("/proc/self/environ", "rb") as f:
    seen["environ"] = f.read().hex()
with open(OUT + ".tmp", "w") as f:
    json.dump(seen, f)
os.rename(OUT + ".tmp", OUT)
sys.stdout.write('{"from":"fallback"}\n')
'''
"""The fallback program: what the in-process plugin would be given, written to OUT (a JSON file)."""

ODD_ENV = {
    b"CNI_COMMAND": b"ADD", b"CNI_CONTAINERID": b"c0ffee", b"CNI_NETNS": b"/var/run/netns/x", b"CNI_IFNAME": b"eth0",
    b"CNI_PATH": b"/opt/cni/bin", b"EMPTY": b"", b"EQUALS": b"a=b==c", b"NEWLINES": b"one\ntwo\r\n",
    b"NOT_UTF8": b"\xff\xfe\x80 \x01\x1f", b"UTF8": "é→☃".encode(), b"LONG": b"x" * 100_000,
}
"""An environment with the values a byte-exact relay gets wrong first: empty, '=' inside, line breaks, bytes
that are not UTF-8, control characters, a long value."""


def environ_block(env: dict[bytes, bytes]) -> bytes:
    """``env`` as the kernel lays it out (and /proc/PID/environ shows it): each ``key=value`` NUL-ended."""
    return b"".join(k + b"=" + v + b"\0" for k, v in env.items())


def recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(min(n - len(data), 1 << 20))
        assert chunk, f"the shim closed the connection after {len(data)} of {n} bytes"
        data += chunk
    return data


def read_request(conn: socket.socket) -> list[bytes]:
    """The shim's framed request: ``CNIL1`` and six fields, each a u32 little-endian length and its bytes."""
    assert recv_exact(conn, 5) == b"CNIL1"
    return [recv_exact(conn, struct.unpack("<I", recv_exact(conn, 4))[0]) for _ in range(6)]


def wait_closed(conn: socket.socket) -> None:
    """Read until the shim closes its end (an agent that holds on)."""
    while conn.recv(65536):
        pass


def reply(status: int, stdout: bytes, stderr: bytes) -> bytes:
    return b"A" + struct.pack("<II", status, len(stdout)) + stdout + struct.pack("<I", len(stderr)) + stderr


@dataclass
class FakeAgent:
    """A listener on ``path`` serving the first connection with ``behave`` in a thread; what it read is kept."""

    path: Path
    behave: Callable[[FakeAgent, socket.socket], None] | None = None
    backlog: int = 16
    requests: list[list[bytes]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(self.backlog)
        self.thread: threading.Thread | None = None
        if self.behave is not None:
            self.sock.settimeout(30)
            self.thread = threading.Thread(target=self._serve, daemon=True)
            self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(30)
            try:
                assert self.behave is not None
                self.behave(self, conn)
            except BaseException as e:  # shown by close(): an assertion in a thread is otherwise lost
                self.errors.append(e)

    def request(self, conn: socket.socket) -> list[bytes]:
        fields = read_request(conn)
        self.requests.append(fields)
        return fields

    def pending(self) -> bool:
        """Whether a connection waits in the backlog (for a listener that never accepts)."""
        self.sock.setblocking(False)
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True

    def close(self) -> None:
        if self.thread is not None:
            self.thread.join(30)
        self.sock.close()
        assert not self.errors, self.errors


@dataclass
class Setup:
    """One test's files: a directory any user may enter, the configured shim, the agent's socket path, the dump."""

    dir: Path
    built: bytes
    agents: list[FakeAgent] = field(default_factory=list)

    @property
    def binary(self) -> Path:
        return self.dir / "logger"

    @property
    def agent_socket(self) -> Path:
        return self.dir / "agent.sock"

    @property
    def dump(self) -> Path:
        return self.dir / "out" / "seen.json"

    def configure(self, *, python: str = PYTHON, socket_path: str | None = None, connect_ms: int = GENEROUS_MS,
                  reply_ms: int = GENEROUS_MS, stdin_ms: int = GENEROUS_MS) -> None:
        program = f"OUT = {str(self.dump)!r}\n{DUMP}"
        data = configure(self.built, socket=socket_path or str(self.agent_socket), python=python, program=program,
                         connect_ms=connect_ms, reply_ms=reply_ms, stdin_ms=stdin_ms)
        self.binary.write_bytes(data)
        self.binary.chmod(0o755)

    def agent(self, behave: Callable[[FakeAgent, socket.socket], None] | None = None, backlog: int = 16) -> FakeAgent:
        agent = FakeAgent(self.agent_socket, behave, backlog)
        self.agents.append(agent)
        return agent

    def run(self, stdin: bytes = b'{"cniVersion":"1.1.0"}', env: dict[bytes, bytes] | None = None,
            prefix: list[str] | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*(prefix or []), str(self.binary)], input=stdin, env=ODD_ENV if env is None else env,
                              capture_output=True, check=False, timeout=60)

    def seen(self) -> dict[str, Any]:
        """What the fallback program was given (it must have run)."""
        assert self.dump.is_file(), "the fallback did not run"
        seen: dict[str, Any] = json.loads(self.dump.read_text())
        return seen


@pytest.fixture(scope="session")
def built() -> bytes:
    return harness.built().read_bytes()


@pytest.fixture
def setup(built: bytes) -> Iterator[Setup]:
    # Not tmp_path: pytest's base directory is 0700, and the "denied" test runs the shim as nobody.
    path = Path(tempfile.mkdtemp(prefix="shim-", dir="/tmp"))
    path.chmod(0o755)
    (path / "out").mkdir(mode=0o777)
    (path / "out").chmod(0o777)
    s = Setup(path, built)
    s.configure()
    yield s
    try:
        for agent in s.agents:
            agent.close()
    finally:
        shutil.rmtree(path)


def assert_fell_back(setup: Setup, proc: subprocess.CompletedProcess[bytes], reason: str, maybe: str = "0",
                     stdin: bytes = b'{"cniVersion":"1.1.0"}', env: dict[bytes, bytes] | None = None) -> list[str]:
    """The in-process plugin ran, with ``reason``, and got the request exactly: the environment byte for byte,
    stdin in a memfd holding exactly the bytes read. Returns its arguments (ID REASON MAYBE PREFIX)."""
    assert proc.returncode == 0, proc
    assert proc.stdout == b'{"from":"fallback"}\n', proc.stdout
    seen = setup.seen()
    assert seen["argv"][1:] == [reason, maybe, "-"], seen["argv"]
    assert UUID4.fullmatch(seen["argv"][0]), seen["argv"]
    assert bytes.fromhex(seen["environ"]) == environ_block(ODD_ENV if env is None else env)
    assert seen["stdin_link"].startswith("/memfd:cni-logger-stdin"), seen["stdin_link"]
    assert bytes.fromhex(seen["stdin"]) == stdin
    return list(seen["argv"])


# --- not configured ---------------------------------------------------------------------------------------------


def test_the_built_shim_holds_the_marker_once_and_is_not_configured(built: bytes, setup: Setup) -> None:
    assert built.count(MARKER) == 1 and is_shim(built) and read_config(built) == {}
    setup.binary.write_bytes(built)
    proc = setup.run()
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, NOT_CONFIGURED, b"")
    assert not setup.dump.exists()


def test_a_config_without_python_or_program_is_not_configured(built: bytes, setup: Setup) -> None:
    at = built.index(MARKER) + len(MARKER)
    sock = setup.agent_socket
    for entries in (f"socket={sock}\0program=pass\0\0", f"socket={sock}\0python={PYTHON}\0\0",
                    f"python={PYTHON}\0program=\0\0"):
        setup.binary.write_bytes(built[:at] + entries.encode() + built[at + len(entries):])
        proc = setup.run()
        assert (proc.returncode, proc.stdout) == (1, NOT_CONFIGURED), entries


# --- through the agent ------------------------------------------------------------------------------------------


def test_the_request_is_framed_whole_and_the_reply_relayed_byte_for_byte(setup: Setup) -> None:
    stdin = bytes(range(256)) * 400 + b"\0\0 tail"          # > 64 KiB, every byte value, NULs
    stdout = os.urandom(300_000) + b"\0"                     # larger than the shim's scratch buffer
    stderr = b"warn\0\xff\n" * 1000

    def answer(agent: FakeAgent, conn: socket.socket) -> None:
        conn.sendall(b"R")
        agent.request(conn)
        conn.sendall(reply(7, stdout, stderr))
        wait_closed(conn)

    agent = setup.agent(answer)
    with subprocess.Popen([str(setup.binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=ODD_ENV) as proc:
        out, err = proc.communicate(stdin, timeout=60)
    agent.close()
    assert (proc.returncode, out, err) == (7, stdout, stderr)
    assert not setup.dump.exists(), "the fallback ran although the agent answered"
    [request] = agent.requests
    rid, pid, ppid, node, environ, got_stdin = request
    assert UUID4.fullmatch(rid.decode()), rid
    assert (pid, ppid, node) == (str(proc.pid).encode(), str(os.getpid()).encode(), os.uname().nodename.encode())
    assert environ == environ_block(ODD_ENV)
    assert got_stdin == stdin


@pytest.mark.parametrize("status", [0, 1, 255])
def test_status_and_empty_output_are_relayed(setup: Setup, status: int) -> None:
    def answer(agent: FakeAgent, conn: socket.socket) -> None:
        conn.sendall(b"R")
        agent.request(conn)
        conn.sendall(reply(status, b"", b""))

    setup.agent(answer)
    proc = setup.run(stdin=b"", env={})
    assert (proc.returncode, proc.stdout, proc.stderr) == (status, b"", b"")
    [request] = setup.agents[0].requests
    assert request[4:] == [b"", b""]


def test_each_invocation_has_its_own_request_id(setup: Setup) -> None:
    ids = []
    for _ in range(3):
        setup.dump.unlink(missing_ok=True)
        ids.append(assert_fell_back(setup, setup.run(), "absent")[0])
    assert len(set(ids)) == 3, ids


def test_stdin_past_the_limit_is_cut_at_one_byte_over_for_the_agent_to_refuse(setup: Setup) -> None:
    def answer(agent: FakeAgent, conn: socket.socket) -> None:
        conn.sendall(b"R")
        agent.request(conn)
        conn.sendall(reply(1, b"too large\n", b""))

    setup.agent(answer)
    data = os.urandom(1024) * (MAX_STDIN // 1024 + 64)
    proc = setup.run(stdin=data)
    assert (proc.returncode, proc.stdout) == (1, b"too large\n")
    assert setup.agents[0].requests[0][5] == data[:MAX_STDIN]


# --- falling back before the request is sent (MAYBE=0) -----------------------------------------------------------


def test_no_socket_file_is_absent(setup: Setup) -> None:
    assert_fell_back(setup, setup.run(), "absent")


def test_a_socket_path_under_a_regular_file_is_absent(setup: Setup) -> None:
    (setup.dir / "file").write_text("")
    setup.configure(socket_path=str(setup.dir / "file" / "agent.sock"))
    assert_fell_back(setup, setup.run(), "absent")


def test_a_stale_socket_file_is_not_listening(setup: Setup) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(setup.agent_socket))
    stale.close()                                            # the file stays: a dead agent's socket
    assert setup.agent_socket.exists()
    assert_fell_back(setup, setup.run(), "not-listening")


def test_a_full_backlog_is_busy(setup: Setup) -> None:
    agent = setup.agent(backlog=0)                           # never accepts; one queued connection fills it
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as first:
        first.connect(str(setup.agent_socket))
        assert_fell_back(setup, setup.run(), "busy")
    assert agent.sock.fileno() >= 0


def test_a_socket_a_non_root_peer_cannot_reach_is_denied(setup: Setup) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the shim as another user")
    private = setup.dir / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    listener = FakeAgent(private / "agent.sock")             # a live listener, behind a root-only directory
    setup.configure(socket_path=str(private / "agent.sock"))
    try:
        proc = setup.run(prefix=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        assert_fell_back(setup, proc, "denied")
        assert setup.seen()["uid"] == 65534
        assert not listener.pending()
    finally:
        listener.close()


def test_a_refusal_is_refused_and_its_reason_text_drained(setup: Setup) -> None:
    def refuse(agent: FakeAgent, conn: socket.socket) -> None:
        conn.sendall(b"N" + b"draining: the node is going down" * 10)
        # The shim read the text before closing: this end sees a clean end, not ECONNRESET.
        assert conn.recv(1) == b""

    setup.agent(refuse)
    assert_fell_back(setup, setup.run(), "refused")


def test_an_agent_that_never_greets_is_slow(setup: Setup) -> None:
    setup.configure(connect_ms=150)
    agent = setup.agent()                                    # listening, never accepting: connect() succeeds
    assert_fell_back(setup, setup.run(), "slow")
    assert agent.pending()


@pytest.mark.parametrize("greeting", [b"", b"Z", b"A"], ids=["eof", "other-byte", "reply-byte"])
def test_a_connection_closed_or_greeted_wrongly_is_closed(setup: Setup, greeting: bytes) -> None:
    def greet(agent: FakeAgent, conn: socket.socket) -> None:
        conn.sendall(greeting)

    setup.agent(greet)
    assert_fell_back(setup, setup.run(), "closed")


def test_off_falls_back_without_reading_stdin_or_connecting(setup: Setup) -> None:
    agent = setup.agent()
    env = {**ODD_ENV, b"CNI_LOGGER_SHIM": b"inprocess"}
    proc = setup.run(env=env, stdin=b"\0" * 70_000)
    assert proc.returncode == 0 and proc.stdout == b'{"from":"fallback"}\n', proc
    seen = setup.seen()
    assert seen["argv"][1:] == ["off", "0", "-"]
    assert seen["stdin_link"].startswith("pipe:"), seen["stdin_link"]    # the runtime's own stdin, untouched
    assert bytes.fromhex(seen["stdin"]) == b"\0" * 70_000
    assert bytes.fromhex(seen["environ"]) == environ_block(env)
    assert not agent.pending()


def test_a_terminal_on_stdin_falls_back_with_stdin_untouched(setup: Setup) -> None:
    """A line typed ahead stays in the terminal: a shim that read it would hand it over as a prefix."""
    setup.configure(stdin_ms=100)
    agent = setup.agent()
    leader, follower = os.openpty()
    os.write(leader, b"typed ahead\n")
    try:
        proc = subprocess.run([str(setup.binary)], stdin=follower, env=ODD_ENV, capture_output=True, check=False,
                              timeout=60)
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 0, proc
    seen = setup.seen()
    assert seen["argv"][1:] == ["stdin", "0", "-"] and seen["tty"] is True and seen["fd3_link"] is None
    assert seen["stdin_link"].startswith("/dev/pts/"), seen["stdin_link"]
    assert not agent.pending()


def test_stdin_without_eof_hands_the_bytes_read_over_on_fd_3_and_fd_0_stays_readable(setup: Setup) -> None:
    setup.configure(stdin_ms=200)
    agent = setup.agent()
    started = setup.dump.with_name(setup.dump.name + ".started")
    with subprocess.Popen([str(setup.binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ODD_ENV) as proc:
        assert proc.stdin is not None
        proc.stdin.write(b'{"cniVersion":\0"1.')
        proc.stdin.flush()
        assert wait_for(started.exists), "the fallback did not start"
        proc.stdin.write(b'1.0"}')
        proc.stdin.close()
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(timeout=60)
    assert proc.returncode == 0 and out == b'{"from":"fallback"}\n', out
    seen = setup.seen()
    assert seen["argv"][1:] == ["stdin", "0", "3"]
    assert seen["fd3_link"].startswith("/memfd:cni-logger-stdin"), seen["fd3_link"]
    assert bytes.fromhex(seen["prefix"]) == b'{"cniVersion":\0"1.'
    assert seen["stdin_link"].startswith("pipe:"), seen["stdin_link"]
    assert bytes.fromhex(seen["stdin"]) == b'1.0"}'
    assert not agent.pending()


def test_stdin_without_eof_and_nothing_read_has_no_prefix(setup: Setup) -> None:
    setup.configure(stdin_ms=100)
    started = setup.dump.with_name(setup.dump.name + ".started")
    with subprocess.Popen([str(setup.binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ODD_ENV) as proc:
        assert proc.stdin is not None
        assert wait_for(started.exists), "the fallback did not start"
        proc.stdin.write(b"{}")
        proc.stdin.close()
        proc.wait(timeout=60)
    seen = setup.seen()
    assert seen["argv"][1:] == ["stdin", "0", "-"] and seen["fd3_link"] is None
    assert bytes.fromhex(seen["stdin"]) == b"{}"


@pytest.mark.parametrize(("size", "kind"), [(0, "pipe:"), (65536, "pipe:"), (65537, "/tmp/#"), (3_000_000, "/tmp/#")])
def test_without_memfd_stdin_goes_through_a_pipe_or_an_unnamed_file(setup: Setup, size: int, kind: str) -> None:
    """A pipe when the bytes surely fit in its buffer (no reader yet), an O_TMPFILE file in /tmp beyond."""
    stdin = os.urandom(size)
    proc = setup.run(stdin=stdin, prefix=[str(harness.without_memfd())])
    assert proc.returncode == 0 and proc.stdout == b'{"from":"fallback"}\n', proc
    seen = setup.seen()
    assert seen["argv"][1:] == ["absent", "0", "-"]
    assert seen["stdin_link"].startswith(kind), seen["stdin_link"]
    assert bytes.fromhex(seen["stdin"]) == stdin


def test_without_memfd_the_prefix_goes_through_a_pipe_on_fd_3(setup: Setup) -> None:
    setup.configure(stdin_ms=100)
    started = setup.dump.with_name(setup.dump.name + ".started")
    with subprocess.Popen([str(harness.without_memfd()), str(setup.binary)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, env=ODD_ENV) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"{")
        proc.stdin.flush()
        assert wait_for(started.exists), "the fallback did not start"
        proc.stdin.write(b"}")
        proc.stdin.close()
        proc.stdout.read()
        proc.wait(timeout=60)
    seen = setup.seen()
    assert seen["argv"][1:] == ["stdin", "0", "3"] and seen["fd3_link"].startswith("pipe:"), seen
    assert (bytes.fromhex(seen["prefix"]), bytes.fromhex(seen["stdin"])) == (b"{", b"}")


# --- falling back after the request may have reached the agent (MAYBE=1) ----------------------------------------


def hang(agent: FakeAgent, conn: socket.socket) -> None:
    conn.sendall(b"R")
    agent.request(conn)
    wait_closed(conn)


def die(agent: FakeAgent, conn: socket.socket) -> None:
    conn.sendall(b"R")
    agent.request(conn)


def die_mid_reply(agent: FakeAgent, conn: socket.socket) -> None:
    conn.sendall(b"R")
    agent.request(conn)
    conn.sendall(reply(0, b"x" * 100, b"")[:50])


def stall(agent: FakeAgent, conn: socket.socket) -> None:
    """Greets, then never reads: the shim's request fills the socket, and its send waits."""
    conn.sendall(b"R")
    hangup = select.poll()
    hangup.register(conn, select.POLLHUP)                    # only the shim's close wakes it, not its data
    while not hangup.poll(30_000):
        pass


def garbling(answer: bytes) -> Callable[[FakeAgent, socket.socket], None]:
    def behave(agent: FakeAgent, conn: socket.socket) -> None:
        conn.sendall(b"R")
        agent.request(conn)
        conn.sendall(answer)
        wait_closed(conn)
    return behave


@pytest.mark.parametrize(("behave", "reason", "reply_ms"), [
    (hang, "timeout", 300),
    (stall, "timeout", 300),
    (die, "died", GENEROUS_MS),
    (die_mid_reply, "died", GENEROUS_MS),
    (garbling(b"X" + bytes(12)), "garbled", GENEROUS_MS),
    (garbling(b"A" + struct.pack("<II", 0, MAX_OUT + 1)), "garbled", GENEROUS_MS),
    (garbling(b"A" + struct.pack("<II", 0, 3) + b"out" + struct.pack("<I", MAX_OUT + 1)), "garbled", GENEROUS_MS),
], ids=["timeout", "timeout-sending", "died", "died-mid-reply", "garbled-first-byte", "garbled-stdout-length",
        "garbled-stderr-length"])
def test_a_request_the_agent_may_have_falls_back_with_maybe_and_the_same_id(
        setup: Setup, behave: Callable[[FakeAgent, socket.socket], None], reason: str, reply_ms: int) -> None:
    setup.configure(reply_ms=reply_ms)
    agent = setup.agent(behave)
    stdin = os.urandom(1_000_000)                            # more than a unix socket's buffer holds
    proc = setup.run(stdin=stdin)
    agent.close()
    argv = assert_fell_back(setup, proc, reason, maybe="1", stdin=stdin)
    if behave is not stall:
        [request] = agent.requests
        assert request[0].decode() == argv[0], "the fallback must record the event under the id the agent saw"
    assert proc.stderr == b""


def test_the_largest_reply_lengths_are_accepted(setup: Setup) -> None:
    """Exactly 64 MiB is a reply, one byte more garbage: the bound above is the limit, not a smaller one."""
    big = b"\xab" * MAX_OUT

    def answer(agent: FakeAgent, conn: socket.socket) -> None:
        conn.sendall(b"R")
        agent.request(conn)
        conn.sendall(reply(3, big, b"e"))

    setup.agent(answer)
    proc = setup.run()
    assert (proc.returncode, len(proc.stdout), proc.stderr) == (3, MAX_OUT, b"e")
    assert proc.stdout == big


# --- when the in-process plugin cannot run -----------------------------------------------------------------------


def test_an_interpreter_that_cannot_run_fails_add_with_a_cni_error(setup: Setup) -> None:
    python = '/nonexistent/py"th\\on\n3'
    setup.configure(python=python)
    proc = setup.run()
    assert proc.returncode == 1 and proc.stderr == b""
    assert proc.stdout.endswith(b"}\n") and proc.stdout.count(b"\n") == 1, proc.stdout
    assert json.loads(proc.stdout) == {"cniVersion": "1.1.0", "code": 100,
                                       "msg": "cni-logger: cannot run the in-process plugin",
                                       "details": f"{python}: No such file or directory"}


def test_an_interpreter_that_cannot_run_answers_del_as_succeeded(setup: Setup) -> None:
    setup.configure(python="/nonexistent/python3")
    proc = setup.run(env={**ODD_ENV, b"CNI_COMMAND": b"DEL"})
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert proc.stderr == (b"cni-logger: cannot run the in-process plugin /nonexistent/python3: "
                           b"No such file or directory; DEL answered as succeeded\n")


def test_an_interpreter_that_is_not_executable_fails_add(setup: Setup) -> None:
    fake = setup.dir / "python"
    fake.write_text("")
    fake.chmod(stat.S_IRUSR)                                 # no execute bit: EACCES, for root too
    setup.configure(python=str(fake))
    proc = setup.run()
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["details"] == f"{fake}: Permission denied"


# --- configure() and reading a shim ------------------------------------------------------------------------------


def test_configure_round_trips_and_rewrites_a_configured_shim_whole(built: bytes) -> None:
    first = configure(built, socket="/run/a.sock", python="/opt/p/bin/python3.11", program="import x\nx.main()",
                      connect_ms=1, reply_ms=2, stdin_ms=3)
    assert len(first) == len(built) and first.count(MARKER) == 1 and is_shim(first)
    assert read_config(first) == {"socket": "/run/a.sock", "python": "/opt/p/bin/python3.11",
                                  "program": "import x\nx.main()", "connect_ms": "1", "reply_ms": "2",
                                  "stdin_ms": "3"}
    at = built.index(MARKER)
    assert first[:at] == built[:at] and first[at + CONFIG_SIZE:] == built[at + CONFIG_SIZE:]
    again = configure(first, socket="/s", python="/p", program="p")
    assert again == configure(built, socket="/s", python="/p", program="p")
    assert read_config(again) == {"socket": "/s", "python": "/p", "program": "p", "connect_ms": "200",
                                  "reply_ms": "3000", "stdin_ms": "2000"}


def test_the_largest_program_that_fits_is_taken_and_one_byte_more_refused(built: bytes) -> None:
    fixed = len(b"socket=/s\0python=/p\0program=\0connect_ms=200\0reply_ms=3000\0stdin_ms=2000\0\0")
    room = CONFIG_SIZE - len(MARKER) - fixed
    assert read_config(configure(built, socket="/s", python="/p", program="p" * room))["program"] == "p" * room
    with pytest.raises(ShimError, match="more than its config area holds"):
        configure(built, socket="/s", python="/p", program="p" * (room + 1))


@pytest.mark.parametrize(("change", "message"), [
    ({"program": "a\0b"}, "NUL"),
    ({"python": "a\0b"}, "NUL"),
    ({"python": "bin/python3"}, "absolute path"),
    ({"socket": "run/agent.sock"}, "absolute path"),
    ({"program": ""}, "empty"),
    ({"socket": "/" + "s" * 107}, "more than a unix socket address holds"),
    ({"program": "x = 'CNI-LOGGER-SHIM-CONFIG/1\\n'"}, "marker"),
    ({"connect_ms": -1}, "connect_ms"),
    ({"reply_ms": 86_400_001}, "reply_ms"),
    ({"stdin_ms": True}, "stdin_ms"),
])
def test_configure_refuses_what_the_shim_would_not_read_as_given(built: bytes, change: dict[str, Any],
                                                                  message: str) -> None:
    args: dict[str, Any] = {"socket": "/run/a.sock", "python": "/usr/bin/python3", "program": "pass", **change}
    with pytest.raises(ShimError, match=message):
        configure(built, **args)


def test_configure_accepts_the_longest_socket_path(built: bytes) -> None:
    path = "/" + "s" * 106
    assert read_config(configure(built, socket=path, python="/p", program="p"))["socket"] == path


@pytest.mark.parametrize(("data", "message"), [
    (b"#!/bin/sh\nexit 0\n", "not an ELF"),
    (b"\x7fELF" + bytes(10_000), "no config area"),
    (b"\x7fELF" + (MARKER + bytes(CONFIG_SIZE)) * 2, "2 times"),
    (b"\x7fELF" + MARKER + bytes(100), "inside its config area"),
], ids=["not-elf", "no-marker", "two-markers", "truncated"])
def test_configure_refuses_what_is_not_a_shim(data: bytes, message: str) -> None:
    with pytest.raises(ShimError, match=message) as refused:
        configure(data, socket="/s", python="/p", program="p")
    assert isinstance(refused.value, Refusal)
    with pytest.raises(ShimError, match=message):
        read_config(data)


def test_is_shim_needs_both_the_elf_magic_and_the_marker(built: bytes) -> None:
    assert is_shim(built)
    assert not is_shim(b"#!/bin/sh\n" + MARKER)
    assert not is_shim(built.replace(MARKER, b"X" * len(MARKER)))


def test_shim_path_is_under_the_prefix_libexec() -> None:
    assert shim_path("/opt/cni-logger/abc") == "/opt/cni-logger/abc/libexec/cni-logger-shim"
    assert shim_path().endswith("/libexec/cni-logger-shim")
